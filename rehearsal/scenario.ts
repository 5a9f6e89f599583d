/**
 * The upgrade scenarios: v1 installed and holding Keycloak-shaped data, then the upgrade to v2
 * through Helm or Argo CD, with at most one declarative {@link Fault} in the way, then the
 * operator's fix and another attempt, then the checks the issue asks for:
 *
 * 1. every row, sequence and large object of the legacy database is on the new primary and on
 *    the standby (compared directly, not through the runner's report), of either flavor
 *    (repmgr + Pgpool, or the CloudNativePG stand-in);
 * 2. a write through the application's Service (Pgpool, or CloudNativePG's `-rw`) lands on the primary;
 * 3. Keycloak's stand-in wrote to the new database only after the restore was verified (the
 *    state's Verified history entry), and never created a schema there;
 * 4. the state ConfigMap says Completed;
 * 5. a second sync / upgrade with nothing to do writes no release resource, leaves the state
 *    ConfigMap untouched and makes only a few API calls per hook Job.
 */
import { readFileSync } from 'node:fs';

import { expect } from 'vitest';
import pg from 'pg';

import { Phase, StateKey } from '../lib/contract.js';
import { bitnamiFullname } from '../lib/postgres-standalone.js';
import type { PlatformConfig } from '../lib/platform-config.js';
import type { PostgresHaFlavorName } from '../lib/postgres-ha.js';
import { createKeycloakData } from '../test/support/keycloak-data.js';

import { fingerprint, fingerprintDifferences, probeWrite, withClient, type Connection, type DatabaseFingerprint } from './checks.js';
import { defaultHelmMajor, Rehearsal, type SynthesizedShape } from './harness.js';
import type { HelmMajor } from '../test/support/helm.js';
import type { RunningPod } from './jobs.js';
import type { LifecycleResult } from './lifecycle.js';
import type { KubeObject } from './manifests.js';
import { waitFor } from './postgres-processes.js';

export type Tool = 'helm' | 'argocd';

/**
 * The names the default platform configuration gives a release (Bitnami's fullname rule for
 * Keycloak and the legacy database: `<release>-<chart>` unless the release name holds the chart's),
 * or the configured `legacyDatabase.name`.
 */
export function namesFor(release: string, legacyDatabaseName = bitnamiFullname(release, 'postgresql'), keycloakName = bitnamiFullname(release, 'keycloak')) {
  const legacy = legacyDatabaseName;
  return {
    keycloak: keycloakName,
    legacyStatefulSet: legacy,
    legacyPod: `${legacy}-0`,
    legacySecret: legacy,
    legacyPvc: `data-${legacy}-0`,
    haStatefulSet: `${release}-postgresql-ha-postgresql`,
    haSecret: `${release}-postgresql-ha-postgresql`,
    pgpoolService: `${release}-postgresql-ha-pgpool`,
    cnpgCluster: `${release}-postgresql-ha`,
    stateConfigMap: `${release}-migration-state`,
    serviceAccount: `${release}-migration`,
    backupPvc: `${release}-migration-backup`,
  } as const;
}
export type ReleaseNames = ReturnType<typeof namesFor>;

/** A tool as a scenario runs it: Argo CD (modelled), or Helm with one of the real binaries. */
export interface ToolRun {
  readonly tool: Tool;
  /** The helm binary (Helm only). @default - the rehearsal's default (REHEARSAL_HELM, else 4) */
  readonly helm?: HelmMajor;
  /** How the summary table names it: `helm 4.1`, `helm 3.17`, `argocd`. */
  readonly label: string;
}

/** The versions the npm kubectl layers ship (test/support/helm.ts). */
const HELM_VERSION_OF: Record<HelmMajor, string> = { 3: '3.17', 4: '4.1' };

export function helmRun(major: HelmMajor): ToolRun {
  return { tool: 'helm', helm: major, label: `helm ${HELM_VERSION_OF[major]}` };
}

