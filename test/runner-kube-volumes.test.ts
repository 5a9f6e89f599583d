// Backup PVC, legacy volume protection and legacy deletion through the fake API server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../lib/contract.js';
import { RunnerError } from '../runner/src/errors.js';
import { bytesToQuantity, deleteLegacy, ensureBackupPvc, quantityToBytes, retainVolume } from '../runner/src/kube/volumes.js';
import { runnerLabels } from '../runner/src/kube/state-store.js';
import { startFakeKubeApiServer, startWorkloadController, type FakeKubeApiServer } from './support/fake-kube/index.js';
import { fakeRunnerKube } from './support/fake-kube/runner-kube-context.js';

const ns = 'kc';
let server: FakeKubeApiServer;

function boundPvc(name: string, pv: string, policy: string) {
  server.seed(
    {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: pv },
      spec: {
        capacity: { storage: '8Gi' },
        accessModes: ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: policy,
        claimRef: { namespace: ns, name },
        csi: { driver: 'x', volumeHandle: pv },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name, namespace: ns },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '8Gi' } }, volumeName: pv },
      status: { phase: 'Bound', capacity: { storage: '8Gi' } },
    },
  );
}

beforeAll(async () => {
  server = await startFakeKubeApiServer();
});
afterAll(async () => {
  await server.close();
});

describe('quantities', () => {
  it('converts quantities to bytes and back (rounded up)', () => {
    expect(quantityToBytes('size', '8Gi')).toBe(8 * 1024 ** 3);
    expect(quantityToBytes('size', '500M')).toBe(500e6);
    expect(bytesToQuantity(1)).toBe('1Mi');
    expect(bytesToQuantity(1024 ** 3 + 1)).toBe('2Gi');
    expect(() => quantityToBytes('MIGRATION_BACKUP_PVC_SIZE', '8 GB')).toThrow(/MIGRATION_BACKUP_PVC_SIZE must be a Kubernetes quantity/);
  });
});

describe('ensureBackupPvc', () => {
  const labels = runnerLabels('migration-backup');

  it('creates the PVC when absent, labelled and unowned, and reuses it afterwards', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const created = await ensureBackupPvc(kube, { name: 'backup', size: '2Gi', storageClass: 'fast', labels });
    expect(created).toEqual({ name: 'backup', size: '2Gi', bytes: 2 * 1024 ** 3, created: true });
    const pvc = server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'backup', namespace: ns });
    expect(pvc?.metadata.labels).toEqual(labels);
    expect(pvc?.metadata.ownerReferences).toBeUndefined();
    expect(pvc?.spec).toEqual({ accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '2Gi' } }, storageClassName: 'fast' });

    const again = await ensureBackupPvc(kube, { name: 'backup', size: '1500Mi', labels });
    expect(again).toMatchObject({ created: false, size: '2Gi' });
  });

  it('uses the bound capacity when the provisioner gave more than requested', async () => {
    server.seed({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'rounded', namespace: ns },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      status: { phase: 'Bound', capacity: { storage: '10Gi' } },
    });
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    expect(await ensureBackupPvc(kube, { name: 'rounded', size: '5Gi', labels })).toMatchObject({ size: '10Gi', created: false });
  });

  it('fails when the existing PVC is smaller than needed, naming both sizes and the fix', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const error = await ensureBackupPvc(kube, { name: 'backup', size: '5Gi', labels }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RunnerError);
    expect((error as RunnerError).exitCode).toBe(ExitCode.config);
    expect((error as RunnerError).message).toBe('backup PVC backup holds 2Gi but the backup needs 5Gi');
    expect((error as RunnerError).hint).toContain('kubectl patch pvc backup');
  });
});

describe('retainVolume', () => {
  it('sets the bound PV to Retain and returns its name and previous policy', async () => {
    boundPvc('data-legacy-0', 'pv-legacy-0', 'Delete');
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    expect(await retainVolume(kube, 'data-legacy-0', { protect: true })).toEqual({ pvc: 'data-legacy-0', pvName: 'pv-legacy-0', previousPolicy: 'Delete' });
    expect((server.get({ apiVersion: 'v1', kind: 'PersistentVolume', name: 'pv-legacy-0' })?.spec as { persistentVolumeReclaimPolicy: string }).persistentVolumeReclaimPolicy).toBe('Retain');
    // Idempotent: a second run reports Retain as the previous policy and writes nothing.
    server.clearRequestLog();
    expect(await retainVolume(kube, 'data-legacy-0', { protect: true })).toMatchObject({ previousPolicy: 'Retain' });
    expect(server.requestCount({ verb: 'patch' })).toBe(0);
  });

  it('skips with a warning and no PV call when protection is not configured', async () => {
    boundPvc('data-unprotected-0', 'pv-unprotected-0', 'Delete');
    const { kube, log } = fakeRunnerKube(server, { namespace: ns });
    server.clearRequestLog();
    expect(await retainVolume(kube, 'data-unprotected-0', { protect: false })).toBeUndefined();
    expect(server.requestCount()).toBe(0);
    expect(log.lines.some((line) => line.level === 'warn' && String(line.fix).includes('MIGRATION_PROTECT_VOLUMES=true'))).toBe(true);
  });

  it('fails naming the ClusterRole fix when protection is configured but not granted', async () => {
    boundPvc('data-denied-0', 'pv-denied-0', 'Delete');
    server.seed(
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: 'pvc-read', namespace: ns },
        rules: [{ apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['get'] }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'pvc-read', namespace: ns },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pvc-read' },
        subjects: [{ kind: 'ServiceAccount', name: 'runner', namespace: ns }],
      },
    );
    const { kube } = fakeRunnerKube(server, { namespace: ns, token: server.tokenForServiceAccount(ns, 'runner') });
    const error = await retainVolume(kube, 'data-denied-0', { protect: true }).catch((caught: unknown) => caught);
    expect((error as RunnerError).exitCode).toBe(ExitCode.noPermission);
    expect((error as RunnerError).oneLine()).toBe(
      'Kubernetes RBAC denied get on persistentvolumes "pv-denied-0" (cluster-scoped): ' +
        'grant "get" on "persistentvolumes" (apiGroups: [""]) to ServiceAccount kc/runner in the migration ClusterRole',
    );
  });

  it('returns undefined for an absent or unbound PVC', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    expect(await retainVolume(kube, 'absent', { protect: true })).toBeUndefined();
    server.seed({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'pending', namespace: ns },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    });
    expect(await retainVolume(kube, 'pending', { protect: true })).toBeUndefined();
  });
});

