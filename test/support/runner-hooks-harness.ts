/**
 * A migration world for the hook-command tests: two real PostgreSQL servers (legacy source and
 * new target), the fake Kubernetes API with a Keycloak StatefulSet (kept by the simulated
 * controller), the legacy StatefulSet, PVC and PV, the Secrets, and the RBAC that the
 * DatabaseMigration construct synthesizes. Each scenario runs in its own namespace with its own
 * target database and backup directory, so scenarios of one file share the servers.
 *
 * The runner runs as the Jobs run it: `node runner/dist/runner.mjs <command>` with exactly the
 * environment the synthesized Job's container gets (values, fieldRefs, secretKeyRefs honouring
 * `optional`), the backup PVC's mount point replaced by a directory, and KUBECONFIG pointing at the
 * fake API with the migration ServiceAccount's token instead of the in-cluster token.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Chart, Testing } from 'cdk8s';
import pg from 'pg';
import { BACKUP_MOUNT_PATH, DeleteLegacy, Env, RunnerCommand, StateKey, type DeleteLegacyValue } from '../../lib/contract.js';
import { DatabaseMigration } from '../../lib/database-migration.js';
import { resolveContainerEnv, type Container } from '../../rehearsal/pod-env.js';
import { parseState, type MigrationState } from '../../runner/src/state.js';
import type { ConnectionSettings } from '../../runner/src/pg/connection.js';
import { startFakeKubeApiServer, startWorkloadController, type FakeKubeApiServer, type KubeObject, type WorkloadController } from './fake-kube/index.js';
import { createKeycloakData, KEYCLOAK_HYGIENE_TABLES } from './keycloak-data.js';
import { startPostgres, type TestPostgres } from './postgres.js';
import { logLines, REPOSITORY_ROOT } from './runner-cli.js';

export const BUNDLE = join(REPOSITORY_ROOT, 'runner', 'dist', 'runner.mjs');

export const SOURCE_DATABASE = 'keycloak';
export const SOURCE_APP_USER = 'bn_keycloak';
export const TARGET_APP_USER = 'app';
export const KEYCLOAK_REPLICAS = 2;
export const MIGRATION_NAME = 'kc-migration';

export type HookCommand =
  | typeof RunnerCommand.prepare
  | typeof RunnerCommand.backupPhase
  | typeof RunnerCommand.restorePhase
  | typeof RunnerCommand.recordFailure;

/** Fails (instead of silently testing stale code) when the bundle is older than the sources. */
export function assertBundleIsFresh(): void {
  if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} does not exist: run npm run build:runner first`);
  const built = statSync(BUNDLE).mtimeMs;
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((entry) =>
        entry.isDirectory() ? newest(join(dir, entry.name)) : entry.name.endsWith('.ts') ? statSync(join(dir, entry.name)).mtimeMs : 0,
      ),
    );
  const sources = Math.max(newest(join(REPOSITORY_ROOT, 'runner', 'src')), statSync(join(REPOSITORY_ROOT, 'lib', 'contract.ts')).mtimeMs);
  if (sources > built) throw new Error(`${BUNDLE} is older than runner/src: run npm run build:runner first`);
}

export interface World {
  readonly server: FakeKubeApiServer;
  readonly controller: WorkloadController;
  readonly source: TestPostgres;
  readonly target: TestPostgres;
  readonly sourceAppPassword: string;
  readonly targetAppPassword: string;
  readonly root: string;
  stop(): Promise<void>;
}

/** Starts both servers (the source with Keycloak-shaped data), the fake API and its controller. */
export async function startWorld(options: { users?: number; bulkBytes?: number } = {}): Promise<World> {
  assertBundleIsFresh();
  const [source, target] = await Promise.all([
    startPostgres({ settings: { log_connections: 'on' } }),
    startPostgres({ settings: { log_connections: 'on' } }),
  ]);
  const sourceAppPassword = 'legacy-app-pass-1';
  const targetAppPassword = 'target-app-pass-1';
  await source.createUser(SOURCE_APP_USER, sourceAppPassword);
  await source.createDatabase(SOURCE_DATABASE, SOURCE_APP_USER);
  await createKeycloakData(
    { ...source.settings(SOURCE_DATABASE, SOURCE_APP_USER, sourceAppPassword) },
    { users: options.users ?? 40, extensionCreator: source.settings(SOURCE_DATABASE), ...(options.bulkBytes ? { bulkBytes: options.bulkBytes } : {}) },
  );
  await target.createUser(TARGET_APP_USER, targetAppPassword);
  const server = await startFakeKubeApiServer();
  const controller = startWorkloadController(server, { terminationDelayMs: 50 });
  const root = mkdtempSync(join(tmpdir(), 'kc-hooks-'));
  return {
    server,
    controller,
    source,
    target,
    sourceAppPassword,
    targetAppPassword,
    root,
    async stop() {
      controller.stop();
      await server.close();
      await Promise.all([source.stop(), target.stop()]);
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export type CliCommand = HookCommand | typeof RunnerCommand.status | typeof RunnerCommand.plan | typeof RunnerCommand.gate;

export interface ScenarioOptions {
  readonly namespace: string;
  /** Seed the legacy StatefulSet, PVC, PV and the source's Secret. @default true */
  readonly legacy?: boolean;
  readonly deleteLegacy?: DeleteLegacyValue;
  /** @default true */
  readonly protectVolumes?: boolean;
  /** Fixed backup PVC size. */
  readonly backupSize?: string;
  /** Added to (or, with undefined, removed from) every Job's environment. */
  readonly envOverrides?: Readonly<Record<string, string | undefined>>;
  /** Create the target database. @default true */
  readonly createTargetDatabase?: boolean;
  /** @default 'argocd' */
  readonly flavor?: 'helm' | 'argocd';
  /**
   * DatabaseMigration `restoreReplicas`; `'flavor-default'` leaves it to the construct (false for
   * argocd, true for helm).
   *
   * @default true: most scenarios check the runner's own scale-back (and its crash/rollback
   * edge cases); the flavor defaults are run end to end in runner-hooks-happy.test.ts
   */
  readonly restoreReplicas?: boolean | 'flavor-default';
  /**
   * DatabaseMigration `restoreInBackupJob` (argocd: the backup Job runs restore-phase too, and
   * there is no restore Job); `'flavor-default'` leaves it to the construct (true for argocd).
   *
   * @default false: most scenarios drive the two commands apart; the one-Job layout is run end to
   * end in runner-restore-in-backup-job.test.ts, with its failures
   */
  readonly restoreInBackupJob?: boolean | 'flavor-default';
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly lines: Array<Record<string, unknown>>;
}

export interface RunningHook {
  readonly child: ChildProcess;
  /** Kills the whole process group (the runner and its pg_dump / pg_restore), as a dying container. */
  kill(): void;
  readonly done: Promise<RunResult>;
}

export interface Scenario {
  readonly namespace: string;
  readonly targetDatabase: string;
  readonly backupDir: string;
  readonly names: { stateConfigMap: string; lockLease: string; backupPvc: string; role: string; serviceAccount: string };
  readonly role: KubeObject;
  /** The Job environment of `command` for a pod named `podName`. */
  env(command: HookCommand, podName?: string): Record<string, string>;
  /**
   * Starts a command. Hooks get their Job's environment (plus `env`); `status` and `plan` get the
   * record-failure Job's (the full configuration, as in a Job pod); `gate` gets only `env`.
   */
  start(command: CliCommand, options?: { podName?: string; env?: Record<string, string>; args?: string[] }): RunningHook;
  run(command: CliCommand, options?: { podName?: string; env?: Record<string, string>; args?: string[] }): Promise<RunResult>;
  /** The three hooks in order, each expected to exit 0. */
  migrate(): Promise<RunResult[]>;
  state(): MigrationState | undefined;
  keycloakReplicas(): number;
  keycloakPods(): string[];
  legacyObjects(): { statefulSet: boolean; pvc: boolean; pvReclaimPolicy: string | undefined };
  targetSettings(user?: string): ConnectionSettings;
}

let podCounter = 0;

/** Sets up one namespace: RBAC from the construct, Secrets, Keycloak, the legacy objects. */
export async function createScenario(world: World, options: ScenarioOptions): Promise<Scenario> {
  const { server, target } = world;
  const namespace = options.namespace;
  const targetDatabase = `target_${namespace.replace(/-/g, '_')}`;
  if (options.createTargetDatabase ?? true) await target.createDatabase(targetDatabase, TARGET_APP_USER);
  const backupDir = join(world.root, namespace, 'backup-volume');
  mkdirSync(backupDir, { recursive: true });
  const legacy = options.legacy ?? true;

  const app = Testing.app();
  const chart = new Chart(app, 'migration', { namespace });
  new DatabaseMigration(chart, 'migration', {
    name: MIGRATION_NAME,
    flavor: options.flavor ?? 'argocd',
    runnerImage: 'registry.example/kc-runner:1.0.0',
    namespace,
    source: {
      host: '127.0.0.1',
      port: world.source.port,
      database: SOURCE_DATABASE,
      credentials: { username: SOURCE_APP_USER, secretName: 'legacy-postgresql', passwordKey: 'password' },
      adminCredentials: { username: 'postgres', secretName: 'legacy-postgresql', passwordKey: 'postgres-password' },
    },
    target: {
      host: '127.0.0.1',
      port: target.port,
      database: targetDatabase,
      credentials: { username: TARGET_APP_USER, secretName: 'target-app', passwordKey: 'password' },
      adminCredentials: { username: 'postgres', secretName: 'target-superuser', passwordKey: 'password' },
    },
    workloads: [{ kind: 'StatefulSet', name: 'keycloak' }],
    // The hooks' world seeds its own database and workloads: no constructs to put waves on.
    targetConstructs: [],
    workloadConstructs: [],
    legacy: { statefulSetName: 'legacy-postgresql', pvcNames: ['data-legacy-postgresql-0'] },
    deleteLegacy: options.deleteLegacy ?? DeleteLegacy.afterRestore,
    protectVolumes: options.protectVolumes ?? true,
    ensureSecrets: [{ name: 'kc-generated-admin', keys: ['password'] }],
    quiesceTimeoutSeconds: 30,
    targetWaitSeconds: 20,
    lockTtlSeconds: 10,
    ...(options.restoreReplicas === 'flavor-default' ? {} : { restoreReplicas: options.restoreReplicas ?? true }),
    ...((options.flavor ?? 'argocd') === 'argocd' && options.restoreInBackupJob !== 'flavor-default'
      ? { restoreInBackupJob: options.restoreInBackupJob ?? false }
      : {}),
    ...(options.backupSize ? { backup: { size: options.backupSize } } : {}),
  });
  const objects = Testing.synth(chart) as KubeObject[];
  const role = objects.find((object) => object.kind === 'Role')!;
  const rbac = objects.filter((object) => ['Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'].includes(object.kind ?? ''));
  // Hook annotations are irrelevant to the API server; the objects are seeded as Helm/Argo would apply them.
  server.seed(...rbac.map((object) => ({ ...object, metadata: { ...object.metadata, annotations: {} } })));
  const jobs = objects.filter((object) => object.kind === 'Job');
  const containerOf = (command: string): Container => {
    const job = jobs.find((candidate) => (candidate.spec as any).template.spec.containers[0].args[0] === command);
    if (!job) throw new Error(`no Job for ${command}`);
    return (job.spec as any).template.spec.containers[0] as Container;
  };
  const serviceAccount = (objects.find((object) => object.kind === 'RoleBinding')!.subjects as Array<{ name: string }>)[0]!.name;
  const token = server.tokenForServiceAccount(namespace, serviceAccount);
  const kubeconfig = server.writeKubeconfig(join(world.root, namespace, 'kubeconfig'), token, namespace);

  const secret = (name: string, data: Record<string, string>) => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace },
    type: 'Opaque',
    data: Object.fromEntries(Object.entries(data).map(([key, value]) => [key, Buffer.from(value).toString('base64')])),
  });
  server.seed(
    secret('target-app', { password: world.targetAppPassword }),
    secret('target-superuser', { password: target.password }),
    workload('keycloak', namespace, KEYCLOAK_REPLICAS),
  );
  if (legacy) {
    server.seed(
      secret('legacy-postgresql', { password: world.sourceAppPassword, 'postgres-password': world.source.password }),
      workload('legacy-postgresql', namespace, 1),
      {
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: `pv-${namespace}-legacy-0` },
        spec: {
          capacity: { storage: '8Gi' },
          accessModes: ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Delete',
          hostPath: { path: `/tmp/${namespace}` },
          claimRef: { namespace, name: 'data-legacy-postgresql-0' },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'data-legacy-postgresql-0', namespace },
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '8Gi' } }, volumeName: `pv-${namespace}-legacy-0` },
        status: { phase: 'Bound', capacity: { storage: '8Gi' } },
      },
    );
  }
  await world.controller.settled();

  const names = {
    stateConfigMap: `${MIGRATION_NAME}-state`,
    lockLease: `${MIGRATION_NAME}-lock`,
    backupPvc: `${MIGRATION_NAME}-backup`,
    role: role.metadata.name,
    serviceAccount,
  };

  const env = (command: HookCommand, podName = `${MIGRATION_NAME}-${command}-${++podCounter}`): Record<string, string> => {
    const pod: KubeObject = { apiVersion: 'v1', kind: 'Pod', metadata: { name: podName, namespace }, spec: { serviceAccountName: serviceAccount } };
    const resolved = resolveContainerEnv(server, pod, containerOf(command));
    if (resolved[Env.backupDir] !== undefined) {
      if (resolved[Env.backupDir] !== BACKUP_MOUNT_PATH) throw new Error(`unexpected backup mount ${resolved[Env.backupDir]}`);
      resolved[Env.backupDir] = backupDir;
    }
    for (const [name, value] of Object.entries(options.envOverrides ?? {})) {
      if (value === undefined) delete resolved[name];
      else resolved[name] = value;
    }
    return { ...resolved, KUBECONFIG: kubeconfig, PATH: process.env.PATH ?? '/usr/bin:/bin' };
  };

  const start: Scenario['start'] = (command, startOptions = {}) => {
    const hookEnv =
      command === RunnerCommand.gate
        ? { PATH: process.env.PATH ?? '/usr/bin:/bin' }
        : command === RunnerCommand.status || command === RunnerCommand.plan
          ? env(RunnerCommand.recordFailure, startOptions.podName)
          : env(command, startOptions.podName);
    const child = spawn(process.execPath, [BUNDLE, command, ...(startOptions.args ?? [])], {
      cwd: world.root,
      env: { ...hookEnv, ...startOptions.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const done = new Promise<RunResult>((resolveRun) => {
      child.on('close', (code, signal) => resolveRun({ code, signal, stdout, stderr, lines: safeLogLines(stderr) }));
    });
    return {
      child,
      kill() {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // Already gone.
        }
      },
      done,
    };
  };

  const run: Scenario['run'] = (command, runOptions) => start(command, runOptions).done;

  return {
    namespace,
    targetDatabase,
    backupDir,
    names,
    role,
    env,
    start,
    run,
    async migrate() {
      const results: RunResult[] = [];
      for (const command of [RunnerCommand.prepare, RunnerCommand.backupPhase, RunnerCommand.restorePhase] as const) {
        const result = await run(command);
        if (result.code !== 0) throw new Error(`${command} exited ${result.code}: ${result.stderr.slice(-3000)}`);
        results.push(result);
      }
      return results;
    },
    state() {
      const configMap = server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: names.stateConfigMap, namespace });
      return configMap ? parseState(configMap.data as Record<string, string>, names.stateConfigMap) : undefined;
    },
    keycloakReplicas() {
      return ((server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'keycloak', namespace })?.spec ?? {}) as { replicas?: number }).replicas ?? -1;
    },
    keycloakPods() {
      return server
        .list('v1', 'Pod', namespace)
        .map((pod) => pod.metadata.name)
        .filter((name) => name.startsWith('keycloak-'));
    },
    legacyObjects() {
      const pv = server.get({ apiVersion: 'v1', kind: 'PersistentVolume', name: `pv-${namespace}-legacy-0` });
      return {
        statefulSet: server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'legacy-postgresql', namespace }) !== undefined,
        pvc: server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data-legacy-postgresql-0', namespace }) !== undefined,
        pvReclaimPolicy: (pv?.spec as { persistentVolumeReclaimPolicy?: string } | undefined)?.persistentVolumeReclaimPolicy,
      };
    },
    targetSettings(user = 'postgres') {
      return user === 'postgres' ? target.settings(targetDatabase) : target.settings(targetDatabase, user, world.targetAppPassword);
    },
  };
}

function safeLogLines(stderr: string): Array<Record<string, unknown>> {
  try {
    return logLines(stderr);
  } catch {
    return [];
  }
}

function workload(name: string, namespace: string, replicas: number): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, namespace },
    spec: {
      replicas,
      serviceName: name,
      selector: { matchLabels: { 'app.kubernetes.io/name': name } },
      template: { metadata: { labels: { 'app.kubernetes.io/name': name } }, spec: { containers: [{ name: 'main', image: 'example/main:1' }] } },
    },
  };
}

/** The phase in a ConfigMap's data, for onChange observers. */
export function phaseOf(object: KubeObject): string | undefined {
  return (object.data as Record<string, string> | undefined)?.[StateKey.phase];
}

/** Number of connections the server accepted so far (log_connections lines in its log). */
export function connectionCount(server: TestPostgres): number {
  const log = join(server.dataDir, '..', 'server.log');
  if (!existsSync(log)) return 0;
  return (readFileSync(log, 'utf8').match(/connection authorized/g) ?? []).length;
}

export type DatabaseContents = Awaited<ReturnType<typeof databaseContents>>;

/**
 * What `target` lacks or holds differently from `source` (both from {@link databaseContents}):
 * tables, every row of each but those the Keycloak hygiene changes on purpose, sequences and
 * large objects. Empty when the target holds the source.
 */
export function contentDifferences(source: DatabaseContents, target: DatabaseContents): string[] {
  const differences: string[] = [];
  const tables = (contents: DatabaseContents) => Object.keys(contents.tables).sort().join(', ');
  if (tables(source) !== tables(target)) differences.push(`tables: source ${tables(source)}; target ${tables(target)}`);
  for (const [table, digest] of Object.entries(source.tables)) {
    if (!KEYCLOAK_HYGIENE_TABLES.includes(table) && target.tables[table] !== digest) differences.push(`${table}: source ${digest}, target ${target.tables[table]}`);
  }
  for (const kind of ['sequences', 'largeObjects'] as const) {
    if (JSON.stringify(source[kind]) !== JSON.stringify(target[kind])) differences.push(`${kind}: source ${JSON.stringify(source[kind])}, target ${JSON.stringify(target[kind])}`);
  }
  return differences;
}

/**
 * Everything a Keycloak database holds, read directly from a server: per table every row (md5 of
 * the sorted text forms), every sequence, every large object's contents. Tables emptied or changed
 * by the Keycloak hygiene are reported separately.
 */
export async function databaseContents(settings: ConnectionSettings): Promise<{ tables: Record<string, string>; sequences: Record<string, string>; largeObjects: Record<string, string> }> {
  const client = new pg.Client({ ...settings });
  await client.connect();
  try {
    await client.query("SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET DateStyle = 'ISO, MDY'");
    const tables = await client.query<{ name: string }>(`
      SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'kc_migration') AND n.nspname NOT LIKE 'pg\\_%'
       ORDER BY 1`);
    const result = { tables: {} as Record<string, string>, sequences: {} as Record<string, string>, largeObjects: {} as Record<string, string> };
    for (const { name } of tables.rows) {
      const rows = await client.query<{ n: string; digest: string | null }>(`SELECT count(*)::text AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS digest FROM ${name} t`);
      result.tables[name] = `${rows.rows[0]!.n}:${rows.rows[0]!.digest ?? '-'}`;
    }
    const sequences = await client.query<{ name: string; last_value: string | null; is_called: boolean }>(`
      SELECT schemaname || '.' || sequencename AS name, last_value::text, (last_value IS NOT NULL) AS is_called FROM pg_sequences ORDER BY 1`);
    for (const row of sequences.rows) result.sequences[row.name] = `${row.last_value ?? 'never called'}`;
    const objects = await client.query<{ oid: string; digest: string }>(`SELECT oid::text, md5(lo_get(oid)) AS digest FROM pg_largeobject_metadata ORDER BY oid`);
    for (const row of objects.rows) result.largeObjects[row.oid] = row.digest;
    return result;
  } finally {
    await client.end();
  }
}

export interface KilledRun extends RunResult {
  /** The legacy objects as they were when the runner was killed. */
  readonly legacyAtKill: ReturnType<Scenario['legacyObjects']>;
}

/**
 * Runs a hook and SIGKILLs it (with its pg tools, as a dying container) the moment the state
 * ConfigMap is written with phase `phase` for the first time — before the runner even sees the API's
 * answer. Fails when the hook exits without reaching that phase.
 */
export async function runKilledAtPhase(world: World, scenario: Scenario, command: HookCommand, phase: string): Promise<KilledRun> {
  let killedAt: ReturnType<Scenario['legacyObjects']> | undefined;
  let previous: string | undefined = scenario.state()?.phase;
  let running: RunningHook | undefined;
  const pending: string[] = [];
  const unsubscribe = world.server.onChange((_event, object) => {
    if (object.kind !== 'ConfigMap' || object.metadata.namespace !== scenario.namespace || object.metadata.name !== scenario.names.stateConfigMap) return;
    const current = phaseOf(object);
    if (current === phase && previous !== phase && killedAt === undefined) {
      killedAt = scenario.legacyObjects();
      if (running) running.kill();
      else pending.push(phase);
    }
    previous = current;
  });
  try {
    running = scenario.start(command);
    if (pending.length > 0) running.kill();
    const result = await running.done;
    if (!killedAt) throw new Error(`${command} exited ${result.code} without reaching phase ${phase}: ${result.stderr.slice(-2000)}`);
    return { ...result, legacyAtKill: killedAt };
  } finally {
    unsubscribe();
  }
}

/**
 * Ages the migration Lease as if its TTL had passed: a killed runner stops renewing it, and the
 * next runner takes it over once it expired. Tests that kill runners many times use this instead of
 * waiting for the TTL (one test waits for real).
 */
export function expireLease(world: World, scenario: Scenario): void {
  const lease = world.server.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: scenario.names.lockLease, namespace: scenario.namespace });
  if (!lease) return;
  const past = new Date(Date.now() - 3_600_000).toISOString().replace('Z', '000Z');
  world.server.upsert({ ...lease, spec: { ...(lease.spec as object), renewTime: past, acquireTime: past } });
}

/**
 * Changes one byte in the middle of the largest table data file of the scenario's recorded backup,
 * in place (the size stays: only a digest read from the file again can see it); returns its name.
 */
export function flipByteInLargestDataFile(scenario: Scenario): string {
  const dumpDir = join(scenario.backupDir, scenario.state()!.backup!.dir, 'dump');
  const dataFile = readdirSync(dumpDir)
    .filter((name) => /^\d+\.dat$/.test(name))
    .sort((a, b) => statSync(join(dumpDir, b)).size - statSync(join(dumpDir, a)).size)[0]!;
  const content = readFileSync(join(dumpDir, dataFile));
  content[Math.floor(content.length / 2)] ^= 0x01;
  writeFileSync(join(dumpDir, dataFile), content);
  return dataFile;
}