/** The run of a tool with the rehearsal's default helm (scenarios of the fault matrix). */
export function defaultRun(tool: Tool): ToolRun {
  return tool === 'helm' ? helmRun(defaultHelmMajor()) : { tool, label: 'argocd' };
}

/**
 * Every tool the basic scenarios (v1 install, upgrade, fresh install) run with: both helm
 * binaries and Argo CD. The fault matrix and the longer Helm scenarios run with helm 4 only, the
 * default (REHEARSAL_HELM=3 runs them with helm 3): both binaries everywhere would add ~8 minutes.
 */
export const EVERY_TOOL: readonly ToolRun[] = [helmRun(4), helmRun(3), defaultRun('argocd')];

/** Names from the rehearsal's platform configuration (release `keycloak`). */
export const NAMES: ReleaseNames = namesFor('keycloak');

/** The HA database a rehearsal's v2 deploys, as the checks and the faults reach it. */
export interface TargetDatabase {
  readonly flavor: PostgresHaFlavorName;
  /** The Service the application uses (Keycloak's KC_DB_URL_HOST): Pgpool, or CloudNativePG's `-rw`. */
  readonly appService: string;
  /** The Secret holding the application user's `password`. */
  readonly appSecret: string;
  /** The Secret key the runner's target password comes from (a fault makes it drift). */
  readonly runnerPassword: { readonly secret: string; readonly key: string };
}

/** Names of the rehearsal's target database, by its flavor (release `keycloak`). */
export function targetDatabase(rehearsal: Rehearsal, names: ReleaseNames = NAMES): TargetDatabase {
  if (rehearsal.databaseFlavor === 'cloudnative-pg') {
    return {
      flavor: 'cloudnative-pg',
      appService: `${names.cnpgCluster}-rw`,
      appSecret: `${names.cnpgCluster}-app`,
      // Without enableSuperuserAccess the runner restores as the owner, with the app password.
      runnerPassword: { secret: `${names.cnpgCluster}-app`, key: 'password' },
    };
  }
  return { flavor: 'repmgr', appService: names.pgpoolService, appSecret: names.haSecret, runnerPassword: { secret: names.haSecret, key: 'postgres-password' } };
}

/** One PostgreSQL server of the target, reached directly as the superuser (not through a Service). */
export interface TargetNode {
  readonly name: string;
  /** Whether the flavor's controller holds it for the primary right now. */
  readonly primary: boolean;
  readonly connection: Connection;
}

