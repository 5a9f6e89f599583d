/**
 * The rehearsal's storage: a dynamic provisioner, the StatefulSet controller's PVC creation, and
 * the reclaim policy, all over directories.
 *
 * - A PVC that appears in the fake API (created by the runner, or from a StatefulSet's
 *   `volumeClaimTemplates` as `<template>-<pod>` when the pod is created) is bound at once to a
 *   new PV `pvc-<uid>` (reclaim policy Delete, as a default StorageClass provisions) backed by a
 *   directory under `root/volumes/`.
 * - Volumes of PVCs that are not StatefulSet data (the backup PVC) are mounted as a tmpfs of
 *   exactly the requested size when this process may mount (root with CAP_SYS_ADMIN), so a
 *   volume that is too small fills up as a real one would; otherwise a plain directory
 *   ({@link Volumes.sized} says which).
 * - Deleting a PVC releases its PV: with `Delete` the PV and its directory are removed (the data
 *   is gone, as in a cluster), with `Retain` (what the runner's protect step sets) the PV turns
 *   `Released` and the directory stays.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import type { FakeKubeApiServer, KubeObject as StoredObject } from '../test/support/fake-kube/index.js';

import { parseQuantity } from '../lib/validation.js';

import { onProcessExit } from './postgres-processes.js';

export class Volumes {
  /** PV name → directory. */
  private readonly directories = new Map<string, string>();
  private readonly mounts = new Set<string>();
  private readonly unsubscribe: () => void;
  readonly sized: boolean;

  constructor(
    private readonly server: FakeKubeApiServer,
    private readonly namespace: string,
    private readonly root: string,
    options: { sizedVolumes?: boolean } = {},
  ) {
    mkdirSync(join(root, 'volumes'), { recursive: true, mode: 0o755 });
    this.sized = options.sizedVolumes ?? canMountTmpfs(root);
    this.unsubscribe = server.onChange((event, object) => {
      if (object.metadata.namespace !== undefined && object.metadata.namespace !== namespace) return;
      if (object.kind === 'PersistentVolumeClaim' && event === 'ADDED') this.bind(object);
      if (object.kind === 'PersistentVolumeClaim' && event === 'DELETED') this.release(object);
      if (object.kind === 'Pod' && event === 'ADDED') this.claimTemplatesFor(object);
    });
  }

  /** The directory behind a bound PVC, or undefined while it is not bound. */
  directoryOfClaim(claimName: string): string | undefined {
    const claim = this.server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: claimName, namespace: this.namespace });
    const volumeName = (claim?.spec as { volumeName?: string } | undefined)?.volumeName;
    if (!claim || (claim.status as { phase?: string } | undefined)?.phase !== 'Bound' || !volumeName) return undefined;
    return this.directories.get(volumeName);
  }

  /** The directory of a PV (also a Released one), for checks that look at retained data. */
  directoryOfVolume(volumeName: string): string | undefined {
    return this.directories.get(volumeName);
  }

  /** Stops reacting and unmounts every tmpfs (directories stay for the caller to remove). */
  close(): void {
    this.unsubscribe();
    for (const mount of this.mounts) {
      try {
        execFileSync('umount', ['-l', mount], { stdio: 'ignore' });
      } catch {
        // Already unmounted.
      }
    }
    this.mounts.clear();
  }

  /** The StatefulSet controller creates a pod's claims from the templates before the pod runs. */
  private claimTemplatesFor(pod: StoredObject): void {
    const owner = (pod.metadata.ownerReferences ?? []).find((reference) => reference.kind === 'StatefulSet');
    if (!owner) return;
    const statefulSet = this.server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: owner.name, namespace: this.namespace });
    const templates = ((statefulSet?.spec as { volumeClaimTemplates?: StoredObject[] } | undefined)?.volumeClaimTemplates ?? []);
    for (const template of templates) {
      const name = `${template.metadata.name}-${pod.metadata.name}`;
      if (this.server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name, namespace: this.namespace })) continue;
      this.server.seed({
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name, namespace: this.namespace, labels: { ...(template.metadata.labels ?? {}), ...selectorLabels(statefulSet) } },
        spec: structuredClone(template.spec ?? {}),
        status: { phase: 'Pending' },
      });
    }
  }

  private bind(claim: StoredObject): void {
    const spec = (claim.spec ?? {}) as { resources?: { requests?: { storage?: string } }; accessModes?: string[]; storageClassName?: string; volumeName?: string };
    if (spec.volumeName) return;
    const requested = spec.resources?.requests?.storage ?? '1Gi';
    const volumeName = `pvc-${String(claim.metadata.uid)}`;
    const directory = join(this.root, 'volumes', volumeName);
    mkdirSync(directory, { recursive: true });
    const isStatefulSetData = this.isTemplateClaim(claim);
    if (this.sized && !isStatefulSetData) {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${parseQuantity('PVC spec.resources.requests.storage', requested)}`, 'tmpfs', directory]);
      this.mounts.add(directory);
      // A crashed test process must not leave mounts behind in /tmp.
      onProcessExit(() => {
        if (this.mounts.has(directory)) execFileSync('umount', ['-l', directory], { stdio: 'ignore' });
      });
    }
    this.directories.set(volumeName, directory);
    this.server.seed({
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: volumeName },
      spec: {
        capacity: { storage: requested },
        accessModes: spec.accessModes ?? ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Delete',
        storageClassName: spec.storageClassName ?? 'standard',
        claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: claim.metadata.name, namespace: this.namespace, uid: claim.metadata.uid },
        hostPath: { path: directory },
      },
      status: { phase: 'Bound' },
    });
    const current = this.server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: claim.metadata.name, namespace: this.namespace });
    if (!current) return;
    current.spec = { ...(current.spec as object), volumeName, storageClassName: spec.storageClassName ?? 'standard' };
    this.server.upsert(current);
    this.server.setStatus(
      { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: claim.metadata.name, namespace: this.namespace },
      { phase: 'Bound', accessModes: spec.accessModes ?? ['ReadWriteOnce'], capacity: { storage: requested } },
    );
  }

  private isTemplateClaim(claim: StoredObject): boolean {
    // CloudNativePG's data PVCs (label cnpg.io/pvcRole) are database volumes like a StatefulSet's.
    if (claim.metadata.labels?.['cnpg.io/pvcRole'] === 'PG_DATA') return true;
    return this.server
      .list('apps/v1', 'StatefulSet', this.namespace)
      .some((statefulSet) =>
        ((statefulSet.spec as { volumeClaimTemplates?: StoredObject[] } | undefined)?.volumeClaimTemplates ?? []).some((template) =>
          claim.metadata.name.startsWith(`${template.metadata.name}-${statefulSet.metadata.name}-`),
        ),
      );
  }

  private release(claim: StoredObject): void {
    const volumeName = (claim.spec as { volumeName?: string } | undefined)?.volumeName;
    if (!volumeName) return;
    const volume = this.server.get({ apiVersion: 'v1', kind: 'PersistentVolume', name: volumeName });
    if (!volume) return;
    const policy = (volume.spec as { persistentVolumeReclaimPolicy?: string }).persistentVolumeReclaimPolicy;
    if (policy === 'Retain') {
      this.server.setStatus({ apiVersion: 'v1', kind: 'PersistentVolume', name: volumeName }, { phase: 'Released' });
      return;
    }
    this.server.remove({ apiVersion: 'v1', kind: 'PersistentVolume', name: volumeName });
    const directory = this.directories.get(volumeName);
    if (directory) {
      if (this.mounts.has(directory)) {
        execFileSync('umount', ['-l', directory], { stdio: 'ignore' });
        this.mounts.delete(directory);
      }
      if (existsSync(directory)) rmSync(directory, { recursive: true, force: true });
      this.directories.delete(volumeName);
    }
  }
}

function selectorLabels(statefulSet: StoredObject | undefined): Record<string, string> {
  return ((statefulSet?.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)?.selector?.matchLabels ?? {});
}

function canMountTmpfs(root: string): boolean {
  const probe = join(root, '.tmpfs-probe');
  mkdirSync(probe, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}
