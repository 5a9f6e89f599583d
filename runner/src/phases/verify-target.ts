/**
 * Restored → Verified: the target holds exactly what the manifest describes (rows and checksums
 * per table, sequences, large objects, objects, ownership by the new owner). A mismatch is a data
 * error (65) naming the tables, recorded in the state; the marker stays `restoring`, so Keycloak
 * never starts on it, and nothing legacy is touched.
 *
 * After a failed verification, the next run restores again first (the restore cleans what differs
 * and redoes it from the verified backup) instead of failing on the same difference forever.
 */
import { ExitCode, Phase } from '../../../lib/contract.js';
import { requireEndpoint } from '../config.js';
import { isRunnerError } from '../errors.js';
import { deferrableIndexIds } from '../pg/deferred-indexes.js';
import { readManifest } from '../pg/manifest.js';
import { verifyTarget } from '../pg/verify-target.js';
import { runStep, updateState, type HookContext } from './context.js';
import { backupDirectoryOf } from './dump.js';
import { analyzeAfterKeycloakIsBack, restoredInThisRun, restoreRecordedBackup, targetOwner } from './restore.js';

export function verifyTargetStep(ctx: HookContext) {
  return runStep(ctx, {
    name: 'verify-target',
    reaches: Phase.verified,
    async run(state) {
      if (state.verification && !state.verification.ok) {
        ctx.log.warn('the last verification of the target failed: restoring again before verifying', { mismatches: state.verification.mismatches });
        await restoreRecordedBackup(ctx);
      }
      const manifest = await readManifest(backupDirectoryOf(ctx, state));
      // Checksums taken during a restore this process saw finish; after a resume, every table is scanned.
      const restored = restoredInThisRun(ctx, state);
      const checksummedTables = restored?.checksummedTables;
      const checksummedLargeObjects = restored?.checksummedLargeObjects;
      const checksumsInProgress = restored?.checksumsInProgress;
      // The plain indexes come after the ready marker when this runner brings Keycloak back
      // (complete.ts builds whatever is missing then); a resumed run reads which ones from the
      // backup, whatever MIGRATION_INDEXES_AFTER_READY says now (the run that restored decided).
      const indexesBuiltLater =
        restored?.indexesBuiltLater ?? (analyzeAfterKeycloakIsBack(ctx) ? await deferrableIndexIds(backupDirectoryOf(ctx, state), { log: ctx.log }) : undefined);
      let verification;
      try {
        verification = await verifyTarget(requireEndpoint(ctx.config, 'target'), manifest, {
          owner: targetOwner(ctx),
          jobs: ctx.config.parallelJobs,
          log: ctx.log,
          ...(checksummedTables ? { checksummedTables } : {}),
          ...(checksummedLargeObjects ? { checksummedLargeObjects } : {}),
          ...(checksumsInProgress ? { checksumsInProgress } : {}),
          ...(indexesBuiltLater ? { indexesBuiltLater } : {}),
        });
      } catch (error) {
        // Only a difference is a verification result; an unreachable target is just a failed attempt.
        if (isRunnerError(error) && error.exitCode === ExitCode.dataError) {
          const message = error.message;
          await updateState(ctx, (current) => ({
            ...current,
            verification: { ok: false, at: new Date().toISOString(), tablesChecked: manifest.stats.tables.length, rowsChecked: 0, mismatches: [message.slice(0, 1500)] },
          }));
        }
        throw error;
      }
      return {
        detail: `${verification.tables} tables, ${verification.rows} rows match the manifest${checksummedTables?.size ? ` (${checksummedTables.size} checksummed during the restore)` : ''}`,
        changes: {
          verification: { ok: true, at: new Date().toISOString(), tablesChecked: verification.tables, rowsChecked: verification.rows, mismatches: [] },
        },
        rows: verification.rows,
        note: `→ ${Phase.verified}, ${verification.tables} tables`,
      };
    },
  });
}