/** The target's servers, primary first (checks compare each with the legacy database). */
export async function targetNodes(rehearsal: Rehearsal, database = 'keycloak', names: ReleaseNames = NAMES): Promise<TargetNode[]> {
  if (rehearsal.databaseFlavor === 'cloudnative-pg') {
    const instances = rehearsal.cnpg?.instances(names.cnpgCluster) ?? [];
    if (instances.length === 0) throw new Error(`no CloudNativePG instance runs for Cluster ${names.cnpgCluster}`);
    // The stand-in's servers trust the superuser on their local socket (no superuser Secret by default).
    return instances
      .map((instance) => ({ name: instance.name, primary: instance.role === 'primary', connection: { host: instance.node.options.socketDir, port: instance.node.port, user: 'postgres', password: '', database } }))
      .sort((a, b) => Number(b.primary) - Number(a.primary));
  }
  const cluster = await rehearsal.workloads.repmgrCluster(names.haStatefulSet);
  if (!cluster) throw new Error('no repmgr cluster runs behind the v2 StatefulSet');
  const password = rehearsal.secretValue(names.haSecret, 'postgres-password')!;
  const nodes: TargetNode[] = [];
  for (const node of cluster.nodes) {
    const connection = { host: '127.0.0.1', port: node.port, user: 'postgres', password, database };
    if (!cluster.isRunning(node.index)) continue;
    const inRecovery = await withClient(connection, async (client) => (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r);
    nodes.push({ name: node.name, primary: !inRecovery, connection });
  }
  return nodes.sort((a, b) => Number(b.primary) - Number(a.primary));
}

/** Data in the legacy volume: H3's Keycloak-shaped data, with Liquibase's lock released as a running Keycloak leaves it. */
export async function seedKeycloakData(connection: Connection, users = 40): Promise<void> {
  await createKeycloakData(connection, { users });
  await withClient(connection, (client) => client.query('UPDATE databasechangeloglock SET locked = false, lockgranted = NULL, lockedby = NULL'));
}

/**
 * Pins the interleaving the database gate exists for: the next Helm upgrade holds its
 * post-upgrade hooks (the restore Job) until a Keycloak pod of the new release has reached the
 * new database through Pgpool — it either wrote there (no gate) or its gate found no ready marker
 * there. Without the hold, which comes first is left to process start-up times, and a
 * scenario about the gate would prove nothing on a machine where the restore happens to win.
 */
export function holdRestoreUntilKeycloakReachedTheNewDatabase(rehearsal: Rehearsal): void {
  const { keycloakWrites, initContainerRuns } = rehearsal.workloads;
  const [writesBefore, runsBefore] = [keycloakWrites.length, initContainerRuns.length];
  rehearsal.helm.beforeHooks = async (event) => {
    if (event !== 'post-upgrade') return;
    await waitFor('a Keycloak pod to reach the new database before the restore', async () => {
      if (keycloakWrites.slice(writesBefore).some((write) => write.host === targetDatabase(rehearsal).appService)) return true;
      return initContainerRuns.slice(runsBefore).some((run) => isKeycloakPod(run.pod) && gateFoundNoMarker(run.logFile));
    }, 120_000);
  };
}

/** A pod of the Keycloak StatefulSet (`keycloak-0`), not a Job's or the database's (`keycloak-migration-…`). */
export function isKeycloakPod(name: string): boolean {
  return new RegExp(`^${NAMES.keycloak}-\\d+$`).test(name);
}

function gateFoundNoMarker(logFile: string): boolean {
  try {
    return readFileSync(logFile, 'utf8').includes('has no ready marker');
  } catch {
    return false;
  }
}

/** Applies a synthesized shape with the tool. */
export async function deploy(rehearsal: Rehearsal, tool: Tool, shape: SynthesizedShape): Promise<LifecycleResult> {
  return tool === 'helm' ? rehearsal.helm.upgradeInstall(shape.helm) : rehearsal.argo.sync(shape.argocd);
}

/** Every object the tool would apply (resources and hooks). */
export function objectsOf(shape: SynthesizedShape, tool: Tool): KubeObject[] {
  return tool === 'helm'
    ? [...shape.helm.resources, ...shape.helm.hooks.map((hook) => hook.object)]
    : [...shape.argocd.resources.map((resource) => resource.object), ...shape.argocd.hooks.map((hook) => hook.object)];
}

export function findObject(shape: SynthesizedShape, kind: string, name: string): KubeObject {
  const found = shape.argocd.resources.map((r) => r.object).find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`the synthesized manifests hold no ${kind}/${name}`);
  return found;
}

/** Connection to the legacy server as its superuser (while its pod runs). */
export function legacyConnection(rehearsal: Rehearsal): Connection {
  const port = rehearsal.workloads.legacyPort(NAMES.legacyPod);
  if (port === undefined) throw new Error(`the legacy database pod ${NAMES.legacyPod} is not running`);
  return { host: '127.0.0.1', port, user: 'postgres', password: rehearsal.secretValue(NAMES.legacySecret, 'postgres-password')!, database: 'bitnami_keycloak' };
}

/** Installs v1 with the tool, seeds the legacy volume, waits for Keycloak; returns the legacy fingerprint. */
export async function installV1(rehearsal: Rehearsal, tool: Tool): Promise<{ v1: SynthesizedShape; legacy: DatabaseFingerprint }> {
  const v1 = rehearsal.synthesize('v1');
  rehearsal.createMissingSecrets(objectsOf(v1, tool));
  const result = await deploy(rehearsal, tool, v1);
  if (!result.ok) throw new Error(`v1 install with ${tool} failed: ${result.error?.message}`);
  await rehearsal.waitReady(findObject(v1, 'StatefulSet', NAMES.keycloak));
  return { v1, legacy: await fingerprint(legacyConnection(rehearsal)) };
}

