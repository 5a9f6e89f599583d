/**
 * A verified-by-construction backup of the source database:
 *
 * 1. check that pg_dump can dump the server (before anything changes);
 * 2. record the source's write counters (pg/source-changes.ts), then export a snapshot in a
 *    REPEATABLE READ transaction held open, so that pg_dump and the
 *    statistics read exactly the same data even if something still writes;
 * 3. check the backup volume's free space against the source's table sizes (config error before
 *    dumping when it cannot hold them);
 * 4. `pg_dump -Fd -j N --snapshot` into `<dir>/.dump.partial` while the statistics are taken on
 *    the snapshot concurrently; pg_dump fsyncs what it wrote;
 * 5. sha256 of every file; the old backup (if any) is invalidated, `.dump.partial` renamed to
 *    `dump`, and `manifest.json` written last (tmp + fsync + rename + fsync of the directory):
 *    a backup is complete exactly when `manifest.json` exists.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { Env, ReadyMarker } from '../../../lib/contract.js';
import { classifyDatabaseError, classifyFilesystemError, configError, dataError } from '../errors.js';
import { reusedStatsOptions, reuseEarlyPass, type EarlyPass, type EarlyPassReuse } from './early-pass.js';
import { formatBytes, silentLogger, type Logger, type ProgressEvent, pollProgress } from '../log.js';
import { connect, describeEndpoint, serverMajorVersion, toolEnv, type ConnectionSettings } from './connection.js';
import {
  collectDatabaseStats,
  DUMP_DIRECTORY,
  MANIFEST_FILE,
  MANIFEST_FORMAT_VERSION,
  ROW_CHECKSUM_ALGORITHM,
  totalRows,
  type BackupManifest,
  type ManifestFile,
} from './manifest.js';
import { readSourceFingerprint } from './source-changes.js';
import { readToc } from './toc.js';
import { assertDumpToolSupports, findPgTools, runTool, toolVersion, type PgTools, type ToolVersion } from './tools.js';

/** Where pg_dump writes until the dump is complete. */
export const PARTIAL_DUMP_DIRECTORY = '.dump.partial';
export const MANIFEST_TMP_FILE = '.manifest.json.tmp';

export const DEFAULT_PARALLEL_JOBS = 2;
export const DEFAULT_DUMP_COMPRESSION = 0;

export interface BackupOptions {
  readonly source: ConnectionSettings;
  /** The backup directory (the mounted backup PVC). Created if absent. */
  readonly dir: string;
  /** pg_dump --jobs. @default 2 */
  readonly jobs?: number;
  /** pg_dump --compress (0-9). @default 0: a local volume is faster than gzip on two cores */
  readonly compression?: number;
  /** @default - {@link findPgTools} */
  readonly tools?: PgTools;
  readonly log?: Logger;
  readonly onProgress?: (event: ProgressEvent) => void;
  /** Free bytes of the filesystem holding `dir`. @default - fs.statfs */
  readonly freeSpace?: (dir: string) => Promise<number>;
  /** Progress poll interval. @default 2000 */
  readonly progressIntervalMs?: number;
  /**
   * A checksum pass over the source taken before the downtime (pg/early-pass.ts): the statistics
   * reuse its checksums of the tables proven unchanged in the dump's snapshot. @default - none:
   * every table is checksummed in the dump's snapshot
   */
  readonly earlyPass?: EarlyPass;
}

export interface BackupResult {
  readonly manifest: BackupManifest;
  /** sha256 of manifest.json as written: what the state ConfigMap records. */
  readonly manifestSha256: string;
  readonly dumpDir: string;
  readonly estimatedBytes: number;
}

/** What a backup will need, known before anything changes (used by `prepare` to size the PVC). */
export interface BackupPreflight {
  readonly server: ToolVersion;
  readonly dumpTool: ToolVersion;
  /** Table + TOAST sizes (not indexes) + large objects: roughly what an uncompressed dump holds. */
  readonly estimatedBytes: number;
  /** pg_database_size: an upper bound including indexes. */
  readonly databaseBytes: number;
}

