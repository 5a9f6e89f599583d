/**
 * `backup-phase` (hook: Helm pre-install/pre-upgrade weight 10, Argo CD Sync hook at the backup
 * wave, after the new database's and below 0; mounts the backup PVC): stop the workloads, dump the quiesced source onto the backup volume, verify the
 * backup, protect the legacy volumes and — only with MIGRATION_DELETE_LEGACY=after-backup — delete
 * the legacy database.
 *
 * The downtime starts here, not in prepare: quiescing right before the dump keeps the handoff
 * between the two Jobs out of it, and a backup Job that never starts leaves Keycloak serving.
 *
 * Pending → Quiesced → BackedUp → BackupVerified → LegacyProtected. Every run that is not terminal
 * quiesces (a resumed migration keeps the workloads at 0, whatever scaled them up meanwhile) and
 * takes over the release's objects (phases/take-over.ts). Completed or NotNeeded: exit 0 after one
 * API read (Completed with the legacy StatefulSet back, e.g. after a rollback: refuse (65) if its
 * database changed since the backup, see assertLegacyUnchangedSinceCompletion). A backup already on
 * record (a re-run after a failed restore, or after a rollback) is reused only if the legacy
 * database has not changed since it; otherwise it is superseded and the source dumped again
 * (phases/source-freshness.ts).
 *
 * With MIGRATION_RESTORE_IN_BACKUP_JOB=true (Argo CD, where the new database is healthy a wave
 * earlier and DatabaseMigration synthesizes no restore Job) a successful backup-phase is followed
 * by restore-phase in the same process, with its semantics (checks, waits, exit codes): the
 * downtime loses a wave's hand-over, a pod start and a runner start, and — when this run dumped or
 * fully verified the backup and the restore starts within DIGESTS_TRUSTED_FOR_MS — a second read
 * and sha256 of every dump file (pg/restore.ts).
 */
import { Env, Phase, RunnerCommand } from '../../../lib/contract.js';
import { defineCommand } from '../cli.js';
import { requireBackupDir } from '../config.js';
import { usageError } from '../errors.js';
import { hasReached, isTerminal } from '../state.js';
import { advanceTo, beginStep, createHookContext, readState, runHook, withMigrationLock, type HookContext } from '../phases/context.js';
import { dumpStep } from '../phases/dump.js';
import { protectLegacyStep } from '../phases/protect-legacy.js';
import { quiesce } from '../phases/quiesce.js';
import { takeOverReleaseObjects } from '../phases/take-over.js';
import { assertLegacyUnchangedSinceCompletion, reuseOrSupersedeBackup } from '../phases/source-freshness.js';
import { verifyBackupStep } from '../phases/verify-backup.js';
import { runRestorePhase } from './restore-phase.js';

/**
 * Records the workloads' replica counts, scales them to 0 and waits for their pods to go, then
 * replaces the StatefulSets the new release cannot patch (only once their pods are gone) → Quiesced.
 * Past Quiesced (a resumed migration) it runs all the same, as a check that keeps them at 0.
 */
async function stopWorkloads(ctx: HookContext): Promise<void> {
  const started = Date.now();
  // Counted in the state before anything stops: the write is not part of the downtime.
  if (hasReached(ctx.state!, Phase.quiesced)) ctx.currentStep = 'quiesce';
  else await beginStep(ctx, 'quiesce');
  const originals = await quiesce(ctx);
  const takeOver = await takeOverReleaseObjects(ctx);
  const replaced = takeOver.replaced.length > 0 ? `; replaced ${takeOver.replaced.join(', ')} (immutable fields)` : '';
  const state = await advanceTo(ctx, Phase.quiesced, `quiesced ${Object.keys(originals).join(', ') || 'no workloads'}${replaced}`);
  ctx.currentStep = undefined;
  ctx.summary.push({
    step: 'quiesce',
    durationMs: Date.now() - started,
    note: `→ ${state.phase}; originals ${JSON.stringify(originals)}${replaced}${takeOver.kept.length > 0 ? `; kept Secrets ${takeOver.kept.join(', ')}` : ''}`,
  });
}

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
    requireBackupDir(ctx.config, ctx.command);
    return withMigrationLock(ctx, async () => {
      const fresh = await readState(ctx);
      if (!fresh || isTerminal(fresh)) return 0;
      await stopWorkloads(ctx);
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
  summary: 'Hook, second pre-phase Job: quiesce the workloads, dump the source, verify the backup, protect (and optionally delete) the legacy database',
  description: `
Needs MIGRATION_BACKUP_DIR (the mounted backup PVC) and the state prepare created.
Records the workloads' replica counts, scales them to 0 and waits until their pods are gone →
Quiesced (every run that is not terminal: a resumed migration keeps them at 0) → BackedUp
(pg_dump -Fd into <dir>/<migrationId>, manifest digest recorded) →
BackupVerified (files, sizes, digests — right after the dump the ones it took, on a
resumed run or with MIGRATION_DELETE_LEGACY=after-backup every file read again — and the TOC) →
LegacyProtected (PVs set to Retain with
MIGRATION_PROTECT_VOLUMES=true; legacy deleted only with MIGRATION_DELETE_LEGACY=after-backup).
With a backup already on record: compares the legacy database's write counters
with the backup's; unchanged → nothing to do; changed (e.g. written during a rollback) → the backup
is superseded (state back to Quiesced, Event MigrationBackupSuperseded) and taken anew into
<dir>/<migrationId>.N. Legacy StatefulSet present but its database unreachable: exit 69 (78 when
SOURCE_PGPASSWORD is unset: its Secret does not exist).
Completed, and the legacy StatefulSet exists again (a rollback): its database changed since the
backup → exit 65, or it cannot be compared → exit 69 (78 without SOURCE_PGPASSWORD); nothing
changed, unless MIGRATION_ACCEPT_LEGACY_CHANGES_OF names the migration.
With MIGRATION_RESTORE_IN_BACKUP_JOB=true (Argo CD: no restore Job), then runs restore-phase; when
this run dumped (or fully verified) the backup and the restore starts within a minute, it takes
the dump files' digests from this run instead of reading every file again.`,
  flags: {},
  async run({ env, log, signal }) {
    const ctx = createHookContext(RunnerCommand.backupPhase, { env, log, signal });
    const code = await runBackupPhase(ctx);
    if (code !== 0 || !ctx.config.restoreInBackupJob) return code;
    // Argo CD: the restore Job's work, in this pod (see restoreInBackupJob in the contract).
    log.info(`${Env.restoreInBackupJob}=true: ${RunnerCommand.restorePhase} in this Job`);
    // The backup this process digested is the one it restores: no second read of every file.
    const backupDigestedInThisRun = ctx.backupDigestedInThisRun;
    return runRestorePhase(createHookContext(RunnerCommand.restorePhase, { env, log, signal, ...(backupDigestedInThisRun ? { backupDigestedInThisRun } : {}) }));
  },
});
