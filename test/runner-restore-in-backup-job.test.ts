// Argo CD's backup Job also restores (MIGRATION_RESTORE_IN_BACKUP_JOB; DatabaseMigration synthesizes
// no restore Job then): backup-phase, then restore-phase in the same process, so the downtime loses
// a wave's hand-over, a pod start and a runner start. restore-phase keeps its own semantics there:
// it waits for the target, fails with its exit codes, and the Job's retry resumes it. Run as the
// Jobs run them (the bundle, the synthesized Job environment, the construct's RBAC) against two
// real PostgreSQL servers.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteLegacy, Env, ExitCode, Phase, ReadyMarker, RunnerCommand } from '../lib/contract.js';
import { PHASE_ORDER } from '../runner/src/state.js';
import { freePort } from './support/ports.js';
import {
  connectionCount,
  contentDifferences,
  createScenario,
  databaseContents,
  expireLease,
  flipByteInLargestDataFile,
  runKilledAtPhase,
  SOURCE_DATABASE,
  startWorld,
  type RunResult,
  type Scenario,
  type World,
} from './support/runner-hooks-harness.js';

let world: World;

beforeAll(async () => {
  world = await startWorld({ users: 20 });
});
afterAll(async () => {
  await world?.stop();
});

function infoLines(result: RunResult): string[] {
  return result.lines.filter((line) => line.level === 'info').map((line) => String(line.msg));
}

function summaryOf(result: RunResult, command: string): string[] {
  const summary = result.lines.find((line) => line.event === 'summary' && line.msg === `${command} summary`) as { rows?: Array<{ step: string }> } | undefined;
  return summary?.rows?.map((row) => row.step) ?? [];
}

async function expectTargetHoldsTheSource(scenario: Scenario): Promise<void> {
  const [source, target] = await Promise.all([databaseContents(world.source.settings(SOURCE_DATABASE)), databaseContents(scenario.targetSettings())]);
  expect(contentDifferences(source, target)).toEqual([]);
}

describe('the Argo CD backup Job restores too', () => {
  it("by default under Argo CD: Completed and verified in the backup Job; a later sync's backup Job only reads the state", async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job', restoreReplicas: 'flavor-default', restoreInBackupJob: 'flavor-default' });
    expect(scenario.env(RunnerCommand.backupPhase)[Env.restoreInBackupJob]).toBe('true');
    const plan = await scenario.run(RunnerCommand.plan);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/^restore-phase: +in the backup Job, after backup-phase \(MIGRATION_RESTORE_IN_BACKUP_JOB=true\): .*restore the recorded backup/m);

    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const backup = await scenario.run(RunnerCommand.backupPhase);
    expect(backup.code, backup.stderr).toBe(0);
    expect(infoLines(backup)).toContain(`${Env.restoreInBackupJob}=true: ${RunnerCommand.restorePhase} in this Job`);
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(state.history.map((entry) => entry.phase)).toEqual(PHASE_ORDER.slice(1));
    expect(state.verification).toMatchObject({ ok: true, mismatches: [] });
    // One process dumped, verified and restored: the files were digested once, by the dump.
    expect(state.history.find((entry) => entry.phase === Phase.backupVerified)!.detail).toContain("digests taken by this run's dump");
    expect(backup.lines.find((line) => line.msg === 'restoring')?.digests).toBe('taken by this process from these files');
    // Each command's steps in its own summary, as in two Jobs.
    expect(summaryOf(backup, RunnerCommand.backupPhase)).toEqual(expect.arrayContaining(['quiesce', 'backup', 'verify-backup', 'protect']));
    expect(summaryOf(backup, RunnerCommand.restorePhase)).toEqual(expect.arrayContaining(['wait-target', 'mark-restoring', 'restore', 'verify-target', 'complete']));
    // Argo CD's default: Keycloak stays at 0 until its wave applies Git's replicas.
    expect(scenario.keycloakReplicas()).toBe(0);
    await expectTargetHoldsTheSource(scenario);

    // The next sync's backup Job: two reads of the state (one per command), no database.
    const connections = { source: connectionCount(world.source), target: connectionCount(world.target) };
    world.server.clearRequestLog();
    const again = await scenario.run(RunnerCommand.backupPhase);
    expect(again.code, again.stderr).toBe(0);
    const requests = world.server.requests.filter((request) => request.verb !== 'discovery' && request.namespace === scenario.namespace);
    expect(requests.map((request) => `${request.verb} ${request.resource}`)).toEqual(['get configmaps', 'get configmaps']);
    expect({ source: connectionCount(world.source), target: connectionCount(world.target) }).toEqual(connections);
    expect(scenario.state()!.history).toEqual(state.history);
  });

  it('a Job resumed after the dump, or deleting the legacy database after the backup, digests every file again; its restore then uses those digests', async () => {
    const resumed = await createScenario(world, { namespace: 'in-backup-job-resumed', restoreInBackupJob: true });
    expect((await resumed.run(RunnerCommand.prepare)).code).toBe(0);
    await runKilledAtPhase(world, resumed, RunnerCommand.backupPhase, Phase.backedUp);
    expireLease(world, resumed);
    const retry = await resumed.run(RunnerCommand.backupPhase);
    expect(retry.code, retry.stderr).toBe(0);
    expect(resumed.state()!.history.find((entry) => entry.phase === Phase.backupVerified)!.detail).toContain('every file digested again');
    expect(retry.lines.find((line) => line.msg === 'backup verified')).toMatchObject({ digests: true, toc: 'pg_restore --list' });
    expect(retry.lines.find((line) => line.msg === 'restoring')?.digests).toBe('taken by this process from these files');
    expect(resumed.state()!.phase).toBe(Phase.completed);
    await expectTargetHoldsTheSource(resumed);

    const deleting = await createScenario(world, { namespace: 'in-backup-job-delete', restoreInBackupJob: true, deleteLegacy: DeleteLegacy.afterBackup });
    expect((await deleting.run(RunnerCommand.prepare)).code).toBe(0);
    const backup = await deleting.run(RunnerCommand.backupPhase);
    expect(backup.code, backup.stderr).toBe(0);
    expect(deleting.state()!.history.find((entry) => entry.phase === Phase.backupVerified)!.detail).toContain('every file digested again');
    expect(deleting.state()).toMatchObject({ phase: Phase.completed, legacyDeleted: true });
    await expectTargetHoldsTheSource(deleting);
  });

  it('a fresh install: the backup Job writes the ready marker (there is no restore Job to do it)', async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job-fresh', legacy: false, restoreInBackupJob: true });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    expect(scenario.state()!.phase).toBe(Phase.notNeeded);
    const backup = await scenario.run(RunnerCommand.backupPhase);
    expect(backup.code, backup.stderr).toBe(0);
    expect(scenario.state()!.readyMarkerAt).toBeDefined();
    const target = new pg.Client(scenario.targetSettings());
    await target.connect();
    try {
      const marker = await target.query<{ status: string }>(`SELECT status FROM ${ReadyMarker.schema}.${ReadyMarker.table}`);
      expect(marker.rows).toEqual([{ status: ReadyMarker.ready }]);
    } finally {
      await target.end();
    }
  });
});

