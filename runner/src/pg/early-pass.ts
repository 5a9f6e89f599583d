/**
 * The source's checksum pass taken before the downtime, and the proof that lets the backup reuse
 * it inside the downtime.
 *
 * A backup checksums every table of the source in the snapshot pg_dump reads (manifest.ts), while
 * the application is already stopped: on a machine whose cores the dump keeps busy, that pass is
 * one of the two that set the runner's floor (bench/RESULTS.md). {@link takeEarlyPass} makes the
 * same pass while the application still runs; {@link reuseEarlyPass}, inside the dump's snapshot,
 * then proves table by table that nothing changed since and hands the early checksums to the
 * statistics, which scan only the tables it could not prove unchanged. The check reads every row
 * too, but only its `xmin`, and hashes nothing (about a fifth of a pass on the benchmark's wide rows
 * at 1 GiB; on a fresh session loading each table's catalog entries comes on top, ~5 ms per table;
 * bench/RESULTS.md measures it per cell).
 *
 * Why "unchanged" is exact. The early snapshot's xmin X is the oldest transaction running when it
 * was taken: every transaction with an id below X had ended, and a subtransaction's id is always
 * above its parent's. A table is reused only if, in the dump's snapshot,
 *
 * - it has the same relfilenode (TRUNCATE, VACUUM FULL, CLUSTER and rewriting ALTERs change it),
 * - no visible row has an xmin at or above X (an INSERT or UPDATE after the early snapshot, or by
 *   a transaction still running then, writes such a row; PostgreSQL 9.4+ freezes a row by setting
 *   bits and keeps its xmin, so VACUUM FREEZE cannot hide one), and
 * - the row count is the same.
 *
 * Then every visible row was written by a transaction that had ended before the early snapshot,
 * and was visible to it unless deleted before it — so the dump's rows are a subset of the early
 * rows, and with the same count, the same rows. DELETE alone lowers the count. The catalog must be
 * unchanged as a whole (columns, their types and modifiers, enum labels, user types, row-level
 * security): ALTER TABLE ADD COLUMN with a default or renaming an enum label changes what rows read
 * as without writing them, a policy changes what a reader sees (and a pass is only used by the user
 * who took it). A row whose xmin lies more than 2^31 transactions back reads as new (age() wraps):
 * the table is scanned, never wrongly reused; and an early pass more than 2^30 transactions old is
 * not used at all.
 *
 * Without reading a row, when no transaction at all ended since: every write (a row, a deletion, a
 * TRUNCATE, a large object's page, DDL) is made by a transaction with an id, and every transaction
 * that had not ended at the early snapshot, or began after it, has an id at or above X. The dump's
 * snapshot counts as ended only the ids below its xmax; when that xmax is still X, none of those
 * had ended, and the dump reads exactly the rows the early pass read. Autovacuum's ANALYZE or a
 * single write anywhere spends an id, and every table is then checked row by row as above. Only
 * while the server has run without a restart since (the same postmaster start time): a crash
 * restart empties unlogged tables without a transaction, and loses the asynchronous commits whose
 * WAL was not yet flushed, whose ids the server then hands out again.
 *
 * And a wrong "unchanged" could not pass unnoticed anyway: the restore compares the target, loaded
 * from the dump, with these checksums, so a table the dump holds differently fails verification.
 */
import type pg from 'pg';
import { dataError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ConnectionSettings } from './connection.js';
import { qualifiedName } from './connection.js';
import { collectDatabaseStats, queryOrUndefined, ROW_CHECKSUM_ALGORITHM, type CollectStatsOptions, type LargeObjectStats, type TableStats } from './manifest.js';

/** The early pass, next to the backup it is for (`<dir>/early-pass.json`). */
export const EARLY_PASS_FILE = 'early-pass.json';
export const EARLY_PASS_FORMAT_VERSION = 1;
/** An early pass older than this many transactions is not used (age() comparisons need < 2^31). */
const MAX_TRANSACTIONS_SINCE = 2n ** 30n;

export interface EarlyPassTable extends TableStats {
  /** pg_class.relfilenode when the pass was taken. */
  readonly relfilenode: string;
}

