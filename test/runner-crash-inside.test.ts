// Crash tests inside the long steps: the runner and its pg_dump / pg_restore are SIGKILLed (the
// whole process group, as a dying container) in the middle of the dump and in the middle of the
// restore. The re-run throws the partial dump away and dumps again, or cleans the partial restore
// and restores again; the migration converges with every row on the target.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteLegacy, Phase, ReadyMarker, RunnerCommand } from '../lib/contract.js';
import {
  createScenario,
  contentDifferences,
  databaseContents,
  expireLease,
  KEYCLOAK_REPLICAS,
  startWorld,
  type RunningHook,
  type Scenario,
  type World,
} from './support/runner-hooks-harness.js';

let world: World;
let sourceContents: Awaited<ReturnType<typeof databaseContents>>;

async function killWhen(running: RunningHook, what: string, condition: () => Promise<boolean> | boolean): Promise<void> {
  let exited = false;
  void running.done.then(() => (exited = true));
  const deadline = Date.now() + 60_000;
  while (!(await condition())) {
    if (exited) throw new Error(`the runner exited before ${what}: ${(await running.done).stderr.slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  running.kill();
}

function directoryBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

async function expectConverged(scenario: Scenario): Promise<void> {
  const state = scenario.state()!;
  expect(state.phase).toBe(Phase.completed);
  expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
  expect(contentDifferences(sourceContents, await databaseContents(scenario.targetSettings()))).toEqual([]);
}

beforeAll(async () => {
  // Enough data that pg_dump and pg_restore are caught in the middle.
  world = await startWorld({ users: 30, bulkBytes: 48 * 1024 * 1024 });
  sourceContents = await databaseContents(world.source.settings('keycloak'));
}, 180_000);
afterAll(async () => {
  await world?.stop();
});

describe('killed inside a long step', () => {
  it('inside the dump: the partial dump is discarded, the re-run dumps again, nothing legacy was touched', async () => {
    const scenario = await createScenario(world, { namespace: 'inside-dump', deleteLegacy: DeleteLegacy.afterBackup });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const migrationId = scenario.state()!.migrationId;
    const partial = join(scenario.backupDir, migrationId, '.dump.partial');
    const running = scenario.start(RunnerCommand.backupPhase);
    await killWhen(running, 'pg_dump wrote 4 MB', () => directoryBytes(partial) > 4 * 1024 * 1024);
    const killed = await running.done;
    expect(killed.signal).toBe('SIGKILL');
    expect(scenario.state()!.phase).toBe(Phase.quiesced);
    expect(existsSync(join(scenario.backupDir, migrationId, 'manifest.json'))).toBe(false);
    expect(scenario.legacyObjects()).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Delete' });

    expireLease(world, scenario);
    const again = await scenario.run(RunnerCommand.backupPhase);
    expect(again.code, again.stderr).toBe(0);
    expect(scenario.state()!.attempts.backup).toBe(2);
    expect(existsSync(partial)).toBe(false);
    // Deleted (after-backup) only once the second, complete backup was verified.
    expect(scenario.state()).toMatchObject({ phase: Phase.legacyProtected, legacyDeleted: true });
    expect((await scenario.run(RunnerCommand.restorePhase)).code).toBe(0);
    await expectConverged(scenario);
  });

  it('inside the restore: the partial restore is cleaned and redone, the gate never opened', async () => {
    const scenario = await createScenario(world, { namespace: 'inside-restore', deleteLegacy: DeleteLegacy.afterRestore });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    const running = scenario.start(RunnerCommand.restorePhase);
    await killWhen(running, 'pg_restore copies data', async () => {
      const sessions = await world.target.query<{ n: string }>(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'kc-pg-migration:restore' AND query ILIKE 'COPY %'",
      );
      return Number(sessions[0]!.n) > 0;
    });
    const killed = await running.done;
    expect(killed.signal).toBe('SIGKILL');
    expect(scenario.state()!.phase).toBe(Phase.restoring);
    const marker = await world.target.query<{ status: string }>(`SELECT status FROM ${ReadyMarker.schema}.${ReadyMarker.table}`, [], scenario.targetDatabase);
    expect(marker).toEqual([{ status: ReadyMarker.restoring }]);
    expect(scenario.legacyObjects()).toMatchObject({ statefulSet: true, pvc: true });

    expireLease(world, scenario);
    const again = await scenario.run(RunnerCommand.restorePhase);
    expect(again.code, again.stderr).toBe(0);
    const restoreRow = (again.lines.find((line) => line.event === 'summary') as { rows: Array<{ step: string; note?: string }> }).rows.find((row) => row.step === 'restore');
    expect(restoreRow?.note).toMatch(/cleaned \d+ objects of a partial restore, restored again/);
    await expectConverged(scenario);
    expect(scenario.legacyObjects()).toEqual({ statefulSet: false, pvc: false, pvReclaimPolicy: 'Retain' });
  });
});
