// Crash tests: the runner is SIGKILLed (with its pg_dump / pg_restore, as a dying container) right
// after each persisted phase transition — the moment the state ConfigMap is written, before the
// runner even sees the answer — and then the hooks run again, as the Job's next pod and the next
// sync would. Each time the migration converges to Completed with every row, sequence and large
// object on the target, Keycloak back at its original replicas, and nothing legacy deleted before
// the restore was verified.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteLegacy, Phase, ReadyMarker, RunnerCommand, type PhaseName } from '../lib/contract.js';
import {
  createScenario,
  contentDifferences,
  databaseContents,
  expireLease,
  KEYCLOAK_REPLICAS,
  runKilledAtPhase,
  startWorld,
  type HookCommand,
  type World,
} from './support/runner-hooks-harness.js';

let world: World;
let sourceContents: Awaited<ReturnType<typeof databaseContents>>;
const HOOKS: readonly HookCommand[] = [RunnerCommand.prepare, RunnerCommand.backupPhase, RunnerCommand.restorePhase];

/** The hook whose run records each phase. */
const RECORDED_BY: Record<string, HookCommand> = {
  [Phase.pending]: RunnerCommand.prepare,
  [Phase.quiesced]: RunnerCommand.backupPhase,
  [Phase.backedUp]: RunnerCommand.backupPhase,
  [Phase.backupVerified]: RunnerCommand.backupPhase,
  [Phase.legacyProtected]: RunnerCommand.backupPhase,
  [Phase.restoring]: RunnerCommand.restorePhase,
  [Phase.restored]: RunnerCommand.restorePhase,
  [Phase.verified]: RunnerCommand.restorePhase,
  [Phase.completed]: RunnerCommand.restorePhase,
};
const BEFORE_VERIFIED: readonly string[] = [Phase.pending, Phase.quiesced, Phase.backedUp, Phase.backupVerified, Phase.legacyProtected, Phase.restoring, Phase.restored];

async function marker(settings: pg.ClientConfig): Promise<string | undefined> {
  const client = new pg.Client(settings);
  await client.connect();
  try {
    if (!(await client.query(`SELECT to_regclass('${ReadyMarker.schema}.${ReadyMarker.table}') AS t`)).rows[0].t) return undefined;
    return (await client.query(`SELECT status FROM ${ReadyMarker.schema}.${ReadyMarker.table}`)).rows[0]?.status;
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  world = await startWorld({ users: 30 });
  sourceContents = await databaseContents(world.source.settings('keycloak'));
});
afterAll(async () => {
  await world?.stop();
});

describe('killed right after a phase transition, the migration resumes and converges', () => {
  it.concurrent.each(Object.keys(RECORDED_BY))('killed at %s', async (phase) => {
    const namespace = `crash-${phase.toLowerCase()}`;
    const scenario = await createScenario(world, { namespace, deleteLegacy: DeleteLegacy.afterRestore });
    const killer = RECORDED_BY[phase]!;
    // The hooks before the one that gets killed run normally.
    for (const hook of HOOKS.slice(0, HOOKS.indexOf(killer))) {
      const result = await scenario.run(hook);
      expect(result.code, result.stderr).toBe(0);
    }
    const killed = await runKilledAtPhase(world, scenario, killer, phase);
    expect(killed.signal).toBe('SIGKILL');
    if (BEFORE_VERIFIED.includes(phase)) {
      // Nothing legacy is deleted and Keycloak is not let in before the restore is verified.
      expect(killed.legacyAtKill).toMatchObject({ statefulSet: true, pvc: true });
      expect(await marker(scenario.targetSettings())).not.toBe(ReadyMarker.ready);
    }
    expect(scenario.state()!.phase).toBe(phase);

    // The Job's next pod (a new name) once the killed pod's Lease has expired, then the rest.
    expireLease(world, scenario);
    for (const hook of HOOKS.slice(HOOKS.indexOf(killer))) {
      const result = await scenario.run(hook);
      expect(result.code, `${hook}: ${result.stderr.slice(-3000)}`).toBe(0);
    }

    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    // The replicas recorded before the first scale-down survive any crash.
    expect(state.originalReplicas).toEqual({ 'statefulset/keycloak': KEYCLOAK_REPLICAS });
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    expect(scenario.legacyObjects()).toEqual({ statefulSet: false, pvc: false, pvReclaimPolicy: 'Retain' });
    expect(await marker(scenario.targetSettings())).toBe(ReadyMarker.ready);
    // Each phase recorded once, in order: nothing was redone on top of itself.
    const phases = state.history.map((entry) => entry.phase as PhaseName);
    expect(phases).toEqual([Phase.quiesced, Phase.backedUp, Phase.backupVerified, Phase.legacyProtected, Phase.restoring, Phase.restored, Phase.verified, Phase.completed]);

    expect(contentDifferences(sourceContents, await databaseContents(scenario.targetSettings()))).toEqual([]);
  });
});

