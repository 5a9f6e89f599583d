/**
 * The backup manifest (`<dir>/manifest.json`) and the database statistics it carries.
 *
 * The same {@link collectDatabaseStats} runs on the source (inside the snapshot pg_dump reads) and
 * on the target after the restore, so a comparison proves the restore complete: per table a row
 * count and an order-independent checksum (in the spirit of pgcopydb's `count(*)` +
 * `sum(hashtext(row::text))`, see {@link rowHashExpression}),
 * sequence values, large objects (count and a checksum of their contents), extensions, and an
 * inventory of the objects the data depends on (indexes, constraints, triggers, functions, views,
 * types, comments).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { ReadyMarker } from '../../../lib/contract.js';
import { dataError } from '../errors.js';
import { qualifiedName } from './connection.js';
import type { SourceFingerprint } from './source-changes.js';

/** Bumped when the manifest's shape changes incompatibly. */
export const MANIFEST_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
/** The finished dump directory inside the backup directory. */
export const DUMP_DIRECTORY = 'dump';

export interface TableStats {
  readonly schema: string;
  readonly name: string;
  /** `table` (ordinary or a leaf partition) or `materialized view`. Partitioned parents hold no rows and are not listed. */
  readonly kind: 'table' | 'materialized view';
  readonly rows: number;
  /** Decimal string of the sum of {@link rowHashExpression} over the rows; `unpopulated` for a materialized view WITH NO DATA. */
  readonly checksum: string;
  /** On-disk size (table + TOAST) where the stats were taken; informative, not compared. */
  readonly sizeBytes: number;
}

export interface SequenceStats {
  readonly schema: string;
  readonly name: string;
  /** Decimal string: sequences are bigint. */
  readonly lastValue: string;
  readonly isCalled: boolean;
}

export interface LargeObjectStats {
  readonly count: number;
  /** Checksum over OIDs and contents; null when the contents were not readable by the user. */
  readonly checksum: string | null;
}

export interface ExtensionInfo {
  readonly name: string;
  readonly version: string;
  readonly schema: string;
}

/** Sorted identity strings of the objects besides tables and sequences. */
export interface ObjectInventory {
  readonly indexes: readonly string[];
  readonly constraints: readonly string[];
  readonly triggers: readonly string[];
  readonly functions: readonly string[];
  readonly views: readonly string[];
  readonly types: readonly string[];
  /** `<object description>: md5(<comment>)`. */
  readonly comments: readonly string[];
}

export interface DatabaseStats {
  /** User schemas (without the ready-marker schema and extension-owned schemas). */
  readonly schemas: readonly string[];
  readonly tables: readonly TableStats[];
  readonly sequences: readonly SequenceStats[];
  readonly largeObjects: LargeObjectStats;
  readonly extensions: readonly ExtensionInfo[];
  readonly objects: ObjectInventory;
}