export interface MigrationState {
  migrationId: string;
  phase: string;
  history: { phase: string; startedAt: string; finishedAt: string }[];
  lastError?: { step: string; message: string; exitCode: number };
}

export function readState(rehearsal: Rehearsal, names: ReleaseNames = NAMES): { state?: MigrationState; resourceVersion?: string } {
  const configMap = rehearsal.server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: names.stateConfigMap, namespace: rehearsal.namespace });
  if (!configMap) return {};
  const raw = (configMap.data as Record<string, string> | undefined)?.[StateKey.state];
  return { state: raw ? (JSON.parse(raw) as MigrationState) : undefined, resourceVersion: configMap.metadata.resourceVersion as string };
}

/** The application's connection through its Service (Pgpool, or CloudNativePG's `-rw`), as Keycloak has it. */
export async function appConnection(rehearsal: Rehearsal, names: ReleaseNames = NAMES): Promise<Connection> {
  const target = targetDatabase(rehearsal, names);
  const port = await rehearsal.proxies.localPort(target.appService, 5432);
  return { host: '127.0.0.1', port: port!, user: 'keycloak', password: rehearsal.secretValue(target.appSecret, 'password')!, database: 'keycloak' };
}

/** Checks 1–4 of the module comment; throws with every problem found. */
export interface VerifyOptions {
  /**
   * Judge only Keycloak's writes (to either database) from this time (ms) on: a scenario that
   * already judged the earlier ones (a deliberately broken first attempt, a rollback whose legacy
   * writes the operator chose to discard) checks the recovery with the same rules.
   * @default every write of the rehearsal
   */
  readonly keycloakWritesSince?: number;
  /** The release's names. @default {@link NAMES} (release `keycloak`) */
  readonly names?: ReleaseNames;
  /** Tables whose contents are not compared. @default KEYCLOAK_RUNTIME_TABLES */
  readonly excludeTables?: readonly string[];
  /** The legacy fingerprint was taken on another major (see FingerprintOptions). @default false */
  readonly acrossMajors?: boolean;
}