export interface EarlyPass {
  readonly formatVersion: typeof EARLY_PASS_FORMAT_VERSION;
  readonly takenAt: string;
  /** Where it was taken: a pass of another database is never used. */
  readonly source: { readonly host: string; readonly port: number; readonly database: string; readonly user: string; readonly databaseOid: string };
  readonly checksumAlgorithm: string;
  /** The early snapshot's xmin as a 64-bit transaction id (txid_snapshot_xmin), decimal. */
  readonly snapshotXmin: string;
  /** md5 over the user relations, their columns (type, modifier, collation), enum labels and user types. */
  readonly catalogDigest: string;
  /**
   * pg_postmaster_start_time() as seconds since the epoch (decimal): the proof from transaction ids
   * holds only while the server has not restarted. Absent in passes of older runners.
   */
  readonly serverStartedAt?: string;
  readonly tables: readonly EarlyPassTable[];
  readonly largeObjects: LargeObjectStats;
  /** Rows of pg_largeobject (decimal), null when this user may not read it: the large objects are then checksummed again. */
  readonly largeObjectPages: string | null;
  readonly durationMs: number;
}

/** What {@link reuseEarlyPass} proved unchanged, for `collectDatabaseStats`' `checksummedTables` / `checksummedLargeObjects`. */
export interface EarlyPassReuse {
  readonly tables: ReadonlyMap<string, TableStats>;
  readonly largeObjects?: LargeObjectStats;
  /** Tables of the early pass that are scanned again, and why (`public.user_entity: 3 newer rows`). */
  readonly rescanned: readonly string[];
  /** Set when nothing is reused: why. */
  readonly unusable?: string;
  /** Set when no transaction ended since the early snapshot: tables and large objects proven unchanged without reading a row. */
  readonly noTransactionSince?: true;
}

const USER_NAMESPACE = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`;

async function catalogDigest(client: pg.Client): Promise<string> {
  const result = await client.query<{ digest: string | null }>(
    `SELECT md5(string_agg(entry, ',' ORDER BY entry)) AS digest FROM (
       SELECT 'r:' || c.oid || ':' || n.nspname || '.' || c.relname || ':' || c.relkind::text || ':' || c.relnatts
              || ':' || c.relrowsecurity || ':' || c.relforcerowsecurity AS entry
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'm') AND ${USER_NAMESPACE}
       UNION ALL
       SELECT 'p:' || p.polrelid || ':' || p.polname || ':' || p.polcmd::text || ':' || p.polpermissive || ':' || p.polroles::text
              || ':' || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '') FROM pg_catalog.pg_policy p
       UNION ALL
       SELECT 'a:' || a.attrelid || ':' || a.attnum || ':' || a.attname || ':' || a.atttypid || ':' || a.atttypmod || ':' || a.attcollation || ':' || a.attisdropped
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE a.attnum > 0 AND c.relkind IN ('r', 'p', 'm') AND ${USER_NAMESPACE}
       UNION ALL
       SELECT 'e:' || e.enumtypid || ':' || e.enumsortorder || ':' || e.enumlabel FROM pg_catalog.pg_enum e
       UNION ALL
       SELECT 't:' || t.oid || ':' || t.typname || ':' || t.typtype::text || ':' || t.typbasetype || ':' || t.typtypmod
         FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        WHERE ${USER_NAMESPACE}
     ) entries`,
  );
  return result.rows[0]?.digest ?? '';
}

async function relfilenodes(client: pg.Client): Promise<Map<string, string>> {
  const result = await client.query<{ name: string; relfilenode: string }>(
    `SELECT n.nspname || '.' || c.relname AS name, c.relfilenode::text AS relfilenode
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'm') AND ${USER_NAMESPACE}`,
  );
  return new Map(result.rows.map((row) => [row.name, row.relfilenode]));
}

/** When the server started, independent of the session's TimeZone and DateStyle. */
const SERVER_STARTED_AT = 'extract(epoch FROM pg_catalog.pg_postmaster_start_time())::text';

async function databaseOid(client: pg.Client): Promise<string> {
  return (await client.query<{ oid: string }>('SELECT oid::text AS oid FROM pg_catalog.pg_database WHERE datname = current_database()')).rows[0]!.oid;
}

/**
 * The full checksum pass over `client`'s database, in a snapshot of its own, with what the later
 * proof needs. Meant for a source whose application still runs: one session, no parallel workers
 * (the application keeps its share of the server).
 */
export async function takeEarlyPass(client: pg.Client, source: ConnectionSettings): Promise<EarlyPass> {
  const started = Date.now();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    // The first query fixes the snapshot: its xmin is what the proof compares rows with.
    const { xmin: snapshotXmin, server_started: serverStartedAt } = (
      await client.query<{ xmin: string; server_started: string }>(
        `SELECT pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot())::text AS xmin, ${SERVER_STARTED_AT} AS server_started`,
      )
    ).rows[0]!;
    const digest = await catalogDigest(client);
    const nodes = await relfilenodes(client);
    const oid = await databaseOid(client);
    const pages = await queryOrUndefined<{ pages: string }>(client, 'SELECT count(*)::text AS pages FROM pg_catalog.pg_largeobject');
    const stats = await collectDatabaseStats(client, { concurrent: true });
    await client.query('COMMIT');
    return {
      formatVersion: EARLY_PASS_FORMAT_VERSION,
      takenAt: new Date(started).toISOString(),
      source: { host: source.host, port: source.port, database: source.database, user: source.user, databaseOid: oid },
      checksumAlgorithm: ROW_CHECKSUM_ALGORITHM,
      snapshotXmin,
      catalogDigest: digest,
      serverStartedAt,
      tables: stats.tables.map((table) => ({ ...table, relfilenode: nodes.get(`${table.schema}.${table.name}`) ?? '' })),
      largeObjects: stats.largeObjects,
      largeObjectPages: pages?.rows[0]?.pages ?? null,
      durationMs: Date.now() - started,
    };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** Reads an early pass written by {@link takeEarlyPass} (JSON); a malformed one is a data error naming the file. */
export function parseEarlyPass(text: string, path: string): EarlyPass {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw dataError(`${path} is not JSON: ${(error as Error).message}`, `delete ${path}; the backup then checksums every table itself`);
  }
  const pass = value as Partial<EarlyPass>;
  if (pass.formatVersion !== EARLY_PASS_FORMAT_VERSION || !Array.isArray(pass.tables) || typeof pass.snapshotXmin !== 'string' || !pass.source || !pass.largeObjects) {
    throw dataError(
      `${path} is not an early pass of format ${EARLY_PASS_FORMAT_VERSION} (formatVersion ${JSON.stringify(pass.formatVersion)})`,
      `delete ${path} or take it again with this runner's checksum-source; the backup then checksums every table itself`,
    );
  }
  return pass as EarlyPass;
}