export interface ManifestFile {
  /** Path relative to the dump directory. */
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

export interface BackupManifest {
  readonly formatVersion: typeof MANIFEST_FORMAT_VERSION;
  readonly createdAt: string;
  readonly source: {
    readonly host: string;
    readonly port: number;
    readonly database: string;
    readonly user: string;
    readonly serverVersion: string;
    readonly serverMajor: number;
  };
  readonly pgDump: { readonly version: string; readonly major: number };
  /** {@link ROW_CHECKSUM_ALGORITHM} of the table checksums. */
  readonly checksumAlgorithm: string;
  readonly dumpCompression: number;
  readonly jobs: number;
  /** The exported snapshot pg_dump and the statistics shared (null: none could be exported). */
  readonly snapshot: string | null;
  readonly stats: DatabaseStats;
  /** Every file of the dump directory. */
  readonly files: readonly ManifestFile[];
  /** Sum of the files' sizes. */
  readonly dumpBytes: number;
  /** Rows over all tables (for summaries). */
  readonly totalRows: number;
  readonly durationsMs: { readonly dump: number; readonly stats: number; readonly digests: number };
  /**
   * The checksum pass taken before the downtime (pg/early-pass.ts) that this backup's statistics
   * reused for the tables proven unchanged since. Absent: every table was checksummed in the dump's
   * snapshot.
   */
  readonly earlyPass?: { readonly takenAt: string; readonly tablesReused: number; readonly largeObjectsReused: boolean; readonly rescanned: readonly string[]; readonly unusable?: string; readonly noTransactionSince?: true };
  /**
   * The source's write counters, taken just before the snapshot: a later run compares them with
   * the source to tell whether it changed since this backup (pg/source-changes.ts). Absent in
   * manifests of older runners, which then always count as changed.
   */
  readonly sourceFingerprint?: SourceFingerprint;
  /**
   * What `pg_restore --list` printed for this dump right after pg_dump wrote it (the backup's proof
   * that pg_restore reads it): the restore derives its use-list from it instead of running
   * pg_restore --list again, after checking toc.dat's digest (pg/verify-backup.ts). Absent in
   * manifests of older runners, whose restores list the dump themselves.
   */
  readonly tocListing?: string;
}

/** Reads and sanity-checks `<dir>/manifest.json`; a missing or foreign file is a data error. */
export async function readManifest(dir: string): Promise<BackupManifest> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw dataError(
      `no backup manifest at ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      'run the backup first; a backup without manifest.json is incomplete',
    );
  }
  let parsed: BackupManifest;
  try {
    parsed = JSON.parse(text) as BackupManifest;
  } catch (error) {
    throw dataError(`${path} is not valid JSON: ${(error as Error).message}`, 'the backup is damaged: take a new backup');
  }
  if (parsed.formatVersion !== MANIFEST_FORMAT_VERSION || !parsed.stats || !Array.isArray(parsed.files)) {
    throw dataError(`${path} is not a backup manifest of format ${MANIFEST_FORMAT_VERSION}`, 'take a new backup with this runner');
  }
  if (!ROW_CHECKSUM_ALGORITHMS.includes(parsed.checksumAlgorithm)) {
    throw dataError(
      `${path} has table checksums of kind ${String(parsed.checksumAlgorithm)}, this runner computes ${ROW_CHECKSUM_ALGORITHMS.join(' or ')}`,
      'take a new backup with this runner version',
    );
  }
  return parsed;
}

/** Schemas that never hold user data, plus the ready marker's own schema. */
const SYSTEM_SCHEMA_FILTER = `
  n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', '${ReadyMarker.schema}')
  AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'`;

/** Objects that belong to an extension are recreated by CREATE EXTENSION, not by the dump. */
function notExtensionMember(catalog: string, oidColumn: string): string {
  return `NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = '${catalog}'::regclass AND d.objid = ${oidColumn} AND d.deptype = 'e')`;
}

const USER_SCHEMA_FILTER = `${SYSTEM_SCHEMA_FILTER} AND ${notExtensionMember('pg_namespace', 'n.oid')}`;

/**
 * The types a dump creates on their own (`t` is pg_type): enums, domains, ranges and stand-alone
 * composite types; multiranges (14+) come with their range, a table's row type with its table.
 * What the inventory compares, what counts as a partial restore and what its cleaning drops.
 */
export const STANDALONE_TYPE_FILTER = `(t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c')))`;

/** A table (or materialized view) as {@link listTables} finds it: what {@link checksumTable} needs. */
export interface TableToChecksum {
  schema: string;
  name: string;
  relkind: string;
  populated: boolean;
  size_bytes: string;
  float_columns: string[] | null;
  /** bytea columns (and domains over bytea): hashed by digest from {@link BYTEA_DIGEST_MIN_BYTES} on (v3). */
  bytea_columns: string[] | null;
  all_columns: string[];
  /** Per column of `all_columns`: its {@link TypedHashKind} (v4 hashes it by value), or '' (by text). */
  hash_kinds: string[];
}

/** The columns v4 hashes by value, with their kind. */
function typedColumnsOf(table: TableToChecksum): Map<string, TypedHashKind> {
  const typed = new Map<string, TypedHashKind>();
  table.all_columns.forEach((column, index) => {
    const kind = table.hash_kinds[index];
    if (kind && (TYPED_HASH_KINDS as readonly string[]).includes(kind)) typed.set(column, kind as TypedHashKind);
  });
  return typed;
}

export interface CollectStatsOptions {
  /**
   * Further connections (already inside a transaction on the same snapshot, or the target after
   * a restore) to spread the table checksums over. The main client does the catalog queries.
   */
  readonly extraClients?: readonly pg.Client[];
  /** Called after each table's checksum, for progress. */
  readonly onTable?: (table: TableStats, done: number, total: number) => void;
  /**
   * Checksums already taken (by `schema.name`), e.g. by the restore right after each table's data
   * was loaded: such a table is still listed from the catalog, but not scanned again.
   */
  readonly checksummedTables?: ReadonlyMap<string, TableStats>;
  /**
   * The large objects' statistics the restore took right after loading them: their count is read
   * again, their contents are not.
   */
  readonly checksummedLargeObjects?: LargeObjectStats;
  /** Checksums another session is still taking: awaited instead of scanned again (see {@link ChecksumsInProgress}). */
  readonly checksumsInProgress?: ChecksumsInProgress;
  /** The manifest's {@link BackupManifest.checksumAlgorithm} to compare with. @default ROW_CHECKSUM_ALGORITHM */
  readonly checksumAlgorithm?: string;
  /**
   * The scans run next to pg_dump or pg_restore ({@link CONCURRENT_CHECKSUM_SETTINGS}). @default false:
   * PostgreSQL may use parallel workers, as for the verification after a restore.
   */
  readonly concurrent?: boolean;
}

/**
 * Checksums another session was still taking when a collection started: the restore's verifier
 * hands over its last statement when pg_restore ends (pg/verify-during-restore.ts), so that the
 * verification after the restore reads the catalog and scans the other tables meanwhile instead
 * of waiting for it. A promise that resolves to undefined (that checksum failed or was given up)
 * makes the collection scan the table, or read the large objects, itself.
 */
export interface ChecksumsInProgress {
  /** By `schema.name`. */
  readonly tables: ReadonlyMap<string, Promise<TableStats | undefined>>;
  readonly largeObjects?: Promise<LargeObjectStats | undefined>;
}

/** SQLSTATE insufficient_privilege: what reading pg_largeobject, or a large object, answers a user without the right. */
const INSUFFICIENT_PRIVILEGE = '42501';

/**
 * Runs `text` on `client` in a savepoint; undefined when the user may not read what it reads
 * (insufficient_privilege), without aborting the surrounding transaction. Any other error (a
 * timeout, a lock wait, a broken connection) is thrown: it says nothing about what the data holds.
 */
export async function queryOrUndefined<R extends pg.QueryResultRow>(client: pg.Client, text: string): Promise<pg.QueryResult<R> | undefined> {
  await client.query('SAVEPOINT kc_migration_optional');
  try {
    const result = await client.query<R>(text);
    await client.query('RELEASE SAVEPOINT kc_migration_optional');
    return result;
  } catch (error) {
    await client.query('ROLLBACK TO SAVEPOINT kc_migration_optional');
    if ((error as { code?: unknown }).code === INSUFFICIENT_PRIVILEGE) return undefined;
    throw error;
  }
}

/**
 * Identifies the row checksum of a manifest, so that a changed formula is never compared with an
 * old one: new backups use {@link ROW_CHECKSUM_ALGORITHM}; a restore of a backup taken by an older
 * runner computes the target's checksums with the backup's algorithm (any of
 * {@link ROW_CHECKSUM_ALGORITHMS}).
 */
export const ROW_CHECKSUM_ALGORITHM = 'sum-xor-column-typed-hash-v4';
/** The v3 formula: v4 with every column hashed by its text; still verified for older manifests. */
export const ROW_CHECKSUM_ALGORITHM_V3 = 'sum-xor-column-hashtextextended-v3';
/** The v2 formula: v3 without the digest of long bytea values; still verified for older manifests. */
export const ROW_CHECKSUM_ALGORITHM_V2 = 'sum-xor-column-hashtextextended-v2';
/** The v1 formula: 32-bit `hashtext` per column, shifted by position; still verified for older manifests. */
export const ROW_CHECKSUM_ALGORITHM_V1 = 'sum-xor-column-hashtext-v1';
export const ROW_CHECKSUM_ALGORITHMS: readonly string[] = [ROW_CHECKSUM_ALGORITHM, ROW_CHECKSUM_ALGORITHM_V3, ROW_CHECKSUM_ALGORITHM_V2, ROW_CHECKSUM_ALGORITHM_V1];

/**
 * From this many bytes on, v3 hashes a bytea value's sha256 instead of its text: the text of a
 * bytea is its hex form, twice its size, built and then hashed; sha256 reads the bytes once
 * (measured on 88 MB of 4-64 KiB documents: 0.09 s of server CPU instead of 0.18 s, on each side
 * of the migration). Below it the hex text is cheaper than a digest's set-up. Either way every
 * byte is hashed; the length (read from the header, without detoasting) picks the same branch on
 * both servers for the same value.
 */
export const BYTEA_DIGEST_MIN_BYTES = 1024;

/**
 * Column types v4 hashes by value instead of by text, with the function their hash operator class
 * uses (PostgreSQL 11+). Only types whose equality is identity (equal values have one text form):
 * integers, booleans, uuid, timestamps. Their text form was most of a scan's CPU on such columns:
 * building `12345`, `t` or an ISO timestamp for every value, on both servers (measured on
 * 1,000,000-row tables: 15 % less server CPU per scan on a Keycloak-shaped table of varchar, bigint
 * and boolean columns, 30 % on a mixed one). Domains over them are hashed as their base type.
 */
export const TYPED_HASH_KINDS = ['int2', 'int4', 'int8', 'bool', 'uuid', 'timestamp', 'timestamptz'] as const;
export type TypedHashKind = (typeof TYPED_HASH_KINDS)[number];

function typedHash(kind: TypedHashKind, ref: string, seed: number): string {
  switch (kind) {
    case 'int2':
      return `pg_catalog.hashint2extended(${ref}::pg_catalog.int2, ${seed})`;
    case 'int4':
      return `pg_catalog.hashint4extended(${ref}::pg_catalog.int4, ${seed})`;
    case 'int8':
      return `pg_catalog.hashint8extended(${ref}::pg_catalog.int8, ${seed})`;
    case 'bool':
      return `pg_catalog.hashint4extended(${ref}::pg_catalog.bool::pg_catalog.int4, ${seed})`;
    case 'uuid':
      return `pg_catalog.uuid_hash_extended(${ref}::pg_catalog.uuid, ${seed})`;
    case 'timestamp':
      return `pg_catalog.timestamp_hash_extended(${ref}::pg_catalog.timestamp, ${seed})`;
    case 'timestamptz':
      // The instant in UTC: independent of the session's TimeZone, and one-to-one.
      return `pg_catalog.timestamp_hash_extended((${ref}::pg_catalog.timestamptz AT TIME ZONE 'UTC'), ${seed})`;
  }
}

/**
 * The per-row hash whose sum is a table's checksum. Like pgcopydb's `sum(hashtext(row::text))`
 * it is order-independent and covers every column, but it hashes each column's text on its own
 * and combines the hashes with XOR: that skips building and quoting the whole row's text, 3-4
 * times faster on Keycloak's long text and JSON columns.
 *
 * v2: a 64-bit `hashtextextended` of each column's text, seeded with the column's
 * position (so that swapped values change the hash; a NULL hashes as its position), in the C
 * collation (bytes, whatever the column's collation: a nondeterministic ICU collation would hash
 * equal-but-different strings alike). Two function calls per column instead of v1's five: ~20 %
 * less CPU per scan, on both servers, and 64 instead of 32 bits per column.
 *
 * v3: v2, except bytea values of {@link BYTEA_DIGEST_MIN_BYTES} or more, which are hashed as the
 * hex of their sha256 (still 64 bits per column, and the same value always takes the same branch).
 *
 * v4 (the default): v3, except the columns of {@link TYPED_HASH_KINDS}, hashed by value with their
 * type's own 64-bit hash function, seeded with the column's position like the text hash.
 *
 * Floats are hashed by their binary form: their text form changed in PostgreSQL 12 (shortest
 * exact output), so `0.1` from an 11 server and from a 17 server would not match although the
 * values are identical. Both functions exist from PostgreSQL 11 on and are the hash-index support
 * functions of text, which pg_upgrade keeps: their results cannot change between majors.
 */
export function rowHashExpression(
  columns: readonly string[],
  floatColumns: ReadonlySet<string>,
  algorithm: string = ROW_CHECKSUM_ALGORITHM,
  byteaColumns: ReadonlySet<string> = new Set(),
  typedColumns: ReadonlyMap<string, TypedHashKind> = new Map(),
): string {
  if (columns.length === 0) return '0::bigint';
  if (algorithm === ROW_CHECKSUM_ALGORITHM_V1) {
    return columns
      .map((column, position) => {
        const ref = `t."${column.replace(/"/g, '""')}"`;
        const text = floatColumns.has(column) ? `float8send(${ref}::float8)::text` : `${ref}::text`;
        return `((coalesce(hashtext(${text}), ${position + 1})::bigint & 4294967295) << ${(position * 11) % 32})`;
      })
      .join(' # ');
  }
  assertKnownAlgorithm(algorithm);
  const digestLongBytea = algorithm === ROW_CHECKSUM_ALGORITHM || algorithm === ROW_CHECKSUM_ALGORITHM_V3;
  const hashByValue = algorithm === ROW_CHECKSUM_ALGORITHM;
  return columns
    .map((column, position) => {
      const ref = `t."${column.replace(/"/g, '""')}"`;
      const kind = hashByValue ? typedColumns.get(column) : undefined;
      if (kind) return `coalesce(${typedHash(kind, ref, position + 1)}, ${position + 1})`;
      const text = floatColumns.has(column) ? `float8send(${ref}::float8)::text` : `${ref}::text`;
      const hash = `pg_catalog.hashtextextended(${text} COLLATE "C", ${position + 1})`;
      if (!digestLongBytea || !byteaColumns.has(column)) return `coalesce(${hash}, ${position + 1})`;
      const digest = `pg_catalog.hashtextextended(pg_catalog.encode(pg_catalog.sha256(${ref}::bytea), 'hex'), ${position + 1})`;
      return `coalesce(CASE WHEN pg_catalog.octet_length(${ref}::bytea) >= ${BYTEA_DIGEST_MIN_BYTES} THEN ${digest} ELSE ${hash} END, ${position + 1})`;
    })
    .join(' # ');
}

function assertKnownAlgorithm(algorithm: string): void {
  if (!ROW_CHECKSUM_ALGORITHMS.includes(algorithm)) {
    throw dataError(`unknown table checksum algorithm ${algorithm}`, `take a new backup with this runner version (it computes ${ROW_CHECKSUM_ALGORITHM})`);
  }
}

/**
 * Planner settings for a checksum pass that runs next to pg_dump or pg_restore: no parallel
 * workers (the cores are busy with the dump or restore already; the workers' start-up and the
 * partial aggregates only add CPU) and no JIT (compiling the long per-column expression of a big
 * table costs more than it saves on one scan).
 */
export const CONCURRENT_CHECKSUM_SETTINGS: Readonly<Record<string, string>> = {
  max_parallel_workers_per_gather: '0',
  jit: 'off',
};

/** `SET LOCAL` (or, with `local: false`, session-wide `SET`) of each setting; inside a transaction for LOCAL. */
export async function applySettings(client: pg.Client, settings: Readonly<Record<string, string>>, options: { local: boolean }): Promise<void> {
  const assignments = Object.entries(settings).map(
    ([name, value]) => `SET ${options.local ? 'LOCAL ' : ''}${name} = '${value.replace(/'/g, "''")}'`,
  );
  if (assignments.length > 0) await client.query(assignments.join('; '));
}

/** {@link TableStats.checksum} of a materialized view WITH NO DATA (it cannot be read). */
export const UNPOPULATED_CHECKSUM = 'unpopulated';

/** Row count and checksum of one table (or materialized view), in the client's current transaction or snapshot. */
export async function checksumTable(client: pg.Client, table: TableToChecksum, algorithm: string = ROW_CHECKSUM_ALGORITHM): Promise<TableStats> {
  const kind = table.relkind === 'm' ? 'materialized view' : 'table';
  const sizeBytes = Number(table.size_bytes);
  if (table.relkind === 'm' && !table.populated) {
    return { schema: table.schema, name: table.name, kind, rows: 0, checksum: UNPOPULATED_CHECKSUM, sizeBytes };
  }
  const expression = rowHashExpression(table.all_columns, new Set(table.float_columns ?? []), algorithm, new Set(table.bytea_columns ?? []), typedColumnsOf(table));
  const result = await client.query<{ rows: string; checksum: string }>(
    `SELECT count(*)::bigint AS rows, coalesce(sum(${expression}), 0)::text AS checksum
       FROM ONLY ${qualifiedName(table.schema, table.name)} AS t`,
  );
  const row = result.rows[0]!;
  return { schema: table.schema, name: table.name, kind, rows: Number(row.rows), checksum: row.checksum, sizeBytes };
}

/**
 * The user tables and materialized views to checksum, largest first (partitioned parents hold no
 * rows: their leaf partitions are listed). Works on PostgreSQL 11 and newer.
 *
 * `sizes: false` reads the catalog only: pg_table_size takes a lock on every table, which waits
 * for each table pg_restore is still loading (its TRUNCATE + COPY holds an exclusive lock) — the
 * verifier during a restore would not get its list until the big tables were loaded. The sizes
 * are then 0 and the order is by name.
 */
export async function listTables(client: pg.Client, options: { sizes?: boolean } = {}): Promise<TableToChecksum[]> {
  const sizes = options.sizes ?? true;
  const result = await client.query<TableToChecksum>(`
      SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind, c.relispopulated AS populated,
             ${sizes ? 'pg_catalog.pg_table_size(c.oid)' : '0'}::text AS size_bytes,
             (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 AND (a.atttypid IN (700, 701) OR EXISTS (SELECT 1 FROM pg_catalog.pg_type d
                       WHERE d.oid = a.atttypid AND d.typtype = 'd' AND d.typbasetype IN (700, 701)))) AS float_columns,
             (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 AND (a.atttypid = 17 OR EXISTS (SELECT 1 FROM pg_catalog.pg_type d
                       WHERE d.oid = a.atttypid AND d.typtype = 'd' AND d.typbasetype = 17))) AS bytea_columns,
             (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS all_columns,
             (SELECT array_agg(CASE (SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                                       FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid)
                                 WHEN 21 THEN 'int2' WHEN 23 THEN 'int4' WHEN 20 THEN 'int8' WHEN 16 THEN 'bool'
                                 WHEN 2950 THEN 'uuid' WHEN 1114 THEN 'timestamp' WHEN 1184 THEN 'timestamptz' ELSE '' END
                               ORDER BY a.attnum)
                FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS hash_kinds
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'm') AND ${USER_SCHEMA_FILTER} AND ${notExtensionMember('pg_class', 'c.oid')}
       ORDER BY ${sizes ? 'pg_catalog.pg_table_size(c.oid) DESC, ' : ''}1, 2`);
  return result.rows.map((row) => ({ ...row, all_columns: row.all_columns ?? [], hash_kinds: row.hash_kinds ?? [] }));
}

/**
 * Collects the statistics of the connected database. Must run inside a transaction (REPEATABLE READ
 * for a consistent picture; the backup uses the transaction that exported pg_dump's snapshot).
 * Works on PostgreSQL 11 and newer.
 */
export async function collectDatabaseStats(client: pg.Client, options: CollectStatsOptions = {}): Promise<DatabaseStats> {
  const serverNum = Number((await client.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]!.v);
  // Identity strings (regprocedure, pg_describe_object) qualify names unless visible on the
  // search_path: make them always qualified, the same way on both servers.
  await client.query('SET LOCAL search_path = pg_catalog');

  // The large objects' checksum reads every one of them: each connection its share (this one
  // between its catalog queries), the longest query after the table scans.
  const algorithm = options.checksumAlgorithm ?? ROW_CHECKSUM_ALGORITHM;
  const workers = [client, ...(options.extraClients ?? [])];
  // Taken during the restore: count again (cheap), keep the early checksum of the contents.
  const countAgain = (early: LargeObjectStats) =>
    client
      .query<{ count: string }>('SELECT count(*)::bigint AS count FROM pg_catalog.pg_largeobject_metadata')
      .then((result) => ({ count: Number(result.rows[0]!.count), checksum: early.checksum }));
  const readLargeObjects = () => largeObjectStats([...(options.extraClients ?? []), client], algorithm);
  const early = options.checksummedLargeObjects;
  const inProgress = options.checksumsInProgress;
  const largeObjectsWork: Promise<LargeObjectStats> = early
    ? countAgain(early)
    : inProgress?.largeObjects
      ? inProgress.largeObjects.then((taken) => (taken ? countAgain(taken) : readLargeObjects()))
      : readLargeObjects();
  // Awaited after the table scans (it may be waiting for another session); until then a
  // rejection must not count as unhandled.
  largeObjectsWork.catch(() => undefined);

  const schemas = (
    await client.query<{ nspname: string }>(`SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE ${USER_SCHEMA_FILTER} ORDER BY 1`)
  ).rows.map((row) => row.nspname);

  const tables = await listTables(client);

  const sequenceNames = (
    await client.query<{ schema: string; name: string }>(`
      SELECT n.nspname AS schema, c.relname AS name
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'S' AND ${USER_SCHEMA_FILTER} AND ${notExtensionMember('pg_class', 'c.oid')}
       ORDER BY 1, 2`)
  ).rows;
  const sequences: SequenceStats[] = [];
  for (let start = 0; start < sequenceNames.length; start += 200) {
    const chunk = sequenceNames.slice(start, start + 200);
    const union = chunk
      .map((seq, index) => `SELECT ${index} AS i, last_value::text AS last_value, is_called FROM ${qualifiedName(seq.schema, seq.name)}`)
      .join(' UNION ALL ');
    const rows = (await client.query<{ i: number; last_value: string; is_called: boolean }>(union)).rows;
    for (const row of rows) {
      const seq = chunk[row.i]!;
      sequences.push({ schema: seq.schema, name: seq.name, lastValue: row.last_value, isCalled: row.is_called });
    }
  }

  const extensions = (
    await client.query<ExtensionInfo>(`
      SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema
        FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
       WHERE e.extname <> 'plpgsql' ORDER BY 1`)
  ).rows;

  const objects = await collectObjectInventory(client, serverNum);

  // The text forms hashed are the same on both servers: connect() sets COMPARABLE_SESSION_SETTINGS.
  if (options.concurrent) for (const worker of workers) await applySettings(worker, CONCURRENT_CHECKSUM_SETTINGS, { local: true });
  const keyOf = (table: TableToChecksum) => `${table.schema}.${table.name}`;
  // The tables another session is still checksumming last: the workers scan the others meanwhile.
  const takenElsewhere = (index: number) => (inProgress?.tables.has(keyOf(tables[index]!)) ? 1 : 0);
  const order = [...tables.keys()].sort((a, b) => takenElsewhere(a) - takenElsewhere(b));
  const results: TableStats[] = new Array<TableStats>(tables.length);
  let next = 0;
  let done = 0;
  await Promise.all(
    workers.map(async (worker) => {
      while (next < order.length) {
        const index = order[next++]!;
        const table = tables[index]!;
        const key = keyOf(table);
        const stats = options.checksummedTables?.get(key) ?? (await inProgress?.tables.get(key)) ?? (await checksumTable(worker, table, algorithm));
        results[index] = stats;
        done += 1;
        options.onTable?.(stats, done, tables.length);
      }
    }),
  );
  const sortedTables = results.sort((a, b) => a.schema.localeCompare(b.schema) || a.name.localeCompare(b.name));
  const largeObjects = await largeObjectsWork;

  return { schemas, tables: sortedTables, sequences, largeObjects, extensions, objects };
}

/**
 * Count of the large objects and a checksum over their OIDs and contents (null when the user may
 * not read them: insufficient_privilege; any other error is thrown). v1 digests each object with
 * md5; v2 with sha256 (PostgreSQL 11+; OpenSSL's, with the CPU's SHA instructions, from 14 on:
 * several times faster than md5 on the same bytes).
 *
 * Given several sessions (on the same snapshot), each digests its share of the objects (by OID
 * modulo the number of sessions) and the partial sums are added: the same checksum, read on all
 * cores. After a restore this is the longest part of the verification of a database whose bytes
 * are mostly large objects.
 */
export async function largeObjectStats(clients: pg.Client | readonly pg.Client[], algorithm: string = ROW_CHECKSUM_ALGORITHM): Promise<LargeObjectStats> {
  const sessions = Array.isArray(clients) ? (clients as readonly pg.Client[]) : [clients as pg.Client];
  const count = Number(
    (await sessions[0]!.query<{ count: string }>('SELECT count(*)::bigint AS count FROM pg_catalog.pg_largeobject_metadata')).rows[0]!.count,
  );
  if (count === 0) return { count, checksum: '0' };
  const digest =
    algorithm === ROW_CHECKSUM_ALGORITHM_V1 ? 'pg_catalog.md5(pg_catalog.lo_get(m.oid))' : "pg_catalog.encode(pg_catalog.sha256(pg_catalog.lo_get(m.oid)), 'hex')";
  const shares = Math.max(1, Math.min(sessions.length, count));
  const partials = await Promise.all(
    sessions.slice(0, shares).map((session, share) =>
      queryOrUndefined<{ checksum: string }>(
        session,
        `SELECT coalesce(sum(pg_catalog.hashtext(m.oid::text || ':' || ${digest})::bigint), 0)::text AS checksum
           FROM pg_catalog.pg_largeobject_metadata m${shares > 1 ? ` WHERE m.oid::bigint % ${shares} = ${share}` : ''}`,
      ),
    ),
  );
  if (partials.some((partial) => partial === undefined)) return { count, checksum: null };
  const checksum = partials.reduce((sum, partial) => sum + BigInt(partial!.rows[0]!.checksum), 0n);
  return { count, checksum: checksum.toString() };
}

async function collectObjectInventory(client: pg.Client, serverNum: number): Promise<ObjectInventory> {
  const list = async (text: string) => (await client.query<{ id: string }>(text)).rows.map((row) => row.id).sort();

  const indexes = await list(`
    SELECT n.nspname || '.' || c.relname AS id
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('i', 'I') AND ${USER_SCHEMA_FILTER} AND ${notExtensionMember('pg_class', 'c.oid')}`);

  // Constraints cloned onto partitions (conparentid) or inherited are recreated with their parent.
  const constraints = await list(`
    SELECT n.nspname || '.' || c.relname || '.' || k.conname || ' (' || k.contype::text || ')' AS id
      FROM pg_catalog.pg_constraint k
      JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE k.contype IN ('p', 'u', 'f', 'c', 'x') AND k.conislocal AND k.conparentid = 0
       AND ${USER_SCHEMA_FILTER} AND ${notExtensionMember('pg_class', 'c.oid')}`);

  // Before PostgreSQL 13, triggers cloned onto partitions were internal; since 13 they carry tgparentid.
  const triggers = await list(`
    SELECT n.nspname || '.' || c.relname || '.' || t.tgname AS id
      FROM pg_catalog.pg_trigger t
      JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE NOT t.tgisinternal ${serverNum >= 130000 ? 'AND t.tgparentid = 0' : ''}
       AND ${USER_SCHEMA_FILTER} AND ${notExtensionMember('pg_class', 'c.oid')}`);

  const functions = await list(`
    SELECT p.oid::pg_catalog.regprocedure::text AS id
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE ${USER_SCHEMA_FILTER} AND ${notExtensionMember('pg_proc', 'p.oid')}`);

  const views = await list(`
    SELECT n.nspname || '.' || c.relname AS id
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'v' AND ${USER_SCHEMA_FILTER} AND ${notExtensionMember('pg_class', 'c.oid')}`);

  const types = await list(`
    SELECT n.nspname || '.' || t.typname || ' (' || t.typtype::text || ')' AS id
      FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE ${STANDALONE_TYPE_FILTER}
       AND ${USER_SCHEMA_FILTER} AND ${notExtensionMember('pg_type', 't.oid')}`);

  // Comments on user objects (OIDs from 16384 up), except extensions' own and their members'.
  const comments = await list(`
    SELECT pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid) || ': ' || md5(d.description) AS id
      FROM pg_catalog.pg_description d
     WHERE d.objoid >= 16384 AND d.classoid <> 'pg_catalog.pg_extension'::regclass
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend x WHERE x.classid = d.classoid AND x.objid = d.objoid AND x.deptype = 'e')
       AND pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid) NOT LIKE '%${ReadyMarker.schema}.%'`);

  return { indexes, constraints, triggers, functions, views, types, comments };
}

/** Rows over all tables. */
export function totalRows(stats: DatabaseStats): number {
  return stats.tables.reduce((sum, table) => sum + table.rows, 0);
}
