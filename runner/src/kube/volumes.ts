/**
 * The volumes around a migration: the backup PVC the runner creates (sized before the dump, so a
 * too-small volume stops the run before anything changes), the legacy PVCs whose PersistentVolumes
 * are set to Retain before any deletion (so deleting a PVC never deletes the data on the disk), and
 * the deletion of the legacy StatefulSet and PVCs when configured.
 */
import { Env, ExitCode } from '../../../lib/contract.js';
import { parseQuantity } from '../../../lib/validation.js';
import { RunnerError } from '../errors.js';
import { callApi, isAlreadyExists, isNotFound, mergePatchOptions, type KubeContext } from './client.js';

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

/** Bytes of a Kubernetes quantity; a malformed one is a usage error naming `field`. */
export function quantityToBytes(field: string, value: string): number {
  try {
    return parseQuantity(field, value);
  } catch (cause) {
    throw new RunnerError(cause instanceof Error ? cause.message : String(cause), { exitCode: ExitCode.usage, hint: `fix ${field}`, cause });
  }
}

/** The smallest whole `Gi` (or `Mi` below 1 GiB) quantity holding `bytes`. */
export function bytesToQuantity(bytes: number): string {
  if (bytes <= 0) return '0';
  if (bytes < GIB) return `${Math.ceil(bytes / MIB)}Mi`;
  return `${Math.ceil(bytes / GIB)}Gi`;
}

