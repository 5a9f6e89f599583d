// The migration state (pure transitions) and its ConfigMap store (create-if-absent, CAS updates
// that lose nothing under concurrent writers, an Event per phase change), through the fake API server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, Labels, MANAGED_BY_RUNNER, Phase, StateKey } from '../lib/contract.js';
import {
  advance,
  effectivePhase,
  hasReached,
  isTerminal,
  newMigrationState,
  parseState,
  recordFailure,
  serializeState,
  startStep,
  type MigrationState,
} from '../runner/src/state.js';
import { StateStore } from '../runner/src/kube/state-store.js';
import { startFakeKubeApiServer, type FakeKubeApiServer } from './support/fake-kube/index.js';
import { fakeRunnerKube } from './support/fake-kube/runner-kube-context.js';

const t0 = new Date('2025-01-01T00:00:00Z');
const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);

describe('state transitions', () => {
  it('records history with durations and attempts as phases advance', () => {
    let state = newMigrationState('m1', t0);
    state = startStep(state, 'quiesce', at(0));
    state = startStep(state, 'quiesce', at(5));
    state = advance(state, Phase.quiesced, 'keycloak 3 → 0', { now: at(12) });
    expect(state.phase).toBe(Phase.quiesced);
    expect(state.currentStep).toBeUndefined();
    expect(state.history).toEqual([
      { phase: Phase.quiesced, startedAt: at(5).toISOString(), finishedAt: at(12).toISOString(), durationMs: 7000, attempt: 2, detail: 'keycloak 3 → 0' },
    ]);
    state = advance(state, Phase.backedUp, undefined, {
      now: at(20),
      changes: { backup: { dir: '/backup/d', manifestSha256: 'ab', bytes: 10, tableCount: 2, rows: 5 } },
    });
    expect(state.backup?.rows).toBe(5);
    expect(hasReached(state, Phase.quiesced)).toBe(true);
    expect(hasReached(state, Phase.restored)).toBe(false);
  });

  it('re-advancing to the same phase is a no-op and going backwards throws', () => {
    let state = advance(newMigrationState('m', t0), Phase.quiesced, undefined, { now: at(1) });
    expect(advance(state, Phase.quiesced, undefined, { now: at(2) })).toEqual(state);
    state = advance(state, Phase.backedUp, undefined, { now: at(3) });
    expect(() => advance(state, Phase.quiesced)).toThrow(/illegal migration state transition BackedUp → Quiesced/);
    expect(() => advance(state, Phase.notNeeded)).toThrow(/illegal/);
  });

  it('NotNeeded and Completed are terminal; Failed resumes where it stopped', () => {
    const notNeeded = { ...advance(newMigrationState('m', t0), Phase.notNeeded, 'no legacy database'), decisionReason: 'no legacy database' };
    expect(isTerminal(notNeeded)).toBe(true);
    expect(() => advance(notNeeded, Phase.quiesced)).toThrow(/illegal/);

    let state = advance(newMigrationState('m', t0), Phase.quiesced, undefined, { now: at(1) });
    state = recordFailure(state, { step: 'backup', message: 'disk full', exitCode: ExitCode.config }, at(2));
    expect(state.phase).toBe(Phase.quiesced);
    expect(state.lastError).toEqual({ step: 'backup', message: 'disk full', exitCode: ExitCode.config, at: at(2).toISOString() });
    state = recordFailure(state, { step: 'backup', message: 'disk full', exitCode: ExitCode.config, terminal: true }, at(3));
    expect(state.phase).toBe(Phase.failed);
    expect(effectivePhase(state)).toBe(Phase.quiesced);
    expect(isTerminal(state)).toBe(false);
    state = advance(state, Phase.backedUp, undefined, { now: at(4) });
    expect(state.phase).toBe(Phase.backedUp);
    expect(state.resumeFrom).toBeUndefined();
  });

  it('round-trips through the ConfigMap data and refuses a corrupt state naming the ConfigMap', () => {
    const state = advance(newMigrationState('m', t0), Phase.quiesced, undefined, { now: at(1) });
    const data = serializeState(state);
    expect(data[StateKey.phase]).toBe(Phase.quiesced);
    expect(parseState(data, 'kc-migration')).toEqual(state);
    expect(() => parseState({ [StateKey.state]: '{not json' }, 'kc-migration')).toThrow(/state ConfigMap kc-migration holds invalid JSON/);
    expect(() => parseState({ [StateKey.state]: JSON.stringify({ ...state, phase: 'Dancing' }) }, 'kc-migration')).toThrow(/unknown phase "Dancing"/);
    expect(() => parseState({}, 'kc-migration')).toThrow(/has no state.json key/);
  });
});

