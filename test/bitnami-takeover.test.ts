// Taking over a real Bitnami `keycloak` release (rendered by Bitnami's own charts, see
// test/fixtures/bitnami-keycloak/README.md) with v2, at the API level: the fake API server refuses
// what a real one refuses, the tools are modelled as in the rehearsal (rehearsal/lifecycle.ts),
// and the runner's own take-over step runs with the synthesized Role's permissions only.
//
// Without the take-over step the upgrade fails exactly as the findings say (Keycloak's StatefulSet
// selector/serviceName are immutable) — and Keycloak is left at 0 replicas. With it, every apply
// succeeds, Keycloak's Service keeps its address and port 80, and the Secrets of the old release
// that the migrated data still needs (admin password, database passwords) survive the upgrade.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { synthesizePlatform } from '../main.js';
import { RunnerCommand } from '../lib/contract.js';
import { FakeCluster } from '../rehearsal/cluster.js';
import { ArgoApplication, HelmRelease, type LifecycleResult } from '../rehearsal/lifecycle.js';
import { classifyArgoObjects, classifyHelmObjects, parseManifestText, readArgoManifests, readHelmChart, type KubeObject } from '../rehearsal/manifests.js';
import { createLogger } from '../runner/src/log.js';
import { createHookContext, readState } from '../runner/src/phases/context.js';
import { quiesce, unquiesce } from '../runner/src/phases/quiesce.js';
import { takeOverReleaseObjects } from '../runner/src/phases/take-over.js';
import { adoptionEvidence, decidePrepare, probeAdoptedSource, probeLegacyDatabase, probeSource } from '../runner/src/phases/decide.js';
import { probeAdoption } from '../runner/src/phases/adopt-legacy.js';
import { newMigrationState } from '../runner/src/state.js';
import { formatPlan, gatherPlanInput } from '../runner/src/commands/plan.js';
import { formatStatus } from '../runner/src/commands/status.js';
import { RunnerError } from '../runner/src/errors.js';
import { ExitCode } from '../lib/contract.js';
import { scaleWorkload, waitForPodsGone } from '../runner/src/kube/workloads.js';
import { startFakeKubeApiServer, startWorkloadController, type FakeKubeApiServer, type WorkloadController } from './support/fake-kube/index.js';
import { fakeRunnerKube } from './support/fake-kube/runner-kube-context.js';

const NAMESPACE = 'keycloak';
const FIXTURES = join(import.meta.dirname, 'fixtures', 'bitnami-keycloak');

type Tool = 'helm' | 'argocd';

interface Fixture {
  readonly file: string;
  readonly release: string;
  /** Bitnami's Keycloak fullname: StatefulSet, Service and admin Secret. */
  readonly keycloak: string;
  readonly legacySecret: string;
}

const FIXTURES_USED: readonly Fixture[] = [
  { file: 'keycloak-25.4.0-release-keycloak.yaml', release: 'keycloak', keycloak: 'keycloak', legacySecret: 'keycloak-postgresql' },
  { file: 'keycloak-21.8.0-release-keycloak.yaml', release: 'keycloak', keycloak: 'keycloak', legacySecret: 'keycloak-postgresql' },
  { file: 'keycloak-25.4.0-release-idp.yaml', release: 'idp', keycloak: 'idp-keycloak', legacySecret: 'idp-postgresql' },
];

