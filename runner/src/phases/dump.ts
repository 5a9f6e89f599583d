/**
 * Quiesced → BackedUp: the dump of the source onto the backup volume, in a directory of its own
 * per migration (`<MIGRATION_BACKUP_DIR>/<migrationId>`, `<migrationId>.2` for a backup that
 * replaced a superseded one), whose manifest digest the state records
 * so that every later step proves it works on exactly this backup.
 */
import { join } from 'node:path';
import { ExitCode, Phase } from '../../../lib/contract.js';
import { requireBackupDir, requireEndpoint } from '../config.js';
import { dataError, isRunnerError } from '../errors.js';
import { backupDatabase, sha256File } from '../pg/backup.js';
import { MANIFEST_FILE } from '../pg/manifest.js';
import { nextBackupDirName, type MigrationState } from '../state.js';
import { runStep, type HookContext } from './context.js';
import { removeSupersededBackups, removeUnrecordedDump } from './prune-backups.js';
import { forgetEarlyPass, storedEarlyPass } from './early-pass.js';

/**
 * The backup directory of a migration: the recorded backup's, else where the next dump goes
 * (the state records it relative to the volume's mount point).
 */
export function backupDirectoryOf(ctx: HookContext, state: MigrationState): string {
  return join(requireBackupDir(ctx.config, ctx.command), state.backup?.dir ?? nextBackupDirName(state));
}

/**
 * Checks that `<dir>/manifest.json` is the manifest the state recorded: the restore must read the
 * backup that was verified, not one written later or by another migration.
 */
export async function assertRecordedManifest(dir: string, state: MigrationState): Promise<void> {
  const recorded = state.backup?.manifestSha256;
  if (!recorded) throw dataError(`the state records no backup for migration ${state.migrationId}`, 'run backup-phase (the upgrade or sync) again');
  let actual: string;
  try {
    actual = await sha256File(join(dir, MANIFEST_FILE));
  } catch {
    throw dataError(
      `the backup recorded in the state (${dir}/${MANIFEST_FILE}) is missing`,
      'the backup volume was replaced or cleaned; if the legacy database still exists, delete the state ConfigMap and run the migration again',
    );
  }
  if (actual !== recorded) {
    throw dataError(
      `${dir}/${MANIFEST_FILE} has sha256 ${actual.slice(0, 12)}…, but the state recorded ${recorded.slice(0, 12)}…`,
      'the backup was replaced after it was verified; do not restore it. Inspect the backup volume',
    );
  }
}

export function dumpStep(ctx: HookContext) {
  return runStep(ctx, {
    name: 'backup',
    reaches: Phase.backedUp,
    async run(state) {
      // backup-phase quiesced the workloads just before, under the same lock.
      ctx.lock?.assertHeld();
      const dir = backupDirectoryOf(ctx, state);
      // Nothing recorded: whatever an earlier attempt left there would only count against the free space.
      if (!state.backup) await removeUnrecordedDump(requireBackupDir(ctx.config, ctx.command), nextBackupDirName(state), ctx.log);
      const { pass: earlyPass, stored: earlyPassStored } = await storedEarlyPass(ctx);
      const dump = () =>
        backupDatabase({
          source: requireEndpoint(ctx.config, 'source'),
          dir,
          jobs: ctx.config.parallelJobs,
          compression: ctx.config.dumpCompression,
          log: ctx.log,
          ...(earlyPass ? { earlyPass } : {}),
        });
      let result: Awaited<ReturnType<typeof backupDatabase>>;
      try {
        result = await dump();
      } catch (error) {
        // The volume was sized for one backup: a stale one superseded by this dump must not block it.
        if (!isRunnerError(error) || error.exitCode !== ExitCode.config) throw error;
        const removed = await removeSupersededBackups(requireBackupDir(ctx.config, ctx.command), state, ctx.log);
        if (removed.length === 0) throw error;
        result = await dump();
      }
      const { manifest } = result;
      // Every file's sha256 was just computed from the files on the volume (phases/verify-backup.ts).
      ctx.backupDigestedInThisRun = { manifestSha256: result.manifestSha256, digestedAt: Date.now() };
      // It served this dump (or could not be read); a later dump (after a rollback) checksums in its own downtime.
      if (earlyPassStored) await forgetEarlyPass(ctx).catch((error: Error) => ctx.log.warn('could not remove the early checksum pass from the state ConfigMap', { reason: error.message }));
      const early = manifest.earlyPass;
      const reused = early && !early.unusable
        ? `, ${early.tablesReused} checksummed before the downtime${early.noTransactionSince ? ' (no transaction since: no row read)' : ''}`
        : '';
      return {
        detail: `${manifest.stats.tables.length} tables, ${manifest.totalRows} rows, ${manifest.dumpBytes} bytes${reused}`,
        changes: {
          backup: {
            dir: nextBackupDirName(state),
            manifestSha256: result.manifestSha256,
            bytes: manifest.dumpBytes,
            tableCount: manifest.stats.tables.length,
            rows: manifest.totalRows,
            pvc: ctx.config.backupPvc,
            completedAt: new Date().toISOString(),
          },
        },
        rows: manifest.totalRows,
        bytes: manifest.dumpBytes,
        note: `→ ${Phase.backedUp}, ${manifest.files.length} files`,
      };
    },
  });
}
