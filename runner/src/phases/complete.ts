/**
 * Verified → Completed: Keycloak hygiene, the ready marker, the workloads back at their recorded
 * replicas, (with MIGRATION_DELETE_LEGACY=after-restore) the legacy database removed, and older
 * backups the runner left on the backup volume deleted (prune-backups.ts).
 *
 * Every part is idempotent, and the hygiene runs only while the marker is not yet `ready`: once it
 * is, Keycloak may be running (its gate passed) and releasing Liquibase's lock under it, or
 * emptying its discovery table, would harm it.
 */
import { DeleteLegacy, Phase, ReadyMarker } from '../../../lib/contract.js';
import { requireBackupDir, requireEndpoint } from '../config.js';
import { applyKeycloakHygiene } from '../pg/hygiene.js';
import { readMarker, writeMarker } from '../pg/marker.js';
import { runStep, timed, type HookContext } from './context.js';
import { removeLegacy } from './protect-legacy.js';
import { pruneBackups } from './prune-backups.js';
import { unquiesce } from './quiesce.js';
import { targetOwner } from './restore.js';

export function completeStep(ctx: HookContext) {
  return runStep(ctx, {
    name: 'complete',
    reaches: Phase.completed,
    async run(state) {
      const target = requireEndpoint(ctx.config, 'target');
      const owner = targetOwner(ctx);
      const marker = await readMarker(target);
      const alreadyReady = marker?.status === ReadyMarker.ready && marker.migrationId === state.migrationId;
      if (alreadyReady) {
        ctx.log.info('the target is already marked ready: skipping the hygiene (Keycloak may be running)');
      } else {
        await timed(ctx, 'hygiene', () => applyKeycloakHygiene(target, { owner, log: ctx.log }), (result) => ({
          note: `ANALYZE; emptied ${Object.keys(result.jgroupsRowsDeleted).length} JGroups table(s); released ${Object.values(result.changelogLocksReleased).reduce((a, b) => a + b, 0)} Liquibase lock(s)`,
        }));
        ctx.lock?.assertHeld();
        await timed(ctx, 'mark-ready', () => writeMarker(target, { status: ReadyMarker.ready, migrationId: state.migrationId, owner }), () => ({
          note: `ready marker ${ReadyMarker.schema}.${ReadyMarker.table} = ${ReadyMarker.ready}`,
        }));
      }
      const restored = await timed(ctx, 'unquiesce', () => unquiesce(ctx, state.originalReplicas), (result) => ({
        note: Object.keys(result.scaled).length
          ? `scaled ${Object.entries(result.scaled).map(([key, replicas]) => `${key}=${replicas}`).join(', ')}`
          : 'nothing to scale (not at 0 any more, or no workloads)',
      }));
      const deleteNow = ctx.config.deleteLegacy === DeleteLegacy.afterRestore && !state.legacyDeleted;
      if (deleteNow) {
        await timed(ctx, 'delete-legacy', () => removeLegacy(ctx), (report) => ({ note: `deleted ${report.deleted.join(', ') || 'nothing (already gone)'}` }));
      }
      // The verified backup stays; older ones the runner left on the volume go (best effort).
      const pruned = await timed(ctx, 'prune-backups', () => pruneBackups(requireBackupDir(ctx.config, ctx.command), state, ctx.log), (removed) => ({
        note: removed.length ? `deleted ${removed.map((backup) => backup.dir).join(', ')}; kept ${state.backup?.dir}` : `nothing to delete; kept ${state.backup?.dir}`,
      }));
      return {
        detail: `marker ready; scaled back ${Object.keys(restored.scaled).join(', ') || 'nothing'}${deleteNow ? '; legacy deleted' : ''}${pruned.length ? `; deleted old backup(s) ${pruned.map((backup) => backup.dir).join(', ')}` : ''}`,
        changes: { legacyDeleted: state.legacyDeleted || deleteNow, readyMarkerAt: new Date().toISOString() },
        note: `→ ${Phase.completed}`,
      };
    },
  });
}
