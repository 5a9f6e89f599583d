/**
 * Before a run reuses the backup on record, it asks the legacy database whether anything was
 * written since that backup (pg/source-changes.ts). This matters after a rollback: the restore
 * failed, the operator went back to the old release, whose Keycloak wrote to the legacy database
 * again, then upgraded again — and restoring the old backup would lose those writes.
 *
 * - backup-phase, once it has quiesced the workloads again, checks, and if the source changed
 *   supersedes the backup (state back to Quiesced, recorded in the history and as an Event) and
 *   dumps anew;
 * - restore-phase checks before it restores or marks anything ready, and refuses with a data
 *   error (65) if the source changed: the pre-upgrade hooks are what take a new backup.
 *
 * Never re-dumped: a source the runner itself deleted (MIGRATION_DELETE_LEGACY=after-backup). A
 * database answering there later is a new one (e.g. recreated by a rollback with an empty
 * volume), and the verified backup is the only copy of the data besides the retained volume.
 */
import { Env, ExitCode } from '../../../lib/contract.js';
import { isRunnerError, RunnerError, dataError } from '../errors.js';
import { withClient } from '../pg/connection.js';
import { readManifest } from '../pg/manifest.js';
import { compareSourceFingerprints, readSourceFingerprint, type SourceComparison } from '../pg/source-changes.js';
import { supersedeBackup, type MigrationState } from '../state.js';
import { timed, updateState, type HookContext } from './context.js';
import { probeLegacyStatefulSet, type LegacyProbe } from './decide.js';
import { backupDirectoryOf } from './dump.js';

export type SourceFreshness =
  | { readonly kind: 'compared'; readonly comparison: SourceComparison }
  /**
   * The source could not be asked: `missing` names the unset variable (no host, or no password:
   * its Secret does not exist); `error` is set when it was asked and answered with one.
   */
  | { readonly kind: 'unreachable'; readonly reason: string; readonly error?: RunnerError; readonly missing?: string }
  /** The runner deleted the legacy database: whatever answers there is not the database backed up. */
  | { readonly kind: 'deleted-by-runner' };

/** Compares the source now with the fingerprint in the recorded backup's manifest. */
export async function checkSourceSinceBackup(ctx: HookContext, state: MigrationState): Promise<SourceFreshness> {
  if (state.legacyDeleted) return { kind: 'deleted-by-runner' };
  const source = ctx.config.source;
  if (!source.settings) return { kind: 'unreachable', reason: `${Env.sourceHost} is not set`, missing: Env.sourceHost };
  if (!source.passwordSet) return { kind: 'unreachable', reason: `${Env.sourcePassword} is unset (its Secret does not exist)`, missing: Env.sourcePassword };
  const manifest = await readManifest(backupDirectoryOf(ctx, state));
  try {
    const current = await withClient(source.settings, (client) => readSourceFingerprint(client), { purpose: 'source-changes', action: 'read the write counters of' });
    return { kind: 'compared', comparison: compareSourceFingerprints(manifest.sourceFingerprint, current) };
  } catch (error) {
    if (!isRunnerError(error)) throw error;
    return { kind: 'unreachable', reason: error.message, error };
  }
}

/**
 * backup-phase with a backup on record, after it quiesced the workloads again (the rolled-back
 * release may have scaled them up): keep the backup if the source is unchanged, or supersede it so
 * that the steps that follow dump, verify and protect anew.
 */
export async function reuseOrSupersedeBackup(ctx: HookContext): Promise<void> {
  const state = ctx.state!;
  const backupDir = state.backup!.dir;
  const freshness = await timed(ctx, 'check-source', () => checkSourceSinceBackup(ctx, state), (result) => ({ note: describeFreshness(result) }));
  switch (freshness.kind) {
    case 'deleted-by-runner':
      ctx.log.info(`reusing backup ${backupDir}: the runner deleted the legacy database after it, so nothing can have written to it`);
      return;
    case 'unreachable': {
      // An answering server that refuses us (password, permissions) must be fixed, not ignored.
      if (freshness.error && freshness.error.exitCode !== ExitCode.unavailable) throw freshness.error;
      const legacy = await probeLegacyStatefulSet(ctx.kube, ctx.config);
      if (legacy.exists) throw notComparable(legacy, freshness, `cannot tell whether the legacy database changed after backup ${backupDir}`);
      ctx.log.warn(`reusing backup ${backupDir}: the legacy database is not reachable and no legacy StatefulSet exists, so nothing can have written to it`, {
        reason: freshness.reason,
      });
      return;
    }
    case 'compared': {
      const { comparison } = freshness;
      if (!comparison.changed) {
        ctx.log.info(`reusing backup ${backupDir}: the legacy database has not changed since it`);
        return;
      }
      ctx.log.warn(`the legacy database changed after backup ${backupDir} (${comparison.summary}): taking a new backup`, { writes: comparison.writes });
      ctx.lock?.assertHeld();
      await updateState(ctx, (current) => (current.backup?.dir === backupDir ? supersedeBackup(current, comparison.summary) : current));
      return;
    }
  }
}

