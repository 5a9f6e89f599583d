// The hook Jobs end to end against two real PostgreSQL servers and the fake Kubernetes API, run as
// the Jobs run them (the bundle, the synthesized Job environment, the construct's RBAC):
// prepare → backup-phase → restore-phase moves every row, sequence and large object; Completed
// re-runs touch a few API requests and no database; a fresh install is NotNeeded and the gate passes.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEYCLOAK_HYGIENE_TABLES } from './support/keycloak-data.js';
import { Env, Labels, MANAGED_BY_RUNNER, Phase, ReadyMarker, RunnerCommand, StateKey } from '../lib/contract.js';
import {
  connectionCount,
  createScenario,
  databaseContents,
  KEYCLOAK_REPLICAS,
  SOURCE_DATABASE,
  startWorld,
  TARGET_APP_USER,
  type Scenario,
  type World,
} from './support/runner-hooks-harness.js';

let world: World;
let sourceContents: Awaited<ReturnType<typeof databaseContents>>;


async function query<R extends pg.QueryResultRow>(settings: pg.ClientConfig, text: string): Promise<R[]> {
  const client = new pg.Client(settings);
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  // A table of 8 MiB keeps pg_restore loading long enough that the verifier during the restore
  // has checksummed the small tables before it ends, however loaded the machine: with only the
  // small ones, pg_restore could finish while the verifier is still connecting (asserted below).
  world = await startWorld({ bulkBytes: 8 * 1024 * 1024 });
  sourceContents = await databaseContents(world.source.settings('keycloak'));
});
afterAll(async () => {
  await world?.stop();
});

