/**
 * Has the source database changed since a backup was taken? A cheap answer (a handful of catalog
 * and statistics queries, no table scan) so that every run that would reuse an existing backup can
 * ask it — the case it exists for: the restore failed, the operator rolled back to the old release
 * (whose Keycloak writes to the legacy database again), then upgraded again. Restoring the old
 * backup then would silently lose everything written during the rollback.
 *
 * The fingerprint is taken BEFORE the backup's snapshot, so a write that lands between the two
 * makes the fingerprints differ later (a needless re-dump) instead of hiding a write the dump
 * missed. What it records:
 *
 * - per table (and pg_largeobject, which holds large objects) the cumulative write counters
 *   `n_tup_ins + n_tup_upd + n_tup_del` of `pg_stat_all_tables`, with the table's OID and
 *   relfilenode (TRUNCATE counts no deleted rows but gives the table a new relfilenode);
 * - the database's `stats_reset` and whether `track_counts` is on (counters that were reset, or
 *   are not kept, prove nothing);
 * - every sequence's last value (nextval without an insert writes no table);
 * - a digest of the user tables' columns and of the relations of the user schemas (DDL).
 *
 * Any difference, or anything that cannot be compared, counts as "changed": a new dump is only
 * slower, reusing a stale one loses data.
 *
 * Known limit: the counters are statistics. PostgreSQL reports a backend's counts when it goes idle
 * or exits (PostgreSQL 15+: shared memory; before: a UDP message to the statistics collector,
 * which may drop messages under load). The hooks check only after the workloads' pods are gone,
 * when their sessions have ended and reported.
 */
import type pg from 'pg';
import { ReadyMarker } from '../../../lib/contract.js';

/** Bumped when the fingerprint's shape changes: a different version always counts as changed. */
export const SOURCE_FINGERPRINT_VERSION = 1;

export interface TableWriteCounter {
  /** `schema.name` */
  readonly table: string;
  readonly oid: number;
  readonly relfilenode: number;
  /** Decimal string of n_tup_ins + n_tup_upd + n_tup_del. */
  readonly writes: string;
}

export interface SourceFingerprint {
  readonly version: typeof SOURCE_FINGERPRINT_VERSION;
  readonly takenAt: string;
  /** pg_stat_database.stats_reset of the database (null: never reset). */
  readonly statsReset: string | null;
  readonly trackCounts: boolean;
  readonly tables: readonly TableWriteCounter[];
  /** `schema.name` → last_value (null: never called). */
  readonly sequences: Readonly<Record<string, string | null>>;
  /** md5 over the user relations and the user tables' columns. */
  readonly catalogDigest: string;
}

const USER_SCHEMA = `schemaname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', '${ReadyMarker.schema}')
  AND schemaname NOT LIKE 'pg\\_temp\\_%' AND schemaname NOT LIKE 'pg\\_toast\\_temp\\_%'`;

/** Reads the fingerprint of the connected database. Must run outside the backup's snapshot, before it. */
export async function readSourceFingerprint(client: pg.Client, now: Date = new Date()): Promise<SourceFingerprint> {
  const database = await client.query<{ stats_reset: string | null; track_counts: string }>(
    `SELECT (SELECT stats_reset::text FROM pg_catalog.pg_stat_database WHERE datname = current_database()) AS stats_reset,
            current_setting('track_counts') AS track_counts`,
  );
  const tables = await client.query<{ table_name: string; oid: string; relfilenode: string; writes: string }>(
    `SELECT s.schemaname || '.' || s.relname AS table_name, s.relid::bigint::text AS oid, c.relfilenode::bigint::text AS relfilenode,
            (s.n_tup_ins + s.n_tup_upd + s.n_tup_del)::text AS writes
       FROM pg_catalog.pg_stat_all_tables s JOIN pg_catalog.pg_class c ON c.oid = s.relid
      WHERE (${USER_SCHEMA.replace(/schemaname/g, 's.schemaname')})
         OR (s.schemaname = 'pg_catalog' AND s.relname IN ('pg_largeobject', 'pg_largeobject_metadata'))
      ORDER BY 1`,
  );
  const sequences = await client.query<{ name: string; last_value: string | null }>(
    `SELECT schemaname || '.' || sequencename AS name, last_value::text AS last_value
       FROM pg_catalog.pg_sequences WHERE ${USER_SCHEMA} ORDER BY 1`,
  );
  const catalog = await client.query<{ digest: string | null }>(
    `SELECT md5(string_agg(entry, ',' ORDER BY entry)) AS digest FROM (
       SELECT 'r:' || c.oid || ':' || n.nspname || '.' || c.relname || ':' || c.relkind::text || ':' || c.relnatts AS entry
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE ${USER_SCHEMA.replace(/schemaname/g, 'n.nspname')}
       UNION ALL
       SELECT 'a:' || a.attrelid || ':' || a.attnum || ':' || a.attname || ':' || a.atttypid || ':' || a.attisdropped || ':' || a.attnotnull
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE a.attnum > 0 AND c.relkind IN ('r', 'p', 'm') AND ${USER_SCHEMA.replace(/schemaname/g, 'n.nspname')}
     ) entries`,
  );
  const row = database.rows[0]!;
  return {
    version: SOURCE_FINGERPRINT_VERSION,
    takenAt: now.toISOString(),
    statsReset: row.stats_reset,
    trackCounts: row.track_counts === 'on',
    tables: tables.rows.map((table) => ({ table: table.table_name, oid: Number(table.oid), relfilenode: Number(table.relfilenode), writes: table.writes })),
    sequences: Object.fromEntries(sequences.rows.map((sequence) => [sequence.name, sequence.last_value])),
    catalogDigest: catalog.rows[0]?.digest ?? '',
  };
}

