// The Lease lock through the fake API server: two runners never act at once, a dead holder's lock
// is taken over after it expires, the lock is released on success and on failure, and a runner
// that finds the lock held exits tempFail naming the holder.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../lib/contract.js';
import { RunnerError } from '../runner/src/errors.js';
import { acquireLock, leaseExpiry, lockOptionsFromEnv, withLock } from '../runner/src/kube/lock.js';
import { startFakeKubeApiServer, type FakeKubeApiServer, type KubeObject } from './support/fake-kube/index.js';
import { fakeRunnerKube } from './support/fake-kube/runner-kube-context.js';

const ns = 'kc';
let server: FakeKubeApiServer;

beforeAll(async () => {
  server = await startFakeKubeApiServer();
});
afterAll(async () => {
  await server.close();
});

function lease(name: string): KubeObject | undefined {
  return server.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name, namespace: ns });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('lockOptionsFromEnv', () => {
  it('reads the lease, holder and TTL, and rejects a bad TTL naming the variable', () => {
    expect(lockOptionsFromEnv({ MIGRATION_LOCK_LEASE: 'l', MIGRATION_POD_NAME: 'p' })).toEqual({ name: 'l', holder: 'p', ttlSeconds: 60 });
    expect(lockOptionsFromEnv({ MIGRATION_LOCK_LEASE: 'l', MIGRATION_POD_NAME: 'p', MIGRATION_LOCK_TTL_SECONDS: '30' }).ttlSeconds).toBe(30);
    expect(() => lockOptionsFromEnv({ MIGRATION_LOCK_LEASE: 'l', MIGRATION_LOCK_TTL_SECONDS: 'soon' })).toThrow(
      'MIGRATION_LOCK_TTL_SECONDS must be a whole number of seconds between 5 and 3600, got "soon"',
    );
    expect(() => lockOptionsFromEnv({})).toThrow(/MIGRATION_LOCK_LEASE is not set/);
  });
  it('fails when the Lease name is not a Kubernetes object name, naming the variable and the value', () => {
    for (const name of ['Migration_Lock', 'lock-', 'a'.repeat(254)]) {
      expect(() => lockOptionsFromEnv({ MIGRATION_LOCK_LEASE: name })).toThrow(
        expect.objectContaining({ exitCode: ExitCode.usage, message: `MIGRATION_LOCK_LEASE must be a Kubernetes object name (lower-case letters, digits, '-' and '.'), got "${name}"` }),
      );
    }
    expect(lockOptionsFromEnv({ MIGRATION_LOCK_LEASE: 'kc-migration.lock', MIGRATION_POD_NAME: 'p' }).name).toBe('kc-migration.lock');
  });
});

