/**
 * Proves the target holds exactly what the backup holds: the same statistics as the manifest
 * (rows and checksum per table, sequence values, large objects, extensions, the object inventory),
 * and — when an owner is given — every restored object owned by that role.
 */
import type pg from 'pg';
import { dataError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { connect, withClient, type ConnectionSettings } from './connection.js';
import { CHANGELOG_LOCK_TABLE, JGROUPS_TABLES } from './hygiene.js';
import { collectDatabaseStats, STANDALONE_TYPE_FILTER, UNPOPULATED_CHECKSUM, type BackupManifest, type ChecksumsInProgress, type DatabaseStats, type LargeObjectStats, type ObjectInventory, type TableStats } from './manifest.js';

export type DifferenceKind = 'table' | 'sequence' | 'largeObjects' | 'extension' | 'schema' | keyof ObjectInventory | 'ownership';

export interface StatsDifference {
  readonly kind: DifferenceKind;
  /** `schema.name` or the object's identity. */
  readonly name: string;
  readonly expected: string;
  readonly actual: string;
}

export interface DiffOptions {
  /**
   * `schema.table` names whose rows and checksum may differ (they must still exist): the tables
   * Keycloak hygiene changes after a verified restore. @default - {@link hygieneTables} of expected
   */
  readonly contentMayDiffer?: ReadonlySet<string>;
  /** Where to warn about what could not be compared. @default - nowhere */
  readonly log?: Logger;
  /**
   * `schema.name` of indexes that may be missing: the plain indexes built once the target is
   * ready (pg/deferred-indexes.ts). Present, they count as any other. @default - none
   */
  readonly indexesBuiltLater?: ReadonlySet<string>;
}

/** The tables whose content the post-restore hygiene changes (JGroups discovery, Liquibase lock). */
export function hygieneTables(stats: DatabaseStats): Set<string> {
  const names = new Set([...JGROUPS_TABLES, CHANGELOG_LOCK_TABLE]);
  return new Set(stats.tables.filter((table) => names.has(table.name.toLowerCase())).map((table) => `${table.schema}.${table.name}`));
}

/**
 * Differences between expected (the manifest's) and actual statistics; empty when equal.
 *
 * A materialized view must exist, and be populated exactly when the source's was; its rows and
 * checksum are not compared. Its contents are derived data: pg_restore does not copy them but
 * runs REFRESH MATERIALIZED VIEW over the restored (and checksummed) tables, so a view the source
 * had not refreshed since its tables changed always comes back different although nothing is
 * lost, and PostgreSQL keeps no record of whether a view is stale (comparing only "fresh" views
 * would need the view's query re-run on the source inside the dump's snapshot: a second full
 * evaluation of arbitrary, possibly volatile SQL, for data the restore recomputes anyway).
 */
export function diffDatabaseStats(expected: DatabaseStats, actual: DatabaseStats, options: DiffOptions = {}): StatsDifference[] {
  const differences: StatsDifference[] = [];
  const contentMayDiffer = options.contentMayDiffer ?? hygieneTables(expected);

  const actualSchemas = new Set(actual.schemas);
  for (const schema of expected.schemas) {
    if (!actualSchemas.has(schema)) differences.push({ kind: 'schema', name: schema, expected: 'present', actual: 'missing' });
  }

  const actualTables = new Map(actual.tables.map((table) => [`${table.schema}.${table.name}`, table]));
  for (const table of expected.tables) {
    const key = `${table.schema}.${table.name}`;
    const found = actualTables.get(key);
    actualTables.delete(key);
    if (!found) {
      differences.push({ kind: 'table', name: key, expected: `${table.rows} rows`, actual: 'missing' });
    } else if (contentMayDiffer.has(key)) {
      continue;
    } else if (table.kind === 'materialized view' || found.kind === 'materialized view') {
      const populated = (stats: TableStats) => (stats.checksum === UNPOPULATED_CHECKSUM ? 'WITH NO DATA' : 'populated');
      if (found.kind !== table.kind) differences.push({ kind: 'table', name: key, expected: table.kind, actual: found.kind });
      else if (populated(found) !== populated(table)) differences.push({ kind: 'table', name: key, expected: populated(table), actual: populated(found) });
    } else if (found.rows !== table.rows) {
      differences.push({ kind: 'table', name: key, expected: `${table.rows} rows`, actual: `${found.rows} rows` });
    } else if (found.checksum !== table.checksum) {
      differences.push({ kind: 'table', name: key, expected: `checksum ${table.checksum}`, actual: `checksum ${found.checksum}` });
    }
  }
  for (const [key, table] of actualTables) {
    differences.push({ kind: 'table', name: key, expected: 'absent', actual: `${table.rows} rows` });
  }

  const actualSequences = new Map(actual.sequences.map((seq) => [`${seq.schema}.${seq.name}`, seq]));
  for (const seq of expected.sequences) {
    const key = `${seq.schema}.${seq.name}`;
    const found = actualSequences.get(key);
    actualSequences.delete(key);
    const describe = (value: { lastValue: string; isCalled: boolean }) => `last_value ${value.lastValue}${value.isCalled ? '' : ' (not called)'}`;
    if (!found) differences.push({ kind: 'sequence', name: key, expected: describe(seq), actual: 'missing' });
    else if (found.lastValue !== seq.lastValue || found.isCalled !== seq.isCalled) {
      differences.push({ kind: 'sequence', name: key, expected: describe(seq), actual: describe(found) });
    }
  }
  for (const [key] of actualSequences) differences.push({ kind: 'sequence', name: key, expected: 'absent', actual: 'present' });

  const lo = { expected: expected.largeObjects, actual: actual.largeObjects };
  if (lo.expected.count !== lo.actual.count) {
    differences.push({ kind: 'largeObjects', name: 'large objects', expected: `${lo.expected.count}`, actual: `${lo.actual.count}` });
  } else if (lo.expected.checksum === null || lo.actual.checksum === null) {
    // Only a user without the right to read them gets no checksum (largeObjectStats): say so, never pass in silence.
    const why = lo.expected.checksum === null ? 'the backup has no checksum of them: the source user could not read them when it was taken' : 'the target user may not read them';
    options.log?.warn(`the contents of ${lo.actual.count} large object(s) were not compared, only their count: ${why} (insufficient_privilege)`, {
      fix: 'run the migration with a database user that may read every large object (their owner or a superuser)',
    });
  } else if (lo.expected.checksum !== lo.actual.checksum) {
    differences.push({ kind: 'largeObjects', name: 'large objects', expected: `checksum ${lo.expected.checksum}`, actual: `checksum ${lo.actual.checksum}` });
  }

  // Versions may legitimately differ across majors (CREATE EXTENSION installs the target's default).
  const actualExtensions = new Set(actual.extensions.map((extension) => extension.name));
  for (const extension of expected.extensions) {
    if (!actualExtensions.has(extension.name)) differences.push({ kind: 'extension', name: extension.name, expected: 'installed', actual: 'missing' });
  }

  for (const kind of Object.keys(expected.objects) as Array<keyof ObjectInventory>) {
    const have = new Set(actual.objects[kind]);
    const want = new Set(expected.objects[kind]);
    for (const id of want) {
      if (have.has(id) || (kind === 'indexes' && options.indexesBuiltLater?.has(id))) continue;
      differences.push({ kind, name: id, expected: 'present', actual: 'missing' });
    }
    for (const id of have) if (!want.has(id)) differences.push({ kind, name: id, expected: 'absent', actual: 'present' });
  }
  return differences;
}

/** One line per difference kind, naming the objects. */
export function describeDifferences(differences: readonly StatsDifference[], limit = 12): string {
  const shown = differences.slice(0, limit).map((d) => `${d.kind} ${d.name}: expected ${d.expected}, found ${d.actual}`);
  if (differences.length > limit) shown.push(`and ${differences.length - limit} more`);
  return shown.join('; ');
}

export interface TargetStatsOptions {
  /** Connections used for table checksums. @default 2 */
  readonly jobs?: number;
  readonly log?: Logger;
  /**
   * Checksums the restore took right after loading each table (`RestoreResult.checksummedTables`):
   * those tables are listed and compared but not scanned again.
   */
  readonly checksummedTables?: ReadonlyMap<string, TableStats>;
  /** The large objects' statistics the restore took right after loading them (`RestoreResult.checksummedLargeObjects`). */
  readonly checksummedLargeObjects?: LargeObjectStats;
  /** The checksum the restore's verifier was still taking when pg_restore ended (`RestoreResult.checksumsInProgress`). */
  readonly checksumsInProgress?: ChecksumsInProgress;
  /** The backup's {@link BackupManifest.checksumAlgorithm}. @default ROW_CHECKSUM_ALGORITHM */
  readonly checksumAlgorithm?: string;
}

/** The target's statistics, taken in one REPEATABLE READ snapshot shared by `jobs` connections. */
export async function collectTargetStats(target: ConnectionSettings, options: TargetStatsOptions = {}): Promise<DatabaseStats> {
  const jobs = Math.max(1, options.jobs ?? 2);
  // The further sessions connect while the main one does (each connection costs tens of
  // milliseconds); they join its snapshot once it is exported.
  const connecting = Array.from({ length: jobs - 1 }, () => connect(target, { purpose: 'verify', action: 'verify' }));
  // Awaited below, or closed unused; until then a rejection must not count as unhandled.
  for (const connection of connecting) connection.catch(() => undefined);
  let closing: Promise<unknown> | undefined;
  const closeSessions = () => (closing ??= Promise.all(connecting.map((connection) => connection.then((client) => client.end()).catch(() => undefined))));
  return withClient(
    target,
    async (main) => {
      await main.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const extras: pg.Client[] = [];
      try {
        let snapshot: string | undefined;
        if (jobs > 1) {
          try {
            snapshot = (await main.query<{ id: string }>('SELECT pg_catalog.pg_export_snapshot() AS id')).rows[0]!.id;
          } catch {
            // Checksums then run on the main connection only.
            await main.query('ROLLBACK');
            await main.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
          }
        }
        if (snapshot) {
          extras.push(...(await Promise.all(connecting)));
          for (const extra of extras) {
            await extra.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
            await extra.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`);
          }
        }
        return await collectDatabaseStats(main, {
          extraClients: extras,
          checksummedTables: options.checksummedTables,
          checksumAlgorithm: options.checksumAlgorithm,
          checksummedLargeObjects: options.checksummedLargeObjects,
          checksumsInProgress: options.checksumsInProgress,
          onTable: (table, done, total) => options.log?.debug('checksummed', { table: `${table.schema}.${table.name}`, rows: table.rows, done, total }),
        });
      } finally {
        await main.query('ROLLBACK').catch(() => undefined);
        await closeSessions();
      }
    },
    { purpose: 'verify', action: 'verify' },
  ).finally(closeSessions);
}

/** Objects in `schemas` (and large objects) not owned by `owner`: `kind schema.name (owner)`. */
export async function findObjectsNotOwnedBy(client: pg.Client, schemas: readonly string[], owner: string): Promise<string[]> {
  const result = await client.query<{ id: string }>(
    `
    WITH s AS (SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::text[]))
    SELECT kind || ' ' || name || ' (' || pg_catalog.pg_get_userbyid(owner) || ')' AS id FROM (
      SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                            WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'relation' END AS kind,
             s.nspname || '.' || c.relname AS name, c.relowner AS owner, c.oid, 'pg_class'::regclass AS catalog
        FROM pg_catalog.pg_class c JOIN s ON s.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      UNION ALL
      SELECT 'function', p.oid::pg_catalog.regprocedure::text, p.proowner, p.oid, 'pg_proc'::regclass
        FROM pg_catalog.pg_proc p JOIN s ON s.oid = p.pronamespace
      UNION ALL
      SELECT 'type', s.nspname || '.' || t.typname, t.typowner, t.oid, 'pg_type'::regclass
        FROM pg_catalog.pg_type t JOIN s ON s.oid = t.typnamespace
       WHERE ${STANDALONE_TYPE_FILTER}
      UNION ALL
      SELECT 'large object', m.oid::text, m.lomowner, m.oid, 'pg_largeobject_metadata'::regclass
        FROM pg_catalog.pg_largeobject_metadata m
    ) o
    WHERE o.owner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $2)
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = o.catalog AND d.objid = o.oid AND d.deptype = 'e')
    ORDER BY 1`,
    [schemas, owner],
  );
  return result.rows.map((row) => row.id);
}

export interface TargetVerification {
  readonly stats: DatabaseStats;
  readonly tables: number;
  readonly rows: number;
  readonly durationMs: number;
}

export interface VerifyTargetOptions extends TargetStatsOptions, DiffOptions {
  /** When set, every restored object must be owned by this role. */
  readonly owner?: string;
}

/** Compares the target with the manifest; any difference is a data error listing the table names. */
export async function verifyTarget(target: ConnectionSettings, manifest: BackupManifest, options: VerifyTargetOptions = {}): Promise<TargetVerification> {
  const log = options.log ?? silentLogger;
  const started = Date.now();
  const owner = options.owner;
  // The ownership check reads only the catalog: on its own connection, alongside the statistics.
  const [stats, foreign] = await Promise.all([
    collectTargetStats(target, { ...options, checksumAlgorithm: manifest.checksumAlgorithm }),
    owner ? withClient(target, (client) => findObjectsNotOwnedBy(client, manifest.stats.schemas, owner), { purpose: 'verify' }) : Promise.resolve([]),
  ]);
  const differences = diffDatabaseStats(manifest.stats, stats, options);
  for (const id of foreign) differences.push({ kind: 'ownership', name: id, expected: `owned by ${owner}`, actual: 'another owner' });
  if (differences.length > 0) {
    const tables = [...new Set(differences.filter((d) => d.kind === 'table').map((d) => d.name))];
    log.error('target verification failed', { differences: differences.slice(0, 50) });
    throw dataError(
      `the target ${target.host}:${target.port}/${target.database} does not match the backup${tables.length ? ` in table(s) ${tables.join(', ')}` : ''}: ${describeDifferences(differences)}`,
      'do not start Keycloak on this database; restore again (the restore cleans a partial target), and if it repeats, inspect the named objects',
    );
  }
  const rows = stats.tables.reduce((sum, table) => sum + table.rows, 0);
  const result = { stats, tables: stats.tables.length, rows, durationMs: Date.now() - started };
  log.info('target verified', { tables: result.tables, rows, sequences: stats.sequences.length, largeObjects: stats.largeObjects.count });
  return result;
}
