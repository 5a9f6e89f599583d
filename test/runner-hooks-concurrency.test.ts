// Two prepare Jobs started together (two syncs, or a retried pod while the first still runs):
// exactly one acts — one state is created, one Pending → Quiesced transition recorded, the original
// replica count recorded (never the 0 the first one scaled to) — the other waits for the Lease and
// then finds the work done.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, Phase, RunnerCommand } from '../lib/contract.js';
import { createScenario, KEYCLOAK_REPLICAS, startWorld, type World } from './support/runner-hooks-harness.js';

let world: World;

beforeAll(async () => {
  world = await startWorld({ users: 10 });
});
afterAll(async () => {
  await world?.stop();
});

describe('two prepares at once', () => {
  it('exactly one acts', async () => {
    const scenario = await createScenario(world, { namespace: 'twins' });
    // A slow create of the state ConfigMap (the first thing prepare does under the Lease) keeps the
    // first runner inside its locked section while the second arrives. (prepare scales nothing: a
    // slow scale-down, as this test once used, no longer holds it there, and the two could pass
    // one after the other.)
    const removeLatency = world.server.addLatency(1500, { verb: 'create', resource: 'configmaps' });
    world.server.clearRequestLog();
    try {
      const [first, second] = await Promise.all([
        scenario.run(RunnerCommand.prepare, { podName: 'kc-migration-prepare-aaaaa' }),
        scenario.run(RunnerCommand.prepare, { podName: 'kc-migration-prepare-bbbbb' }),
      ]);
      const runs = [first, second];
      for (const run of runs) expect([0, ExitCode.tempFail], run.stderr).toContain(run.code);
      expect(runs.some((run) => run.code === 0)).toBe(true);
      // One of them found the Lease taken and waited (or gave up naming the holder).
      expect(runs.filter((run) => /waiting for the migration lock|is held by kc-migration-prepare-/.test(run.stderr))).toHaveLength(1);
    } finally {
      removeLatency();
    }
    const creates = world.server.requests.filter((request) => request.verb === 'create' && request.resource === 'configmaps' && request.code === 201);
    expect(creates).toHaveLength(1);
    const state = scenario.state()!;
    // prepare stops nothing (backup-phase quiesces right before its dump).
    expect(state.phase).toBe(Phase.pending);
    expect(state.history).toEqual([]);
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    const reasons = () => world.server.list('v1', 'Event', scenario.namespace).map((event) => event.reason);
    expect(reasons().filter((reason) => reason === 'MigrationPending')).toHaveLength(1);

    // And the migration goes on from there: one quiesce, with the replicas from before.
    expect((await scenario.run(RunnerCommand.backupPhase)).code).toBe(0);
    expect(scenario.state()!.history.map((entry) => entry.phase)[0]).toBe(Phase.quiesced);
    expect(scenario.state()!.originalReplicas).toEqual({ 'statefulset/keycloak': KEYCLOAK_REPLICAS });
    expect(reasons().filter((reason) => reason === 'MigrationQuiesced')).toHaveLength(1);
    expect((await scenario.run(RunnerCommand.restorePhase)).code).toBe(0);
    expect(scenario.state()!.phase).toBe(Phase.completed);
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
  });
});
