/**
 * Verified → Completed: Keycloak hygiene, the ready marker, the workloads back at their recorded
 * replicas (unless MIGRATION_RESTORE_REPLICAS=false leaves that to the GitOps tool), the plain
 * indexes the restore left out (pg/deferred-indexes.ts) and ANALYZE while
 * they start (only when scaled back here: analyzeAfterKeycloakIsBack), (with MIGRATION_DELETE_LEGACY=after-restore) the legacy database removed, and older
 * backups the runner left on the backup volume deleted (prune-backups.ts).
 *
 * Every part is idempotent, and the hygiene runs only while the marker is not yet `ready`: once it
 * is, Keycloak may be running (its gate passed) and releasing Liquibase's lock under it, or
 * emptying its discovery table, would harm it.
 */
import { DeleteLegacy, Env, Phase, ReadyMarker } from '../../../lib/contract.js';
import { requireBackupDir, requireEndpoint } from '../config.js';
import { buildDeferredIndexes } from '../pg/deferred-indexes.js';
import { applyKeycloakHygiene } from '../pg/hygiene.js';
import { analyzeRemaining } from '../pg/restore.js';
import { readMarker, writeMarker } from '../pg/marker.js';
import type { MigrationState } from '../state.js';
import { runStep, timed, updateState, type HookContext } from './context.js';
import { backupDirectoryOf } from './dump.js';
import { assertLegacyDisksRetained, removeLegacy } from './protect-legacy.js';
import { pruneBackups } from './prune-backups.js';
import { unquiesce } from './quiesce.js';
import { analyzeAfterKeycloakIsBack, restoredInThisRun, targetOwner } from './restore.js';

export function completeStep(ctx: HookContext) {
  return runStep(ctx, {
    name: 'complete',
    reaches: Phase.completed,
    async run(state) {
      const target = requireEndpoint(ctx.config, 'target');
      const owner = targetOwner(ctx);
      const marker = await readMarker(target);
      const alreadyReady = marker?.status === ReadyMarker.ready && marker.migrationId === state.migrationId;
      const analyzeAfter = analyzeAfterKeycloakIsBack(ctx);
      // Plain indexes the restore left for later (pg/deferred-indexes.ts) may be missing unless this
      // process restored leaving none out: after a resume, or with MIGRATION_RESTORE_REPLICAS
      // changed since the run that restored, they are looked for and built.
      const restored = restoredInThisRun(ctx, state);
      const indexesMayBeMissing = restored === undefined || restored.deferredIndexes.indexes.length > 0;
      if (alreadyReady) {
        ctx.log.info('the target is already marked ready: skipping the hygiene (Keycloak may be running)');
      } else {
        // ANALYZE after Keycloak is back (below); else the restore this process saw finish ANALYZEd
        // every table as it loaded them; after a resume (or an already-restored target) nothing
        // says so, and the hygiene ANALYZEs.
        const analyzedByRestore = restoredInThisRun(ctx, state)?.analyzed ?? false;
        const analyzeNow = !analyzeAfter && !analyzedByRestore;
        await timed(ctx, 'hygiene', () => applyKeycloakHygiene(target, { owner, log: ctx.log, analyze: analyzeNow }), (result) => ({
          note: `${analyzeAfter ? 'ANALYZE after Keycloak is back' : analyzedByRestore ? 'ANALYZE during the restore' : 'ANALYZE'}; emptied ${Object.keys(result.jgroupsRowsDeleted).length} JGroups table(s); released ${Object.values(result.changelogLocksReleased).reduce((a, b) => a + b, 0)} Liquibase lock(s)`,
        }));
        // Keycloak starts only after this Job (the GitOps tool scales it): before the marker.
        if (!analyzeAfter && indexesMayBeMissing) await buildLeftOutIndexes(ctx, owner, state, 'before the ready marker');
        ctx.lock?.assertHeld();
        await timed(ctx, 'mark-ready', () => writeMarker(target, { status: ReadyMarker.ready, migrationId: state.migrationId, owner }), () => ({
          note: `ready marker ${ReadyMarker.schema}.${ReadyMarker.table} = ${ReadyMarker.ready}`,
        }));
      }
      const scaledBack = await scaleBackOrLeaveToGitOps(ctx, state.originalReplicas);
      if (analyzeAfter) {
        if (indexesMayBeMissing) await buildLeftOutIndexes(ctx, owner, state, 'while Keycloak starts');
        await analyzeWhileKeycloakStarts(ctx, owner);
      } else if (alreadyReady && indexesMayBeMissing) {
        await buildLeftOutIndexes(ctx, owner, state, 'after the ready marker of an earlier run');
      }
      // Only after-restore deletes here, so legacyDeleted already set means an earlier attempt of this
      // step recorded it and may have died before deleting (the delete is idempotent).
      const deleteNow = ctx.config.deleteLegacy === DeleteLegacy.afterRestore;
      if (deleteNow) {
        // Checked before anything is recorded; recorded before anything is deleted: from the delete
        // on, whatever answers at the legacy names is not the database backed up.
        await assertLegacyDisksRetained(ctx, state.protectedVolumes);
        ctx.lock?.assertHeld();
        if (!state.legacyDeleted) await updateState(ctx, (current) => ({ ...current, legacyDeleted: true }));
        await timed(ctx, 'delete-legacy', () => removeLegacy(ctx, state.protectedVolumes), (report) => ({ note: `deleted ${report.deleted.join(', ') || 'nothing (already gone)'}` }));
      }
      // The verified backup stays; older ones the runner left on the volume go (best effort).
      const pruned = await timed(ctx, 'prune-backups', () => pruneBackups(requireBackupDir(ctx.config, ctx.command), state, ctx.log), (removed) => ({
        note: removed.length ? `deleted ${removed.map((backup) => backup.dir).join(', ')}; kept ${state.backup?.dir}` : `nothing to delete; kept ${state.backup?.dir}`,
      }));
      return {
        detail: `marker ready; ${scaledBack}${deleteNow ? '; legacy deleted' : ''}${pruned.length ? `; deleted old backup(s) ${pruned.map((backup) => backup.dir).join(', ')}` : ''}`,
        changes: { legacyDeleted: state.legacyDeleted || deleteNow, readyMarkerAt: new Date().toISOString() },
        note: `→ ${Phase.completed}`,
      };
    },
  });
}