export async function verifyMigrated(rehearsal: Rehearsal, v2: SynthesizedShape, legacy: DatabaseFingerprint, options: VerifyOptions = {}): Promise<void> {
  const since = options.keycloakWritesSince ?? 0;
  const names = options.names ?? NAMES;
  await rehearsal.waitReady(findObject(v2, 'StatefulSet', names.keycloak), 120_000);
  const problems: string[] = [];

  const { state } = readState(rehearsal, names);
  if (state?.phase !== Phase.completed) problems.push(`state ConfigMap phase is ${state?.phase ?? '(no state)'}, expected ${Phase.completed}`);

  const target = targetDatabase(rehearsal, names);
  const nodes = await targetNodes(rehearsal, 'keycloak', names);
  if (nodes.filter((node) => node.primary).length !== 1) problems.push(`${nodes.filter((node) => node.primary).length} primaries among ${nodes.map((node) => node.name).join(', ')}`);
  if (nodes.length < 2) problems.push(`only ${nodes.length} ${target.flavor} server(s) run: no standby`);
  for (const node of nodes) {
    // A standby replays asynchronously: wait for it to have replayed what the primary holds.
    const deadline = Date.now() + 15_000;
    let differences: string[];
    for (;;) {
      differences = fingerprintDifferences(legacy, await fingerprint(node.connection, options.excludeTables, { acrossMajors: options.acrossMajors }), node.primary ? `primary ${node.name}` : `standby ${node.name}`);
      if (differences.length === 0 || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    problems.push(...differences);
    const inRecovery = await withClient(node.connection, async (client) => (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r);
    if (inRecovery === node.primary) problems.push(`${node.name}: pg_is_in_recovery() is ${inRecovery}, but it is ${node.primary ? 'the primary' : 'a standby'}`);
  }

  const write = await probeWrite(await appConnection(rehearsal, names));
  if (!write.primary) problems.push(`a write through ${target.appService} did not land on the primary`);

  const verifiedAt = state?.history.find((entry) => entry.phase === Phase.verified)?.finishedAt;
  const targetWrites = rehearsal.workloads.keycloakWrites.filter((w) => w.host === target.appService && w.at >= since);
  if (targetWrites.length === 0) problems.push('Keycloak never wrote to the new database');
  for (const write of targetWrites) {
    if (write.createdSchema) problems.push(`${write.pod} found an empty new database and created Keycloak's schema in it`);
    if (!verifiedAt || write.at < Date.parse(verifiedAt)) {
      problems.push(`${write.pod} wrote to the new database at ${new Date(write.at).toISOString()}, before the restore was verified (${verifiedAt ?? 'never'})`);
    }
  }
  // A write to the legacy database after it was quiesced for the backup would be lost.
  const quiescedAt = state?.history.find((entry) => entry.phase === Phase.quiesced)?.finishedAt;
  for (const write of rehearsal.workloads.keycloakWrites.filter((w) => w.host === names.legacyStatefulSet && w.at >= since)) {
    if (quiescedAt && write.at > Date.parse(quiescedAt)) {
      problems.push(`${write.pod} wrote to the legacy database at ${new Date(write.at).toISOString()}, after it was quiesced for the backup (${quiescedAt}): that write is lost`);
    }
  }
  if (problems.length > 0) throw new Error(`the migrated platform is not right:\n- ${problems.join('\n- ')}`);
}

/**
 * The plain upgrade: v1 installed with Keycloak-shaped data, v2 deployed with the tool (under Helm
 * the restore held until Keycloak's gate reached the empty new database, so that the gate is what
 * keeps it out), every check, and a repeat that is a no-op. Returns the rehearsal, still running
 * (for drills after the migration); the caller closes it.
 */
export async function upgradeScenario(
  { tool, helm }: ToolRun,
  config: PlatformConfig = {},
): Promise<{ rehearsal: Rehearsal; v2: SynthesizedShape }> {
  const rehearsal = await Rehearsal.start({ config, seedLegacy: (c) => seedKeycloakData(c), ...(helm ? { helm: { major: helm } } : {}) });
  try {
    const { legacy } = await installV1(rehearsal, tool);
    expect(Object.keys(legacy.tables).length).toBeGreaterThan(5);
    const v2 = rehearsal.synthesize('v2');
    if (tool === 'helm') holdRestoreUntilKeycloakReachedTheNewDatabase(rehearsal);
    const result = await deploy(rehearsal, tool, v2);
    expect(result.error?.message).toBeUndefined();
    await verifyMigrated(rehearsal, v2, legacy);
    const repeat = await expectNoOpRepeat(rehearsal, tool, v2);
    expect(repeat.podRuns).toBeGreaterThan(0);
    return { rehearsal, v2 };
  } catch (error) {
    await rehearsal.close();
    throw error;
  }
}

/**
 * A fresh install of v2 (no legacy database anywhere): the pre-phase decides there is nothing to
 * migrate, Keycloak's gate lets it start at once on the empty new database, and a repeat is a no-op.
 */
export async function freshInstallScenario({ tool, helm }: ToolRun, config: PlatformConfig = {}): Promise<void> {
  const rehearsal = await Rehearsal.start({ config, argo: { waveTimeoutMs: 120_000 }, ...(helm ? { helm: { major: helm } } : {}) });
  try {
    const v2 = rehearsal.synthesize('v2');
    const result = await deploy(rehearsal, tool, v2);
    expect(result.error?.message).toBeUndefined();
    await rehearsal.waitReady(findObject(v2, 'StatefulSet', NAMES.keycloak), 120_000);

    expect(readState(rehearsal).state?.phase).toBe(Phase.notNeeded);
    expect(rehearsal.server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: NAMES.legacyStatefulSet, namespace: rehearsal.namespace })).toBeUndefined();
    // Nothing to dump: no pg_dump ran, Keycloak created its own schema on the empty database.
    const logs = rehearsal.jobs.runs.map((run) => rehearsal.jobs.logsOf(run.podName)).join('\n');
    expect(logs).not.toMatch(/"msg":"dumping"/);
    const writes = rehearsal.workloads.keycloakWrites;
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.every((write) => write.host === targetDatabase(rehearsal).appService)).toBe(true);
    expect(writes.some((write) => write.createdSchema)).toBe(true);
    expect((await probeWrite(await appConnection(rehearsal))).primary).toBe(true);

    await expectNoOpRepeat(rehearsal, tool, v2);
  } finally {
    await rehearsal.close();
  }
}