describe('withLock', () => {
  it('never lets two concurrent runners act at once, over many rounds', async () => {
    const runners = ['runner-a', 'runner-b', 'runner-c'].map((holder) => ({ holder, ...fakeRunnerKube(server, { namespace: ns }) }));
    let active = 0;
    let maxActive = 0;
    const acquiredBy: Record<string, number> = {};
    let refusals = 0;
    const rounds = 25;
    await Promise.all(
      runners.map(async ({ holder, kube }) => {
        for (let round = 0; round < rounds; round += 1) {
          try {
            await withLock(kube, { name: 'exclusive', holder, ttlSeconds: 30 }, async () => {
              active += 1;
              maxActive = Math.max(maxActive, active);
              acquiredBy[holder] = (acquiredBy[holder] ?? 0) + 1;
              await sleep(2);
              active -= 1;
            });
          } catch (error) {
            expect(error).toBeInstanceOf(RunnerError);
            expect((error as RunnerError).exitCode).toBe(ExitCode.tempFail);
            refusals += 1;
          }
          await sleep(1);
        }
      }),
    );
    expect(maxActive).toBe(1);
    // Both outcomes must actually have happened for the test to prove anything.
    expect(refusals).toBeGreaterThan(0);
    expect(Object.keys(acquiredBy).length).toBeGreaterThanOrEqual(2);
    expect(lease('exclusive')?.spec).toMatchObject({ holderIdentity: '' });
  });

  it('refuses a lock held by a live runner, naming the holder and when it expires', async () => {
    const { kube: holderKube } = fakeRunnerKube(server, { namespace: ns });
    const held = await acquireLock(holderKube, { name: 'held', holder: 'pre-phase-abc', ttlSeconds: 60 });
    try {
      const { kube } = fakeRunnerKube(server, { namespace: ns });
      const error = await withLock(kube, { name: 'held', holder: 'pre-phase-def' }, async () => 'acted').catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(RunnerError);
      const runnerError = error as RunnerError;
      expect(runnerError.exitCode).toBe(ExitCode.tempFail);
      expect(runnerError.message).toMatch(/^the migration lock held is held by pre-phase-abc until \d{4}-\d\d-\d\dT[\d:.]+Z unless renewed$/);
      expect(runnerError.hint).toContain('If pre-phase-abc is gone, the lock frees itself at');
    } finally {
      await held.release();
    }
  });

  it('takes over the lock of a holder that died (renewTime + TTL in the past)', async () => {
    const past = new Date(Date.now() - 120_000).toISOString().replace('Z', '000Z');
    server.seed({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'orphaned', namespace: ns },
      spec: { holderIdentity: 'dead-pod', leaseDurationSeconds: 60, acquireTime: past, renewTime: past, leaseTransitions: 3 },
    });
    const { kube, log } = fakeRunnerKube(server, { namespace: ns });
    const result = await withLock(kube, { name: 'orphaned', holder: 'new-pod' }, async (lock) => {
      expect(lease('orphaned')?.spec).toMatchObject({ holderIdentity: 'new-pod', leaseTransitions: 4 });
      lock.assertHeld();
      return 'done';
    });
    expect(result).toBe('done');
    expect(log.lines.some((line) => line.msg === 'took over an expired migration lock' && line.previousHolder === 'dead-pod')).toBe(true);
  });

  it('releases the lock when the work fails, and rethrows the failure', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const failure = new RunnerError('backup failed', { exitCode: ExitCode.dataError });
    await expect(withLock(kube, { name: 'failing', holder: 'p1' }, async () => Promise.reject(failure))).rejects.toBe(failure);
    expect(lease('failing')?.spec).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
    await withLock(fakeRunnerKube(server, { namespace: ns }).kube, { name: 'failing', holder: 'p2', ttlSeconds: 60 }, async () => {
      expect(lease('failing')?.spec).toMatchObject({ holderIdentity: 'p2', leaseDurationSeconds: 60 });
    });
  });

  it('renews while the work runs, so a long step keeps the lock past its TTL', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    await withLock(kube, { name: 'renewed', holder: 'slow', ttlSeconds: 5, renewIntervalMs: 40 }, async () => {
      const first = (lease('renewed')?.spec as { renewTime: string }).renewTime;
      await sleep(150);
      const later = (lease('renewed')?.spec as { renewTime: string }).renewTime;
      expect(Date.parse(later)).toBeGreaterThan(Date.parse(first));
      expect(later).toMatch(/\.\d{6}Z$/);
    });
  });

  it('notices when another runner took the lock over and stops acting', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const lock = await acquireLock(kube, { name: 'stolen', holder: 'victim', ttlSeconds: 5, renewIntervalMs: 20 });
    const current = lease('stolen') as KubeObject;
    server.upsert({ ...current, spec: { ...(current.spec as object), holderIdentity: 'thief' } });
    for (let waited = 0; !lock.lost && waited < 2000; waited += 20) await sleep(20);
    expect(lock.lost).toBe(true);
    expect(() => lock.assertHeld()).toThrow(/taken over by another runner/);
    await lock.release();
    expect(lease('stolen')?.spec).toMatchObject({ holderIdentity: 'thief' });
  });

  it('computes expiry from renewTime and the duration', () => {
    expect(leaseExpiry({ spec: { holderIdentity: 'x', renewTime: new Date('2025-01-01T00:00:00Z'), leaseDurationSeconds: 60 } })?.toISOString()).toBe(
      '2025-01-01T00:01:00.000Z',
    );
    expect(leaseExpiry({ spec: { holderIdentity: '', leaseDurationSeconds: 60 } })).toBeUndefined();
  });
});
