/**
 * Proves a backup directory usable before anything is deleted or restored: every file of the dump
 * has the size and sha256 the manifest recorded (and no file is missing or extra), pg_restore can
 * read its table of contents, and that TOC holds the data of every table the manifest counted.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { configError, dataError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { digestDirectory, sha256File } from './backup.js';
import { DUMP_DIRECTORY, readManifest, type BackupManifest } from './manifest.js';
import { parseToc, readToc, type TocEntry } from './toc.js';
import { findPgTools, type PgTools } from './tools.js';

/** The dump directory's table of contents, which pg_restore reads first. */
const TOC_FILE = 'toc.dat';

export interface BackupVerification {
  readonly manifest: BackupManifest;
  readonly dumpDir: string;
  readonly toc: readonly TocEntry[];
  readonly files: number;
  readonly bytes: number;
  readonly tables: number;
  readonly durationMs: number;
}

export interface VerifyBackupOptions {
  readonly tools?: PgTools;
  readonly log?: Logger;
  /**
   * Recompute every file's sha256. `false` checks presence and sizes only: for the check right
   * after `backupDatabase`, which computed the digests from these very files.
   * @default true
   */
  readonly digests?: boolean;
  /**
   * Take the TOC from the listing the manifest recorded (`tocListing`: what pg_restore printed for
   * this dump when the backup was taken) instead of running `pg_restore --list` again, once toc.dat
   * has the digest the manifest recorded (read here whatever `digests` says: a few kilobytes). A
   * manifest without a listing (an older runner's) is listed as before. For the backup's own check
   * and the restore, each of which would otherwise start pg_restore once more (tens of
   * milliseconds of the downtime). @default false
   */
  readonly recordedToc?: boolean;
}

function listProblems(problems: string[], limit = 10): string {
  const shown = problems.slice(0, limit).join('; ');
  return problems.length > limit ? `${shown}; and ${problems.length - limit} more` : shown;
}

/**
 * How many files are looked at (stat, and sha256 with `only`) at a time. A dump holds a file per
 * large object (6,000 at 4 GiB of the benchmark's lob data): all of them at once left tens of MiB
 * of short-lived objects, for which V8 grew the heap that node's RSS then kept (measured at 4 GiB
 * lob: see bench/RESULTS.md).
 */
const STAT_BATCH = 64;

/** `fn` over `items`, at most `batch` at a time, results in order. */
async function mapInBatches<T, R>(items: readonly T[], batch: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let start = 0; start < items.length; start += batch) results.push(...(await Promise.all(items.slice(start, start + batch).map(fn))));
  return results;
}

/**
 * Checks the dump's files against the manifest: present, no extras, the recorded sizes, and —
 * with `digests` — the recorded sha256. With `only`, just those files (present, size, digest).
 * A mismatch is a data error naming the files.
 */
