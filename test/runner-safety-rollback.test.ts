// A rollback in the middle of a migration must not lose data. The restore fails after the backup
// was protected; the operator rolls back to the old release, whose Keycloak writes to the legacy
// database again; later the upgrade runs again. The hooks must notice that the legacy database
// changed after the backup: backup-phase quiesces again (keeping the original replica counts),
// supersedes the stale backup and dumps anew, and the rows written during the rollback
// end up on the target. restore-phase alone refuses (65) to restore a stale backup.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { estimateDumpBytes } from '../runner/src/pg/backup.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteLegacy, ExitCode, Phase, ReadyMarker, RunnerCommand } from '../lib/contract.js';
import { createScenario, databaseContents, expireLease, KEYCLOAK_REPLICAS, runKilledAtPhase, SOURCE_APP_USER, SOURCE_DATABASE, startWorld, type RunResult, type Scenario, type World } from './support/runner-hooks-harness.js';

let world: World;

beforeAll(async () => {
  world = await startWorld({ users: 20 });
});
afterAll(async () => {
  await world?.stop();
});

/** Writes as the legacy Keycloak would (its own user), and makes the server publish the counts at once. */
async function writeAsLegacyKeycloak(tag: string, events: number): Promise<void> {
  const client = new pg.Client(world.source.settings(SOURCE_DATABASE, SOURCE_APP_USER, world.sourceAppPassword));
  await client.connect();
  try {
    // Tables no materialized view reads, so the rollback's writes leave the views as they were.
    await client.query(
      `INSERT INTO audit.admin_event (id, realm_id, at, representation)
       SELECT md5($1 || g)::uuid, (SELECT id FROM public.realm ORDER BY id LIMIT 1), now(), jsonb_build_object('tag', $1::text) FROM generate_series(1, $2::int) g`,
      [tag, events],
    );
    await client.query("UPDATE public.realm SET ssl_required = $1 WHERE id = (SELECT id FROM public.realm ORDER BY id LIMIT 1)", [tag]);
    // PostgreSQL 15 publishes a session's counters when it goes idle or ends; don't race it.
    await client.query('SELECT pg_stat_force_next_flush()');
    await client.query('SELECT 1');
  } finally {
    await client.end();
  }
}

async function targetEventsTagged(scenario: Scenario, tag: string): Promise<number> {
  const rows = await world.target.query<{ n: string }>(`SELECT count(*)::text AS n FROM audit.admin_event WHERE representation->>'tag' = $1`, [tag], scenario.targetDatabase);
  return Number(rows[0]!.n);
}

async function markerStatus(scenario: Scenario): Promise<string | undefined> {
  const exists = await world.target.query<{ t: string | null }>(`SELECT to_regclass('${ReadyMarker.schema}.${ReadyMarker.table}')::text AS t`, [], scenario.targetDatabase);
  if (!exists[0]!.t) return undefined;
  return (await world.target.query<{ status: string }>(`SELECT status FROM ${ReadyMarker.schema}.${ReadyMarker.table}`, [], scenario.targetDatabase))[0]?.status;
}

/** What `helm rollback` to the old release does to Keycloak: its replicas come back (here: 3). */
async function rollBackKeycloak(scenario: Scenario, replicas: number): Promise<void> {
  const statefulSet = world.server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'keycloak', namespace: scenario.namespace })!;
  world.server.upsert({ ...statefulSet, spec: { ...(statefulSet.spec as object), replicas } });
  await world.controller.settled();
  expect(scenario.keycloakPods()).toHaveLength(replicas);
}

function errorLine(result: RunResult): string {
  const errors = result.lines.filter((line) => line.level === 'error' && typeof line.exitCode === 'number');
  expect(errors, result.stderr).toHaveLength(1);
  return errors[0]!.msg as string;
}

function expectSameTables(source: Awaited<ReturnType<typeof databaseContents>>, target: Awaited<ReturnType<typeof databaseContents>>, tables: string[]): void {
  for (const table of tables) expect(target.tables[table], table).toBe(source.tables[table]);
}

