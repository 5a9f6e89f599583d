// What the hooks do when something is wrong: a verification mismatch (target tampered between
// restore and verify, or the dump tampered before its verification) exits 65 naming the table or
// file, never marks the target ready and leaves the legacy database alone; a missing RBAC rule exits
// 77 naming verb and resource; a too-small backup volume stops before anything changes; hooks run
// out of order explain themselves; the SyncFail hook records the failure and the next sync resumes.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteLegacy, ExitCode, Phase, ReadyMarker, RunnerCommand, StateKey } from '../lib/contract.js';
import {
  createScenario,
  databaseContents,
  expireLease,
  flipByteInLargestDataFile,
  KEYCLOAK_REPLICAS,
  runKilledAtPhase,
  startWorld,
  TARGET_APP_USER,
  type RunResult,
  type World,
} from './support/runner-hooks-harness.js';

let world: World;

async function markerOf(settings: pg.ClientConfig): Promise<string | undefined> {
  const client = new pg.Client(settings);
  await client.connect();
  try {
    const exists = await client.query(`SELECT to_regclass('${ReadyMarker.schema}.${ReadyMarker.table}') AS t`);
    if (!exists.rows[0].t) return undefined;
    return (await client.query(`SELECT status FROM ${ReadyMarker.schema}.${ReadyMarker.table}`)).rows[0]?.status;
  } finally {
    await client.end();
  }
}

/** The one error line a failed run prints. */
function errorLine(result: RunResult): string {
  const errors = result.lines.filter((line) => line.level === 'error' && typeof line.exitCode === 'number');
  expect(errors, result.stderr).toHaveLength(1);
  return errors[0]!.msg as string;
}

beforeAll(async () => {
  world = await startWorld({ users: 20 });
});
afterAll(async () => {
  await world?.stop();
});

