/**
 * BackupVerified → LegacyProtected: each legacy PVC's PersistentVolume is set to Retain (when the
 * PV ClusterRole is configured) and recorded, so that deleting a claim never deletes the disk; and
 * only with MIGRATION_DELETE_LEGACY=after-backup, and only now that the backup is verified, the
 * legacy StatefulSet and PVCs are deleted.
 *
 * Also the deletion after a verified restore (after-restore), used by restore-phase.
 */
import { DeleteLegacy, Phase } from '../../../lib/contract.js';
import { deleteLegacy, retainVolume, type DeletionReport } from '../kube/volumes.js';
import type { ProtectedVolume } from '../state.js';
import { runStep, type HookContext } from './context.js';

export async function protectLegacyVolumes(ctx: HookContext): Promise<ProtectedVolume[]> {
  const protectedVolumes: ProtectedVolume[] = [];
  for (const pvc of ctx.config.legacyPvcs) {
    const retained = await retainVolume(ctx.kube, pvc, { protect: ctx.config.protectVolumes });
    if (retained) protectedVolumes.push({ pvc: retained.pvc, pv: retained.pvName, previousReclaimPolicy: retained.previousPolicy });
  }
  return protectedVolumes;
}

/** Deletes the legacy StatefulSet and PVCs (idempotent). The caller decides that it is time. */
export async function removeLegacy(ctx: HookContext): Promise<DeletionReport> {
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
      // Protecting again (a new backup replaced a superseded one) finds the PVs at Retain already:
      // keep the reclaim policy recorded the first time, the one to go back to.
      const protectedVolumes = (await protectLegacyVolumes(ctx)).map(
        (volume) => state.protectedVolumes.find((earlier) => earlier.pv === volume.pv) ?? volume,
      );
      const deleteNow = ctx.config.deleteLegacy === DeleteLegacy.afterBackup && !state.legacyDeleted;
      const report = deleteNow ? await removeLegacy(ctx) : undefined;
      const retained = protectedVolumes.map((volume) => volume.pv).join(', ') || 'none';
      return {
        detail: `retained PVs: ${retained}${report ? `; deleted ${report.deleted.join(', ') || 'nothing (already gone)'}` : ''}`,
        changes: { protectedVolumes, legacyDeleted: state.legacyDeleted || deleteNow },
        note: `→ ${Phase.legacyProtected}, retained ${retained}${report ? ', legacy deleted' : ''}`,
      };
    },
  });
}
