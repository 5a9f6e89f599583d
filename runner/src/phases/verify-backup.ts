/**
 * BackedUp → BackupVerified: the backup on the volume is the one the state recorded (manifest
 * digest), every file matches its digest, and pg_restore can read it — before anything is deleted.
 */
import { Phase } from '../../../lib/contract.js';
import { verifyBackup } from '../pg/verify-backup.js';
import { runStep, type HookContext } from './context.js';
import { assertRecordedManifest, backupDirectoryOf } from './dump.js';

export function verifyBackupStep(ctx: HookContext) {
  return runStep(ctx, {
    name: 'verify-backup',
    reaches: Phase.backupVerified,
    async run(state) {
      const dir = backupDirectoryOf(ctx, state);
      await assertRecordedManifest(dir, state);
      const verification = await verifyBackup(dir, { log: ctx.log });
      return {
        detail: `${verification.files} files, ${verification.tables} tables`,
        bytes: verification.bytes,
        note: `→ ${Phase.backupVerified}, ${verification.files} files`,
      };
    },
  });
}
