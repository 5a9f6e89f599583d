/**
 * `backup --dir D`: dump SOURCE_* into D (pg_dump -Fd, snapshot-consistent statistics, manifest),
 * then verify the backup (digests, pg_restore --list) before calling it done.
 */
import { RunnerCommand } from '../../../lib/contract.js';
import { CommonFlags, defineCommand } from '../cli.js';
import { settingsFromEnv } from '../pg/connection.js';
import { backupDatabase } from '../pg/backup.js';
import { verifyBackup } from '../pg/verify-backup.js';

export const backupCommand = defineCommand({
  name: RunnerCommand.backup,
  summary: 'Dump the SOURCE_* database into --dir with a manifest, and verify the backup',
  description: `
Reads SOURCE_PGHOST, SOURCE_PGPORT, SOURCE_PGUSER, SOURCE_PGPASSWORD, SOURCE_PGDATABASE.
Writes <dir>/dump (pg_dump directory format) and <dir>/manifest.json (versions, per-table row counts
and checksums, sequences, large objects, file digests). A backup is complete exactly when
manifest.json exists; a crashed run leaves only <dir>/.dump.partial, removed by the next run.`,
  flags: { dir: CommonFlags.dir, jobs: CommonFlags.jobs, compression: CommonFlags.compression },
  async run({ flags, env, log }) {
    const source = settingsFromEnv('SOURCE', env);
    const backup = await backupDatabase({ source, dir: flags.dir, jobs: flags.jobs, compression: flags.compression, log });
    // The digests were just computed from these files: check sizes and pg_restore's TOC here; the
    // restore recomputes every digest before relying on them.
    const verification = await verifyBackup(flags.dir, { log, digests: false });
    const { manifest } = backup;
    log.summary([
      { step: 'dump', durationMs: manifest.durationsMs.dump, rows: manifest.totalRows, bytes: manifest.dumpBytes, note: `${manifest.files.length} files` },
      { step: 'statistics', durationMs: manifest.durationsMs.stats, rows: manifest.totalRows, note: `${manifest.stats.tables.length} tables, concurrent with the dump` },
      { step: 'digests', durationMs: manifest.durationsMs.digests, bytes: manifest.dumpBytes },
      { step: 'verify backup', durationMs: verification.durationMs, bytes: verification.bytes },
    ]);
    return 0;
  },
});