export interface SourceComparison {
  readonly changed: boolean;
  /** Writes counted since the backup (0 when the change is of another kind). */
  readonly writes: number;
  /** One line naming what changed, e.g. `5 writes to public.user_entity, 2 to public.credential`. */
  readonly summary: string;
}

/** Compares the fingerprint recorded with a backup to the source now; undefined `recorded` is a change. */
export function compareSourceFingerprints(recorded: SourceFingerprint | undefined, current: SourceFingerprint): SourceComparison {
  const changedBecause = (summary: string): SourceComparison => ({ changed: true, writes: 0, summary });
  if (!recorded) return changedBecause('the backup recorded no write counters to compare with (it was taken by an older runner)');
  if (recorded.version !== current.version) return changedBecause(`the backup's write counters are of format ${String(recorded.version)}, this runner reads ${current.version}`);
  if (!current.trackCounts || !recorded.trackCounts) return changedBecause('track_counts is off on the legacy server, so writes cannot be counted');
  if (recorded.statsReset !== current.statsReset) {
    return changedBecause(`its statistics were reset since the backup (stats_reset ${recorded.statsReset ?? 'never'} → ${current.statsReset ?? 'never'}), so writes cannot be counted`);
  }

  const before = new Map(recorded.tables.map((table) => [table.table, table]));
  const after = new Map(current.tables.map((table) => [table.table, table]));
  const written: Array<{ table: string; writes: number }> = [];
  const other: string[] = [];
  for (const [name, now] of after) {
    const then = before.get(name);
    if (!then) {
      other.push(`table ${name} was created`);
      continue;
    }
    if (then.oid !== now.oid) other.push(`table ${name} was dropped and created again`);
    else if (then.relfilenode !== now.relfilenode) other.push(`table ${name} was truncated or rewritten`);
    const delta = BigInt(now.writes) - BigInt(then.writes);
    if (delta > 0n) written.push({ table: name, writes: Number(delta) });
    // Counters never go down without a reset; if they did, nothing can be concluded.
    else if (delta < 0n) other.push(`the write counters of ${name} went down (${then.writes} → ${now.writes})`);
  }
  for (const name of before.keys()) if (!after.has(name)) other.push(`table ${name} was dropped`);
  for (const [name, value] of Object.entries(current.sequences)) {
    if (!(name in recorded.sequences)) other.push(`sequence ${name} was created`);
    else if (recorded.sequences[name] !== value) other.push(`sequence ${name} moved (${recorded.sequences[name] ?? 'unused'} → ${value ?? 'unused'})`);
  }
  for (const name of Object.keys(recorded.sequences)) if (!(name in current.sequences)) other.push(`sequence ${name} was dropped`);
  if (recorded.catalogDigest !== current.catalogDigest && other.length === 0) other.push('its tables or columns were altered');

  if (written.length === 0 && other.length === 0) return { changed: false, writes: 0, summary: 'no writes since the backup' };
  written.sort((a, b) => b.writes - a.writes || a.table.localeCompare(b.table));
  const writes = written.reduce((sum, entry) => sum + entry.writes, 0);
  const parts: string[] = [];
  if (written.length > 0) {
    const shown = written.slice(0, 3).map((entry, index) => (index === 0 ? `${entry.writes} write(s) to table ${entry.table}` : `${entry.writes} to ${entry.table}`));
    parts.push(`${shown.join(', ')}${written.length > 3 ? `, … ${writes} in ${written.length} tables` : ''}`);
  }
  parts.push(...other.slice(0, 3));
  if (other.length > 3) parts.push(`${other.length - 3} more change(s)`);
  return { changed: true, writes, summary: parts.join('; ') };
}