export interface BackupPvcSpec {
  readonly name: string;
  /** Kubernetes quantity the backup needs, e.g. `8Gi`. */
  readonly size: string;
  /** @default - the cluster's default StorageClass */
  readonly storageClass?: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface BackupPvc {
  readonly name: string;
  /** The PVC's size: its bound capacity, else its request. */
  readonly size: string;
  readonly bytes: number;
  readonly created: boolean;
}

/**
 * Creates the backup PVC when absent (ReadWriteOnce, the requested size, labelled, owned by no
 * release object so that it outlives the hook Jobs). An existing PVC smaller than `size` is a
 * config error naming both sizes and the fix, raised before any dump starts.
 */
export async function ensureBackupPvc(kube: KubeContext, spec: BackupPvcSpec): Promise<BackupPvc> {
  const needed = quantityToBytes(Env.backupPvcSize, spec.size);
  const namespace = kube.namespace;
  const read = async () => {
    try {
      return await callApi(kube, { verb: 'get', resource: 'persistentvolumeclaims', name: spec.name, namespace }, () =>
        kube.core.readNamespacedPersistentVolumeClaim({ name: spec.name, namespace }),
      );
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  };
  let existing = await read();
  let created = false;
  if (!existing) {
    try {
      existing = await callApi(kube, { verb: 'create', resource: 'persistentvolumeclaims', namespace }, () =>
        kube.core.createNamespacedPersistentVolumeClaim({
          namespace,
          body: {
            metadata: { name: spec.name, labels: { ...spec.labels } },
            spec: {
              accessModes: ['ReadWriteOnce'],
              resources: { requests: { storage: spec.size } },
              ...(spec.storageClass ? { storageClassName: spec.storageClass } : {}),
            },
          },
        }),
      );
      created = true;
      kube.log.info('created the backup PVC', { pvc: spec.name, size: spec.size, storageClass: spec.storageClass ?? '(default)' });
    } catch (error) {
      if (!isAlreadyExists(error)) throw error;
      existing = await read();
      if (!existing) throw error;
    }
  }
  const size = existing.status?.capacity?.storage ?? existing.spec?.resources?.requests?.storage ?? '0';
  const bytes = quantityToBytes(`PVC ${spec.name} size`, size);
  if (bytes < needed) {
    throw new RunnerError(`backup PVC ${spec.name} holds ${size} but the backup needs ${spec.size}`, {
      exitCode: ExitCode.config,
      hint:
        `expand it (kubectl patch pvc ${spec.name} -p '{"spec":{"resources":{"requests":{"storage":"${spec.size}"}}}}', ` +
        `if its StorageClass allows expansion), or delete it if it holds no backup you need; ` +
        `${Env.backupPvcSize} sets the size the runner creates`,
    });
  }
  return { name: spec.name, size, bytes, created };
}

export interface RetainedVolume {
  readonly pvc: string;
  readonly pvName: string;
  /** The reclaim policy before (Retain if it already was). */
  readonly previousPolicy: string;
}

export interface RetainOptions {
  /**
   * Whether protection is configured (MIGRATION_PROTECT_VOLUMES=true: the PV ClusterRole exists).
   * Without it the PV is not touched and a warning says so; with it a missing permission fails.
   */
  readonly protect: boolean;
}

/**
 * Sets the PersistentVolume bound to `pvcName` to `persistentVolumeReclaimPolicy: Retain` and
 * returns its name and previous policy, for the state. Returns undefined (with a log line) when
 * there is nothing to protect: protection not configured, PVC absent or not bound.
 */
export async function retainVolume(kube: KubeContext, pvcName: string, options: RetainOptions): Promise<RetainedVolume | undefined> {
  const namespace = kube.namespace;
  if (!options.protect) {
    kube.log.warn('not setting the legacy volume to Retain: volume protection is not configured', {
      pvc: pvcName,
      fix: `set ${Env.protectVolumes}=true with the PersistentVolume ClusterRole to keep the disk if the PVC is deleted`,
    });
    return undefined;
  }
  let pvName: string | undefined;
  try {
    const pvc = await callApi(kube, { verb: 'get', resource: 'persistentvolumeclaims', name: pvcName, namespace }, () =>
      kube.core.readNamespacedPersistentVolumeClaim({ name: pvcName, namespace }),
    );
    pvName = pvc.spec?.volumeName;
  } catch (error) {
    if (!isNotFound(error)) throw error;
    kube.log.info('legacy PVC does not exist; nothing to protect', { pvc: pvcName });
    return undefined;
  }
  if (!pvName) {
    kube.log.warn('legacy PVC is not bound to a PersistentVolume; nothing to protect', { pvc: pvcName });
    return undefined;
  }
  const name = pvName;
  const pv = await callApi(kube, { verb: 'get', resource: 'persistentvolumes', name }, () => kube.core.readPersistentVolume({ name }));
  const previousPolicy = pv.spec?.persistentVolumeReclaimPolicy ?? 'Delete';
  if (previousPolicy !== 'Retain') {
    await callApi(kube, { verb: 'patch', resource: 'persistentvolumes', name }, () =>
      kube.core.patchPersistentVolume({ name, body: { spec: { persistentVolumeReclaimPolicy: 'Retain' } } }, mergePatchOptions()),
    );
    kube.log.info('set the legacy volume to Retain', { pvc: pvcName, pv: name, previousPolicy });
  }
  return { pvc: pvcName, pvName: name, previousPolicy };
}

/** The PersistentVolume `pvcName` is bound to; undefined when the claim does not exist or is not bound. */
export async function boundVolumeOf(kube: KubeContext, pvcName: string): Promise<string | undefined> {
  const namespace = kube.namespace;
  try {
    const pvc = await callApi(kube, { verb: 'get', resource: 'persistentvolumeclaims', name: pvcName, namespace }, () =>
      kube.core.readNamespacedPersistentVolumeClaim({ name: pvcName, namespace }),
    );
    return pvc.spec?.volumeName || undefined;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

export interface LegacyObjects {
  /** The legacy StatefulSet; undefined or '' when none is known. */
  readonly statefulSet?: string;
  readonly pvcs: readonly string[];
}

export interface DeletionReport {
  /** `statefulset/<name>` and `pvc/<name>` entries deleted by this call. */
  readonly deleted: readonly string[];
  /** Entries that were already gone. */
  readonly alreadyGone: readonly string[];
}

/**
 * Deletes the legacy StatefulSet (its Pods go with it) and then its PVCs. Idempotent: what is
 * already gone, or already being deleted by an earlier run, is reported as gone, not an error. The
 * caller decides when (only after a verified backup, by default after a verified restore) and
 * protects the volumes first.
 */
export async function deleteLegacy(kube: KubeContext, legacy: LegacyObjects): Promise<DeletionReport> {
  const namespace = kube.namespace;
  const deleted: string[] = [];
  const alreadyGone: string[] = [];
  const remove = async (
    label: string,
    action: { verb: string; resource: string; group?: string; name: string; namespace: string },
    read: () => Promise<{ metadata?: { deletionTimestamp?: Date | string } }>,
    request: () => Promise<unknown>,
  ) => {
    try {
      // A DELETE of an object already being deleted (a Foreground deletion waiting for its Pods,
      // a claim held by kubernetes.io/pvc-protection) answers 200, not 404: read it first.
      const live = await callApi(kube, { ...action, verb: 'get' }, read);
      if (live.metadata?.deletionTimestamp) {
        alreadyGone.push(label);
        kube.log.info('legacy object already being deleted', { object: label, since: String(live.metadata.deletionTimestamp) });
        return;
      }
      await callApi(kube, action, request);
      deleted.push(label);
      kube.log.info('deleted legacy object', { object: label });
    } catch (error) {
      if (!isNotFound(error)) throw error;
      alreadyGone.push(label);
    }
  };
  if (legacy.statefulSet) {
    const name = legacy.statefulSet;
    await remove(
      `statefulset/${name}`,
      { verb: 'delete', resource: 'statefulsets', group: 'apps', name, namespace },
      () => kube.apps.readNamespacedStatefulSet({ name, namespace }),
      () => kube.apps.deleteNamespacedStatefulSet({ name, namespace, body: { propagationPolicy: 'Foreground' } }),
    );
  }
  for (const name of legacy.pvcs) {
    await remove(
      `pvc/${name}`,
      { verb: 'delete', resource: 'persistentvolumeclaims', name, namespace },
      () => kube.core.readNamespacedPersistentVolumeClaim({ name, namespace }),
      () => kube.core.deleteNamespacedPersistentVolumeClaim({ name, namespace }),
    );
  }
  return { deleted, alreadyGone };
}