describe('a migration through the three hooks', () => {
  let scenario: Scenario;
  let earlyPassBaseTables = 0;
  const stateConfigMapData = (): Record<string, string> =>
    world.server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: scenario.names.stateConfigMap, namespace: scenario.namespace })!.data as Record<string, string>;

  it('prepare creates the state, the backup PVC and the Secrets, and leaves Keycloak running', async () => {
    scenario = await createScenario(world, { namespace: 'happy' });
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    const podsBefore = scenario.keycloakPods();
    expect(podsBefore).toHaveLength(KEYCLOAK_REPLICAS);
    const result = await scenario.run(RunnerCommand.prepare);
    expect(result.code, result.stderr).toBe(0);
    const state = scenario.state()!;
    // The downtime starts in the backup Job, right before its dump: not here.
    expect(state.phase).toBe(Phase.pending);
    expect(state.history).toEqual([]);
    expect(state.originalReplicas).toEqual({});
    expect(state.decisionReason).toMatch(/source database is reachable/);
    expect(state.attempts).toEqual({ prepare: 1 });
    // Closed: between the two Jobs, nothing is "in progress".
    expect(state.currentStep).toBeUndefined();
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    expect(scenario.keycloakPods()).toEqual(podsBefore);
    const pvc = world.server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: scenario.names.backupPvc, namespace: scenario.namespace })!;
    expect(pvc.metadata.labels?.[Labels.managedBy]).toBe(MANAGED_BY_RUNNER);
    // The source is a few MiB: the minimum size applies.
    expect((pvc.spec as any).resources.requests.storage).toBe('1Gi');
    const generated = world.server.get({ apiVersion: 'v1', kind: 'Secret', name: 'kc-generated-admin', namespace: scenario.namespace })!;
    expect(Buffer.from((generated.data as any).password, 'base64').toString()).toMatch(/^[A-Za-z0-9]{32}$/);
    // Nothing legacy is touched before a verified backup.
    expect(scenario.legacyObjects()).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Delete' });
    // The source's checksums, taken while Keycloak still ran, wait for the backup Job in the ConfigMap.
    const earlyPass = JSON.parse(stateConfigMapData()[StateKey.earlyPass]!);
    expect(earlyPass.source.database).toBe('keycloak');
    expect(earlyPass.tables).toHaveLength(Object.keys(sourceContents.tables).length);
    earlyPassBaseTables = earlyPass.tables.filter((table: { kind: string }) => table.kind === 'table').length;
    expect(result.stderr).toContain('source checksummed before quiescing');
  });

  it('backup-phase records the original replicas, quiesces Keycloak, then dumps, verifies and protects, and deletes nothing (after-restore)', async () => {
    const result = await scenario.run(RunnerCommand.backupPhase);
    expect(result.code, result.stderr).toBe(0);
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.legacyProtected);
    expect(state.originalReplicas).toEqual({ 'statefulset/keycloak': KEYCLOAK_REPLICAS });
    expect(state.attempts).toMatchObject({ prepare: 1, quiesce: 1, backup: 1 });
    expect(scenario.keycloakReplicas()).toBe(0);
    expect(scenario.keycloakPods()).toEqual([]);
    // Quiesced before the dump began: the order of the Job's own log lines.
    const quiescedAt = result.lines.findIndex((line) => line.msg === 'original replica counts on record');
    const dumpAt = result.lines.findIndex((line) => line.msg === 'step backup: starting');
    expect(quiescedAt, result.stderr).toBeGreaterThanOrEqual(0);
    expect(dumpAt, result.stderr).toBeGreaterThan(quiescedAt);
    expect(state.backup).toMatchObject({ dir: state.migrationId, pvc: scenario.names.backupPvc, tableCount: Object.keys(sourceContents.tables).length });
    expect(state.backup!.manifestSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(state.protectedVolumes).toEqual([{ pvc: 'data-legacy-postgresql-0', pv: `pv-${scenario.namespace}-legacy-0`, previousReclaimPolicy: 'Delete' }]);
    expect(state.legacyDeleted).toBe(false);
    expect(scenario.legacyObjects()).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Retain' });
    expect(state.history.map((entry) => entry.phase)).toEqual([Phase.quiesced, Phase.backedUp, Phase.backupVerified, Phase.legacyProtected]);
    // Nothing was written since prepare's early pass: every table's checksum was reused, and the
    // pass, spent, left the ConfigMap.
    const tables = Object.keys(sourceContents.tables).length;
    expect(state.history.find((entry) => entry.phase === Phase.backedUp)!.detail).toContain(`${tables} tables`);
    expect(state.history.find((entry) => entry.phase === Phase.backedUp)!.detail).toContain(`, ${earlyPassBaseTables} checksummed before the downtime`);
    expect(earlyPassBaseTables).toBeGreaterThan(0);
    expect(stateConfigMapData()[StateKey.earlyPass]).toBeUndefined();
    // Verified right after its own dump: the digests the dump took, the TOC listing it recorded.
    expect(state.history.find((entry) => entry.phase === Phase.backupVerified)!.detail).toContain("digests taken by this run's dump");
    expect(result.lines.find((line) => line.msg === 'backup verified')).toMatchObject({ digests: false, toc: 'recorded' });
    const summary = result.lines.find((line) => line.event === 'summary');
    expect(summary, result.stderr).toBeDefined();
  });

  it('restore-phase restores every row, sequence and large object, marks ready, scales back and completes', async () => {
    const result = await scenario.run(RunnerCommand.restorePhase);
    expect(result.code, result.stderr).toBe(0);
    // Another process (the restore Job) than the one that dumped: every file is digested again.
    expect(result.lines.find((line) => line.msg === 'restoring')?.digests).toBe('recomputed during the restore');
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(state.verification).toMatchObject({ ok: true, mismatches: [] });
    expect(state.history.map((entry) => entry.phase)).toEqual([
      Phase.quiesced,
      Phase.backedUp,
      Phase.backupVerified,
      Phase.legacyProtected,
      Phase.restoring,
      Phase.restored,
      Phase.verified,
      Phase.completed,
    ]);
    expect(state.legacyDeleted).toBe(true);
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    await world.controller.settled();
    expect(scenario.keycloakPods()).toHaveLength(KEYCLOAK_REPLICAS);
    // Legacy deleted only now, after the verified restore; the disk is kept (Retain).
    expect(scenario.legacyObjects()).toEqual({ statefulSet: false, pvc: false, pvReclaimPolicy: 'Retain' });

    // Compared directly between the servers, not through the runner's own report.
    const targetContents = await databaseContents(scenario.targetSettings());
    expect(Object.keys(targetContents.tables).sort()).toEqual(Object.keys(sourceContents.tables).sort());
    for (const [table, digest] of Object.entries(sourceContents.tables)) {
      if (!KEYCLOAK_HYGIENE_TABLES.includes(table)) expect(targetContents.tables[table], table).toBe(digest);
    }
    expect(targetContents.sequences).toEqual(sourceContents.sequences);
    expect(targetContents.largeObjects).toEqual(sourceContents.largeObjects);
    expect(Object.keys(targetContents.largeObjects)).toHaveLength(3);
    // The hygiene: no stale JGroups members, Liquibase's lock released, rows kept.
    const target = scenario.targetSettings();
    expect(await query(target, 'SELECT * FROM public.jgroups_ping')).toEqual([]);
    expect(await query(target, 'SELECT id, locked FROM public.databasechangeloglock ORDER BY id')).toEqual([
      { id: 1, locked: false },
      { id: 1000, locked: false },
      { id: 1001, locked: false },
    ]);
    // Owned by the application user, whoever restored.
    const owners = await query<{ owner: string }>(
      target,
      "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'audit')",
    );
    expect(owners).toEqual([{ owner: TARGET_APP_USER }]);
    const marker = await query<{ status: string; migration_id: string }>(target, `SELECT status, migration_id FROM ${ReadyMarker.schema}.${ReadyMarker.table}`);
    expect(marker).toEqual([{ status: ReadyMarker.ready, migration_id: state.migrationId }]);

    // Events for the phase changes.
    const reasons = world.server.list('v1', 'Event', scenario.namespace).map((event) => event.reason as string);
    expect(reasons).toEqual(expect.arrayContaining(['MigrationPending', 'MigrationQuiesced', 'MigrationVerified', 'MigrationCompleted']));
    const summary = result.lines.find((line) => line.event === 'summary') as { rows?: Array<{ step: string; note?: string }> } | undefined;
    expect(summary?.rows?.map((row) => row.step), result.stderr).toEqual(
      expect.arrayContaining(['wait-target', 'mark-restoring', 'restore', 'verify-target', 'hygiene', 'mark-ready', 'unquiesce', 'analyze', 'delete-legacy', 'complete']),
    );

    // The tables were checksummed while pg_restore went on, and the verification reused those
    // checksums; ANALYZE waited until Keycloak was scaled back (off the downtime).
    const verified = state.history.find((entry) => entry.phase === Phase.verified)!;
    const early = Number(/\((\d+) checksummed during the restore\)/.exec(verified.detail ?? '')?.[1] ?? 0);
    expect(early, verified.detail).toBeGreaterThan(0);
    expect(early).toBeLessThanOrEqual(state.verification!.tablesChecked);
    const steps = summary!.rows!.map((row) => row.step);
    expect(summary?.rows?.find((row) => row.step === 'hygiene')?.note).toMatch(/^ANALYZE after Keycloak is back;/);
    expect(steps.indexOf('analyze')).toBeGreaterThan(steps.indexOf('unquiesce'));
    expect(steps.indexOf('unquiesce')).toBeGreaterThan(steps.indexOf('mark-ready'));
    // ANALYZEd all the same: a table never analyzed has reltuples -1 (PostgreSQL 14+).
    const unanalyzed = await query<{ name: string }>(
      target,
      "SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'audit') AND c.relkind = 'r' AND c.reltuples < 0",
    );
    expect(unanalyzed).toEqual([]);

    // The restore left the plain indexes out (logged with the restore); they were built after
    // the scale-back, before the ANALYZE, and the target's indexes are the source's.
    expect(result.lines.find((line) => line.msg === 'restoring')?.indexesAfterReady).toBeGreaterThan(0);
    expect(steps.indexOf('indexes')).toBeGreaterThan(steps.indexOf('unquiesce'));
    expect(steps.indexOf('analyze')).toBeGreaterThan(steps.indexOf('indexes'));
    expect(summary?.rows?.find((row) => row.step === 'indexes')?.note).toMatch(/^[1-9]\d* plain index\(es\) while Keycloak starts$/);
    const indexDefinitions = (settings: pg.ClientConfig) =>
      query<{ def: string }>(
        settings,
        "SELECT pg_get_indexdef(c.oid) AS def FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('i', 'I') AND n.nspname IN ('public', 'audit') ORDER BY 1",
      );
    expect(await indexDefinitions(target)).toEqual(await indexDefinitions(world.source.settings(SOURCE_DATABASE)));
  });

  it('re-runs of all three hooks are no-ops: a few API requests and no database connection', async () => {
    const before = { source: connectionCount(world.source), target: connectionCount(world.target) };
    // The count is real: the migration itself connected to both.
    expect(before.source).toBeGreaterThan(2);
    expect(before.target).toBeGreaterThan(2);
    for (const [command, maxRequests] of [
      [RunnerCommand.prepare, 2],
      [RunnerCommand.backupPhase, 1],
      [RunnerCommand.restorePhase, 1],
    ] as const) {
      world.server.clearRequestLog();
      const result = await scenario.run(command);
      expect(result.code, result.stderr).toBe(0);
      const requests = world.server.requests.filter((request) => request.verb !== 'discovery' && request.namespace === scenario.namespace);
      expect(requests.length, `${command}: ${JSON.stringify(requests.map((r) => `${r.verb} ${r.resource}`))}`).toBeLessThanOrEqual(maxRequests);
      expect(requests.every((request) => request.verb === 'get')).toBe(true);
    }
    expect({ source: connectionCount(world.source), target: connectionCount(world.target) }).toEqual(before);
    expect(scenario.state()!.phase).toBe(Phase.completed);
  });

  it("the gate passes at once with Keycloak's own credentials", async () => {
    const env = {
      TARGET_PGHOST: '127.0.0.1',
      TARGET_PGPORT: String(world.target.port),
      TARGET_PGUSER: TARGET_APP_USER,
      TARGET_PGPASSWORD: world.targetAppPassword,
      TARGET_PGDATABASE: scenario.targetDatabase,
      MIGRATION_GATE_TIMEOUT_SECONDS: '5',
    };
    const started = Date.now();
    const result = await scenario.run(RunnerCommand.gate, { env });
    expect(result.code, result.stderr).toBe(0);
    expect(Date.now() - started).toBeLessThan(4000);
  });
});

