// Crash tests inside the long steps: the runner and its pg_dump / pg_restore are SIGKILLed (the
// whole process group, as a dying container) in the middle of the dump and in the middle of the
// restore. The re-run throws the partial dump away and dumps again, or cleans the partial restore
// and restores again; the migration converges with every row on the target.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
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

  it.each([
    { rerun: 'as before', env: {} as Record<string, string>, namespace: 'inside-indexes', note: 'while Keycloak starts' },
    // The run that left the indexes out scaled Keycloak back; this one would not, and still builds them.
    { rerun: 'with MIGRATION_RESTORE_REPLICAS=false', env: { MIGRATION_RESTORE_REPLICAS: 'false' }, namespace: 'inside-indexes-flip', note: 'after the ready marker of an earlier run' },
  ])('inside the index builds after the ready marker: the next run ($rerun), resuming at the complete step, builds what is missing', async ({ env, namespace, note }) => {
    const scenario = await createScenario(world, { namespace });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    // Keycloak's scale-back comes right before the plain indexes: while it is held, a session of
    // the test takes a lock that makes the bulk table's index build wait (as a write would).
    const blocker = new pg.Client(scenario.targetSettings());
    world.server.holdRequest({ verb: 'patch', resource: 'statefulsets/scale', namespace: scenario.namespace }, async () => {
      await blocker.connect();
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE public.offline_client_session IN ROW EXCLUSIVE MODE');
    });
    try {
      const running = scenario.start(RunnerCommand.restorePhase);
      await killWhen(running, 'an index build waits', async () => {
        const waiting = await world.target.query<{ n: string }>(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'kc-pg-migration:restore' AND wait_event_type = 'Lock' AND query ILIKE 'CREATE INDEX%'",
        );
        return Number(waiting[0]!.n) > 0;
      });
      expect((await running.done).signal).toBe('SIGKILL');
    } finally {
      await blocker.end().catch(() => undefined);
    }
    // Killed after the marker: Keycloak may be running on the target, which lacks that index.
    expect(scenario.state()!.phase).toBe(Phase.verified);
    const marker = await world.target.query<{ status: string }>(`SELECT status FROM ${ReadyMarker.schema}.${ReadyMarker.table}`, [], scenario.targetDatabase);
    expect(marker).toEqual([{ status: ReadyMarker.ready }]);
    const indexes = async (settings: ReturnType<Scenario['targetSettings']>) => {
      const client = new pg.Client(settings);
      await client.connect();
      try {
        return (
          await client.query<{ def: string }>(
            "SELECT pg_get_indexdef(c.oid) AS def FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('i', 'I') AND n.nspname IN ('public', 'audit') ORDER BY 1",
          )
        ).rows.map((row) => row.def);
      } finally {
        await client.end();
      }
    };
    const sourceIndexes = await indexes(world.source.settings('keycloak'));
    expect(sourceIndexes.some((def) => def.startsWith('CREATE INDEX idx_offline_client_session_user '))).toBe(true);
    expect(await indexes(scenario.targetSettings())).not.toEqual(sourceIndexes);

    expireLease(world, scenario);
    const again = await scenario.run(RunnerCommand.restorePhase, { env });
    expect(again.code, again.stderr).toBe(0);
    const rows = (again.lines.find((line) => line.event === 'summary') as { rows: Array<{ step: string; note?: string }> }).rows;
    expect(rows.find((row) => row.step === 'restore')?.note, JSON.stringify(rows)).toBe(`already done (${Phase.verified})`);
    expect(rows.find((row) => row.step === 'indexes')?.note).toBe(`1 plain index(es) ${note}`);
    expect(await indexes(scenario.targetSettings())).toEqual(sourceIndexes);
    await expectConverged(scenario);
  });
});