/** The `collectDatabaseStats` options that skip what {@link reuseEarlyPass} proved unchanged. */
export function reusedStatsOptions(reuse: EarlyPassReuse | undefined): Pick<CollectStatsOptions, 'checksummedTables' | 'checksummedLargeObjects'> {
  if (!reuse) return {};
  return { checksummedTables: reuse.tables, ...(reuse.largeObjects ? { checksummedLargeObjects: reuse.largeObjects } : {}) };
}

const nothing = (unusable: string): EarlyPassReuse => ({ tables: new Map(), rescanned: [], unusable });

/**
 * In the dump's snapshot (`client` inside its REPEATABLE READ transaction): the early checksums
 * that still hold, by the proof in the module comment. Never throws for a pass that does not fit
 * (another database, an older format, a changed catalog): it is then simply not used, and says why.
 */
export async function reuseEarlyPass(client: pg.Client, early: EarlyPass, source: ConnectionSettings, log?: Logger): Promise<EarlyPassReuse> {
  if (early.checksumAlgorithm !== ROW_CHECKSUM_ALGORITHM) return nothing(`its checksums are ${early.checksumAlgorithm}, this runner computes ${ROW_CHECKSUM_ALGORITHM}`);
  if (early.source.host !== source.host || early.source.port !== source.port || early.source.database !== source.database) {
    return nothing(`it was taken on ${early.source.host}:${early.source.port}/${early.source.database}, not on ${source.host}:${source.port}/${source.database}`);
  }
  // Row-level security makes what a table holds depend on who reads it.
  if (early.source.user !== source.user) return nothing(`it was taken as ${early.source.user}, this backup reads as ${source.user}`);
  if ((await databaseOid(client)) !== early.source.databaseOid) return nothing(`database ${source.database} was dropped and created again since`);
  const now = (
    await client.query<{ xmax: string; server_started: string }>(
      `SELECT pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot())::text AS xmax, ${SERVER_STARTED_AT} AS server_started`,
    )
  ).rows[0]!;
  const xmax = BigInt(now.xmax);
  const since = xmax - BigInt(early.snapshotXmin);
  if (since < 0n || since > MAX_TRANSACTIONS_SINCE) return nothing(`it is ${since} transactions old (at most ${MAX_TRANSACTIONS_SINCE} are compared exactly)`);
  if ((await catalogDigest(client)) !== early.catalogDigest) return nothing('tables, columns or types were altered since');

  // No transaction at all ended since the early snapshot, on a server that has not restarted since:
  // the proof holds for every table without reading a row (see the module comment).
  const noTransactionSince = xmax === BigInt(early.snapshotXmin) && early.serverStartedAt === now.server_started;
  const threshold = (BigInt(early.snapshotXmin) % 2n ** 32n).toString();
  // age() counts from one transaction id per transaction: "xmin at or above the threshold" is
  // age(xmin) <= age(threshold), with no wraparound arithmetic per row.
  const newer = `pg_catalog.age(t.xmin) <= (SELECT pg_catalog.age('${threshold}'::xid))`;
  const nodes = await relfilenodes(client);
  const tables = new Map<string, TableStats>();
  const rescanned: string[] = [];
  for (const table of early.tables) {
    const name = `${table.schema}.${table.name}`;
    // Materialized views: a REFRESH rewrites them; few and small, they are simply scanned again.
    if (table.kind !== 'table') continue;
    const relfilenode = nodes.get(name);
    if (relfilenode === undefined) continue;
    if (relfilenode !== table.relfilenode) {
      rescanned.push(`${name}: truncated or rewritten`);
      continue;
    }
    const unchanged: TableStats = { schema: table.schema, name: table.name, kind: table.kind, rows: table.rows, checksum: table.checksum, sizeBytes: table.sizeBytes };
    if (noTransactionSince) {
      tables.set(name, unchanged);
      continue;
    }
    const row = (
      await client.query<{ rows: string; newer: string }>(
        `SELECT count(*)::text AS rows, count(*) FILTER (WHERE ${newer})::text AS newer FROM ONLY ${qualifiedName(table.schema, table.name)} AS t`,
      )
    ).rows[0]!;
    if (row.newer !== '0') rescanned.push(`${name}: ${row.newer} row(s) written since`);
    else if (Number(row.rows) !== table.rows) rescanned.push(`${name}: ${table.rows} → ${row.rows} rows`);
    else tables.set(name, unchanged);
  }

  // Large objects, by the same proof: their metadata (readable by everyone) and their pages
  // (pg_largeobject, which only a superuser may read; without it they are checksummed again). Pages
  // deleted with no page written (a superuser's DELETE on pg_largeobject) change only their count.
  // With no transaction since, nothing was written or deleted, and no page needs reading.
  let largeObjects: LargeObjectStats | undefined;
  if (early.largeObjects.checksum !== null && noTransactionSince) {
    largeObjects = early.largeObjects;
  } else if (early.largeObjects.checksum !== null) {
    const metadata = (
      await client.query<{ count: string; newer: string }>(
        `SELECT count(*)::text AS count, count(*) FILTER (WHERE ${newer})::text AS newer FROM pg_catalog.pg_largeobject_metadata AS t`,
      )
    ).rows[0]!;
    const pages = early.largeObjectPages === null
      ? undefined
      : await queryOrUndefined<{ pages: string; newer: string }>(
          client,
          `SELECT count(*)::text AS pages, count(*) FILTER (WHERE ${newer})::text AS newer FROM pg_catalog.pg_largeobject AS t`,
        );
    const page = pages?.rows[0];
    const unchanged = Number(metadata.count) === early.largeObjects.count && metadata.newer === '0' && page?.newer === '0' && page.pages === early.largeObjectPages;
    if (unchanged) largeObjects = early.largeObjects;
    else rescanned.push(page ? 'large objects: written since' : 'large objects: pg_largeobject is not readable by this user');
  }
  log?.debug('early pass', { takenAt: early.takenAt, noTransactionSince, reused: tables.size, of: early.tables.length, largeObjectsReused: largeObjects !== undefined, rescanned: rescanned.slice(0, 10) });
  return { tables, ...(largeObjects ? { largeObjects } : {}), rescanned, ...(noTransactionSince ? { noTransactionSince } : {}) };
}
