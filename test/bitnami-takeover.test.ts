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
import { createHookContext } from '../runner/src/phases/context.js';
import { takeOverReleaseObjects } from '../runner/src/phases/take-over.js';
import { decidePrepare, probeLegacyDatabase, probeSource } from '../runner/src/phases/decide.js';
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

/** The prepare Job's environment (plain values; passwords unset) and a kube client with its ServiceAccount's token. */
async function prepareJobContext(c: Cluster, v2: ReturnType<typeof synthesizeV2>, extraEnv: Record<string, string> = {}) {
  const hooks = v2.argocd.hooks.map((hook) => hook.object);
  const job = hooks.find((object) => object.kind === 'Job' && object.metadata.name.endsWith('-migration-prepare'));
  if (!job) throw new Error('the synthesized v2 holds no prepare Job');
  // The migration's RBAC, as its hooks create it before the Job.
  for (const object of hooks.filter((o) => ['ServiceAccount', 'Role', 'RoleBinding'].includes(o.kind))) await c.cluster.apply(object);
  const pod = (job.spec as { template: { spec: { serviceAccountName: string; containers: { env: { name: string; value?: string }[] }[] } } }).template.spec;
  const env: Record<string, string> = { MIGRATION_NAMESPACE: NAMESPACE, MIGRATION_POD_NAME: 'prepare-test' };
  for (const variable of pod.containers[0]!.env) if (variable.value !== undefined) env[variable.name] = variable.value;
  Object.assign(env, extraEnv);
  const token = c.server.tokenForServiceAccount(NAMESPACE, pod.serviceAccountName);
  const { kube, log } = fakeRunnerKube(c.server, { namespace: NAMESPACE, token });
  const ctx = createHookContext(RunnerCommand.prepare, { env, kube, log: createLogger({ format: 'json', level: 'error', env: {} }) });
  return { ctx, log };
}

describe.each(FIXTURES_USED)('taking over $file', (fixture) => {
  describe.each(['helm', 'argocd'] as Tool[])('with %s', (tool) => {
    it('fails without the take-over step: Keycloak StatefulSet selector and serviceName are immutable', async () => {
      cluster = await Cluster.start();
      await installBitnami(cluster, tool, fixture);
      const v2 = synthesizeV2(cluster, fixture);
      const { ctx } = await prepareJobContext(cluster, v2);
      // What the prepare hook does first: Keycloak to 0.
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
      const { ctx } = await prepareJobContext(cluster, v2);

      const keycloakRef = { kind: 'statefulset', name: fixture.keycloak } as const;
      await scaleWorkload(ctx.kube, keycloakRef, 0);
      await waitForPodsGone(ctx.kube, keycloakRef, { timeoutMs: 10_000, pollMs: 50 });
      const takeOver = await takeOverReleaseObjects(ctx);
      expect(takeOver.replaced).toEqual([`statefulset/${fixture.keycloak}`]);
      expect([...takeOver.kept].sort()).toEqual([fixture.keycloak, fixture.legacySecret].sort());
      // Idempotent: a resumed prepare replaces nothing more.
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
    const { ctx } = await prepareJobContext(cluster, v2);
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
    const { ctx } = await prepareJobContext(cluster!, v2, extraEnv);
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

  it('refuses (78) when the database runs under another name: architecture replication (<name>-primary / -read)', async () => {
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

  it('refuses (78) naming the Secret the database pods read when the configured one does not exist (auth.existingSecret)', async () => {
    cluster = await Cluster.start();
    const existingSecret = { file: 'keycloak-25.4.0-release-idp-existing-secret.yaml', release: 'idp', keycloak: 'idp-keycloak', legacySecret: 'my-pg-secret' };
    await installBitnami(cluster, 'helm', existingSecret);
    const v2 = synthesizeV2(cluster, existingSecret);
    // SOURCE_PGPASSWORD's optional secretKeyRef names idp-postgresql, which this release never had.
    const { ctx } = await prepareJobContext(cluster, v2);
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

  it('refuses (78) on chart 6 (postgresql chart 10.x), whose Secret keys the default does not read, naming the keys to set', async () => {
    cluster = await Cluster.start();
    const chart6 = { file: 'keycloak-6.2.5-release-keycloak.yaml', release: 'keycloak', keycloak: 'keycloak', legacySecret: 'keycloak-postgresql' };
    await installBitnami(cluster, 'helm', chart6);
    // The Secret exists, but holds postgresql-password / postgresql-postgres-password.
    const { ctx } = await prepareJobContext(cluster, synthesizeV2(cluster, chart6));
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