describe('failures of the restore in the backup Job', () => {
  it('a target that does not accept writes: the backup Job waits for it as the restore Job did, fails retriable, and the retry restores', async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job-unreachable', restoreInBackupJob: true });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const closed = await freePort();
    const first = await scenario.run(RunnerCommand.backupPhase, { env: { TARGET_PGPORT: String(closed), MIGRATION_TARGET_WAIT_SECONDS: '1' } });
    expect(first.code, first.stderr).toBe(ExitCode.tempFail);
    expect(first.stderr).toMatch(new RegExp(`did not accept writes within 1s`));
    // The backup is done and on record: the retry only checks it is still current.
    expect(scenario.state()).toMatchObject({ phase: Phase.legacyProtected, backup: { dir: expect.any(String) } });
    expireLease(world, scenario);
    const retry = await scenario.run(RunnerCommand.backupPhase);
    expect(retry.code, retry.stderr).toBe(0);
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(state.attempts).toMatchObject({ backup: 1 });
    await expectTargetHoldsTheSource(scenario);
  });

  it("a retry digests the backup again, as a restore Job would: a file changed after the failed attempt stops the restore with 65 naming it", async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job-tampered', restoreInBackupJob: true });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const closed = await freePort();
    const first = await scenario.run(RunnerCommand.backupPhase, { env: { TARGET_PGPORT: String(closed), MIGRATION_TARGET_WAIT_SECONDS: '1' } });
    expect(first.code, first.stderr).toBe(ExitCode.tempFail);
    const dataFile = flipByteInLargestDataFile(scenario);
    expireLease(world, scenario);

    const retry = await scenario.run(RunnerCommand.backupPhase);
    expect(retry.code, retry.stderr).toBe(ExitCode.dataError);
    expect(retry.lines.find((line) => line.msg === 'restoring')?.digests).toBe('recomputed during the restore');
    expect(retry.stderr).toContain(`${dataFile} has sha256`);
    expect(scenario.state()).toMatchObject({ phase: Phase.failed, lastError: { exitCode: ExitCode.dataError } });
    expect(scenario.state()!.history.map((entry) => entry.phase)).not.toContain(Phase.verified);
  });

  it('a wrong target password fails the backup Job with 77 after the backup, naming it, without the password', async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job-password', restoreInBackupJob: true });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const backup = await scenario.run(RunnerCommand.backupPhase, { env: { TARGET_PGPASSWORD: 'not-the-password' } });
    expect(backup.code).toBe(ExitCode.noPermission);
    expect(backup.stderr).toMatch(/password|authentication/i);
    expect(backup.stderr).not.toContain('not-the-password');
    expect(scenario.state()!.history.map((entry) => entry.phase)).toContain(Phase.legacyProtected);
  });

  it("the Job's retry after a kill in its restore resumes the restore and converges", async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job-crash', restoreInBackupJob: true });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const killed = await runKilledAtPhase(world, scenario, RunnerCommand.backupPhase, Phase.restored);
    expect(killed.signal).toBe('SIGKILL');
    expect(scenario.state()!.phase).toBe(Phase.restored);
    expireLease(world, scenario);
    const retry = await scenario.run(RunnerCommand.backupPhase);
    expect(retry.code, retry.stderr).toBe(0);
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(state.verification).toMatchObject({ ok: true, mismatches: [] });
    // The retry's backup-phase took no new backup; its restore-phase went on from Restored.
    expect(state.attempts).toMatchObject({ backup: 1 });
    expect(summaryOf(retry, RunnerCommand.restorePhase)).toEqual(expect.arrayContaining(['verify-target', 'complete']));
    await expectTargetHoldsTheSource(scenario);
  });
});