describe('rollback in the middle of a migration', () => {
  it('the restore failed, the old release wrote to the legacy database, the next upgrade takes a new backup and the new rows reach the target', async () => {
    const scenario = await createScenario(world, { namespace: 'rollback', deleteLegacy: DeleteLegacy.afterRestore });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    const first = scenario.state()!;
    expect(first.phase).toBe(Phase.legacyProtected);
    expect(first.backup?.dir).toBe(first.migrationId);
    // The restore dies after restoring the (soon stale) backup, before verifying it.
    const killed = await runKilledAtPhase(world, scenario, RunnerCommand.restorePhase, Phase.restored);
    expect(killed.signal).toBe('SIGKILL');
    expireLease(world, scenario);

    // Rollback: the old release's Keycloak runs again (scaled to 3 meanwhile) and writes.
    await rollBackKeycloak(scenario, 3);
    await writeAsLegacyKeycloak('rollback', 7);

    // The upgrade again: prepare leaves the rolled-back Keycloak running; backup-phase quiesces it
    // again and keeps the replica count of before the migration.
    const prepare = await scenario.run(RunnerCommand.prepare);
    expect(prepare.code, prepare.stderr).toBe(0);
    expect(scenario.keycloakReplicas()).toBe(3);

    const backup = await scenario.run(RunnerCommand.backupPhase);
    expect(backup.code, backup.stderr).toBe(0);
    expect(scenario.keycloakReplicas()).toBe(0);
    expect(scenario.keycloakPods()).toEqual([]);
    expect(scenario.state()!.originalReplicas).toEqual({ 'statefulset/keycloak': KEYCLOAK_REPLICAS });
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.legacyProtected);
    expect(state.backup?.dir).toBe(`${first.migrationId}.2`);
    expect(state.backup?.manifestSha256).not.toBe(first.backup?.manifestSha256);
    expect(state.backup?.rows).toBe(first.backup!.rows + 7);
    expect(state.supersededBackups).toEqual([
      expect.objectContaining({ dir: first.migrationId, manifestSha256: first.backup!.manifestSha256, phase: Phase.restored }),
    ]);
    expect(state.supersededBackups![0]!.reason).toMatch(/^7 write\(s\) to table audit\.admin_event, 1 to public\.realm/);
    // The PVs were protected the first time: the reclaim policy to go back to is still the original one.
    expect(state.protectedVolumes).toEqual([expect.objectContaining({ previousReclaimPolicy: 'Delete' })]);
    const superseded = state.history.find((entry) => entry.detail?.includes('superseded'));
    expect(superseded?.detail).toMatch(new RegExp(`^backup ${first.migrationId} superseded at Restored: the legacy database changed after it \\(7 write`));
    const warning = backup.lines.find((line) => line.level === 'warn' && String(line.msg).startsWith('the legacy database changed after backup'));
    expect(warning?.msg, backup.stderr).toMatch(/\(7 write\(s\) to table audit\.admin_event, 1 to public\.realm\): taking a new backup$/);
    const event = world.server.list('v1', 'Event', scenario.namespace).find((candidate) => candidate.reason === 'MigrationBackupSuperseded');
    expect(event?.type).toBe('Warning');
    expect(event?.message).toMatch(/Failed → Quiesced|Restored → Quiesced|Restoring → Quiesced/);
    expect(await markerStatus(scenario)).toBe(ReadyMarker.restoring);

    const restore = await scenario.run(RunnerCommand.restorePhase);
    expect(restore.code, restore.stderr).toBe(0);
    expect(scenario.state()!.phase).toBe(Phase.completed);
    expect(await targetEventsTagged(scenario, 'rollback')).toBe(7);
    const [source, target] = await Promise.all([databaseContents(world.source.settings(SOURCE_DATABASE)), databaseContents(scenario.targetSettings())]);
    expectSameTables(source, target, ['public.user_entity', 'public.realm', 'public.credential', 'audit.admin_event']);
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    expect(await markerStatus(scenario)).toBe(ReadyMarker.ready);
    // Completed: the stale backup is deleted, the one restored and verified is kept.
    expect(readdirSync(scenario.backupDir)).toEqual([`${first.migrationId}.2`]);
  });

  it('restore-phase refuses (65) a backup the legacy database moved on from, marks nothing ready, and the next upgrade recovers', async () => {
    const scenario = await createScenario(world, { namespace: 'stale-restore' });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    await writeAsLegacyKeycloak('late', 2);

    const refused = await scenario.run(RunnerCommand.restorePhase);
    expect(refused.code).toBe(ExitCode.dataError);
    expect(errorLine(refused)).toBe(
      'the legacy database changed after the backup (2 write(s) to table audit.admin_event, 1 to public.realm): run the upgrade (or sync) again so that backup-phase takes a new backup; nothing was restored or marked ready',
    );
    expect(scenario.state()).toMatchObject({ phase: Phase.failed, resumeFrom: Phase.legacyProtected, lastError: { step: 'check-source', exitCode: ExitCode.dataError } });
    expect(await markerStatus(scenario)).toBeUndefined();
    expect(scenario.legacyObjects()).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Retain' });
    expect(scenario.keycloakReplicas()).toBe(0);

    for (const command of [RunnerCommand.prepare, RunnerCommand.backupPhase, RunnerCommand.restorePhase] as const) {
      const result = await scenario.run(command);
      expect(result.code, `${command}: ${result.stderr}`).toBe(0);
    }
    expect(scenario.state()!.phase).toBe(Phase.completed);
    expect(scenario.state()!.supersededBackups).toHaveLength(1);
    expect(await targetEventsTagged(scenario, 'late')).toBe(2);
  });

  it('reuses the backup when nothing was written, and stops (69) when the legacy database exists but cannot be asked', async () => {
    const scenario = await createScenario(world, { namespace: 'reuse' });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    const before = scenario.state()!;

    const again = await scenario.run(RunnerCommand.backupPhase);
    expect(again.code, again.stderr).toBe(0);
    expect(again.lines.some((line) => line.msg === `reusing backup ${before.migrationId}: the legacy database has not changed since it`)).toBe(true);
    const after = scenario.state()!;
    expect(after.backup).toEqual(before.backup);
    expect(after.supersededBackups).toBeUndefined();

    const unreachable = await scenario.run(RunnerCommand.backupPhase, { env: { SOURCE_PGPORT: '1' } });
    expect(unreachable.code).toBe(ExitCode.unavailable);
    expect(errorLine(unreachable)).toMatch(
      new RegExp(`^cannot tell whether the legacy database changed after backup ${before.migrationId}: .*start the legacy database \\(StatefulSet legacy-postgresql\\)`),
    );
    expect(scenario.state()!.backup).toEqual(before.backup);

    // plan says so, without the backup volume.
    const plan = await scenario.run(RunnerCommand.plan);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain(
      `backup-phase:   scale the workloads to 0 again (the replicas on record stay); compare the legacy database's write counters with backup ${before.migrationId}: unchanged → keep it; changed → supersede it and redo the steps from BackedUp\n`,
    );
    expect(plan.stdout).toMatch(new RegExp(`^restore-phase: +refuse \\(exit 65\\) if the legacy database changed after backup ${before.migrationId}; wait for the target`, 'm'));

    const restore = await scenario.run(RunnerCommand.restorePhase);
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.lines.some((line) => line.msg === 'the backup is current: legacy database unchanged since the backup')).toBe(true);
  });

  it('a backup volume with room for one backup: the superseded backup is deleted to make room for the new one', async () => {
    const scenario = await createScenario(world, { namespace: 'one-backup-room' });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    const first = scenario.state()!;
    await writeAsLegacyKeycloak('roomless', 3);

    // Move the backup onto a volume that holds it and about half of another one.
    const source = new pg.Client(world.source.settings(SOURCE_DATABASE));
    await source.connect();
    const { estimatedBytes } = await estimateDumpBytes(source).finally(() => source.end());
    const volume = join(world.root, 'one-backup-room', 'small-volume');
    mkdirSync(volume, { recursive: true });
    const size = Math.ceil((estimatedBytes + first.backup!.bytes / 2) / 4096) * 4096 + 64 * 1024;
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', volume]);
    try {
      execFileSync('cp', ['-a', join(scenario.backupDir, first.migrationId), volume]);
      const free = () => Number(statfsSync(volume).bavail) * Number(statfsSync(volume).bsize);
      // Without making room, the new dump could not start.
      expect(free()).toBeLessThan(estimatedBytes);
      const onSmallVolume = { env: { MIGRATION_BACKUP_DIR: volume } };
      expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
      const backup = await scenario.run(RunnerCommand.backupPhase, onSmallVolume);
      expect(backup.code, backup.stderr).toBe(0);
      expect(backup.lines.some((line) => line.level === 'warn' && line.msg === `deleted superseded backup ${first.migrationId} to make room for the new one`)).toBe(true);
      expect(scenario.state()!.backup?.dir).toBe(`${first.migrationId}.2`);
      expect(readdirSync(volume)).toEqual([`${first.migrationId}.2`]);
      const restore = await scenario.run(RunnerCommand.restorePhase, onSmallVolume);
      expect(restore.code, restore.stderr).toBe(0);
      expect(scenario.state()!.phase).toBe(Phase.completed);
      expect(await targetEventsTagged(scenario, 'roomless')).toBe(3);
    } finally {
      spawnSync('umount', [volume]);
    }
  });
});