describe('verification', () => {
  it('fails with 65 naming the table when the target differs from the backup, never marks it ready, and a re-run restores again', async () => {
    const scenario = await createScenario(world, { namespace: 'mismatch', deleteLegacy: DeleteLegacy.afterRestore });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    const killed = await runKilledAtPhase(world, scenario, RunnerCommand.restorePhase, Phase.restored);
    expect(killed.signal).toBe('SIGKILL');
    // The killed runner's Lease is left to expire for real here: the next run waits for it.
    // Someone (a Keycloak started too early, a person) changes the restored data before verification.
    await world.target.query("DELETE FROM public.credential WHERE id IN (SELECT id FROM public.credential ORDER BY id LIMIT 1)", [], scenario.targetDatabase);

    const failed = await scenario.run(RunnerCommand.restorePhase);
    expect(failed.code).toBe(ExitCode.dataError);
    expect(errorLine(failed)).toMatch(/does not match the backup in table\(s\) public\.credential/);
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.failed);
    expect(state.resumeFrom).toBe(Phase.restored);
    expect(state.lastError).toMatchObject({ step: 'verify-target', exitCode: ExitCode.dataError });
    expect(state.verification?.ok).toBe(false);
    expect(state.verification?.mismatches.join(' ')).toContain('public.credential');
    expect(await markerOf(scenario.targetSettings())).toBe(ReadyMarker.restoring);
    expect(scenario.legacyObjects()).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Retain' });
    expect(scenario.keycloakReplicas()).toBe(0);
    expect(world.server.list('v1', 'Event', scenario.namespace).some((event) => event.reason === 'MigrationFailed' && event.type === 'Warning')).toBe(true);

    // The next sync restores again from the verified backup and completes.
    const again = await scenario.run(RunnerCommand.restorePhase);
    expect(again.code, again.stderr).toBe(0);
    expect(scenario.state()!.phase).toBe(Phase.completed);
    expect(scenario.state()!.verification?.ok).toBe(true);
    expect((await databaseContents(scenario.targetSettings())).tables['public.credential']).toBe(
      (await databaseContents(world.source.settings('keycloak'))).tables['public.credential'],
    );
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
  });

  it('refuses with 65 to restore over a target someone wrote to before the restore (no marker), drops nothing, and resumes once it is empty', async () => {
    const scenario = await createScenario(world, { namespace: 'written-early', deleteLegacy: DeleteLegacy.afterRestore });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    // A Keycloak without its database gate found the new database empty and created its schema.
    const app = new pg.Client(scenario.targetSettings(TARGET_APP_USER));
    await app.connect();
    try {
      await app.query('CREATE TABLE public.databasechangeloglock (id integer PRIMARY KEY, locked boolean NOT NULL)');
      await app.query('INSERT INTO public.databasechangeloglock VALUES (1, false)');
      await app.query('CREATE TABLE public.realm (id varchar(36) PRIMARY KEY, name varchar(255))');
      await app.query("INSERT INTO public.realm VALUES ('written-before-the-restore', 'master')");
    } finally {
      await app.end();
    }

    const refused = await scenario.run(RunnerCommand.restorePhase);
    expect(refused.code).toBe(ExitCode.dataError);
    expect(errorLine(refused)).toMatch(
      new RegExp(`already holds 2 relation\\(s\\): public\\.databasechangeloglock, public\\.realm, but no restore has started there .*Nothing was dropped`),
    );
    expect(scenario.state()).toMatchObject({ phase: Phase.failed, resumeFrom: Phase.legacyProtected, lastError: { step: 'mark-restoring', exitCode: ExitCode.dataError } });
    expect(await markerOf(scenario.targetSettings())).toBeUndefined();
    expect((await databaseContents(scenario.targetSettings())).tables['public.realm']).toBeDefined();
    expect(scenario.keycloakReplicas()).toBe(0);

    // The fix the hint names: the database emptied (here: the two tables dropped); the next run resumes.
    await world.target.query('DROP TABLE public.databasechangeloglock, public.realm', [], scenario.targetDatabase);
    const again = await scenario.run(RunnerCommand.restorePhase);
    expect(again.code, again.stderr).toBe(0);
    expect(scenario.state()!.phase).toBe(Phase.completed);
    expect(await markerOf(scenario.targetSettings())).toBe(ReadyMarker.ready);
  });

  it('fails with 65 naming the file when the dump was changed after it was written, and deletes nothing (after-backup)', async () => {
    const scenario = await createScenario(world, { namespace: 'tampered-dump', deleteLegacy: DeleteLegacy.afterBackup });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    await runKilledAtPhase(world, scenario, RunnerCommand.backupPhase, Phase.backedUp);
    const dataFile = flipByteInLargestDataFile(scenario);
    expireLease(world, scenario);

    // The run that resumes at BackedUp did not dump: it reads and digests every file again.
    const failed = await scenario.run(RunnerCommand.backupPhase);
    expect(failed.code).toBe(ExitCode.dataError);
    expect(errorLine(failed)).toContain(`${dataFile} has sha256`);
    expect(scenario.state()).toMatchObject({ phase: Phase.failed, resumeFrom: Phase.backedUp, legacyDeleted: false });
    expect(scenario.legacyObjects()).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Delete' });
    const restore = await scenario.run(RunnerCommand.restorePhase);
    expect(restore.code).toBe(ExitCode.usage);
    expect(errorLine(restore)).toMatch(/is in phase Failed \(resumes from BackedUp\), but the restore needs a verified, protected backup \(phase LegacyProtected\)/);
  });
});

describe('early checksum pass', () => {
  it('ignores a pass in the state ConfigMap that cannot be read, with a warning, and checksums every table in the downtime instead', async () => {
    const scenario = await createScenario(world, { namespace: 'early-pass-garbled' });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const reference = { apiVersion: 'v1', kind: 'ConfigMap', name: scenario.names.stateConfigMap, namespace: scenario.namespace };
    const configMap = world.server.get(reference)!;
    expect((configMap.data as Record<string, string>)[StateKey.earlyPass]).toBeDefined();
    world.server.upsert({ ...configMap, data: { ...(configMap.data as Record<string, string>), [StateKey.earlyPass]: '{"formatVersion":0}' } });

    const backup = await scenario.run(RunnerCommand.backupPhase);
    expect(backup.code, backup.stderr).toBe(0);
    const warning = backup.lines.find((line) => line.msg === 'ignoring the early checksum pass: the backup checksums every table in the downtime');
    expect(warning?.reason).toContain(`${StateKey.earlyPass} of ConfigMap ${scenario.names.stateConfigMap} is not an early pass of format 1`);
    const backedUp = scenario.state()!.history.find((entry) => entry.phase === Phase.backedUp)!;
    expect(backedUp.detail).not.toContain('checksummed before the downtime');
    expect((world.server.get(reference)!.data as Record<string, string>)[StateKey.earlyPass]).toBeUndefined();
    expect((await scenario.run(RunnerCommand.restorePhase)).code).toBe(0);
    expect(scenario.state()!.phase).toBe(Phase.completed);
  });
});