/**
 * restore-phase: refuses (65) to restore or mark ready a backup the source moved on from. An
 * unreachable source is no reason to stop here: backup-phase, which ran before in the same upgrade,
 * already checked it strictly.
 */
export async function assertSourceUnchangedSinceBackup(ctx: HookContext): Promise<void> {
  const state = ctx.state!;
  const freshness = await checkSourceSinceBackup(ctx, state);
  if (freshness.kind === 'compared' && freshness.comparison.changed) {
    throw dataError(
      `the legacy database changed after the backup (${freshness.comparison.summary})`,
      'run the upgrade (or sync) again so that backup-phase takes a new backup; nothing was restored or marked ready',
    );
  }
  if (freshness.kind === 'unreachable') ctx.log.info('could not compare the legacy database with the backup; restoring the verified backup', { reason: freshness.reason });
  else ctx.log.info(`the backup is current: ${describeFreshness(freshness)}`);
}

/**
 * backup-phase of a Completed migration (every later upgrade or sync): if the legacy database is
 * back — its StatefulSet exists again, as after a rollback to the old release — and changed since
 * the backup the new database was restored from, refuse (65). The rolled-back Keycloak wrote those
 * changes; the upgrade would switch Keycloak back to the new database, where they are missing, and
 * nothing would ever copy them. Failing the backup hook (before it stops anything) leaves the old
 * release running on the legacy database, so nothing is lost while the operator chooses which side wins.
 * A legacy database that cannot be asked (not answering: 69, the Job retries; its password Secret
 * gone: 78; the server's own error, e.g. a wrong password: its code) stops the run the same way,
 * since the runner cannot tell; {@link Env.acceptLegacyChangesOf} goes on without asking.
 *
 * Costs one API read when the legacy StatefulSet is gone (the normal case after Helm's upgrade or
 * Argo CD's prune), and a few catalog queries when it exists. Statistics that were reset (the
 * legacy server crashed) count as a change, as everywhere in source-freshness: a false alarm is
 * answered with {@link Env.acceptLegacyChangesOf}, a missed one would lose data.
 */
