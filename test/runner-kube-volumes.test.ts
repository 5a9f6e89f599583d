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
  it('deletes the StatefulSet (with its Pods) and PVCs, and is idempotent', async () => {
    const controller = startWorkloadController(server);
    try {
      server.seed({
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name: 'legacy-pg', namespace: ns },
        spec: {
          replicas: 1,
          serviceName: 'legacy-pg',
          selector: { matchLabels: { app: 'legacy-pg' } },
          template: { metadata: { labels: { app: 'legacy-pg' } }, spec: { containers: [{ name: 'pg', image: 'postgres:15' }] } },
        },
      });
      await controller.settled();
      boundPvc('data-legacy-pg-0', 'pv-legacy-pg-0', 'Retain');
    } finally {
      controller.stop();
    }
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const first = await deleteLegacy(kube, { statefulSet: 'legacy-pg', pvcs: ['data-legacy-pg-0'] });
    expect(first).toEqual({ deleted: ['statefulset/legacy-pg', 'pvc/data-legacy-pg-0'], alreadyGone: [] });
    expect(server.get({ apiVersion: 'v1', kind: 'Pod', name: 'legacy-pg-0', namespace: ns })).toBeUndefined();
    // The PV stays: it was set to Retain.
    expect(server.get({ apiVersion: 'v1', kind: 'PersistentVolume', name: 'pv-legacy-pg-0' })).toBeDefined();
    const second = await deleteLegacy(kube, { statefulSet: 'legacy-pg', pvcs: ['data-legacy-pg-0'] });
    expect(second).toEqual({ deleted: [], alreadyGone: ['statefulset/legacy-pg', 'pvc/data-legacy-pg-0'] });
  });
});
