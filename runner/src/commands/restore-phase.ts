/**
 * `restore-phase` (hook: Helm post-install/post-upgrade; under Argo CD run by the backup Job after
 * backup-phase (MIGRATION_RESTORE_IN_BACKUP_JOB), or with `restoreInBackupJob: false` a Sync hook
 * between the backup's wave and Keycloak's; mounts the backup PVC): wait for the new primary,
 * restore, verify, Keycloak hygiene, ready marker, unquiesce, complete.
 *
 * LegacyProtected → Restoring → Restored → Verified → Completed. Completed: exit 0 after one API
 * read. NotNeeded: write the ready marker once (so Keycloak's gate passes on a fresh install),
 * then one API read on every later sync.
 */
import { Phase, RunnerCommand } from '../../../lib/contract.js';
import { defineCommand } from '../cli.js';
import { requireBackupDir, requireEndpoint } from '../config.js';
import { usageError } from '../errors.js';
import { hasReached, isTerminal } from '../state.js';
import { completeStep } from '../phases/complete.js';
import { createHookContext, describePhase, readState, runHook, timed, withMigrationLock, type HookContext } from '../phases/context.js';
import { ensureReadyMarkerWithoutMigration } from '../phases/fresh-install-marker.js';
import { markRestoringStep, restoreStep } from '../phases/restore.js';
import { assertSourceUnchangedSinceBackup } from '../phases/source-freshness.js';
import { verifyTargetStep } from '../phases/verify-target.js';
import { waitForWritableTarget } from '../phases/wait-for-target.js';

export async function runRestorePhase(ctx: HookContext): Promise<number> {
  return runHook(ctx, async () => {
    const state = await readState(ctx);
    if (!state) {
      throw usageError(
        `no migration state (ConfigMap ${ctx.config.stateConfigMap} does not exist): prepare has not run`,
        'run the upgrade or sync again; prepare runs in the pre-install/pre-upgrade (PreSync) phase',
      );
    }
    if (state.phase === Phase.completed) {
      ctx.log.info(`migration ${state.migrationId} is Completed: nothing to restore`);
      return 0;
    }
    if (state.phase === Phase.notNeeded) {
      if (state.readyMarkerAt) {
        ctx.log.info(`migration ${state.migrationId} is NotNeeded and the ready marker was written at ${state.readyMarkerAt}`);
        return 0;
      }
      await withMigrationLock(ctx, async () => {
        const fresh = await readState(ctx);
        if (fresh?.readyMarkerAt) return;
        await timed(ctx, 'mark-ready', () => ensureReadyMarkerWithoutMigration(ctx), (outcome) => ({ note: outcome === 'written' ? 'nothing to migrate: ready marker written' : 'marker was already ready' }));
      });
      return 0;
    }
    if (!hasReached(state, Phase.legacyProtected)) {
      throw usageError(
        `migration ${state.migrationId} is in phase ${describePhase(state)}, but the restore needs a verified, protected backup (phase ${Phase.legacyProtected})`,
        `the Jobs before the restore (prepare, backup-phase) did not finish: check their logs and kubectl describe configmap ${ctx.config.stateConfigMap}, then run the upgrade or sync again`,
      );
    }
    requireBackupDir(ctx.config, ctx.command);
    const target = requireEndpoint(ctx.config, 'target');
    return withMigrationLock(ctx, async () => {
      const fresh = await readState(ctx);
      if (!fresh || isTerminal(fresh)) return 0;
      // Never restore (or mark ready) a backup the legacy database has moved on from.
      await timed(ctx, 'check-source', () => assertSourceUnchangedSinceBackup(ctx));
      await timed(ctx, 'wait-target', () => waitForWritableTarget(target, { timeoutSeconds: ctx.config.targetWaitSeconds, log: ctx.log, signal: ctx.signal }));
      await markRestoringStep(ctx);
      await restoreStep(ctx);
      await verifyTargetStep(ctx);
      await completeStep(ctx);
      return 0;
    });
  });
}

export const restorePhaseCommand = defineCommand({
  name: RunnerCommand.restorePhase,
  summary: 'Hook, restore phase: wait for the new primary, restore, verify, Keycloak hygiene, ready marker, unquiesce',
  description: `
Needs MIGRATION_BACKUP_DIR (the mounted backup PVC) and a state in phase LegacyProtected or later.
If the legacy database is reachable and changed after the backup (write counters, e.g. written
during a rollback), exits 65 without restoring: run the upgrade again so backup-phase takes a new
backup. Waits up to MIGRATION_TARGET_WAIT_SECONDS for the target primary to accept writes, marks the target
"restoring", restores the recorded backup, verifies it (a mismatch exits 65 naming the tables and
never marks the target ready), empties jgroups_ping, releases databasechangeloglock, marks the
target "ready", scales the workloads back to their recorded replicas (only those still at 0), then
builds the plain (non-unique) indexes the restore left out (not with MIGRATION_INDEXES_AFTER_READY=false)
and ANALYZEs while they start; with
MIGRATION_RESTORE_REPLICAS=false the GitOps tool applies them with the new template after this Job,
so every index is built in the restore and ANALYZE overlaps it instead. Deletes the legacy
database with MIGRATION_DELETE_LEGACY=after-restore → Completed.`,
  flags: {},
  async run({ env, log, signal }) {
    return runRestorePhase(createHookContext(RunnerCommand.restorePhase, { env, log, signal }));
  },
});