class Cluster {
  readonly workloads: WorkloadController;
  readonly cluster: FakeCluster;
  readonly helm: HelmRelease;
  readonly argo: ArgoApplication;
  private constructor(readonly server: FakeKubeApiServer, readonly dir: string) {
    this.workloads = startWorkloadController(server);
    this.cluster = new FakeCluster(server, NAMESPACE, 10);
    this.helm = new HelmRelease(this.cluster, { timeoutMs: 20_000 });
    this.argo = new ArgoApplication(this.cluster, { waveTimeoutMs: 20_000 });
  }
  static async start(): Promise<Cluster> {
    return new Cluster(await startFakeKubeApiServer(), mkdtempSync(join(tmpdir(), 'takeover-')));
  }
  get(kind: string, name: string, apiVersion = kind === 'StatefulSet' ? 'apps/v1' : 'v1'): KubeObject | undefined {
    return this.server.get({ apiVersion, kind, name, namespace: NAMESPACE }) as KubeObject | undefined;
  }
  async close(): Promise<void> {
    this.workloads.stop();
    await this.server.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

function bitnamiRelease(fixture: Fixture): KubeObject[] {
  return parseManifestText(readFileSync(join(FIXTURES, fixture.file), 'utf8'), fixture.file);
}

/**
 * v2 of this project for the release, default configuration plus its name and namespace; the
 * repmgr target, whose StatefulSets this cluster's controller runs (no CloudNativePG operator here).
 */
function synthesizeV2(c: Cluster, fixture: Fixture) {
  const layout = synthesizePlatform(join(c.dir, 'v2'), { releaseName: fixture.release, namespace: NAMESPACE, database: { flavor: 'repmgr' } });
  return {
    helm: readHelmChart(layout.helmChartDir, { releaseName: fixture.release, namespace: NAMESPACE }),
    argocd: readArgoManifests(layout.argocdDir),
  };
}

/** The Bitnami release installed by the tool, its Keycloak running. */
async function installBitnami(c: Cluster, tool: Tool, fixture: Fixture): Promise<void> {
  const objects = bitnamiRelease(fixture);
  const result =
    tool === 'helm' ? await c.helm.upgradeInstall(classifyHelmObjects(fixture.file, objects)) : await c.argo.sync(classifyArgoObjects(fixture.file, objects));
  expect(result.error?.message).toBeUndefined();
  await c.cluster.waitReady(c.get('StatefulSet', fixture.keycloak)!, 10_000);
}

/**
 * The v2 release objects applied by the tool, hooks left out: the hook Jobs (tested in the
 * rehearsal) are replaced here by calls of the runner's steps.
 */
async function upgradeWithoutHooks(c: Cluster, tool: Tool, v2: ReturnType<typeof synthesizeV2>): Promise<LifecycleResult> {
  return tool === 'helm' ? c.helm.upgradeInstall({ ...v2.helm, hooks: [] }) : c.argo.sync({ ...v2.argocd, hooks: [] });
}

/** A hook Job's environment (plain values; passwords unset) and a kube client with its ServiceAccount's token. */
async function hookJobContext(c: Cluster, v2: ReturnType<typeof synthesizeV2>, hook: 'prepare' | 'backup', extraEnv: Record<string, string> = {}) {
  const hooks = v2.argocd.hooks.map((object) => object.object);
  const job = hooks.find((object) => object.kind === 'Job' && object.metadata.name.endsWith(`-migration-${hook}`));
  if (!job) throw new Error(`the synthesized v2 holds no ${hook} Job`);
  // The migration's RBAC, as its hooks create it before the Job.
  for (const object of hooks.filter((o) => ['ServiceAccount', 'Role', 'RoleBinding'].includes(o.kind))) await c.cluster.apply(object);
  const pod = (job.spec as { template: { spec: { serviceAccountName: string; containers: { env: { name: string; value?: string }[] }[] } } }).template.spec;
  const env: Record<string, string> = { MIGRATION_NAMESPACE: NAMESPACE, MIGRATION_POD_NAME: `${hook}-test` };
  for (const variable of pod.containers[0]!.env) if (variable.value !== undefined) env[variable.name] = variable.value;
  Object.assign(env, extraEnv);
  const token = c.server.tokenForServiceAccount(NAMESPACE, pod.serviceAccountName);
  const { kube, log } = fakeRunnerKube(c.server, { namespace: NAMESPACE, token });
  const ctx = createHookContext(hook === 'prepare' ? RunnerCommand.prepare : RunnerCommand.backupPhase, { env, kube, log: createLogger({ format: 'json', level: 'error', env: {} }) });
  return { ctx, log };
}

describe.each(FIXTURES_USED)('taking over $file', (fixture) => {
  describe.each(['helm', 'argocd'] as Tool[])('with %s', (tool) => {
    it('fails without the take-over step: Keycloak StatefulSet selector and serviceName are immutable', async () => {
      cluster = await Cluster.start();
      await installBitnami(cluster, tool, fixture);
      const v2 = synthesizeV2(cluster, fixture);
      const { ctx } = await hookJobContext(cluster, v2, 'backup');
      // What the backup hook does first: Keycloak to 0.
      await scaleWorkload(ctx.kube, { kind: 'statefulset', name: fixture.keycloak }, 0);
      const result = await upgradeWithoutHooks(cluster, tool, v2);
      expect(result.ok).toBe(false);
      expect(result.error?.message).toContain(
        `StatefulSet.apps "${fixture.keycloak}" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden`,
      );
      // …and Keycloak stays down: the finding this step exists for.
      expect((cluster.get('StatefulSet', fixture.keycloak)!.spec as { replicas: number }).replicas).toBe(0);
    });

    it('upgrades in place after the take-over: new StatefulSet, Service on port 80 with its address, old Secrets kept', async () => {
      cluster = await Cluster.start();
      await installBitnami(cluster, tool, fixture);
      const serviceBefore = cluster.get('Service', fixture.keycloak)!;
      const adminSecretBefore = cluster.get('Secret', fixture.keycloak)!;
      const legacySecretBefore = cluster.get('Secret', fixture.legacySecret)!;
      const v2 = synthesizeV2(cluster, fixture);
      const { ctx } = await hookJobContext(cluster, v2, 'backup');

      const keycloakRef = { kind: 'statefulset', name: fixture.keycloak } as const;
      await scaleWorkload(ctx.kube, keycloakRef, 0);
      await waitForPodsGone(ctx.kube, keycloakRef, { timeoutMs: 10_000, pollMs: 50 });
      const takeOver = await takeOverReleaseObjects(ctx);
      expect(takeOver.replaced).toEqual([`statefulset/${fixture.keycloak}`]);
      expect([...takeOver.kept].sort()).toEqual([fixture.keycloak, fixture.legacySecret].sort());
      // Idempotent: a resumed backup Job replaces nothing more.
      expect((await takeOverReleaseObjects(ctx)).replaced).toEqual([]);

      const result = await upgradeWithoutHooks(cluster, tool, v2);
      expect(result.error?.message).toBeUndefined();

      const statefulSet = cluster.get('StatefulSet', fixture.keycloak)!;
      const spec = statefulSet.spec as { serviceName: string; selector: { matchLabels: Record<string, string> } };
      expect(spec.serviceName).toBe(`${fixture.keycloak}-discovery`);
      expect(spec.selector.matchLabels['app.kubernetes.io/part-of']).toBeUndefined();
      const service = cluster.get('Service', fixture.keycloak)!;
      const serviceSpec = service.spec as { clusterIP: string; ports: { name: string; port: number }[] };
      expect(serviceSpec.clusterIP).toBe((serviceBefore.spec as { clusterIP: string }).clusterIP);
      expect(serviceSpec.ports.map((port) => port.port)).toEqual([80, 8080, 9000]);
      // The admin Secret of the realm being migrated and the legacy database's, untouched.
      expect(cluster.get('Secret', fixture.keycloak)?.data).toEqual(adminSecretBefore.data);
      expect(cluster.get('Secret', fixture.legacySecret)?.data).toEqual(legacySecretBefore.data);
      // What the new chart no longer has is gone: Bitnami's headless Service and legacy StatefulSet.
      expect(cluster.get('Service', `${fixture.keycloak}-headless`)).toBeUndefined();
      expect(cluster.get('StatefulSet', fixture.legacySecret)).toBeUndefined();
    });
  });
});

describe('the take-over step refuses nothing it should not touch', () => {
  it('leaves a StatefulSet whose immutable fields already match (this project\'s own v1) and skips absent Secrets', async () => {
    cluster = await Cluster.start();
    const fixture = FIXTURES_USED[0]!;
    const v2 = synthesizeV2(cluster, fixture);
    // v2's own Keycloak StatefulSet stands in for this project's v1 one (same immutable fields).
    const keycloak = v2.argocd.resources.map((r) => r.object).find((o) => o.kind === 'StatefulSet' && o.metadata.name === 'keycloak')!;
    await cluster.cluster.apply(keycloak);
    const { ctx } = await hookJobContext(cluster, v2, 'backup');
    const takeOver = await takeOverReleaseObjects(ctx);
    expect(takeOver).toEqual({ replaced: [], kept: [] });
    expect(cluster.get('StatefulSet', 'keycloak')).toBeDefined();
  });
});

// "Fresh install" only on positive evidence: with the synthesized Role's permissions, the prepare
// probe finds every trace of a legacy database that the configured names miss, and the decision
// refuses (78) to start Keycloak on an empty database next to it.
describe('fresh install only on positive evidence', () => {
  const fixture = FIXTURES_USED[0]!;
  const unreachable = { status: 'absent', reason: 'connect ECONNREFUSED keycloak-postgresql:5432' } as const;
  const noTarget = { status: 'absent', reason: 'x' } as const;

  async function probe(extraEnv: Record<string, string> = {}) {
    const v2 = synthesizeV2(cluster!, fixture);
    const { ctx } = await hookJobContext(cluster!, v2, 'prepare', extraEnv);
    cluster!.server.clearRequestLog();
    const legacy = await probeLegacyDatabase(ctx.kube, ctx.config);
    // Least privilege: StatefulSets and PVCs are listed by label, Secrets never are.
    expect(cluster!.server.requestCount({ verb: 'list', resource: 'statefulsets' })).toBe(1);
    expect(cluster!.server.requestCount({ verb: 'list', resource: 'secrets' })).toBe(0);
    return legacy;
  }

  function refusal(legacy: Awaited<ReturnType<typeof probe>>): RunnerError {
    try {
      decidePrepare(legacy, noTarget, unreachable);
    } catch (error) {
      return error as RunnerError;
    }
    throw new Error('expected decidePrepare to refuse');
  }

  it('decides NotNeeded on an empty namespace, saying it looked by name and labels', async () => {
    cluster = await Cluster.start();
    const legacy = await probe();
    expect(legacy).toEqual({ name: 'keycloak-postgresql', exists: false, traces: [] });
    expect(decidePrepare(legacy, noTarget, unreachable)).toMatchObject({
      kind: 'not-needed',
      reason: expect.stringContaining('no other trace of a legacy database (StatefulSet, PVC or password Secret by name or labels)'),
    });
  });

  it('finds the database under another name by its labels: architecture replication (<name>-primary / -read), which the configured names miss', async () => {
    cluster = await Cluster.start();
    await installBitnami(cluster, 'helm', { ...fixture, file: 'keycloak-25.4.0-release-keycloak-pg-replication.yaml' });
    const legacy = await probe();
    expect(legacy.exists).toBe(false);
    expect(legacy.traces).toEqual(
      expect.arrayContaining([
        'StatefulSet keycloak-postgresql-primary (labels app.kubernetes.io/name=postgresql,app.kubernetes.io/instance=keycloak)',
        'StatefulSet keycloak-postgresql-read (labels app.kubernetes.io/name=postgresql,app.kubernetes.io/instance=keycloak)',
      ]),
    );
    // Without adopting (adopt-legacy.ts: see "adopting the legacy database" below) these traces refuse.
    const error = refusal(legacy);
    expect(error.exitCode).toBe(ExitCode.config);
    expect(error.message).toContain('StatefulSet keycloak-postgresql-primary');
    expect(error.message).toContain('would start Keycloak on an empty database');
    expect(error.hint).toContain("legacyDatabase.name");
  });

  it('refuses (78) on a leftover legacy PVC, by its configured name or by its labels', async () => {
    cluster = await Cluster.start();
    const claim = (name: string, labels?: Record<string, string>) => ({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name, namespace: NAMESPACE, ...(labels ? { labels } : {}) },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    });
    cluster.server.seed(claim('data-keycloak-postgresql-0'));
    expect((await probe()).traces).toEqual(['PersistentVolumeClaim data-keycloak-postgresql-0 (MIGRATION_LEGACY_PVCS)']);
    cluster.server.seed(claim('data-kc-db-0', { 'app.kubernetes.io/name': 'postgresql', 'app.kubernetes.io/instance': 'keycloak', 'app.kubernetes.io/component': 'primary' }));
    const legacy = await probe();
    expect(legacy.traces).toEqual([
      'PersistentVolumeClaim data-kc-db-0 (labels app.kubernetes.io/name=postgresql,app.kubernetes.io/instance=keycloak)',
      'PersistentVolumeClaim data-keycloak-postgresql-0 (MIGRATION_LEGACY_PVCS)',
    ]);
    expect(refusal(legacy).exitCode).toBe(ExitCode.config);
  });

  it('refuses (78) when only the legacy password Secret is left', async () => {
    cluster = await Cluster.start();
    const legacy = await probe({ SOURCE_PGPASSWORD: 'still-here' });
    expect(legacy.traces).toEqual(['the legacy password Secret (SOURCE_PGPASSWORD is set from it)']);
    expect(refusal(legacy).message).toContain('SOURCE_PGPASSWORD is set');
  });

  it('does not count the configured StatefulSet itself as a stray trace (it is the 69 "not reachable yet" case)', async () => {
    cluster = await Cluster.start();
    await installBitnami(cluster, 'helm', fixture);
    const legacy = await probe();
    expect(legacy).toMatchObject({ name: 'keycloak-postgresql', exists: true, traces: [] });
    expect(() => decidePrepare(legacy, noTarget, unreachable)).toThrow(/legacy StatefulSet keycloak-postgresql exists but its database is not reachable/);
  });

  it('without adoption, refuses (78) naming the Secret the database pods read when the configured one does not exist (auth.existingSecret)', async () => {
    cluster = await Cluster.start();
    const existingSecret = { file: 'keycloak-25.4.0-release-idp-existing-secret.yaml', release: 'idp', keycloak: 'idp-keycloak', legacySecret: 'my-pg-secret' };
    await installBitnami(cluster, 'helm', existingSecret);
    const v2 = synthesizeV2(cluster, existingSecret);
    // SOURCE_PGPASSWORD's optional secretKeyRef names idp-postgresql, which this release never had.
    const { ctx } = await hookJobContext(cluster, v2, 'prepare');
    expect(ctx.config.source.passwordSet).toBe(false);
    const legacy = await probeLegacyDatabase(ctx.kube, ctx.config);
    expect(legacy).toMatchObject({ name: 'idp-postgresql', exists: true, podSecrets: ['my-pg-secret'] });
    const source = await probeSource(ctx.config);
    expect(source).toEqual({ status: 'absent', reason: 'SOURCE_PGPASSWORD is unset (its Secret does not exist)' });
    let error: RunnerError | undefined;
    try {
      decidePrepare(legacy, noTarget, source);
    } catch (caught) {
      error = caught as RunnerError;
    }
    expect(error?.exitCode).toBe(ExitCode.config);
    expect(error?.message).toBe(
      'the legacy StatefulSet idp-postgresql exists but the configured password Secret does not (SOURCE_PGPASSWORD is unset (its Secret does not exist)); its pods read their passwords from Secret my-pg-secret',
    );
    expect(error?.hint).toContain('set the platform config\'s legacyDatabase.secretName to my-pg-secret');
  });

  it('without adoption, refuses (78) on chart 6 (postgresql chart 10.x), whose Secret keys the default does not read, naming the keys to set', async () => {
    cluster = await Cluster.start();
    const chart6 = { file: 'keycloak-6.2.5-release-keycloak.yaml', release: 'keycloak', keycloak: 'keycloak', legacySecret: 'keycloak-postgresql' };
    await installBitnami(cluster, 'helm', chart6);
    // The Secret exists, but holds postgresql-password / postgresql-postgres-password.
    const { ctx } = await hookJobContext(cluster, synthesizeV2(cluster, chart6), 'prepare');
    expect(ctx.config.source.passwordSet).toBe(false);
    const legacy = await probeLegacyDatabase(ctx.kube, ctx.config);
    expect(legacy).toMatchObject({ name: 'keycloak-postgresql', exists: true, podSecrets: ['keycloak-postgresql'] });
    expect(() => decidePrepare(legacy, noTarget, { status: 'absent', reason: 'SOURCE_PGPASSWORD is unset (its Secret does not exist)' })).toThrow(
      expect.objectContaining({
        exitCode: ExitCode.config,
        hint: expect.stringContaining('postgresql chart 10.x (keycloak chart ≤ 6) names them postgresql-password / postgresql-postgres-password (legacyDatabase.passwordKey / adminPasswordKey)'),
      }),
    );
  });
});

// Adopting the legacy database from unambiguous evidence (runner/src/phases/adopt-legacy.ts), with
// the synthesized Role's permissions: the one primary by label, the Secret and key its pod spec
// references (read by name, Secrets never listed), its Service; and every ambiguity refused (78)
// naming what was found and the field.
describe('adopting the legacy database', () => {
  const secret = (name: string, data: Record<string, string>) => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: NAMESPACE },
    data: Object.fromEntries(Object.entries(data).map(([key, value]) => [key, Buffer.from(value).toString('base64')])),
  });
  const release = (file: string, name = 'keycloak'): Fixture => ({ file, release: name, keycloak: name === 'keycloak' ? 'keycloak' : `${name}-keycloak`, legacySecret: `${name}-postgresql` });

  async function adopt(fixture: Fixture, extraEnv: Record<string, string> = {}) {
    const { ctx } = await hookJobContext(cluster!, synthesizeV2(cluster!, fixture), 'prepare', extraEnv);
    cluster!.server.clearRequestLog();
    const legacy = await probeLegacyDatabase(ctx.kube, ctx.config);
    const adoption = await probeAdoption(ctx.kube, ctx.config, adoptionEvidence(legacy));
    // Secrets are read by name only, never listed.
    expect(cluster!.server.requestCount({ verb: 'list', resource: 'secrets' })).toBe(0);
    return { ctx, legacy, adoption };
  }

  function refusedWith(adoption: Awaited<ReturnType<typeof adopt>>['adoption']): RunnerError {
    if (adoption.status !== 'refused') throw new Error(`expected a refusal, got ${JSON.stringify(adoption)}`);
    expect(adoption.error.exitCode).toBe(ExitCode.config);
    return adoption.error;
  }

  it('plan shows what prepare would adopt before any state exists', async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-25.4.0-release-keycloak-pg-replication.yaml');
    await installBitnami(cluster, 'helm', fixture);
    const { ctx } = await hookJobContext(cluster, synthesizeV2(cluster, fixture), 'prepare');
    const plan = formatPlan(await gatherPlanInput(ctx.kube, ctx.config));
    expect(plan).toContain('Adopted legacy database: the one primary StatefulSet with labels app.kubernetes.io/name=postgresql,app.kubernetes.io/instance=keycloak (configured keycloak-postgresql does not exist); Service keycloak-postgresql-primary:5432');
    expect(plan).toContain('(prepare would adopt it)');
    // No database answers in this test: prepare would wait (69) for the adopted one, not decide "fresh install".
    expect(plan).toContain('fails: the legacy database adopted as StatefulSet keycloak-postgresql-primary is not reachable');
  });

  it('architecture replication: the -primary StatefulSet, its Service, its PVC, the password its pods mount; never the -read replica', async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-25.4.0-release-keycloak-pg-replication.yaml');
    await installBitnami(cluster, 'helm', fixture);
    const claim = (name: string, component: string) => ({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name, namespace: NAMESPACE, labels: { 'app.kubernetes.io/name': 'postgresql', 'app.kubernetes.io/instance': 'keycloak', 'app.kubernetes.io/component': component } },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    });
    cluster.server.seed(claim('data-keycloak-postgresql-primary-0', 'primary'), claim('data-keycloak-postgresql-read-0', 'read'));
    const password = Buffer.from((cluster.get('Secret', 'keycloak-postgresql')!.data as Record<string, string>)['postgres-password']!, 'base64').toString();
    const { ctx, adoption } = await adopt(fixture, { MIGRATION_SERVICE_ADDRESSES: 'keycloak-postgresql-primary:5432=127.0.0.1:15432' });
    expect(adoption.status).toBe('adopted');
    if (adoption.status !== 'adopted') return;
    expect(adoption.adopted).toEqual({
      statefulSet: 'keycloak-postgresql-primary',
      service: { name: 'keycloak-postgresql-primary', port: 5432 },
      passwordSecret: { name: 'keycloak-postgresql', key: 'postgres-password' },
      pvcs: ['data-keycloak-postgresql-primary-0'],
      evidence: expect.stringContaining('the one primary StatefulSet with labels app.kubernetes.io/name=postgresql,app.kubernetes.io/instance=keycloak'),
    });
    // The source the dump connects to: the Service through MIGRATION_SERVICE_ADDRESSES, the same user as configured.
    expect(adoption.config.source.settings).toMatchObject({ host: '127.0.0.1', port: 15432, user: ctx.config.source.settings!.user, password });
    expect(adoption.config.legacyStatefulSet).toBe('keycloak-postgresql-primary');
    expect(adoption.config.legacyPvcs).toContain('data-keycloak-postgresql-primary-0');
    expect(adoption.config.legacyPvcs).not.toContain('data-keycloak-postgresql-read-0');
    expect(cluster.server.requestCount({ verb: 'get', resource: 'secrets' })).toBe(1);

    // In the cluster (no mapping) the Service's name is the host; unreachable here: retriable 69 naming the adopted database.
    const { ctx: inCluster } = await hookJobContext(cluster, synthesizeV2(cluster, fixture), 'prepare');
    const legacy = await probeLegacyDatabase(inCluster.kube, inCluster.config);
    const outcome = await probeAdoptedSource(inCluster.kube, inCluster.config, legacy, { status: 'absent', reason: 'connect ENOTFOUND keycloak-postgresql' });
    expect(outcome).toMatchObject({ status: 'adopted', source: { status: 'absent' } });
    expect(() => decidePrepare(legacy, { status: 'absent', reason: 'x' }, { status: 'absent', reason: 'connect ENOTFOUND keycloak-postgresql' }, outcome)).toThrow(
      expect.objectContaining({ exitCode: ExitCode.unavailable, message: expect.stringContaining('the legacy database adopted as StatefulSet keycloak-postgresql-primary is not reachable') }),
    );
    // Reachable: the decision is to migrate from it, carrying what was adopted into the state.
    const preflight = { server: { version: '17.6' }, databaseBytes: 1 } as never;
    const decision = decidePrepare(legacy, { status: 'absent', reason: 'x' }, { status: 'absent', reason: 'ENOTFOUND' }, {
      status: 'adopted',
      adopted: adoption.adopted,
      source: { status: 'reachable', preflight },
    });
    expect(decision).toMatchObject({ kind: 'migrate', adopted: adoption.adopted, reason: expect.stringContaining('adopted the legacy database') });
  });

  it('auth.existingSecret: the configured StatefulSet, the password from the Secret its pods mount (the configured one does not exist)', async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-25.4.0-release-idp-existing-secret.yaml', 'idp');
    await installBitnami(cluster, 'helm', fixture);
    cluster.server.seed(secret('my-pg-secret', { password: 'app-pw', 'postgres-password': 'super-pw' }));
    const { adoption } = await adopt(fixture);
    if (adoption.status !== 'adopted') throw new Error(JSON.stringify(adoption));
    expect(adoption.adopted).toMatchObject({ statefulSet: 'idp-postgresql', passwordSecret: { name: 'my-pg-secret', key: 'postgres-password' }, pvcs: [] });
    expect(adoption.adopted.service).toBeUndefined();
    // The configured host stays (configured names win where they exist); the password is the database's.
    expect(adoption.config.source).toEqual({ settings: expect.objectContaining({ host: 'idp-postgresql', user: 'postgres', password: 'super-pw' }), passwordSet: true });
  });

  it("chart 6 (postgresql 10.x): the superuser's password under postgresql-postgres-password, from the pod's secretKeyRef", async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-6.2.5-release-keycloak.yaml');
    await installBitnami(cluster, 'helm', fixture);
    const { adoption } = await adopt(fixture);
    if (adoption.status !== 'adopted') throw new Error(JSON.stringify(adoption));
    expect(adoption.adopted).toMatchObject({ statefulSet: 'keycloak-postgresql', passwordSecret: { name: 'keycloak-postgresql', key: 'postgresql-postgres-password' } });
    expect(adoption.config.source.passwordSet).toBe(true);
  });

  it('a name override (postgresql.fullnameOverride: kc-db): the StatefulSet, Service and Secret of that name, by the labels the override keeps', async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-25.4.0-release-keycloak.yaml');
    // The release with the database's fullname overridden, as the chart renders it: every object
    // name and reference `keycloak-postgresql` becomes `kc-db`; the labels stay.
    const text = readFileSync(join(FIXTURES, fixture.file), 'utf8').replaceAll('keycloak-postgresql', 'kc-db');
    const installed = await cluster.helm.upgradeInstall(classifyHelmObjects(fixture.file, parseManifestText(text, fixture.file)));
    expect(installed.error?.message).toBeUndefined();
    const { adoption } = await adopt(fixture);
    if (adoption.status !== 'adopted') throw new Error(JSON.stringify(adoption));
    expect(adoption.adopted).toMatchObject({ statefulSet: 'kc-db', service: { name: 'kc-db', port: 5432 }, passwordSecret: { name: 'kc-db', key: 'postgres-password' } });
  });

  it('adopts nothing when the configured names are complete (their StatefulSet exists, the password is set)', async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-25.4.0-release-keycloak.yaml');
    await installBitnami(cluster, 'helm', fixture);
    const { adoption } = await adopt(fixture, { SOURCE_PGPASSWORD: 'from-the-configured-secret' });
    expect(adoption).toEqual({ status: 'none', reason: 'the configured names are complete' });
  });

  it('refuses two primaries, naming both and the field', async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-25.4.0-release-keycloak-pg-replication.yaml');
    await installBitnami(cluster, 'helm', fixture);
    const primary = cluster.get('StatefulSet', 'keycloak-postgresql-primary')!;
    const copy = structuredClone(primary);
    copy.metadata = { name: 'keycloak-postgresql-primary-old', namespace: NAMESPACE, labels: primary.metadata.labels! };
    delete copy.status;
    cluster.server.seed(copy);
    const error = refusedWith((await adopt(fixture)).adoption);
    expect(error.message).toContain('2 primary StatefulSets carry the legacy labels');
    expect(error.message).toContain('keycloak-postgresql-primary, keycloak-postgresql-primary-old');
    expect(error.hint).toContain('legacyDatabase.name (MIGRATION_LEGACY_STATEFULSET)');
  });

  it('refuses a primary whose pod spec references no Secret for the password', async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-25.4.0-release-keycloak.yaml');
    cluster.server.seed({
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: 'kc-db', namespace: NAMESPACE, labels: { 'app.kubernetes.io/name': 'postgresql', 'app.kubernetes.io/instance': 'keycloak', 'app.kubernetes.io/component': 'primary' } },
      spec: {
        replicas: 0,
        serviceName: 'kc-db',
        selector: { matchLabels: { app: 'kc-db' } },
        template: { metadata: { labels: { app: 'kc-db' } }, spec: { containers: [{ name: 'postgresql', image: 'postgres', env: [{ name: 'POSTGRES_POSTGRES_PASSWORD', value: 'literal' }] }] } },
      },
    });
    const error = refusedWith((await adopt(fixture)).adoption);
    expect(error.message).toBe(
      "the legacy database was found by its labels as StatefulSet kc-db, but its pod spec references no Secret for postgres's password (POSTGRES_POSTGRES_PASSWORD / POSTGRESQL_POSTGRES_PASSWORD[_FILE])",
    );
    expect(error.hint).toContain('legacyDatabase.name, secretName and passwordKey / adminPasswordKey');
    expect(error.message).not.toContain('literal');
  });

  it('refuses a Secret without the key its pods name, listing the keys present and never their values', async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-25.4.0-release-idp-existing-secret.yaml', 'idp');
    await installBitnami(cluster, 'helm', fixture);
    cluster.server.seed(secret('my-pg-secret', { 'admin-pw': 'do-not-print-me', user: 'bn_keycloak' }));
    const error = refusedWith((await adopt(fixture)).adoption);
    expect(error.message).toBe('the password of the legacy database idp-postgresql: Secret my-pg-secret has no key postgres-password (keys present: admin-pw, user)');
    expect(error.hint).toContain('legacyDatabase.secretName and passwordKey / adminPasswordKey');
    expect(`${error.message} ${error.hint}`).not.toContain('do-not-print-me');
  });

  it('refuses to adopt under a name the Role may not delete when the legacy database is to be deleted', async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-25.4.0-release-keycloak-pg-replication.yaml');
    await installBitnami(cluster, 'helm', fixture);
    const error = refusedWith((await adopt(fixture, { MIGRATION_DELETE_LEGACY: 'after-restore' })).adoption);
    expect(error.message).toContain('MIGRATION_DELETE_LEGACY=after-restore deletes only configured names');
    expect(error.hint).toContain('legacyDatabase.name to keycloak-postgresql-primary');
  });

  it('persists what was adopted: a later Job (or a re-run) connects to the same database, reading the Secret by name', async () => {
    cluster = await Cluster.start();
    const fixture = release('keycloak-25.4.0-release-keycloak-pg-replication.yaml');
    await installBitnami(cluster, 'helm', fixture);
    const env = { MIGRATION_SERVICE_ADDRESSES: 'keycloak-postgresql-primary=127.0.0.1:25432' };
    const { ctx, adoption } = await adopt(fixture, env);
    if (adoption.status !== 'adopted') throw new Error(JSON.stringify(adoption));
    await ctx.store.ensure(() => ({ ...newMigrationState('m-20261203-000000-abcdef'), adoptedLegacy: adoption.adopted }));
    const { ctx: later } = await hookJobContext(cluster, synthesizeV2(cluster, fixture), 'prepare', env);
    expect(later.config.source.settings?.host).toBe('keycloak-postgresql');
    await readState(later);
    expect(later.config.source.settings).toMatchObject({ host: '127.0.0.1', port: 25432, password: adoption.config.source.settings!.password });
    expect(later.config.legacyStatefulSet).toBe('keycloak-postgresql-primary');
    // status and plan say which database the migration uses.
    expect(formatStatus(later.state!, 'keycloak-migration-state')).toMatch(/Adopted legacy: +the one primary StatefulSet with labels .* Service keycloak-postgresql-primary:5432; postgres's password from Secret keycloak-postgresql key postgres-password/);
    expect(formatPlan(await gatherPlanInput(later.kube, later.configuredConfig))).toContain('Adopted legacy database: the one primary StatefulSet');
    // The Secret gone later (a finished release cleaned up): an unset password, as with the Job's optional secretKeyRef.
    expect(cluster.server.remove({ apiVersion: 'v1', kind: 'Secret', name: 'keycloak-postgresql', namespace: NAMESPACE })).toBe(true);
    const { ctx: afterCleanup } = await hookJobContext(cluster, synthesizeV2(cluster, fixture), 'prepare', env);
    await readState(afterCleanup);
    expect(afterCleanup.config.source.passwordSet).toBe(false);
  });
});