describe('checksums and ANALYZE taken during a restore live only in the process that saw it finish', () => {
  async function killedAtPhase(namespace: string, phase: PhaseName) {
    const scenario = await createScenario(world, { namespace, deleteLegacy: DeleteLegacy.afterRestore });
    for (const hook of [RunnerCommand.prepare, RunnerCommand.backupPhase]) {
      const result = await scenario.run(hook);
      expect(result.code, result.stderr).toBe(0);
    }
    const killed = await runKilledAtPhase(world, scenario, RunnerCommand.restorePhase, phase);
    expect(killed.signal).toBe('SIGKILL');
    expireLease(world, scenario);
    return scenario;
  }
  const summaryRows = (lines: Array<Record<string, unknown>>) =>
    (lines.find((line) => line.event === 'summary') as { rows: Array<{ step: string; note?: string }> }).rows;

  it('a resumed run scans every table again: a row changed after the killed run restored it is found', async () => {
    const scenario = await killedAtPhase('crash-stale-checksums', Phase.restored);
    // Had the killed run's checksums been kept, the verification would compare them, not the table.
    await world.target.query("UPDATE public.user_entity SET email = 'changed-after-the-restore@example.org' WHERE id = (SELECT min(id) FROM public.user_entity)", [], scenario.targetDatabase);
    const resumed = await scenario.run(RunnerCommand.restorePhase);
    expect(resumed.code, resumed.stderr).toBe(65);
    expect(resumed.stderr).toMatch(/does not match the backup in table\(s\) public\.user_entity/);
    expect(scenario.state()!.verification).toMatchObject({ ok: false });

    // The next run restores again; its own checksums, taken in the same process, are used.
    const again = await scenario.run(RunnerCommand.restorePhase);
    expect(again.code, again.stderr).toBe(0);
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(state.history.find((entry) => entry.phase === Phase.verified)?.detail).toMatch(/\(\d+ checksummed during the restore\)/);
    const target = await databaseContents(scenario.targetSettings());
    expect(target.tables['public.user_entity']).toBe(sourceContents.tables['public.user_entity']);
  });

  it('a run resumed after the restore verifies by scanning, and ANALYZEs after the scale-back', async () => {
    const scenario = await killedAtPhase('crash-after-restore', Phase.restored);
    const resumed = await scenario.run(RunnerCommand.restorePhase);
    expect(resumed.code, resumed.stderr).toBe(0);
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(state.history.find((entry) => entry.phase === Phase.verified)?.detail).not.toMatch(/during the restore/);
    const rows = summaryRows(resumed.lines);
    expect(rows.find((row) => row.step === 'hygiene')?.note).toMatch(/^ANALYZE after Keycloak is back;/);
    expect(rows.find((row) => row.step === 'analyze')?.note).toMatch(/while Keycloak starts/);
  });

  it('with the replicas left to the GitOps tool, a run resumed after the restore lets the hygiene ANALYZE', async () => {
    const scenario = await createScenario(world, { namespace: 'crash-after-restore-gitops', deleteLegacy: DeleteLegacy.afterRestore, restoreReplicas: false });
    for (const hook of [RunnerCommand.prepare, RunnerCommand.backupPhase]) {
      const result = await scenario.run(hook);
      expect(result.code, result.stderr).toBe(0);
    }
    const killed = await runKilledAtPhase(world, scenario, RunnerCommand.restorePhase, Phase.restored);
    expect(killed.signal).toBe('SIGKILL');
    expireLease(world, scenario);
    const resumed = await scenario.run(RunnerCommand.restorePhase);
    expect(resumed.code, resumed.stderr).toBe(0);
    const rows = summaryRows(resumed.lines);
    // The ANALYZE the killed restore took died with it: the hygiene takes it, before the ready marker.
    expect(rows.find((row) => row.step === 'hygiene')?.note).toMatch(/^ANALYZE;/);
    expect(rows.map((row) => row.step)).not.toContain('analyze');
  });
});
