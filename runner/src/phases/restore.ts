/**
 * LegacyProtected → Restoring → Restored: the target is marked `restoring` (Keycloak's gate keeps
 * waiting, whatever is in the database), then the verified backup is restored. Restoring into a
 * target that already holds exactly the backup is a no-op; a partial restore left by a killed run
 * is cleaned and redone (pg/restore.ts).
 */
import { Phase, ReadyMarker } from '../../../lib/contract.js';
import { requireEndpoint } from '../config.js';
import { writeMarker } from '../pg/marker.js';
import { restoreDatabase, type RestoreResult } from '../pg/restore.js';
import type { MigrationState } from '../state.js';
import { runStep, type HookContext } from './context.js';
import { assertRecordedManifest, backupDirectoryOf } from './dump.js';

export function targetOwner(ctx: HookContext): string {
  return ctx.config.targetOwner ?? requireEndpoint(ctx.config, 'target').user;
}

export function markRestoringStep(ctx: HookContext) {
  return runStep(ctx, {
    name: 'mark-restoring',
    reaches: Phase.restoring,
    async run(state) {
      await writeMarker(requireEndpoint(ctx.config, 'target'), { status: ReadyMarker.restoring, migrationId: state.migrationId, owner: targetOwner(ctx) });
      return { detail: `ready marker set to ${ReadyMarker.restoring}`, note: `→ ${Phase.restoring}` };
    },
  });
}

/**
 * Restores the recorded backup into the target (idempotent); shared by the restore and a
 * re-restore after a failed verification. Each table is checksummed and ANALYZEd as soon as
 * pg_restore has loaded it, overlapping the rest of the restore; the result is kept in memory
 * only (`ctx.restoredInThisRun`) for this process's verification and hygiene — never persisted, so
 * a restore that crashes leaves nothing the next process could wrongly trust.
 */
export async function restoreRecordedBackup(ctx: HookContext) {
  const state = ctx.state!;
  const dir = backupDirectoryOf(ctx, state);
  await assertRecordedManifest(dir, state);
  ctx.lock?.assertHeld();
  ctx.restoredInThisRun = undefined;
  const result = await restoreDatabase({
    dir,
    target: requireEndpoint(ctx.config, 'target'),
    owner: targetOwner(ctx),
    jobs: ctx.config.parallelJobs,
    log: ctx.log,
    checksumDuringRestore: true,
    analyze: true,
  });
  ctx.restoredInThisRun = { manifestSha256: state.backup!.manifestSha256, result };
  return result;
}

/** What this process's finished restore of the backup on record left for the steps after it. */
export function restoredInThisRun(ctx: HookContext, state: MigrationState): RestoreResult | undefined {
  const restored = ctx.restoredInThisRun;
  return restored && state.backup && restored.manifestSha256 === state.backup.manifestSha256 ? restored.result : undefined;
}

export function restoreStep(ctx: HookContext) {
  return runStep(ctx, {
    name: 'restore',
    reaches: Phase.restored,
    async run() {
      const result = await restoreRecordedBackup(ctx);
      const how =
        result.action === 'already-restored'
          ? 'the target already held the backup'
          : result.cleaned.length > 0
            ? `cleaned ${result.cleaned.length} objects of a partial restore, restored again`
            : 'restored';
      const early = result.checksummedTables.size ? `; ${result.checksummedTables.size} table(s) checksummed during the restore` : '';
      return { detail: how, rows: result.manifest.totalRows, bytes: result.bytes, note: `→ ${Phase.restored}, ${how}${early}` };
    },
  });
}