describe('rollback after the migration completed', () => {
  it('backup-phase refuses (65) while the legacy database holds writes the new one lacks, changes nothing, and goes on once they are accepted', async () => {
    const scenario = await createScenario(world, { namespace: 'after-complete', deleteLegacy: DeleteLegacy.never });
    for (const command of [RunnerCommand.prepare, RunnerCommand.backupPhase, RunnerCommand.restorePhase]) {
      const result = await scenario.run(command);
      expect(result.code, result.stderr).toBe(0);
    }
    const completed = scenario.state()!;
    expect(completed.phase).toBe(Phase.completed);

    // Every later sync with the legacy StatefulSet still there (Argo CD without prune) and nothing written: a no-op.
    const quiet = await scenario.run(RunnerCommand.backupPhase);
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.lines.some((line) => String(line.msg).endsWith(`its database is unchanged since migration ${completed.migrationId}'s backup`))).toBe(true);

    const plan = await scenario.run(RunnerCommand.plan);
    expect(plan.stdout).toMatch(
      new RegExp(`^backup-phase: +compare the legacy database \\(its StatefulSet exists again: a rollback\\?\\) with backup ${completed.backup!.dir}: unchanged → nothing \\(exit 0\\); changed → refuse \\(exit 65\\)`, 'm'),
    );

    // helm rollback to the old release: its Keycloak runs on the legacy database and writes.
    await rollBackKeycloak(scenario, 2);
    await writeAsLegacyKeycloak('after-complete', 4);

    // The upgrade again: the pre-upgrade backup-phase stops it before Keycloak is switched over.
    const refused = await scenario.run(RunnerCommand.backupPhase);
    expect(refused.code).toBe(ExitCode.dataError);
    expect(errorLine(refused)).toMatch(
      new RegExp(`^the legacy database changed after migration ${completed.migrationId} completed \\(4 write\\(s\\) to table audit\\.admin_event, 1 to public\\.realm\\).*Nothing was changed`),
    );
    expect(refused.stderr).toContain(`MIGRATION_ACCEPT_LEGACY_CHANGES_OF=${completed.migrationId}`);
    const after = scenario.state()!;
    expect(after.phase).toBe(Phase.completed);
    expect(after.backup).toEqual(completed.backup);
    expect(after.lastError).toMatchObject({ step: expect.any(String), exitCode: ExitCode.dataError });
    expect(scenario.keycloakReplicas()).toBe(2);
    expect(await targetEventsTagged(scenario, 'after-complete')).toBe(0);

    // A wrong id is a usage error naming the variable; the right one lets the upgrade go on.
    const typo = await scenario.run(RunnerCommand.backupPhase, { env: { MIGRATION_ACCEPT_LEGACY_CHANGES_OF: 'yes' } });
    expect(typo.code).toBe(ExitCode.usage);
    expect(errorLine(typo)).toMatch(/^MIGRATION_ACCEPT_LEGACY_CHANGES_OF must be a migration id like m-20261125-031500-a1b2c3, got "yes"/);
    const otherMigration = await scenario.run(RunnerCommand.backupPhase, { env: { MIGRATION_ACCEPT_LEGACY_CHANGES_OF: 'm-20200101-000000-abcdef' } });
    expect(otherMigration.code).toBe(ExitCode.dataError);
    const accepted = await scenario.run(RunnerCommand.backupPhase, { env: { MIGRATION_ACCEPT_LEGACY_CHANGES_OF: completed.migrationId } });
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.lines.some((line) => line.level === 'warn' && String(line.msg).includes('accepts its later changes'))).toBe(true);
    expect(scenario.state()!.phase).toBe(Phase.completed);

    // With the legacy StatefulSet gone (the upgrade deleted it), nothing is compared: one more API read, no database.
    world.server.remove({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'legacy-postgresql', namespace: scenario.namespace });
    const gone = await scenario.run(RunnerCommand.backupPhase, { env: { SOURCE_PGPORT: '1' } });
    expect(gone.code, gone.stderr).toBe(0);
  });
});