/**
 * Scales the workloads back, or (MIGRATION_RESTORE_REPLICAS=false) leaves them at 0 for the GitOps
 * tool: under Argo CD this hook runs before the workloads' wave applies their new template, so
 * scaling up here would start the OLD template's pods against the quiesced legacy database, while
 * Argo CD's apply at that wave brings Git's replicas back anyway. Returns the history detail.
 */
async function scaleBackOrLeaveToGitOps(ctx: HookContext, originals: Readonly<Record<string, number>>): Promise<string> {
  const recorded = Object.entries(originals).map(([key, replicas]) => `${key}=${replicas}`).join(', ') || 'none';
  if (!ctx.config.restoreReplicas) {
    const note = `replicas left to the GitOps tool (${Env.restoreReplicas}=false; recorded ${recorded})`;
    ctx.log.info('leaving the workloads at 0: the GitOps tool applies their replicas with their new template', { originalReplicas: originals });
    ctx.summary.push({ step: 'unquiesce', durationMs: 0, note });
    return note;
  }
  const restored = await timed(ctx, 'unquiesce', () => unquiesce(ctx, originals), (result) => ({
    note: Object.keys(result.scaled).length
      ? `scaled ${Object.entries(result.scaled).map(([key, replicas]) => `${key}=${replicas}`).join(', ')}`
      : 'nothing to scale (not at 0 any more, or no workloads)',
  }));
  return `scaled back ${Object.keys(restored.scaled).join(', ') || 'nothing'}`;
}

/**
 * The plain indexes the restore left out (pg/deferred-indexes.ts), built from the backup — when
 * this runner scales the workloads back, once they are: Keycloak boots meanwhile, and a write to a
 * table waits only while that table's index builds. Not best effort, unlike the ANALYZE: a failure
 * fails this step, and the next run (resuming here) builds what is still missing.
 */
async function buildLeftOutIndexes(ctx: HookContext, owner: string, state: MigrationState, when: string): Promise<void> {
  ctx.lock?.assertHeld();
  const plan = restoredInThisRun(ctx, state)?.deferredIndexes;
  await timed(
    ctx,
    'indexes',
    () =>
      buildDeferredIndexes({
        dir: backupDirectoryOf(ctx, state),
        target: requireEndpoint(ctx.config, 'target'),
        owner,
        jobs: ctx.config.parallelJobs,
        log: ctx.log,
        ...(plan ? { plan } : {}),
      }),
    (result) => ({ note: result.built.length ? `${result.built.length} plain index(es) ${when}` : 'none left to build' }),
  );
}

/**
 * ANALYZE of every restored table (largest first, on MIGRATION_PARALLEL_JOBS sessions) once the
 * workloads are scaled back: Keycloak's JVM takes many seconds to boot, and the statistics are
 * there by the time it serves (autovacuum would take them within a minute anyway). ANALYZE changes
 * no data and its lock only makes DDL wait, so it cannot harm a starting Keycloak. Best effort: a
 * failure is a warning, not a failed migration, because the data is verified and ready already.
 */
async function analyzeWhileKeycloakStarts(ctx: HookContext, owner: string): Promise<void> {
  const target = requireEndpoint(ctx.config, 'target');
  await timed(
    ctx,
    'analyze',
    async () => {
      try {
        await analyzeRemaining(target, owner, new Set(), { jobs: ctx.config.parallelJobs, log: ctx.log });
        return undefined;
      } catch (error) {
        ctx.log.warn('ANALYZE after the scale-back failed; autovacuum takes the statistics instead', { reason: (error as Error).message });
        return (error as Error).message;
      }
    },
    (failure) => ({ note: failure ? `failed (autovacuum takes the statistics): ${failure}` : 'while Keycloak starts (after the ready marker and the scale-back)' }),
  );
}
