// Argo CD's backup Job goes on to restore (MIGRATION_RESTORE_IN_BACKUP_JOB) when the new database,
// healthy a wave earlier, accepts writes at once: the downtime loses the hand-over to the restore
// Job's wave, its pod start and a second runner start. Run as the Jobs run them (the bundle, the
// synthesized Job environment, the construct's RBAC) against two real PostgreSQL servers. Whatever
// keeps it from restoring at once (no target, no password, a retried pod after a crash in the
// restore) leaves the restore to the restore Job, exactly as before.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Env, ExitCode, Phase, RunnerCommand } from '../lib/contract.js';
import { freePort } from './support/ports.js';
import {
  connectionCount,
  contentDifferences,
  createScenario,
  databaseContents,
  expireLease,
  KEYCLOAK_REPLICAS,
  runKilledAtPhase,
  SOURCE_DATABASE,
  startWorld,
  type RunResult,
  type Scenario,
  type World,
} from './support/runner-hooks-harness.js';
import { PHASE_ORDER } from '../runner/src/state.js';

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

async function expectTargetHoldsTheSource(scenario: Scenario): Promise<void> {
  const [source, target] = await Promise.all([databaseContents(world.source.settings(SOURCE_DATABASE)), databaseContents(scenario.targetSettings())]);
  expect(contentDifferences(source, target)).toEqual([]);
}

/** prepare, then the backup Job with `env` added: returns its run. */
async function prepareAndBackup(scenario: Scenario, env: Record<string, string> = {}): Promise<RunResult> {
  const prepare = await scenario.run(RunnerCommand.prepare);
  expect(prepare.code, prepare.stderr).toBe(0);
  const backup = await scenario.run(RunnerCommand.backupPhase, { env });
  expect(backup.code, backup.stderr).toBe(0);
  return backup;
}

describe('the Argo CD backup Job restores when the target accepts writes', () => {
  it('by default under Argo CD: Completed in the backup Job, verified; the restore Job only reads the state', async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job', restoreReplicas: 'flavor-default', restoreInBackupJob: 'flavor-default' });
    // The construct's default under Argo CD.
    expect(scenario.env(RunnerCommand.backupPhase)[Env.restoreInBackupJob]).toBe('true');
    // What plan says before the migration (it reads the Jobs' configuration).
    const plan = await scenario.run(RunnerCommand.plan);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/^backup-phase: .*verify the backup.*; then, if the target accepts writes at once \(MIGRATION_RESTORE_IN_BACKUP_JOB=true\), restore-phase's steps in this Job$/m);

    const backup = await prepareAndBackup(scenario);
    expect(infoLines(backup)).toContain(`the target accepts writes: restoring in this Job (${Env.restoreInBackupJob}=true)`);
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(state.history.map((entry) => entry.phase)).toEqual(PHASE_ORDER.slice(1));
    expect(state.verification).toMatchObject({ ok: true, mismatches: [] });
    expect(state.attempts).toMatchObject({ quiesce: 1, backup: 1 });
    // One summary for the whole Job: the backup's steps, then the restore's.
    const summary = backup.lines.find((line) => line.event === 'summary') as { rows?: Array<{ step: string }> } | undefined;
    const steps = summary?.rows?.map((row) => row.step) ?? [];
    for (const [before, after] of [['protect', 'check-source'], ['check-source', 'mark-restoring'], ['mark-restoring', 'restore'], ['restore', 'verify-target'], ['verify-target', 'complete']]) {
      expect(steps.indexOf(before!), `${before} in ${steps.join(', ')}`).toBeGreaterThanOrEqual(0);
      expect(steps.indexOf(after!), `${after} after ${before} in ${steps.join(', ')}`).toBeGreaterThan(steps.indexOf(before!));
    }
    // Argo CD's default: Keycloak stays at 0 until its wave applies Git's replicas.
    expect(scenario.keycloakReplicas()).toBe(0);
    await expectTargetHoldsTheSource(scenario);

    // The restore Job of the next wave: one read of the state, no database.
    const connections = { source: connectionCount(world.source), target: connectionCount(world.target) };
    world.server.clearRequestLog();
    const restore = await scenario.run(RunnerCommand.restorePhase);
    expect(restore.code, restore.stderr).toBe(0);
    expect(infoLines(restore)).toContain(`migration ${state.migrationId} is Completed: nothing to restore`);
    const requests = world.server.requests.filter((request) => request.verb !== 'discovery' && request.namespace === scenario.namespace);
    expect(requests.map((request) => `${request.verb} ${request.resource}`)).toEqual(['get configmaps']);
    expect({ source: connectionCount(world.source), target: connectionCount(world.target) }).toEqual(connections);
    expect(scenario.state()!.history).toEqual(state.history);
  });
});