// A Bitnami release under fullnameOverride / nameOverride names its Keycloak StatefulSet otherwise
// (`sso`, `idp-iam`): v2's configured name does not exist. The backup Job quiesces the one StatefulSet
// with `instance: <release>, component: keycloak`, records it, and copies its admin Secret to the
// default name before the upgrade deletes it with the old release.
describe('quiescing a Keycloak renamed by a name override', () => {
  const RENAMED = [
    { file: 'keycloak-25.4.0-release-keycloak-fullname-sso.yaml', release: 'keycloak', keycloak: 'sso', configured: 'keycloak', legacySecret: 'keycloak-postgresql' },
    { file: 'keycloak-25.4.0-release-idp-nameoverride.yaml', release: 'idp', keycloak: 'idp-iam', configured: 'idp-keycloak', legacySecret: 'idp-postgresql' },
  ] as const;
  const replicasOf = (name: string) => (cluster!.get('StatefulSet', name)?.spec as { replicas?: number } | undefined)?.replicas;

  /** The backup Job after prepare created the state: the Job that quiesces. */
  async function preparedState(fixture: Fixture) {
    const { ctx } = await hookJobContext(cluster!, synthesizeV2(cluster!, fixture), 'backup');
    await ctx.store.ensure(() => newMigrationState('m-20261204-000000-abcdef'));
    await readState(ctx);
    return ctx;
  }

  describe.each(RENAMED)('$file', (fixture) => {
    it.each(['helm', 'argocd'] as Tool[])('with %s: quiesces the renamed StatefulSet, copies its admin Secret, and the upgrade keeps the copy', async (tool) => {
      cluster = await Cluster.start();
      await installBitnami(cluster, tool, fixture);
      expect(cluster.get('StatefulSet', fixture.configured)).toBeUndefined();
      const adminBefore = cluster.get('Secret', fixture.keycloak)!;
      // Before any state, plan names the workload the backup Job would quiesce.
      const { ctx: planning } = await hookJobContext(cluster, synthesizeV2(cluster, fixture), 'prepare');
      expect(formatPlan(await gatherPlanInput(planning.kube, planning.configuredConfig))).toContain(`Workloads: statefulset/${fixture.keycloak}=1`);
      const ctx = await preparedState(fixture);
      cluster.server.clearRequestLog();

      const originals = await quiesce(ctx);
      expect(originals).toEqual({ [`statefulset/${fixture.keycloak}`]: 1 });
      expect(replicasOf(fixture.keycloak)).toBe(0);
      expect(ctx.state?.adoptedWorkloads?.[`statefulset/${fixture.configured}`]).toEqual({
        workload: `statefulset/${fixture.keycloak}`,
        selector: `app.kubernetes.io/instance=${fixture.release},app.kubernetes.io/component=keycloak`,
        secretCopies: [`Secret/${fixture.keycloak} → Secret/${fixture.configured}`],
      });
      const copy = cluster.get('Secret', fixture.configured)!;
      expect(copy.data).toEqual(adminBefore.data);
      expect(copy.metadata.annotations).toMatchObject({ 'helm.sh/resource-policy': 'keep', 'argocd.argoproj.io/sync-options': 'Prune=false' });
      // Found by one list of StatefulSets by label; Secrets read by name, never listed.
      expect(cluster.server.requestCount({ verb: 'list', resource: 'secrets' })).toBe(0);
      expect(formatStatus(ctx.state!, 'x')).toMatch(new RegExp(`Adopted workload: +statefulset/${fixture.keycloak} for statefulset/${fixture.configured}`));

      // A resumed backup Job quiesces the same workload again (its count stays on record).
      const { ctx: resumed } = await hookJobContext(cluster, synthesizeV2(cluster, fixture), 'backup');
      await readState(resumed);
      expect(await quiesce(resumed)).toEqual(originals);

      await takeOverReleaseObjects(resumed);
      // The restore never scales the old release's workload back (it would run the old template).
      // Checked while that StatefulSet still exists at 0, as under Argo CD, whose restore (wave
      // -20) runs before the prune of wave 0; the upgrade below removes it under both tools.
      expect(cluster.get('StatefulSet', fixture.keycloak)).toBeDefined();
      const unquiesced = await unquiesce(resumed, originals);
      expect(unquiesced.scaled).toEqual({});
      expect(replicasOf(fixture.keycloak)).toBe(0);
      const result = await upgradeWithoutHooks(cluster, tool, synthesizeV2(cluster, fixture));
      expect(result.error?.message).toBeUndefined();
      // The old release's admin Secret went with it (Helm deletes it, Argo CD prunes it); the copy stays.
      expect(cluster.get('Secret', fixture.keycloak)).toBeUndefined();
      expect(cluster.get('Secret', fixture.configured)?.data).toEqual(adminBefore.data);
      expect(cluster.get('StatefulSet', fixture.configured)).toBeDefined();
      expect(cluster.get('StatefulSet', fixture.keycloak)).toBeUndefined();
    });
  });

  it('refuses (78) two StatefulSets with those labels, naming both; nothing scaled or copied', async () => {
    cluster = await Cluster.start();
    const fixture = RENAMED[0];
    await installBitnami(cluster, 'helm', fixture);
    const sso = cluster.get('StatefulSet', 'sso')!;
    await cluster.cluster.apply({ ...sso, metadata: { name: 'sso-old', namespace: NAMESPACE, labels: sso.metadata.labels }, spec: { ...(sso.spec as object), replicas: 0 } });
    const ctx = await preparedState(fixture);
    const error = await quiesce(ctx).then(() => undefined, (caught: unknown) => caught);
    expect(error).toBeInstanceOf(RunnerError);
    expect((error as RunnerError).exitCode).toBe(ExitCode.config);
    expect((error as RunnerError).message).toContain('2 StatefulSets carry the labels app.kubernetes.io/instance=keycloak,app.kubernetes.io/component=keycloak: sso, sso-old');
    expect(replicasOf('sso')).toBe(1);
    expect(cluster.get('Secret', 'keycloak')).toBeUndefined();
  });

  it('stops (64) when neither the name nor the labels find a Keycloak, naming both', async () => {
    cluster = await Cluster.start();
    const fixture = RENAMED[0];
    const ctx = await preparedState(fixture);
    const error = await quiesce(ctx).then(() => undefined, (caught: unknown) => caught);
    expect((error as RunnerError).exitCode).toBe(ExitCode.usage);
    expect((error as RunnerError).message).toBe('no StatefulSet keycloak exists in namespace keycloak, and none carries the labels app.kubernetes.io/instance=keycloak,app.kubernetes.io/component=keycloak');
  });

  it('refuses (78) before scaling when the found StatefulSet reads the admin password from no Secret, naming the fix', async () => {
    cluster = await Cluster.start();
    const fixture = RENAMED[0];
    await installBitnami(cluster, 'helm', fixture);
    // The admin Secret deleted by hand: the pod spec still names it.
    expect(cluster.server.remove({ apiVersion: 'v1', kind: 'Secret', name: 'sso', namespace: NAMESPACE })).toBe(true);
    const ctx = await preparedState(fixture);
    const error = await quiesce(ctx).then(() => undefined, (caught: unknown) => caught);
    expect((error as RunnerError).exitCode).toBe(ExitCode.config);
    expect((error as RunnerError).message).toBe('statefulset/sso (found by its labels) reads key admin-password from no existing Secret: its pod spec would read it from sso (absent or without the key)');
    expect((error as RunnerError).hint).toMatch(/^create Secret keycloak with key admin-password .* yourself, then upgrade again; nothing was changed$/);
    expect(replicasOf('sso')).toBe(1);
    expect(ctx.state?.adoptedWorkloads).toBeUndefined();
  });
});
