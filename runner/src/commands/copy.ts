/**
 * `copy --dir D`: `backup --dir D` then `restore --dir D` in one process, as the Argo CD backup Job
 * that also restores runs them: the restore uses the digests the backup took of these files
 * instead of reading every file again (pg/restore.ts `digestedByThisProcess`: only for that
 * backup's manifest, and only right after it), and one node start and one connection set-up
 * fewer come before it. Everything else is the two commands'.
 */
import { Env, RunnerCommand } from '../../../lib/contract.js';
import { CommonFlags, defineCommand } from '../cli.js';
import { settingsFromEnv } from '../pg/connection.js';
import { backUpAndVerify } from './backup.js';
import { IndexesInRestoreFlag, plainIndexesAfterReady, restoreAndVerify } from './restore.js';

export const copyCommand = defineCommand({
  name: RunnerCommand.copy,
  summary: 'backup then restore in one process: dump SOURCE_* into --dir, verify, restore into TARGET_*, verify, hygiene',
  description: `
Reads SOURCE_* and TARGET_* (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) and TARGET_OWNER.
Does what backup and then restore do, with one difference: the restore takes the dump files'
digests from the backup this process just took instead of reading every file again (a backup
restored later, by another process, is digested again: run backup and restore separately).
TARGET_* is checked before the dump starts.
With <dir>/early-pass.json from checksum-source, the backup reuses its checksums. Logs
"target ready" once the target is verified and the hygiene applied, then builds the plain
indexes the restore left out and ANALYZEs.`,
  flags: {
    dir: CommonFlags.dir,
    jobs: CommonFlags.jobs,
    compression: CommonFlags.compression,
    owner: { type: 'string', description: 'Role that owns every restored object', env: Env.targetOwner, valueName: 'ROLE' },
    'skip-hygiene': { type: 'boolean', description: 'Do not ANALYZE, empty jgroups_ping or release databasechangeloglock' },
    'indexes-in-restore': IndexesInRestoreFlag,
  },
  async run({ flags, env, log }) {
    // A missing or invalid TARGET_* variable stops the run before the dump, not after it.
    settingsFromEnv('TARGET', env);
    const backup = await backUpAndVerify({ dir: flags.dir, jobs: flags.jobs, compression: flags.compression, env, log });
    const restoreRows = await restoreAndVerify({
      dir: flags.dir,
      jobs: flags.jobs,
      owner: flags.owner,
      hygiene: !flags['skip-hygiene'],
      plainIndexesAfterReady: plainIndexesAfterReady(flags['indexes-in-restore'], env),
      digestedByThisProcess: backup.digested,
      env,
      log,
    });
    log.summary([...backup.rows, ...restoreRows]);
    return 0;
  },
});