export async function assertLegacyUnchangedSinceCompletion(ctx: HookContext, state: MigrationState): Promise<void> {
  if (state.legacyDeleted || !state.backup) return;
  const legacy = await probeLegacyStatefulSet(ctx.kube, ctx.config);
  if (!legacy.exists) return;
  if (ctx.config.acceptLegacyChangesOf === state.migrationId) {
    ctx.log.warn(`not comparing the legacy database with migration ${state.migrationId}'s backup: ${Env.acceptLegacyChangesOf} accepts its later changes`, { legacy: legacy.name });
    return;
  }
  let freshness: SourceFreshness;
  try {
    freshness = await checkSourceSinceBackup(ctx, state);
  } catch (error) {
    // The completed backup's manifest is gone (volume replaced or cleaned by hand): nothing to compare.
    if (!isRunnerError(error)) throw error;
    ctx.log.warn(`cannot compare the legacy database with migration ${state.migrationId}'s backup: ${error.message}`);
    return;
  }
  if (freshness.kind === 'unreachable' && legacy.replicas === 0) {
    // Scaled to 0 (kept, stopped, e.g. under Argo CD without prune): nothing serves on it, so no
    // rollback is writing there now. Failing every later sync until it is deleted would help no one.
    ctx.log.warn(`legacy StatefulSet ${legacy.name} exists, scaled to 0, and cannot be compared with migration ${state.migrationId}'s backup: ${freshness.reason}; going on`);
    return;
  }
  if (freshness.kind === 'unreachable') {
    // The rolled-back release may be starting on it and writing: going on would leave those writes behind.
    throw notComparable(
      legacy,
      freshness,
      `cannot tell whether the legacy database changed after migration ${state.migrationId} completed (its StatefulSet ${legacy.name} exists again: a rollback?; nothing was changed)`,
      `; or, to go on without comparing (whatever the old release wrote there since is left behind), set ${Env.acceptLegacyChangesOf}=${state.migrationId} (platform config migration.acceptLegacyChangesOf) and upgrade again`,
    );
  }
  if (freshness.kind !== 'compared') {
    ctx.log.info(`legacy StatefulSet ${legacy.name} exists but could not be compared with the backup: ${describeFreshness(freshness)}`);
    return;
  }
  if (!freshness.comparison.changed) {
    ctx.log.info(`legacy StatefulSet ${legacy.name} exists; its database is unchanged since migration ${state.migrationId}'s backup`);
    return;
  }
  throw dataError(
    `the legacy database changed after migration ${state.migrationId} completed (${freshness.comparison.summary}): the old release ran on it again (a rollback?), and this upgrade would move Keycloak back to the new database, where those changes are missing. Nothing was changed; the old release keeps running`,
    `choose which database wins. Keep the new one and discard the legacy changes: set ${Env.acceptLegacyChangesOf}=${state.migrationId} (platform config migration.acceptLegacyChangesOf) and upgrade again. ` +
      `Migrate the legacy database again (the new database's writes since ${state.updatedAt} are replaced): scale Keycloak down, recreate the new database empty, delete ConfigMap ${ctx.config.stateConfigMap}, upgrade again`,
  );
}

/**
 * Why a legacy database whose StatefulSet exists could not be compared, as the error that stops
 * the run: the runner cannot tell whether it was written to. An unset setting (78: waiting does not
 * create a Secret) names the variable and the Secrets the legacy pods read; a server that answered
 * with an error keeps that error's code; one that does not answer (69) may be starting, so the Job
 * retries. `orElse` is appended to the hint (the way to go on anyway, where there is one); without
 * it a server's own error is passed on as it is.
 */
function notComparable(legacy: LegacyProbe, freshness: Extract<SourceFreshness, { kind: 'unreachable' }>, what: string, orElse?: string): RunnerError {
  if (freshness.missing) {
    const podSecrets = legacy.podSecrets?.length ? `; the legacy pods read Secret ${legacy.podSecrets.join(', ')}` : '';
    const fix =
      freshness.missing === Env.sourcePassword
        ? `create the Secret the Job reads ${Env.sourcePassword} from (platform config legacyDatabase.secretName and passwordKey), or point them at the one holding the password${podSecrets}; then run the upgrade again`
        : `set ${freshness.missing} (platform config legacyDatabase) and run the upgrade again`;
    return new RunnerError(`${what}: the legacy StatefulSet ${legacy.name} exists but ${freshness.reason}`, { exitCode: ExitCode.config, hint: `${fix}${orElse ?? ''}` });
  }
  if (freshness.error && freshness.error.exitCode !== ExitCode.unavailable) {
    if (orElse === undefined) return freshness.error;
    return new RunnerError(`${what}: ${freshness.error.message}`, { exitCode: freshness.error.exitCode, hint: `${freshness.error.hint ?? 'fix the cause'}${orElse}`, cause: freshness.error });
  }
  return new RunnerError(`${what}: ${freshness.reason}`, {
    exitCode: ExitCode.unavailable,
    hint: `start the legacy database (StatefulSet ${legacy.name}) so the runner can compare it with the backup; the Job retries${orElse ?? ''}`,
  });
}

function describeFreshness(freshness: SourceFreshness): string {
  switch (freshness.kind) {
    case 'compared':
      return freshness.comparison.changed ? `legacy database changed: ${freshness.comparison.summary}` : 'legacy database unchanged since the backup';
    case 'unreachable':
      return `legacy database not reachable (${freshness.reason})`;
    case 'deleted-by-runner':
      return 'legacy database deleted by the runner after the backup';
  }
}