describe('a fresh install', () => {
  it('is NotNeeded, restore-phase writes the ready marker once, and later syncs only read the state', async () => {
    const scenario = await createScenario(world, { namespace: 'fresh', legacy: false });
    const prepare = await scenario.run(RunnerCommand.prepare);
    expect(prepare.code, prepare.stderr).toBe(0);
    let state = scenario.state()!;
    expect(state.phase).toBe(Phase.notNeeded);
    expect(state.decisionReason).toMatch(/^fresh install: no legacy StatefulSet legacy-postgresql and no source database \(SOURCE_PGPASSWORD is unset/);
    // Keycloak was never touched; the backup PVC exists for the Job that mounts it.
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    expect(world.server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: scenario.names.backupPvc, namespace: scenario.namespace })).toBeDefined();
    // The Secrets the new database and Keycloak read exist on a fresh install too.
    expect(world.server.get({ apiVersion: 'v1', kind: 'Secret', name: 'kc-generated-admin', namespace: scenario.namespace })).toBeDefined();

    const backup = await scenario.run(RunnerCommand.backupPhase);
    expect(backup.code, backup.stderr).toBe(0);
    const restore = await scenario.run(RunnerCommand.restorePhase);
    expect(restore.code, restore.stderr).toBe(0);
    state = scenario.state()!;
    expect(state.phase).toBe(Phase.notNeeded);
    expect(state.readyMarkerAt).toBeDefined();
    const marker = await query<{ status: string }>(scenario.targetSettings(), `SELECT status FROM ${ReadyMarker.schema}.${ReadyMarker.table}`);
    expect(marker).toEqual([{ status: ReadyMarker.ready }]);
    // The marker belongs to the application user, so that Keycloak's gate (and a later restore as that user) can read it.
    const owner = await query<{ owner: string }>(scenario.targetSettings(), `SELECT tableowner AS owner FROM pg_tables WHERE schemaname = '${ReadyMarker.schema}'`);
    expect(owner).toEqual([{ owner: TARGET_APP_USER }]);

    const before = connectionCount(world.target);
    world.server.clearRequestLog();
    const again = await scenario.run(RunnerCommand.restorePhase);
    expect(again.code, again.stderr).toBe(0);
    expect(world.server.requestCount({ namespace: scenario.namespace })).toBe(1);
    expect(connectionCount(world.target)).toBe(before);

    const gate = await scenario.run(RunnerCommand.gate, {
      env: {
        TARGET_PGHOST: '127.0.0.1',
        TARGET_PGPORT: String(world.target.port),
        TARGET_PGUSER: TARGET_APP_USER,
        TARGET_PGPASSWORD: world.targetAppPassword,
        TARGET_PGDATABASE: scenario.targetDatabase,
      },
    });
    expect(gate.code, gate.stderr).toBe(0);
  });
});