describe('StateStore on the fake API server', () => {
  const ns = 'kc';
  let server: FakeKubeApiServer;

  beforeAll(async () => {
    server = await startFakeKubeApiServer();
  });
  afterAll(async () => {
    await server.close();
  });

  it('creates the ConfigMap once, labelled and owned by nothing, and emits an Event', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const store = new StateStore(kube, { name: 'state-a', instance: 'pod-1' });
    expect(await store.read()).toBeUndefined();
    const created = await store.ensure(() => newMigrationState('m-a'));
    const again = await store.ensure(() => newMigrationState('other'));
    expect(again.state.migrationId).toBe('m-a');
    expect(again.resourceVersion).toBe(created.resourceVersion);

    const configMap = server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: 'state-a', namespace: ns });
    expect(configMap?.metadata.labels).toEqual({
      [Labels.managedBy]: MANAGED_BY_RUNNER,
      [Labels.component]: 'migration-state',
      [Labels.partOf]: 'keycloak',
    });
    expect(configMap?.metadata.ownerReferences).toBeUndefined();
    expect((configMap?.data as Record<string, string>)[StateKey.phase]).toBe(Phase.pending);
    const events = server.list('v1', 'Event', ns).filter((event) => (event.involvedObject as { name: string }).name === 'state-a');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ reason: 'MigrationPending', type: 'Normal', involvedObject: { kind: 'ConfigMap', uid: configMap?.metadata.uid } });
  });

  it('two runners ensuring at once end up with one state', async () => {
    const first = new StateStore(fakeRunnerKube(server, { namespace: ns }).kube, { name: 'state-race' });
    const second = new StateStore(fakeRunnerKube(server, { namespace: ns }).kube, { name: 'state-race' });
    const [a, b] = await Promise.all([first.ensure(() => newMigrationState('one')), second.ensure(() => newMigrationState('two'))]);
    expect(a.state.migrationId).toBe(b.state.migrationId);
  });

  it('loses no update under concurrent updaters (compare-and-swap with re-read)', async () => {
    const setup = new StateStore(fakeRunnerKube(server, { namespace: ns }).kube, { name: 'state-cas' });
    await setup.ensure(() => newMigrationState('cas'));
    const writers = 8;
    const incrementsEach = 5;
    const conflictsBefore = server.requests.filter((record) => record.code === 409).length;
    await Promise.all(
      Array.from({ length: writers }, async (_unused, writer) => {
        const store = new StateStore(fakeRunnerKube(server, { namespace: ns }).kube, { name: 'state-cas', maxConflictRetries: 100 });
        for (let round = 0; round < incrementsEach; round += 1) {
          await store.update((state) => startStep(state, `writer-${writer % 2}`));
        }
      }),
    );
    const final = (await setup.read()) as { state: MigrationState };
    expect((final.state.attempts['writer-0'] ?? 0) + (final.state.attempts['writer-1'] ?? 0)).toBe(writers * incrementsEach);
    // The test is only meaningful if writers really collided.
    expect(server.requests.filter((record) => record.code === 409).length).toBeGreaterThan(conflictsBefore);
  });

  it('re-reads and re-decides after an injected 409, and emits an Event per phase change only', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const store = new StateStore(kube, { name: 'state-events' });
    await store.ensure(() => newMigrationState('ev'));
    server.injectFault({ verb: 'update', resource: 'configmaps', name: 'state-events', status: 409, reason: 'Conflict' });
    let calls = 0;
    await store.update((state) => {
      calls += 1;
      return advance(startStep(state, 'quiesce'), Phase.quiesced, 'scaled keycloak to 0');
    });
    expect(calls).toBe(2);
    await store.update((state) => ({ ...state, decisionReason: 'legacy database present' }));
    await store.update((state) => state);
    await store.update((state) =>
      recordFailure(state, { step: 'backup', message: 'backup PVC too small', exitCode: ExitCode.config, terminal: true }),
    );
    const reasons = server
      .list('v1', 'Event', ns)
      .filter((event) => (event.involvedObject as { name: string }).name === 'state-events')
      .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion))
      .map((event) => `${event.type as string} ${event.reason as string}: ${event.message as string}`);
    expect(reasons).toHaveLength(3);
    expect(reasons[0]).toMatch(/^Normal MigrationPending/);
    expect(reasons[1]).toMatch(/^Normal MigrationQuiesced: migration ev: Pending → Quiesced in [\d.]+s \(scaled keycloak to 0\)$/);
    expect(reasons[2]).toBe('Warning MigrationFailed: migration ev: step backup failed (exit 78): backup PVC too small');
  });

  it('keeps annotations others put on the ConfigMap', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const store = new StateStore(kube, { name: 'state-annotated' });
    await store.ensure(() => newMigrationState('an'));
    const configMap = server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: 'state-annotated', namespace: ns });
    server.upsert({ ...(configMap as NonNullable<typeof configMap>), metadata: { ...configMap!.metadata, annotations: { note: 'keep' } } });
    await store.update((state) => advance(state, Phase.quiesced));
    expect(server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: 'state-annotated', namespace: ns })?.metadata.annotations).toEqual({ note: 'keep' });
  });

  it('keeps another data key beside the state: state updates leave it, writing it leaves the state, and it can be removed', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const store = new StateStore(kube, { name: 'state-data' });
    await store.ensure(() => newMigrationState('dk'));
    expect(await store.readData(StateKey.earlyPass)).toBeUndefined();
    await store.writeData(StateKey.earlyPass, '{"pass":1}');
    await store.update((state) => advance(state, Phase.quiesced));
    expect(await store.readData(StateKey.earlyPass)).toBe('{"pass":1}');
    expect((await store.read())!.state.phase).toBe(Phase.quiesced);
    // A concurrent state update between the read and the write of writeData: the 409 is retried.
    const fault = server.injectFault({ verb: 'update', resource: 'configmaps', name: 'state-data', status: 409, reason: 'Conflict' });
    await store.writeData(StateKey.earlyPass, undefined);
    expect(fault.fired).toBe(1);
    expect(await store.readData(StateKey.earlyPass)).toBeUndefined();
    expect(Object.keys(server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: 'state-data', namespace: ns })!.data as object).sort()).toEqual([StateKey.phase, StateKey.state].sort());
    expect((await store.read())!.state.phase).toBe(Phase.quiesced);
  });

  it('does not fail the migration when Events are forbidden, but says so', async () => {
    const rbacObjects = [
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: 'state-only', namespace: ns },
        rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'create', 'update'] }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'state-only', namespace: ns },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'state-only' },
        subjects: [{ kind: 'ServiceAccount', name: 'no-events', namespace: ns }],
      },
    ];
    server.seed(...rbacObjects);
    const { kube, log } = fakeRunnerKube(server, { namespace: ns, token: server.tokenForServiceAccount(ns, 'no-events') });
    const store = new StateStore(kube, { name: 'state-no-events' });
    await store.ensure(() => newMigrationState('ne'));
    const warning = log.lines.find((line) => line.msg === 'could not record a Kubernetes Event for the state change');
    expect(String(warning?.error)).toContain('grant "create" on "events"');
  });
});
