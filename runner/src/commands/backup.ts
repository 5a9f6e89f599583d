/**
 * `backup --dir D`: dump SOURCE_* into D (pg_dump -Fd, snapshot-consistent statistics, manifest),
 * then check the backup (files, sizes, the recorded TOC; the dump took every digest) before calling it done. With D/early-pass.json
 * from checksum-source, the tables proven unchanged since keep that pass's checksums.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RunnerCommand } from '../../../lib/contract.js';
import { classifyFilesystemError } from '../errors.js';
import { CommonFlags, defineCommand } from '../cli.js';
import { settingsFromEnv } from '../pg/connection.js';
import { backupDatabase } from '../pg/backup.js';
import { verifyBackup } from '../pg/verify-backup.js';
import { EARLY_PASS_FILE, parseEarlyPass, type EarlyPass } from '../pg/early-pass.js';
import type { BackupManifest } from '../pg/manifest.js';
import type { Logger, SummaryRow } from '../log.js';
import type { DigestedBackup } from '../pg/restore.js';

/** `<dir>/early-pass.json` from checksum-source, if there is one. */
async function readEarlyPass(dir: string): Promise<EarlyPass | undefined> {
  const path = join(dir, EARLY_PASS_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw classifyFilesystemError(error, dir) ?? error;
  }
  return parseEarlyPass(text, path);
}

function earlyPassNote(manifest: BackupManifest): string {
  const early = manifest.earlyPass;
  if (!early) return '';
  if (early.unusable) return `; early pass of ${early.takenAt} not used: ${early.unusable}`;
  const rescanned = early.rescanned.length > 0 ? `; scanned again: ${early.rescanned.slice(0, 3).join(', ')}${early.rescanned.length > 3 ? ', …' : ''}` : '';
  const proof = early.noTransactionSince ? ', no transaction since: no row read' : '';
  return `; ${early.tablesReused} checksummed before the downtime (${early.takenAt}${proof})${rescanned}`;
}

/**
 * Dumps SOURCE_* into `dir` and checks the result (sizes and the recorded TOC: the dump computed
 * every digest from these very files, and a restore recomputes them unless it runs in this
 * process right after, see `copy`); returns the summary rows and what this process digested.
 */
export async function backUpAndVerify(options: {
  dir: string;
  jobs: number;
  compression: number;
  env: NodeJS.ProcessEnv;
  log: Logger;
}): Promise<{ rows: SummaryRow[]; digested: DigestedBackup }> {
  const { dir, log } = options;
  const source = settingsFromEnv('SOURCE', options.env);
  const earlyPass = await readEarlyPass(dir);
  const backup = await backupDatabase({ source, dir, jobs: options.jobs, compression: options.compression, log, ...(earlyPass ? { earlyPass } : {}) });
  const verification = await verifyBackup(dir, { log, digests: false, recordedToc: true });
  const digested = { manifestSha256: backup.manifestSha256, digestedAt: Date.now() };
  const { manifest } = backup;
  const rows = [
    { step: 'dump', durationMs: manifest.durationsMs.dump, rows: manifest.totalRows, bytes: manifest.dumpBytes, note: `${manifest.files.length} files` },
    { step: 'statistics', durationMs: manifest.durationsMs.stats, rows: manifest.totalRows, note: `${manifest.stats.tables.length} tables, concurrent with the dump${earlyPassNote(manifest)}` },
    { step: 'digests', durationMs: manifest.durationsMs.digests, bytes: manifest.dumpBytes },
    { step: 'verify backup', durationMs: verification.durationMs, bytes: verification.bytes },
  ];
  return { rows, digested };
}

export const backupCommand = defineCommand({
  name: RunnerCommand.backup,
  summary: 'Dump the SOURCE_* database into --dir with a manifest, and verify the backup',
  description: `
Reads SOURCE_PGHOST, SOURCE_PGPORT, SOURCE_PGUSER, SOURCE_PGPASSWORD, SOURCE_PGDATABASE.
Writes <dir>/dump (pg_dump directory format) and <dir>/manifest.json (versions, per-table row counts
and checksums, sequences, large objects, file digests). A backup is complete exactly when
manifest.json exists; a crashed run leaves only <dir>/.dump.partial, removed by the next run.
With <dir>/early-pass.json (checksum-source, taken before the application stopped), the tables
proven unchanged since keep its checksums and only the others are scanned in the downtime.`,
  flags: { dir: CommonFlags.dir, jobs: CommonFlags.jobs, compression: CommonFlags.compression },
  async run({ flags, env, log }) {
    log.summary((await backUpAndVerify({ dir: flags.dir, jobs: flags.jobs, compression: flags.compression, env, log })).rows);
    return 0;
  },
});
