/**
 * BackupVerified → LegacyProtected: each legacy PVC's PersistentVolume is set to Retain (when the
 * PV ClusterRole is configured) and recorded, so that deleting a claim never deletes the disk; and
 * only with MIGRATION_DELETE_LEGACY=after-backup, and only now that the backup is verified, the
 * legacy StatefulSet and PVCs are deleted. Any deletion configured while a bound legacy claim's PV
 * is not at Retain on record (MIGRATION_PROTECT_VOLUMES=false) is refused here (78), before the restore.
 *
 * Also the deletion after a verified restore (after-restore), used by restore-phase.
 */
import { DeleteLegacy, Env, Phase } from '../../../lib/contract.js';
import { configError } from '../errors.js';
import { boundVolumeOf, deleteLegacy, retainVolume, type DeletionReport } from '../kube/volumes.js';
import type { ProtectedVolume } from '../state.js';
import { runStep, updateState, type HookContext } from './context.js';

export async function protectLegacyVolumes(ctx: HookContext): Promise<ProtectedVolume[]> {
  const protectedVolumes: ProtectedVolume[] = [];
  for (const pvc of ctx.config.legacyPvcs) {
    const retained = await retainVolume(ctx.kube, pvc, { protect: ctx.config.protectVolumes });
    if (retained) protectedVolumes.push({ pvc: retained.pvc, pv: retained.pvName, previousReclaimPolicy: retained.previousPolicy });
  }
  return protectedVolumes;
}

/**
 * Refuses (78) to delete a legacy PVC whose PersistentVolume the runner has not set to Retain
 * (`protectedVolumes`): under reclaimPolicy Delete, dynamic provisioning's default, deleting the
 * claim destroys the disk, the one copy of the legacy data besides the backup. Claims that do not
 * exist or are not bound hold no disk.
 */
export async function assertLegacyDisksRetained(ctx: HookContext, protectedVolumes: readonly ProtectedVolume[]): Promise<void> {
  const unretained: string[] = [];
  for (const pvc of ctx.config.legacyPvcs) {
    const pv = await boundVolumeOf(ctx.kube, pvc);
    if (pv && !protectedVolumes.some((volume) => volume.pvc === pvc && volume.pv === pv)) unretained.push(`${pvc} (PersistentVolume ${pv})`);
  }
  if (unretained.length === 0) return;
  throw configError(
    `${Env.deleteLegacy}=${ctx.config.deleteLegacy} would delete legacy PVC ${unretained.join(', ')}, but the runner has not set its PersistentVolume to Retain (${Env.protectVolumes}=${ctx.config.protectVolumes}): under reclaimPolicy Delete that destroys the disk. Nothing was deleted`,
    `set ${Env.protectVolumes}=true (platform config migration.protectVolumes, the construct's default, which adds the PersistentVolume ClusterRole), or ${Env.deleteLegacy}=never to keep the legacy database; then run the upgrade again`,
  );
}

/**
 * Deletes the legacy StatefulSet and PVCs (idempotent), once {@link assertLegacyDisksRetained}
 * holds. The caller decides that it is time, and records `legacyDeleted` before calling.
 */
export async function removeLegacy(ctx: HookContext, protectedVolumes: readonly ProtectedVolume[]): Promise<DeletionReport> {
  await assertLegacyDisksRetained(ctx, protectedVolumes);
  ctx.lock?.assertHeld();
  const report = await deleteLegacy(ctx.kube, {
    ...(ctx.config.legacyStatefulSet ? { statefulSet: ctx.config.legacyStatefulSet } : {}),
    pvcs: ctx.config.legacyPvcs,
  });
  ctx.log.info('legacy database removed', { deleted: report.deleted, alreadyGone: report.alreadyGone });
  return report;
}

export function protectLegacyStep(ctx: HookContext) {
  return runStep(ctx, {
    name: 'protect',
    reaches: Phase.legacyProtected,
    async run(state) {
      // Protecting again (a new backup replaced a superseded one, or an attempt that died after
      // deleting the claims) finds the PVs at Retain, or their claims gone: keep what was recorded
      // first, with the reclaim policy to go back to.
      const found = await protectLegacyVolumes(ctx);
      const protectedVolumes = [...state.protectedVolumes, ...found.filter((volume) => !state.protectedVolumes.some((earlier) => earlier.pv === volume.pv))];
      // Refused now, whenever a deletion is configured: not only after the restore.
      if (ctx.config.deleteLegacy !== DeleteLegacy.never) await assertLegacyDisksRetained(ctx, protectedVolumes);
      // This step runs only before LegacyProtected: legacyDeleted set means an earlier attempt of it
      // recorded the deletion and may have died before deleting (the delete is idempotent).
      const deleteNow = ctx.config.deleteLegacy === DeleteLegacy.afterBackup;
      let report: DeletionReport | undefined;
      if (deleteNow) {
        // Recorded before anything is deleted: a run that dies after the delete must still know which
        // PVs it set to Retain and their previous policy (a re-run finds the claims gone), and that
        // whatever answers at the legacy names from now on is not the database backed up.
        ctx.lock?.assertHeld();
        await updateState(ctx, (current) => ({ ...current, protectedVolumes, legacyDeleted: true }));
        report = await removeLegacy(ctx, protectedVolumes);
      }
      const retained = protectedVolumes.map((volume) => volume.pv).join(', ') || 'none';
      return {
        detail: `retained PVs: ${retained}${report ? `; deleted ${report.deleted.join(', ') || 'nothing (already gone)'}` : ''}`,
        changes: { protectedVolumes, legacyDeleted: state.legacyDeleted || deleteNow },
        note: `→ ${Phase.legacyProtected}, retained ${retained}${report ? ', legacy deleted' : ''}`,
      };
    },
  });
}