/** On-disk size of what a dump contains: table and TOAST data, large objects; not indexes. */
export async function estimateDumpBytes(client: pg.Client): Promise<{ estimatedBytes: number; databaseBytes: number }> {
  const result = await client.query<{ tables: string; large_objects: string; database: string }>(`
    SELECT coalesce(sum(pg_catalog.pg_table_size(c.oid)), 0)::bigint::text AS tables,
           (SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata)
                        THEN pg_catalog.pg_table_size('pg_catalog.pg_largeobject') ELSE 0 END)::bigint::text AS large_objects,
           pg_catalog.pg_database_size(current_database())::text AS database
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${ReadyMarker.schema}')
       AND n.nspname NOT LIKE 'pg\\_%'`);
  const row = result.rows[0]!;
  return { estimatedBytes: Number(row.tables) + Number(row.large_objects), databaseBytes: Number(row.database) };
}

/** Server and tool versions (refusing a server newer than pg_dump) and the size estimate. */
export async function preflightBackup(source: ConnectionSettings, tools?: PgTools): Promise<BackupPreflight> {
  const pgTools = tools ?? (await findPgTools());
  const dumpTool = await toolVersion(pgTools.pgDump);
  const client = await connect(source, { purpose: 'preflight', action: 'inspect' });
  try {
    const server = await serverMajorVersion(client);
    assertDumpToolSupports(server, dumpTool, describeEndpoint(source));
    const sizes = await estimateDumpBytes(client);
    return { server, dumpTool, ...sizes };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Free bytes for an unprivileged writer on the filesystem holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return Number(stats.bavail) * Number(stats.bsize);
}

/** Fails (config, exit 78) when `free` cannot hold `required`, naming both sizes and the fix. */
export function assertBackupFits(dir: string, requiredBytes: number, availableBytes: number): void {
  if (availableBytes < requiredBytes) {
    throw configError(
      `the backup volume at ${dir} has ${formatBytes(availableBytes)} free but the dump needs about ${formatBytes(requiredBytes)}`,
      `make the backup volume larger (${Env.backupPvcSize}, at least ${formatBytes(Math.ceil(requiredBytes * 1.2))}) or free space on it; nothing was dumped`,
    );
  }
}

/** Total size of the regular files directly in `dir` (a -Fd dump is flat). */
export async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    try {
      total += (await stat(join(dir, entry.name))).size;
    } catch {
      // Renamed or removed meanwhile.
    }
  }
  return total;
}

/** fsync a directory, so that renames and new entries in it survive a crash. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Read size of the digest passes: large enough for few syscalls, small enough to stay cache-resident. */
const DIGEST_BUFFER_BYTES = 256 * 1024;
/** Bytes read and hashed between two turns of the event loop (a few milliseconds of work). */
const DIGEST_SLICE_BYTES = 4 * 1024 * 1024;

/**
 * sha256 of a file, read into `buffer` (reused across files): a read stream would allocate a new
 * chunk per read, hundreds of MB of garbage per dump that the runner's resident memory grows by
 * ~30 MB before the collector catches up.
 *
 * The reads are synchronous, in slices of {@link DIGEST_SLICE_BYTES} with a turn of the event loop
 * between them: hashing each block on the thread that just read it (still in its cache) instead of
 * handing every read to libuv's thread pool takes ~30 % less CPU (measured: 644 MiB in 0.47 s
 * instead of 0.68 s), which the dump or restore running next to it gets instead.
 */