describe('RBAC', () => {
  it('exits 77 naming verb and resource when the Role lacks statefulsets/scale patch, before anything is scaled', async () => {
    const scenario = await createScenario(world, { namespace: 'rbac-scale' });
    const rules = (scenario.role.rules as Array<{ resources: string[]; verbs: string[] }>).map((rule) =>
      rule.resources.includes('statefulsets/scale') ? { ...rule, verbs: rule.verbs.filter((verb) => verb !== 'patch') } : rule,
    );
    world.server.upsert({ ...scenario.role, metadata: { name: scenario.role.metadata.name, namespace: scenario.namespace }, rules });
    // prepare scales nothing; the backup Job quiesces right before its dump.
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const result = await scenario.run(RunnerCommand.backupPhase);
    expect(result.code).toBe(ExitCode.noPermission);
    expect(errorLine(result)).toBe(
      `Kubernetes RBAC denied patch on statefulsets/scale "keycloak" (API group apps) in namespace rbac-scale: grant "patch" on "statefulsets/scale" (apiGroups: ["apps"]) to ServiceAccount rbac-scale/${scenario.names.serviceAccount} in the migration Role`,
    );
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    // The originals were recorded first, and the failure is on record for `status`; nothing was dumped.
    expect(scenario.state()).toMatchObject({
      phase: Phase.failed,
      resumeFrom: Phase.pending,
      originalReplicas: { 'statefulset/keycloak': KEYCLOAK_REPLICAS },
      lastError: { step: 'quiesce', exitCode: 77 },
    });
    expect(scenario.state()!.backup).toBeUndefined();
  });

  it('exits 77 naming persistentvolumes when the PV ClusterRole is not bound, and deletes nothing', async () => {
    const scenario = await createScenario(world, { namespace: 'rbac-pv', deleteLegacy: DeleteLegacy.afterBackup });
    for (const binding of world.server.list('rbac.authorization.k8s.io/v1', 'ClusterRoleBinding').filter((b) => b.metadata.name.startsWith('rbac-pv-'))) {
      world.server.remove({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', name: binding.metadata.name });
    }
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const result = await scenario.run(RunnerCommand.backupPhase);
    expect(result.code).toBe(ExitCode.noPermission);
    expect(errorLine(result)).toMatch(/^Kubernetes RBAC denied get on persistentvolumes "pv-rbac-pv-legacy-0" \(cluster-scoped\): grant "get" on "persistentvolumes"/);
    expect(scenario.state()).toMatchObject({ phase: Phase.failed, resumeFrom: Phase.backupVerified, legacyDeleted: false });
    expect(scenario.legacyObjects()).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Delete' });
  });
});

describe('backup volume', () => {
  it('stops with 78 before touching Keycloak when the configured size cannot hold the dump', async () => {
    const scenario = await createScenario(world, {
      namespace: 'small-size',
      envOverrides: { MIGRATION_BACKUP_PVC_MIN_SIZE: '1Ki', MIGRATION_BACKUP_PVC_SIZE: '64Ki' },
    });
    const result = await scenario.run(RunnerCommand.prepare);
    expect(result.code).toBe(ExitCode.config);
    expect(errorLine(result)).toMatch(/^MIGRATION_BACKUP_PVC_SIZE is 64Ki but the dump of the source needs about .+: raise MIGRATION_BACKUP_PVC_SIZE to at least \d+Mi/);
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    expect(world.server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: scenario.names.backupPvc, namespace: scenario.namespace })).toBeUndefined();
    expect(scenario.legacyObjects()).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Delete' });
  });

  it('stops with 78 naming both sizes when an existing backup PVC is smaller than needed', async () => {
    const scenario = await createScenario(world, { namespace: 'small-pvc' });
    world.server.seed({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: scenario.names.backupPvc, namespace: scenario.namespace },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '100Mi' } } },
      status: { phase: 'Bound', capacity: { storage: '100Mi' } },
    });
    const result = await scenario.run(RunnerCommand.prepare);
    expect(result.code).toBe(ExitCode.config);
    expect(errorLine(result)).toMatch(/^backup PVC kc-migration-backup holds 100Mi but the backup needs 1Gi: expand it/);
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
  });

  it('stops with 78 before dumping when the mounted volume is full, and deletes nothing (after-backup)', async () => {
    const scenario = await createScenario(world, { namespace: 'full-volume', deleteLegacy: DeleteLegacy.afterBackup });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    mkdirSync(scenario.backupDir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', scenario.backupDir]);
    try {
      const result = await scenario.run(RunnerCommand.backupPhase);
      expect(result.code).toBe(ExitCode.config);
      expect(errorLine(result)).toMatch(/free but the dump needs about .*nothing was dumped/);
      expect(scenario.state()).toMatchObject({ phase: Phase.failed, resumeFrom: Phase.quiesced, lastError: { step: 'backup', exitCode: 78 } });
      expect(scenario.legacyObjects()).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Delete' });
    } finally {
      spawnSync('umount', [scenario.backupDir]);
    }
    // With room on the volume, the next sync resumes from Quiesced.
    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    expect(scenario.state()).toMatchObject({ phase: Phase.legacyProtected, legacyDeleted: true });
    expect(scenario.legacyObjects()).toEqual({ statefulSet: false, pvc: false, pvReclaimPolicy: 'Retain' });
  });
});