/** Check 5: a repeat with nothing to do. Returns the runner's API calls for the report. */
export async function expectNoOpRepeat(rehearsal: Rehearsal, tool: Tool, v2: SynthesizedShape, names: ReleaseNames = NAMES): Promise<{ apiCalls: number; podRuns: number }> {
  const before = readState(rehearsal, names).resourceVersion;
  const runsBefore = rehearsal.jobs.runs.length;
  rehearsal.server.clearRequestLog();
  const result = await deploy(rehearsal, tool, v2);
  expect(result.error?.message).toBeUndefined();
  const releaseWrites = result.events.filter((event) => event.action === 'apply' || event.action === 'prune');
  expect(releaseWrites).toEqual([]);
  expect(readState(rehearsal, names).resourceVersion).toBe(before);
  const podRuns = rehearsal.jobs.runs.length - runsBefore;
  const apiCalls = rehearsal.server.requestCount({ user: `system:serviceaccount:${rehearsal.namespace}:${names.serviceAccount}` });
  // "A few API calls": reading the state and little else, per hook pod.
  expect(apiCalls).toBeLessThanOrEqual(podRuns * 4);
  return { apiCalls, podRuns };
}

/** A runner killed with SIGKILL when a condition is first met (once per Job name). */
export function killRunnerWhen(rehearsal: Rehearsal, job: string, when: (pod: RunningPod, logLine: string) => boolean): { killed: () => boolean } {
  let killed = false;
  rehearsal.onJobPodStarted((pod) => {
    if (killed || !pod.jobName.endsWith(job)) return;
    // The log is polled, and a loaded machine delays the poll: until the kill, every API request
    // waits 100 ms, so the step after the matching line (each begins by recording itself in the
    // state ConfigMap) cannot finish before the kill lands.
    const releaseLatency = rehearsal.server.addLatency(100);
    const timer = setInterval(() => {
      if (killed || pod.process.exitCode !== null) {
        releaseLatency();
        return clearInterval(timer);
      }
      // The pod's log so far, line by line.
      const lines = rehearsal.jobs.logsOf(pod.podName).split('\n');
      if (lines.some((line) => when(pod, line))) {
        killed = true;
        // `podman kill` takes a while to start on a loaded machine (seconds on CI's two cores):
        // until the container is gone, every API request waits 5 s, so the runner cannot finish
        // its command (and exit 0) before the signal arrives.
        const holdUntilDead = rehearsal.server.addLatency(5000);
        pod.process.once('exit', holdUntilDead);
        pod.process.kill('SIGKILL');
        if (pod.process.exitCode !== null || pod.process.signalCode !== null) holdUntilDead();
        releaseLatency();
        clearInterval(timer);
      }
    }, 20);
  });
  return { killed: () => killed };
}

/** Reads a table count on a connection (for checks that the legacy data is intact). */
export async function countRows(connection: Connection, table: string): Promise<number> {
  return withClient(connection, async (client: pg.Client) => (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n);
}

export type { PlatformConfig };