export async function sha256File(path: string, buffer: Buffer = Buffer.allocUnsafe(DIGEST_BUFFER_BYTES)): Promise<string> {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    for (let sliceBytes = 0; ; ) {
      const bytesRead = readSync(fd, buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      sliceBytes += bytesRead;
      if (sliceBytes >= DIGEST_SLICE_BYTES) {
        sliceBytes = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** sha256 and size of every file of a dump directory, two at a time. */
export async function digestDirectory(dir: string): Promise<ManifestFile[]> {
  const names = (await readdir(dir, { withFileTypes: true }))
    .filter((entry) => entry.isFile())
    .map((entry) => entry.name)
    .sort();
  const files: ManifestFile[] = new Array<ManifestFile>(names.length);
  let next = 0;
  await Promise.all(
    [0, 1].map(async () => {
      const buffer = Buffer.allocUnsafe(DIGEST_BUFFER_BYTES);
      while (next < names.length) {
        const index = next++;
        const name = names[index]!;
        const path = join(dir, name);
        const [sha256, info] = await Promise.all([sha256File(path, buffer), stat(path)]);
        files[index] = { path: name, bytes: info.size, sha256 };
      }
    }),
  );
  return files;
}

/** Names a table's data file can have in a directory dump: uncompressed, gzip, lz4, zstd (pg_dump 16+). */
const DATA_FILE_SUFFIXES = ['.dat', '.dat.gz', '.dat.lz4', '.dat.zst'];

/**
 * Digests a dump's files while pg_dump still writes others: each table's `<dumpId>.dat` as soon as
 * pg_dump reports that item finished (`--verbose`: "finished item N TABLE DATA tag"), the large
 * objects' files after the BLOBS item. {@link finish} then digests what is left (toc.dat) and
 * re-digests any file whose size changed since, so the result is exactly {@link digestDirectory}'s.
 */
export class DumpDigester {
  private readonly digested = new Map<string, ManifestFile>();
  private readonly buffer = Buffer.allocUnsafe(DIGEST_BUFFER_BYTES);
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly dir: string) {}

  /** A line of pg_dump's verbose stderr. */
  onDumpLine(line: string): void {
    const finished = /finished item (\d+) (TABLE DATA|BLOBS) /.exec(line);
    if (!finished) return;
    const dumpId = finished[1]!;
    const isData = finished[2] === 'TABLE DATA';
    this.chain = this.chain.then(async () => {
      // A table's file by name (listing the directory per table would read it hundreds of times).
      const names = isData
        ? DATA_FILE_SUFFIXES.map((suffix) => `${dumpId}${suffix}`)
        : (await readdir(this.dir)).filter((name) => /^blob_\d+\.dat/.test(name) || name.startsWith('blobs.toc'));
      for (const name of names) {
        if (this.digested.has(name)) continue;
        const path = join(this.dir, name);
        let bytes: number;
        try {
          bytes = (await stat(path)).size;
        } catch {
          continue; // Not this compression's name.
        }
        const sha256 = await sha256File(path, this.buffer);
        // A file that grew while it was read is digested again by finish().
        if ((await stat(path)).size === bytes) this.digested.set(name, { path: name, bytes, sha256 });
      }
    });
    // Best effort: finish() digests whatever this missed.
    this.chain = this.chain.catch(() => undefined);
  }

  /** Every file of the directory with its digest, sorted by name: call once pg_dump has exited. */
  async finish(): Promise<{ files: ManifestFile[]; digestedEarly: number }> {
    await this.chain;
    const names = (await readdir(this.dir, { withFileTypes: true }))
      .filter((entry) => entry.isFile())
      .map((entry) => entry.name)
      .sort();
    const files: ManifestFile[] = new Array<ManifestFile>(names.length);
    const left: number[] = [];
    let digestedEarly = 0;
    for (const [index, name] of names.entries()) {
      const early = this.digested.get(name);
      if (early && (await stat(join(this.dir, name))).size === early.bytes) {
        files[index] = early;
        digestedEarly += 1;
      } else left.push(index);
    }
    let next = 0;
    await Promise.all(
      [this.buffer, Buffer.allocUnsafe(DIGEST_BUFFER_BYTES)].map(async (buffer) => {
        while (next < left.length) {
          const index = left[next++]!;
          const path = join(this.dir, names[index]!);
          const [sha256, info] = await Promise.all([sha256File(path, buffer), stat(path)]);
          files[index] = { path: names[index]!, bytes: info.size, sha256 };
        }
      }),
    );
    return { files, digestedEarly };
  }
}

/** Writes `content` to `path` atomically and durably: tmp file, fsync, rename, fsync of the directory. */
export async function writeFileDurably(dir: string, fileName: string, content: string, tmpName = `.${fileName}.tmp`): Promise<void> {
  const tmpPath = join(dir, tmpName);
  await writeFile(tmpPath, content, { mode: 0o644 });
  const handle = await open(tmpPath, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmpPath, join(dir, fileName));
  await fsyncDirectory(dir);
}

function validateJobs(jobs: number): number {
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64) {
    throw configError(`parallel jobs must be an integer from 1 to 64, got ${jobs}`, `fix --jobs or ${Env.parallelJobs}`);
  }
  return jobs;
}

function validateCompression(level: number): number {
  if (!Number.isInteger(level) || level < 0 || level > 9) {
    throw configError(`dump compression must be an integer from 0 to 9, got ${level}`, `fix --compression or ${Env.dumpCompression}`);
  }
  return level;
}

/** Dumps `source` into `<dir>/dump` with `<dir>/manifest.json`; see the module comment for the steps. */
export async function backupDatabase(options: BackupOptions): Promise<BackupResult> {
  const log = options.log ?? silentLogger;
  const jobs = validateJobs(options.jobs ?? DEFAULT_PARALLEL_JOBS);
  const compression = validateCompression(options.compression ?? DEFAULT_DUMP_COMPRESSION);
  const endpoint = describeEndpoint(options.source);
  const tools = options.tools ?? (await findPgTools());
  // `pg_dump --version` runs while the connection is set up (each takes tens of milliseconds of
  // the downtime); a missing pg_dump still fails the run before anything is read.
  const dumpToolVersion = toolVersion(tools.pgDump);
  dumpToolVersion.catch(() => undefined); // Awaited below; until then a rejection is not unhandled.

  const snapshotClient = await connect(options.source, { purpose: 'backup-snapshot', action: 'read the snapshot of' });
  let transactionOpen = false;
  try {
    const dumpTool = await dumpToolVersion;
    const server = await serverMajorVersion(snapshotClient);
    assertDumpToolSupports(server, dumpTool, endpoint);
    // Before the snapshot: a write between the two shows up as a change later (a needless new
    // dump), never as a write the dump holds but the counters hide.
    const sourceFingerprint = await readSourceFingerprint(snapshotClient);

    await snapshotClient.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    transactionOpen = true;
    let snapshot: string | null = null;
    try {
      snapshot = (await snapshotClient.query<{ id: string }>('SELECT pg_catalog.pg_export_snapshot() AS id')).rows[0]!.id;
    } catch (error) {
      // E.g. a connection pooler or a server that cannot share snapshots: the statistics then come
      // from our own REPEATABLE READ snapshot, exact as long as the source is quiesced.
      log.warn('could not export a snapshot; pg_dump and the statistics read separately (exact only while the source is quiesced)', {
        reason: (error as Error).message,
      });
      await snapshotClient.query('ROLLBACK');
      await snapshotClient.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    }
    const { estimatedBytes } = await estimateDumpBytes(snapshotClient);

    await mkdir(options.dir, { recursive: true });
    const partialDir = join(options.dir, PARTIAL_DUMP_DIRECTORY);
    // A partial dump is what a crashed run left behind: useless, and in the way of the new one.
    await rm(partialDir, { recursive: true, force: true });
    const available = await (options.freeSpace ?? freeBytes)(options.dir);
    const required = compression > 0 ? Math.ceil(estimatedBytes / 3) : estimatedBytes;
    assertBackupFits(options.dir, required, available);
    log.info('dumping', {
      source: `${endpoint.host}:${endpoint.port}/${endpoint.database}`,
      serverVersion: server.version,
      pgDump: dumpTool.version,
      jobs,
      compression,
      estimatedBytes,
      freeBytes: available,
      snapshot: snapshot ?? undefined,
    });

    const dumpArgs = [
      '--format=directory',
      `--jobs=${jobs}`,
      `--compress=${compression}`,
      `--file=${partialDir}`,
      `--exclude-schema=${ReadyMarker.schema}`,
      '--no-password',
      '--lock-wait-timeout=300000',
      // "finished item N TABLE DATA ..." lines: each file is digested as soon as it is complete.
      '--verbose',
      ...(snapshot ? [`--snapshot=${snapshot}`] : []),
    ];
    const onProgress = options.onProgress ?? ((event: ProgressEvent) => log.progress(event));
    const started = Date.now();
    const progress = pollProgress({
      step: 'dump',
      totalBytes: estimatedBytes,
      measure: async () => ({ bytes: await directoryBytes(partialDir) }),
      onProgress,
      intervalMs: options.progressIntervalMs,
    });

    let statsDurationMs = 0;
    let reuse: EarlyPassReuse | undefined;
    const statsWork = (async () => {
      const statsStarted = Date.now();
      // In the dump's snapshot, before any scan: which early checksums still hold.
      reuse = options.earlyPass ? await reuseEarlyPass(snapshotClient, options.earlyPass, options.source, log) : undefined;
      if (reuse?.unusable) log.info('not using the early checksum pass', { takenAt: options.earlyPass!.takenAt, reason: reuse.unusable });
      const stats = await collectDatabaseStats(snapshotClient, {
        concurrent: true,
        ...reusedStatsOptions(reuse),
        onTable: (table, done, total) => log.debug('checksummed', { table: `${table.schema}.${table.name}`, rows: table.rows, done, total }),
      });
      statsDurationMs = Date.now() - statsStarted;
      return stats;
    })();
    const digester = new DumpDigester(partialDir);
    const dumpWork = runTool({
      tool: tools.pgDump,
      args: dumpArgs,
      env: toolEnv(options.source, { purpose: 'dump' }),
      endpoint,
      log,
      onStderrLine: (line) => digester.onDumpLine(line),
    });
    let dumpDurationMs = 0;
    const [statsResult, dumpResult] = await Promise.allSettled([
      statsWork,
      dumpWork.then(() => {
        dumpDurationMs = Date.now() - started;
      }),
    ]);
    await progress.stop(dumpResult.status === 'fulfilled');
    if (dumpResult.status === 'rejected') throw dumpResult.reason;
    if (statsResult.status === 'rejected') throw statsResult.reason;
    const stats = statsResult.value;
    await snapshotClient.query('COMMIT');
    transactionOpen = false;

    // Most files were digested while pg_dump wrote the others; this is the rest (toc.dat). Side by
    // side, pg_restore lists the dump: the proof that it reads it, recorded in the manifest for the
    // backup's verification and the restore, which then need not list it again.
    const digestStarted = Date.now();
    const listing = readToc(tools, partialDir, log).catch((error: unknown) => {
      throw dataError(`pg_restore cannot read the dump pg_dump just wrote in ${partialDir}: ${(error as Error).message}`, 'take a new backup; if it repeats, check the pg_dump and pg_restore versions');
    });
    listing.catch(() => undefined); // Awaited below; until then a rejection is not unhandled.
    const { files, digestedEarly } = await digester.finish();
    const digestsDurationMs = Date.now() - digestStarted;
    const tocListing = (await listing).listing;
    log.debug('digests', { files: files.length, digestedDuringDump: digestedEarly, msAfterDump: digestsDurationMs });
    const dumpBytes = files.reduce((sum, file) => sum + file.bytes, 0);

    const manifest: BackupManifest = {
      formatVersion: MANIFEST_FORMAT_VERSION,
      createdAt: new Date().toISOString(),
      source: {
        host: options.source.host,
        port: options.source.port,
        database: options.source.database,
        user: options.source.user,
        serverVersion: server.version,
        serverMajor: server.major,
      },
      pgDump: { version: dumpTool.version, major: dumpTool.major },
      checksumAlgorithm: ROW_CHECKSUM_ALGORITHM,
      dumpCompression: compression,
      jobs,
      snapshot,
      stats,
      files,
      dumpBytes,
      totalRows: totalRows(stats),
      durationsMs: { dump: dumpDurationMs, stats: statsDurationMs, digests: digestsDurationMs },
      sourceFingerprint,
      tocListing,
      ...(options.earlyPass && reuse
        ? {
            earlyPass: {
              takenAt: options.earlyPass.takenAt,
              tablesReused: reuse.tables.size,
              largeObjectsReused: reuse.largeObjects !== undefined,
              rescanned: reuse.rescanned.slice(0, 20),
              ...(reuse.unusable ? { unusable: reuse.unusable } : {}),
              ...(reuse.noTransactionSince ? { noTransactionSince: true as const } : {}),
            },
          }
        : {}),
    };

    // Commit: invalidate the previous backup first, so that no crash can pair a new dump with an
    // old manifest; the new manifest, written last, is the completion record.
    const dumpDir = join(options.dir, DUMP_DIRECTORY);
    await rm(join(options.dir, MANIFEST_FILE), { force: true });
    await fsyncDirectory(options.dir);
    await rm(dumpDir, { recursive: true, force: true });
    await rename(partialDir, dumpDir);
    await fsyncDirectory(options.dir);
    const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
    await writeFileDurably(options.dir, MANIFEST_FILE, manifestText, MANIFEST_TMP_FILE);
    const manifestSha256 = createHash('sha256').update(manifestText).digest('hex');
    log.info('backup complete', {
      dumpBytes,
      tables: stats.tables.length,
      rows: manifest.totalRows,
      largeObjects: stats.largeObjects.count,
      manifestSha256,
    });
    return { manifest, manifestSha256, dumpDir, estimatedBytes };
  } catch (error) {
    throw classifyFilesystemError(error, options.dir) ?? classifyDatabaseError(error, endpoint, 'back up');
  } finally {
    if (transactionOpen) await snapshotClient.query('ROLLBACK').catch(() => undefined);
    await snapshotClient.end().catch(() => undefined);
  }
}