describe('what leaves the restore to the restore Job', () => {
  it('a target that does not accept writes yet: the backup Job never waits for it, and ends at LegacyProtected', async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job-unreachable', restoreInBackupJob: true });
    const closed = await freePort();
    const started = Date.now();
    const backup = await prepareAndBackup(scenario, { TARGET_PGPORT: String(closed) });
    expect(scenario.state()!.phase).toBe(Phase.legacyProtected);
    const left = infoLines(backup).find((line) => line.startsWith('the restore Job restores: '));
    expect(left, backup.stderr).toMatch(new RegExp(`^the restore Job restores: the target does not accept writes yet \\(.*127\\.0\\.0\\.1:${closed}.*\\)$`));
    // No wait for the target (20 s in this scenario's configuration).
    expect(Date.now() - started).toBeLessThan(20_000);
    const restore = await scenario.run(RunnerCommand.restorePhase);
    expect(restore.code, restore.stderr).toBe(0);
    expect(scenario.state()!.phase).toBe(Phase.completed);
    await expectTargetHoldsTheSource(scenario);
  });

  it('a wrong target password: left to the restore Job, which fails on it as it always did (77)', async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job-password', restoreInBackupJob: true });
    const backup = await prepareAndBackup(scenario, { TARGET_PGPASSWORD: 'not-the-password' });
    expect(scenario.state()!.phase).toBe(Phase.legacyProtected);
    expect(infoLines(backup).find((line) => line.startsWith('the restore Job restores: '))).toMatch(/the target does not accept writes yet \(.*(password|authentication)/i);
    expect(backup.stderr).not.toContain('not-the-password');
    const restore = await scenario.run(RunnerCommand.restorePhase, { env: { TARGET_PGPASSWORD: 'not-the-password' } });
    expect(restore.code).toBe(ExitCode.noPermission);
  });

  it('no target password yet (its Secret is absent: the backup Job reads it optionally)', async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job-no-secret', restoreInBackupJob: true });
    const backup = await prepareAndBackup(scenario, { TARGET_PGPASSWORD: '' });
    expect(scenario.state()!.phase).toBe(Phase.legacyProtected);
    expect(infoLines(backup)).toContain(`the restore Job restores: ${Env.targetPassword} is not set (its Secret does not exist yet)`);
  });

  it("the Job's retry after a crash in its restore leaves it to the restore Job, which converges", async () => {
    const scenario = await createScenario(world, { namespace: 'in-backup-job-crash', restoreInBackupJob: true });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const killed = await runKilledAtPhase(world, scenario, RunnerCommand.backupPhase, Phase.restored);
    expect(killed.signal).toBe('SIGKILL');
    expect(scenario.state()!.phase).toBe(Phase.restored);
    expireLease(world, scenario);
    const retry = await scenario.run(RunnerCommand.backupPhase);
    expect(retry.code, retry.stderr).toBe(0);
    expect(infoLines(retry)).toContain(`the restore Job restores: an earlier run began the restore (phase ${Phase.restored} when this one started)`);
    // The retry changed no phase: it kept the workloads at 0 and found the backup current.
    expect(scenario.state()!.phase).toBe(Phase.restored);
    expect(scenario.keycloakReplicas()).toBe(0);
    const restore = await scenario.run(RunnerCommand.restorePhase);
    expect(restore.code, restore.stderr).toBe(0);
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(state.verification).toMatchObject({ ok: true, mismatches: [] });
    // Scaled back by the restore Job (this scenario sets restoreReplicas).
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    await expectTargetHoldsTheSource(scenario);
  });
});
