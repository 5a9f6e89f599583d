/**
 * `verify --dir D`: check the backup (file digests against the manifest, pg_restore --list, every
 * table's data in the TOC) and, when TARGET_* is set, the target's data against the manifest.
 */
import { Env, RunnerCommand } from '../../../lib/contract.js';
import { CommonFlags, defineCommand } from '../cli.js';
import { type SummaryRow } from '../log.js';
import { hasEndpointInEnv, settingsFromEnv } from '../pg/connection.js';
import { verifyBackup } from '../pg/verify-backup.js';
import { verifyTarget } from '../pg/verify-target.js';

export const verifyCommand = defineCommand({
  name: RunnerCommand.verify,
  summary: 'Verify the backup in --dir and, when TARGET_PGHOST is set, the target database against it',
  description: `
Exit code 65 (data error) names the damaged files or the differing tables.
With TARGET_OWNER set, every restored object must also be owned by that role.`,
  flags: {
    dir: CommonFlags.dir,
    jobs: CommonFlags.jobs,
    owner: { type: 'string', description: 'Also check that every restored object is owned by this role', env: Env.targetOwner, valueName: 'ROLE' },
  },
  async run({ flags, env, log }) {
    const rows: SummaryRow[] = [];
    const backup = await verifyBackup(flags.dir, { log });
    rows.push({ step: 'verify backup', durationMs: backup.durationMs, bytes: backup.bytes, note: `${backup.files} files, ${backup.tables} tables` });
    if (hasEndpointInEnv('TARGET', env)) {
      const target = settingsFromEnv('TARGET', env);
      const verification = await verifyTarget(target, backup.manifest, { owner: flags.owner, jobs: flags.jobs, log });
      rows.push({ step: 'verify target', durationMs: verification.durationMs, rows: verification.rows, note: `${verification.tables} tables` });
    } else {
      log.info('TARGET_PGHOST is not set: verified the backup only');
    }
    log.summary(rows);
    return 0;
  },
});
