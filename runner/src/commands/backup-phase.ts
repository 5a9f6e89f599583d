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
 */
import { Env, Phase, RunnerCommand } from '../../../lib/contract.js';
import { defineCommand } from '../cli.js';
import { requireBackupDir } from '../config.js';
import { isRunnerError, usageError } from '../errors.js';
import { hasReached, isTerminal, type MigrationState } from '../state.js';
import { advanceTo, beginStep, createHookContext, readState, runHook, withMigrationLock, type HookContext } from '../phases/context.js';
import { dumpStep } from '../phases/dump.js';
import { protectLegacyStep } from '../phases/protect-legacy.js';
import { quiesce } from '../phases/quiesce.js';
import { takeOverReleaseObjects } from '../phases/take-over.js';
import { assertLegacyUnchangedSinceCompletion, reuseOrSupersedeBackup } from '../phases/source-freshness.js';
import { verifyBackupStep } from '../phases/verify-backup.js';
import { checkTargetWritable } from '../phases/wait-for-target.js';
import { restoreBackupOnRecord } from './restore-phase.js';

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
      await restoreUnlessLeftToRestoreJob(ctx, fresh);
      return 0;
    });
  });
}

/**
 * With MIGRATION_RESTORE_IN_BACKUP_JOB (Argo CD), goes on from LegacyProtected to Completed in
 * this Job when the target accepts writes now: the new database's wave was healthy before this
 * one, and the restore Job would add Argo CD's next wave, a pod start and a second runner start
 * to the downtime. Never waits, so never fails for the target: one check, and whatever it finds
 * (no target password yet, not reachable, a standby, a wrong password) leaves the restore to
 * restore-phase, which waits and reports as it always does. A restore an earlier run of the
 * migration began (`startedAt` past LegacyProtected: this pod is the Job's retry after a crash in
 * it, or an earlier sync's restore failed) is also left to restore-phase, under its own Job's
 * deadline and retries, so a restore that cannot finish here never keeps this Job failing.
 */
async function restoreUnlessLeftToRestoreJob(ctx: HookContext, startedAt: MigrationState): Promise<void> {
  if (!ctx.config.restoreInBackupJob) return;
  const leaveIt = (reason: string) => ctx.log.info(`the restore Job restores: ${reason}`);
  if (hasReached(startedAt, Phase.restoring)) return leaveIt(`an earlier run began the restore (phase ${startedAt.phase} when this one started)`);
  const target = ctx.config.target;
  if (!target.settings) return leaveIt(`${Env.targetHost} is not set`);
  if (!target.passwordSet) return leaveIt(`${Env.targetPassword} is not set (its Secret does not exist yet)`);
  try {
    await checkTargetWritable(target.settings);
  } catch (error) {
    if (!isRunnerError(error) || ctx.signal?.aborted) throw error;
    return leaveIt(`the target does not accept writes yet (${error.message})`);
  }
  ctx.log.info(`the target accepts writes: restoring in this Job (${Env.restoreInBackupJob}=true)`);
  await restoreBackupOnRecord(ctx, { waitForTarget: async () => {} });
}

export const backupPhaseCommand = defineCommand({
  name: RunnerCommand.backupPhase,
  summary: 'Hook, second pre-phase Job: quiesce the workloads, dump the source, verify the backup, protect (and optionally delete) the legacy database',
  description: `
Needs MIGRATION_BACKUP_DIR (the mounted backup PVC) and the state prepare created.
Records the workloads' replica counts, scales them to 0 and waits until their pods are gone →
Quiesced (every run that is not terminal: a resumed migration keeps them at 0) → BackedUp
(pg_dump -Fd into <dir>/<migrationId>, manifest digest recorded) →
BackupVerified (digests, pg_restore --list) → LegacyProtected (PVs set to Retain with
MIGRATION_PROTECT_VOLUMES=true; legacy deleted only with MIGRATION_DELETE_LEGACY=after-backup).
With a backup already on record: compares the legacy database's write counters
with the backup's; unchanged → nothing to do; changed (e.g. written during a rollback) → the backup
is superseded (state back to Quiesced, Event MigrationBackupSuperseded) and taken anew into
<dir>/<migrationId>.N. Legacy StatefulSet present but its database unreachable: exit 69 (78 when
SOURCE_PGPASSWORD is unset: its Secret does not exist).
Completed, and the legacy StatefulSet exists again (a rollback): its database changed since the
backup → exit 65, or it cannot be compared → exit 69 (78 without SOURCE_PGPASSWORD); nothing
changed, unless MIGRATION_ACCEPT_LEGACY_CHANGES_OF names the migration.`,
  flags: {},
  async run({ env, log, signal }) {
    return runBackupPhase(createHookContext(RunnerCommand.backupPhase, { env, log, signal }));
  },
});
