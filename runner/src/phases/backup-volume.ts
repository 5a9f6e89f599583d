/**
 * The backup PVC: sized before anything changes, and made sure to exist on every run of
 * `prepare` — the next Job (backup-phase) mounts it, and a pod whose PVC does not exist stays
 * Pending until the hook's deadline.
 */
import { Env } from '../../../lib/contract.js';
import { configError } from '../errors.js';
import { formatBytes } from '../log.js';
import { callApi, isNotFound, type KubeContext } from '../kube/client.js';
import { runnerLabels } from '../kube/state-store.js';
import { bytesToQuantity, ensureBackupPvc, quantityToBytes, type BackupPvc } from '../kube/volumes.js';
import type { BackupPreflight } from '../pg/backup.js';
import type { HookConfig } from '../config.js';
import type { HookContext } from './context.js';

export const BACKUP_PVC_COMPONENT = 'migration-backup';

/**
 * Headroom over pg_database_size: the database size already includes indexes (which a dump does
 * not hold), so 25% more covers the manifest and the filesystem's own overhead. A dump an earlier
 * attempt left behind (partial, or complete but never recorded) is deleted before the new one
 * starts, so it needs no room of its own.
 */
export const BACKUP_HEADROOM = 1.25;

/**
 * The size to request: the configured one (checked against what the dump needs, so a too-small
 * volume stops the run before the workloads are touched), else the database size with headroom,
 * never below the minimum.
 */
export function backupPvcSize(config: HookConfig, preflight: BackupPreflight | undefined): string {
  if (config.backupPvcSize) {
    if (preflight) {
      const configured = quantityToBytes(Env.backupPvcSize, config.backupPvcSize);
      if (configured < preflight.estimatedBytes) {
        throw configError(
          `${Env.backupPvcSize} is ${config.backupPvcSize} but the dump of the source needs about ${formatBytes(preflight.estimatedBytes)}`,
          `raise ${Env.backupPvcSize} to at least ${bytesToQuantity(Math.ceil(preflight.estimatedBytes * BACKUP_HEADROOM))}, or unset it to let the runner size the volume; nothing was changed`,
        );
      }
    }
    return config.backupPvcSize;
  }
  if (!preflight) return config.backupPvcMinSize;
  const wanted = Math.ceil(Math.max(preflight.databaseBytes, preflight.estimatedBytes) * BACKUP_HEADROOM);
  return wanted <= config.backupPvcMinBytes ? config.backupPvcMinSize : bytesToQuantity(wanted);
}

/** Creates the backup PVC when absent; an existing one smaller than `size` is a config error (78). */
export async function ensureBackupVolume(ctx: HookContext, size: string): Promise<BackupPvc> {
  return ensureBackupPvc(ctx.kube, {
    name: ctx.config.backupPvc,
    size,
    ...(ctx.config.backupStorageClass ? { storageClass: ctx.config.backupStorageClass } : {}),
    labels: runnerLabels(BACKUP_PVC_COMPONENT),
  });
}

/** The size of the existing backup PVC (bound capacity, else request), or undefined when absent. */
export async function existingBackupPvcSize(kube: KubeContext, name: string): Promise<string | undefined> {
  try {
    const pvc = await callApi(kube, { verb: 'get', resource: 'persistentvolumeclaims', name, namespace: kube.namespace }, () =>
      kube.core.readNamespacedPersistentVolumeClaim({ name, namespace: kube.namespace }),
    );
    return pvc.status?.capacity?.storage ?? pvc.spec?.resources?.requests?.storage ?? '?';
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/**
 * For a migration with nothing left to do: the PVC only has to exist for the Job that mounts it
 * next (whatever its size), so an existing one costs one read and is never judged by its size.
 */
export async function ensureBackupVolumeExists(ctx: HookContext): Promise<void> {
  if ((await existingBackupPvcSize(ctx.kube, ctx.config.backupPvc)) !== undefined) return;
  await ensureBackupVolume(ctx, backupPvcSize(ctx.config, undefined));
}
