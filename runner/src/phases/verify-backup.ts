/**
 * BackedUp → BackupVerified: the backup on the volume is the one the state recorded (manifest
 * digest), every file matches its digest, and pg_restore can read it — before anything is deleted.
 *
 * Right after this process's dump (`ctx.backupDigestedInThisRun`) the digests are the ones the
 * dump computed from these very files as pg_dump finished each, and pg_restore's listing of
 * toc.dat the one the dump recorded: checking presence, sizes and toc.dat's digest against the
 * manifest is then the same proof without reading the whole dump again in the downtime (about a
 * second per GiB here), as the low-level `backup` command does. A run that resumes at BackedUp
 * (the process that dumped crashed) reads and digests every file and lists the TOC with pg_restore,
 * and so does every run with MIGRATION_DELETE_LEGACY=after-backup, which deletes the legacy
 * database next.
 */
import { DeleteLegacy, Phase } from '../../../lib/contract.js';
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
      // Deleting the legacy database next (after-backup) is the point of no return: every file is
      // read back first, whoever digested it.
      const useTheDumpsDigests = ctx.backupDigestedInThisRun?.manifestSha256 === state.backup?.manifestSha256 && ctx.config.deleteLegacy !== DeleteLegacy.afterBackup;
      const verification = await verifyBackup(dir, { log: ctx.log, digests: !useTheDumpsDigests, recordedToc: useTheDumpsDigests });
      if (!useTheDumpsDigests && state.backup) ctx.backupDigestedInThisRun = { manifestSha256: state.backup.manifestSha256, digestedAt: Date.now() };
      const how = useTheDumpsDigests ? 'digests taken by this run\'s dump' : 'every file digested again';
      return {
        detail: `${verification.files} files, ${verification.tables} tables, ${how}`,
        bytes: verification.bytes,
        note: `→ ${Phase.backupVerified}, ${verification.files} files, ${how}`,
      };
    },
  });
}
