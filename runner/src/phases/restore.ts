/**
 * LegacyProtected → Restoring → Restored: the target is marked `restoring` (Keycloak's gate keeps
 * waiting, whatever is in the database), then the verified backup is restored. Restoring into a
 * target that already holds exactly the backup is a no-op; a partial restore left by a killed run
 * is cleaned and redone (pg/restore.ts).
 */
import { Phase, ReadyMarker } from '../../../lib/contract.js';
import { requireEndpoint } from '../config.js';
import { writeMarker } from '../pg/marker.js';
import { restoreDatabase } from '../pg/restore.js';
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

/** Restores the recorded backup into the target (idempotent); shared by the restore and a re-restore after a failed verification. */
export async function restoreRecordedBackup(ctx: HookContext) {
  const state = ctx.state!;
  const dir = backupDirectoryOf(ctx, state);
  await assertRecordedManifest(dir, state);
  ctx.lock?.assertHeld();
  return restoreDatabase({ dir, target: requireEndpoint(ctx.config, 'target'), owner: targetOwner(ctx), jobs: ctx.config.parallelJobs, log: ctx.log });
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
      return { detail: how, rows: result.manifest.totalRows, bytes: result.bytes, note: `→ ${Phase.restored}, ${how}` };
    },
  });
}