describe("who brings the workloads back: each flavor's default", () => {
  it('Argo CD: the restore Sync hook leaves Keycloak at 0 (its old template would write to the legacy database) and still completes', async () => {
    const scenario = await createScenario(world, { namespace: 'argo-replicas', flavor: 'argocd', restoreReplicas: 'flavor-default' });
    expect(scenario.env(RunnerCommand.restorePhase)[Env.restoreReplicas]).toBe('false');
    for (const command of [RunnerCommand.prepare, RunnerCommand.backupPhase]) {
      const result = await scenario.run(command);
      expect(result.code, result.stderr).toBe(0);
    }
    expect(scenario.keycloakReplicas()).toBe(0);
    world.server.clearRequestLog();
    const restore = await scenario.run(RunnerCommand.restorePhase);
    expect(restore.code, restore.stderr).toBe(0);
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(state.originalReplicas).toEqual({ 'statefulset/keycloak': KEYCLOAK_REPLICAS });
    expect(state.history.at(-1)).toMatchObject({
      phase: Phase.completed,
      detail: expect.stringContaining(`replicas left to the GitOps tool (${Env.restoreReplicas}=false; recorded statefulset/keycloak=${KEYCLOAK_REPLICAS})`),
    });
    const summary = restore.lines.find((line) => line.event === 'summary') as { rows?: Array<{ step: string; note?: string }> } | undefined;
    expect(summary?.rows?.find((row) => row.step === 'unquiesce')?.note).toMatch(/^replicas left to the GitOps tool/);
    // Keycloak starts only once this Job has ended: ANALYZE overlapped the restore instead of following the scale-back.
    expect(summary?.rows?.find((row) => row.step === 'hygiene')?.note).toMatch(/^ANALYZE during the restore;/);
    expect(summary?.rows?.map((row) => row.step)).not.toContain('analyze');
    // Not even a read of the workloads: Argo CD applies Git's replicas with the new template at Keycloak's wave.
    const workloadRequests = world.server.requests.filter((request) => request.namespace === scenario.namespace && request.resource.startsWith('statefulsets'));
    expect(workloadRequests.map((request) => `${request.verb} ${request.resource}/${request.name}`)).not.toContainEqual(expect.stringMatching(/keycloak$/));
    await world.controller.settled();
    expect(scenario.keycloakReplicas()).toBe(0);
    expect(scenario.keycloakPods()).toEqual([]);
    const marker = await query<{ status: string }>(scenario.targetSettings(), `SELECT status FROM ${ReadyMarker.schema}.${ReadyMarker.table}`);
    expect(marker).toEqual([{ status: ReadyMarker.ready }]);
    // A later sync's hook does not scale either.
    const again = await scenario.run(RunnerCommand.restorePhase);
    expect(again.code, again.stderr).toBe(0);
    expect(scenario.keycloakReplicas()).toBe(0);
  });

  it('Helm: the post-upgrade hook scales Keycloak back (the new template is already applied)', async () => {
    const scenario = await createScenario(world, { namespace: 'helm-replicas', flavor: 'helm', restoreReplicas: 'flavor-default' });
    expect(scenario.env(RunnerCommand.restorePhase)[Env.restoreReplicas]).toBe('true');
    await scenario.migrate();
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(state.history.at(-1)?.detail).toContain('scaled back statefulset/keycloak');
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
  });
});