describe('deleteLegacy', () => {
  /** Polls the fake until `check` holds: deletion is asynchronous (garbage collector, finalizers). */
  async function eventually(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async function seedLegacy(name: string, pvc: string, pv: string): Promise<void> {
    const controller = startWorkloadController(server);
    try {
      server.seed({
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name, namespace: ns },
        spec: {
          replicas: 1,
          serviceName: name,
          selector: { matchLabels: { app: name } },
          template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'pg', image: 'postgres:15' }] } },
        },
      });
      await controller.settled();
      // Seeded as a dynamic provisioner leaves it: Delete, the policy the protection changes.
      boundPvc(pvc, pv, 'Delete');
    } finally {
      controller.stop();
    }
  }

  const pvPolicy = (pv: string) =>
    (server.get({ apiVersion: 'v1', kind: 'PersistentVolume', name: pv })?.spec as { persistentVolumeReclaimPolicy?: string } | undefined)?.persistentVolumeReclaimPolicy;

  it('deletes the StatefulSet (with its Pods) and PVCs after the volume was set to Retain, and is idempotent', async () => {
    await seedLegacy('legacy-pg', 'data-legacy-pg-0', 'pv-legacy-pg-0');
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    // What protect-legacy does before deleting: the claim's volume goes to Retain.
    expect(await retainVolume(kube, 'data-legacy-pg-0', { protect: true })).toMatchObject({ pvName: 'pv-legacy-pg-0', previousPolicy: 'Delete' });
    const first = await deleteLegacy(kube, { statefulSet: 'legacy-pg', pvcs: ['data-legacy-pg-0'] });
    expect(first).toEqual({ deleted: ['statefulset/legacy-pg', 'pvc/data-legacy-pg-0'], alreadyGone: [] });
    // A foreground deletion: the garbage collector deletes the Pod, then the StatefulSet goes.
    await eventually(() => !server.get({ apiVersion: 'v1', kind: 'Pod', name: 'legacy-pg-0', namespace: ns }), 'the Pod is gone');
    await eventually(() => !server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'legacy-pg', namespace: ns }), 'the StatefulSet is gone');
    expect(server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data-legacy-pg-0', namespace: ns })).toBeUndefined();
    // The disk stays: its PV was Delete and is Retain now (a reclaimer would have deleted it otherwise).
    expect(pvPolicy('pv-legacy-pg-0')).toBe('Retain');
    const second = await deleteLegacy(kube, { statefulSet: 'legacy-pg', pvcs: ['data-legacy-pg-0'] });
    expect(second).toEqual({ deleted: [], alreadyGone: ['statefulset/legacy-pg', 'pvc/data-legacy-pg-0'] });
  });

  // A DELETE of an object that is already terminating is answered 200 with the object (the API
  // server's generic registry, store.go Delete), not 404: a second run while the first run's
  // deletion is still in progress must read deletionTimestamp, not count a second deletion. In a
  // real cluster that window is long: the legacy Pod takes its termination grace period and the
  // claim carries `kubernetes.io/pvc-protection` (added on create by the admission plugin) until
  // no Pod uses it.
  it('reports objects still terminating from an earlier run as already gone, not as deleted again', async () => {
    await seedLegacy('slow-pg', 'data-slow-pg-0', 'pv-slow-pg-0');
    // The claim as a real cluster stores it: protected until no Pod uses it (no controller in the
    // fake removes the finalizer, as none would while the Pod is still stopping).
    server.upsert({
      ...server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data-slow-pg-0', namespace: ns })!,
      metadata: { ...server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data-slow-pg-0', namespace: ns })!.metadata, finalizers: ['kubernetes.io/pvc-protection'] },
    });
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    await retainVolume(kube, 'data-slow-pg-0', { protect: true });
    const release = server.holdGarbageCollection();
    try {
      const first = await deleteLegacy(kube, { statefulSet: 'slow-pg', pvcs: ['data-slow-pg-0'] });
      expect(first).toEqual({ deleted: ['statefulset/slow-pg', 'pvc/data-slow-pg-0'], alreadyGone: [] });
      // A re-run (a retried hook) while the first run's deletion is still in progress.
      const second = await deleteLegacy(kube, { statefulSet: 'slow-pg', pvcs: ['data-slow-pg-0'] });
      expect(second).toEqual({ deleted: [], alreadyGone: ['statefulset/slow-pg', 'pvc/data-slow-pg-0'] });
    } finally {
      release();
      const claim = server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data-slow-pg-0', namespace: ns });
      if (claim) server.upsert({ ...claim, metadata: { ...claim.metadata, finalizers: [] } });
    }
  });
});
