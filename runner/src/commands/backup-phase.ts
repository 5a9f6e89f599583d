/**
 * `backup-phase` (hook: Helm pre-install/pre-upgrade weight 10, Argo CD PreSync wave 10; mounts
 * the backup PVC): dump the quiesced source onto the backup volume, verify the backup, protect the
 * legacy volumes and — only with MIGRATION_DELETE_LEGACY=after-backup — delete the legacy database.
 *
 * Quiesced → BackedUp → BackupVerified → LegacyProtected. Completed or NotNeeded: exit 0 after one
 * API read (Completed with the legacy StatefulSet back, e.g. after a rollback: refuse (65) if its
 * database changed since the backup, see assertLegacyUnchangedSinceCompletion). A backup already on record (a re-run after a failed restore, or after a rollback) is
 * reused only if the legacy database has not changed since it; otherwise it is superseded and the
 * source dumped again (phases/source-freshness.ts).
 */
import { Phase, RunnerCommand } from '../../../lib/contract.js';
import { defineCommand } from '../cli.js';
import { requireBackupDir } from '../config.js';
import { usageError } from '../errors.js';
import { hasReached, isTerminal } from '../state.js';
import { createHookContext, describePhase, readState, runHook, withMigrationLock, type HookContext } from '../phases/context.js';
import { dumpStep } from '../phases/dump.js';
import { protectLegacyStep } from '../phases/protect-legacy.js';
import { assertLegacyUnchangedSinceCompletion, reuseOrSupersedeBackup } from '../phases/source-freshness.js';
import { verifyBackupStep } from '../phases/verify-backup.js';

export async function runBackupPhase(ctx: HookContext): Promise<number> {
  return runHook(ctx, async () => {
    const state = await readState(ctx);
    if (!state) {
      throw usageError(
        `no migration state (ConfigMap ${ctx.config.stateConfigMap} does not exist): prepare has not run`,
        'run the upgrade or sync again; prepare runs before backup-phase',
      );
    }
    if (isTerminal(state)) {
      // After a rollback the legacy database may hold writes the new one lacks.
      if (state.phase === Phase.completed && ctx.config.backupDir) await assertLegacyUnchangedSinceCompletion(ctx, state);
      ctx.log.info(`migration ${state.migrationId} is ${state.phase}: nothing to back up`);
      return 0;
    }
    if (!hasReached(state, Phase.quiesced)) {
      throw usageError(
        `migration ${state.migrationId} is in phase ${describePhase(state)}: prepare did not finish, so the workloads may still write`,
        `check the prepare Job's logs (kubectl describe configmap ${ctx.config.stateConfigMap} shows the last error) and run the upgrade or sync again`,
      );
    }
    requireBackupDir(ctx.config, ctx.command);
    return withMigrationLock(ctx, async () => {
      const fresh = await readState(ctx);
      if (!fresh || isTerminal(fresh)) return 0;
      // A backup on record is reused only while the legacy database is unchanged since it.
      if (fresh.backup) await reuseOrSupersedeBackup(ctx);
      await dumpStep(ctx);
      await verifyBackupStep(ctx);
      await protectLegacyStep(ctx);
      return 0;
    });
  });
}

export const backupPhaseCommand = defineCommand({
  name: RunnerCommand.backupPhase,
  summary: 'Hook, second pre-phase Job: dump the quiesced source, verify the backup, protect (and optionally delete) the legacy database',
  description: `
Needs MIGRATION_BACKUP_DIR (the mounted backup PVC) and a state in phase Quiesced or later.
Quiesced → BackedUp (pg_dump -Fd into <dir>/<migrationId>, manifest digest recorded) →
BackupVerified (digests, pg_restore --list) → LegacyProtected (PVs set to Retain with
MIGRATION_PROTECT_VOLUMES=true; legacy deleted only with MIGRATION_DELETE_LEGACY=after-backup).
With a backup already on record: quiesces again and compares the legacy database's write counters
with the backup's; unchanged → nothing to do; changed (e.g. written during a rollback) → the backup
is superseded (state back to Quiesced, Event MigrationBackupSuperseded) and taken anew into
<dir>/<migrationId>.N. Legacy StatefulSet present but its database unreachable: exit 69.
Completed, and the legacy StatefulSet exists again (a rollback): its database changed since the
backup → exit 65 (nothing changed) unless MIGRATION_ACCEPT_LEGACY_CHANGES_OF names the migration.`,
  flags: {},
  async run({ env, log, signal }) {
    return runBackupPhase(createHookContext(RunnerCommand.backupPhase, { env, log, signal }));
  },
});