describe('hooks out of order and unreachable dependencies', () => {
  it('backup-phase explains a prepare that has not run; after one killed in Pending it quiesces and backs up itself', async () => {
    const scenario = await createScenario(world, { namespace: 'out-of-order' });
    const none = await scenario.run(RunnerCommand.backupPhase);
    expect(none.code).toBe(ExitCode.usage);
    expect(errorLine(none)).toMatch(/^no migration state \(ConfigMap kc-migration-state does not exist\): prepare has not run/);
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    // Killed before its early pass: the backup needs none (it checksums every table), and it stops
    // the workloads itself before dumping.
    await runKilledAtPhase(world, scenario, RunnerCommand.prepare, Phase.pending);
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    const backup = await scenario.run(RunnerCommand.backupPhase);
    expect(backup.code, backup.stderr).toBe(0);
    expect(scenario.state()).toMatchObject({ phase: Phase.legacyProtected, originalReplicas: { 'statefulset/keycloak': KEYCLOAK_REPLICAS } });
    expect(scenario.keycloakReplicas()).toBe(0);
    expect(scenario.state()!.history.find((entry) => entry.phase === Phase.backedUp)!.detail).not.toMatch(/checksummed before the downtime/);
  });

  it('prepare exits 69 when the legacy StatefulSet exists but its database is unreachable', async () => {
    const scenario = await createScenario(world, { namespace: 'legacy-down', envOverrides: { SOURCE_PGPORT: '1' } });
    const result = await scenario.run(RunnerCommand.prepare);
    expect(result.code).toBe(ExitCode.unavailable);
    expect(errorLine(result)).toMatch(/^the legacy StatefulSet legacy-postgresql exists but its database is not reachable: cannot reach PostgreSQL at 127\.0\.0\.1:1/);
    expect(scenario.state()).toBeUndefined();
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
  });
});

describe('record-failure (Argo CD SyncFail)', () => {
  it('records the failed sync with the resume point and an Event; the next sync resumes', async () => {
    const scenario = await createScenario(world, { namespace: 'syncfail' });
    const nothing = await scenario.run(RunnerCommand.recordFailure);
    expect(nothing.code, nothing.stderr).toBe(0);
    expect(scenario.state()).toBeUndefined();

    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const recorded = await scenario.run(RunnerCommand.recordFailure);
    expect(recorded.code, recorded.stderr).toBe(0);
    expect(scenario.state()).toMatchObject({ phase: Phase.failed, resumeFrom: Phase.pending, lastError: { step: 'sync' } });
    expect(scenario.state()!.lastError!.message).toMatch(/^Argo CD sync failed during the migration \(phase Pending\)/);
    const warning = world.server.list('v1', 'Event', scenario.namespace).find((event) => event.reason === 'MigrationFailed');
    expect(warning?.type).toBe('Warning');

    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    expect(scenario.state()!.phase).toBe(Phase.legacyProtected);
  });

  it('fails only when the Kubernetes API cannot be reached', async () => {
    const scenario = await createScenario(world, { namespace: 'syncfail-down' });
    const env = scenario.env(RunnerCommand.recordFailure);
    const kubeconfig = join(world.root, 'syncfail-down', 'dead-kubeconfig');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'dead', cluster: { server: 'http://127.0.0.1:1', 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'u', user: { token: 't' } }],
        contexts: [{ name: 'c', context: { cluster: 'dead', user: 'u', namespace: 'syncfail-down' } }],
        'current-context': 'c',
      }),
    );
    const result = await scenario.run(RunnerCommand.recordFailure, { env: { ...env, KUBECONFIG: kubeconfig } });
    expect(result.code).toBe(ExitCode.unavailable);
    expect(errorLine(result)).toMatch(/cannot reach the Kubernetes API server \(ECONNREFUSED\)/);
  });
});