export async function verifyBackupFiles(dir: string, manifest: BackupManifest, options: { digests: boolean; only?: readonly string[] }): Promise<void> {
  const dumpDir = join(dir, DUMP_DIRECTORY);
  const only = options.only ? new Set(options.only) : undefined;
  const names = only
    ? [...only]
    : (await readdir(dumpDir, { withFileTypes: true })).filter((entry) => entry.isFile()).map((entry) => entry.name);
  const present = async (name: string) => {
    try {
      const path = join(dumpDir, name);
      return [[name, { path: name, bytes: (await stat(path)).size, sha256: options.digests ? await sha256File(path) : '' }] as const];
    } catch (error) {
      // A named file that is not there is reported missing below.
      if (only && (error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  };
  const actual = new Map(
    options.digests && !only
      ? (await digestDirectory(dumpDir)).map((file) => [file.path, file] as const)
      : (await mapInBatches(names, STAT_BATCH, present)).flat(),
  );
  const problems: string[] = [];
  for (const expected of manifest.files) {
    if (only && !only.has(expected.path)) continue;
    const found = actual.get(expected.path);
    if (!found) problems.push(`${expected.path} is missing`);
    else if (found.bytes !== expected.bytes) problems.push(`${expected.path} has ${found.bytes} bytes, the manifest says ${expected.bytes}`);
    else if (options.digests && found.sha256 !== expected.sha256) {
      problems.push(`${expected.path} has sha256 ${found.sha256.slice(0, 12)}…, the manifest says ${expected.sha256.slice(0, 12)}…`);
    }
    actual.delete(expected.path);
  }
  for (const extra of actual.keys()) problems.push(`${extra} is not in the manifest`);
  if (problems.length > 0) {
    throw dataError(`the backup at ${dir} does not match its manifest: ${listProblems(problems)}`, 'the backup is damaged or was modified: take a new backup');
  }
}

/**
 * Checks `<dir>/dump` against `<dir>/manifest.json`: files (with their sha256 unless
 * `digests: false`), the TOC readable by pg_restore, and every manifest table's data in it. Any
 * mismatch is a data error naming the files or tables.
 */
export async function verifyBackup(dir: string, options: VerifyBackupOptions = {}): Promise<BackupVerification> {
  const log = options.log ?? silentLogger;
  const started = Date.now();
  const manifest = await readManifest(dir);
  const dumpDir = join(dir, DUMP_DIRECTORY);
  try {
    await readdir(dumpDir);
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
    // Only a missing directory means the backup is incomplete; anything else (a pod running as
    // another user than the one that wrote the backup) leaves it intact and is said as it is.
    if (code === 'EACCES' || code === 'EPERM') {
      throw configError(
        `cannot read ${dumpDir} (${code}): the backup is there but this process (uid ${process.getuid?.() ?? '?'}) may not read it`,
        'run the Job with the runAsUser/fsGroup that wrote the backup (the DatabaseMigration construct sets both), or make the volume readable to it',
      );
    }
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
    throw dataError(`the backup at ${dir} has a manifest but no ${DUMP_DIRECTORY}/ directory`, 'take a new backup');
  }
  const digests = options.digests ?? true;
  const files = verifyBackupFiles(dir, manifest, { digests });
  // Awaited below; until then a rejection must not count as unhandled (Node would exit).
  files.catch(() => undefined);

  let toc: TocEntry[];
  const recorded = options.recordedToc ? manifest.tocListing : undefined;
  if (recorded !== undefined) {
    // The listing describes the TOC pg_restore will read only if toc.dat is the recorded one: its
    // digest is read before pg_restore starts, not beside it as the data files' are (the TOC holds
    // the SQL pg_restore runs, the data files only rows).
    await verifyBackupFiles(dir, manifest, { digests: true, only: [TOC_FILE] });
    toc = parseToc(recorded);
  } else {
    const tools = options.tools ?? (await findPgTools());
    try {
      toc = (await readToc(tools, dumpDir, log)).entries;
    } catch (error) {
      throw dataError(`pg_restore cannot read the backup at ${dumpDir}: ${(error as Error).message}`, 'take a new backup');
    }
  }
  await files;
  const present = new Set(toc.map((entry) => `${entry.desc}|${entry.namespace}|${entry.tag}`));
  const missing = manifest.stats.tables
    .filter((table) => {
      if (table.kind === 'materialized view') return !present.has(`MATERIALIZED VIEW|${table.schema}|${table.name}`);
      return !present.has(`TABLE DATA|${table.schema}|${table.name}`);
    })
    .map((table) => `${table.schema}.${table.name}`);
  if (missing.length > 0) {
    throw dataError(`the backup at ${dir} lacks the data of ${missing.length} table(s) the manifest lists: ${listProblems(missing)}`, 'take a new backup');
  }
  const result = {
    manifest,
    dumpDir,
    toc,
    files: manifest.files.length,
    bytes: manifest.dumpBytes,
    tables: manifest.stats.tables.length,
    durationMs: Date.now() - started,
  };
  log.info('backup verified', { dir, files: result.files, bytes: result.bytes, tables: result.tables, tocEntries: toc.length, digests, toc: recorded !== undefined ? 'recorded' : 'pg_restore --list' });
  return result;
}
