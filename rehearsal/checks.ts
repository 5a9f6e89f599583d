/**
 * The rehearsal's own checks, independent of the runner's verification: fingerprints of two
 * servers compared directly (every table's row count and an ordered digest of its rows, every
 * sequence's state, every large object's bytes), and what Keycloak's stand-in did when.
 */
import pg from 'pg';

export interface Connection {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
}

export interface DatabaseFingerprint {
  /** `schema.table` → rows and digest (tables, leaf partitions, materialized views). */
  readonly tables: Readonly<Record<string, { readonly rows: number; readonly md5: string }>>;
  /** `schema.sequence` → `last_value/is_called` as pg_sequences shows it. */
  readonly sequences: Readonly<Record<string, string>>;
  /** Large object OID → md5 of its bytes. */
  readonly largeObjects: Readonly<Record<string, string>>;
}

/** Tables Keycloak itself rewrites on every start (and the runner's hygiene resets). */
export const KEYCLOAK_RUNTIME_TABLES = ['public.jgroups_ping', 'public.databasechangeloglock'];
/** The Keycloak stand-in's steady writes (keycloak-standin.mjs): they go on across the upgrade, so never compared. */
export const KEYCLOAK_WRITES_TABLE = 'public.rehearsal_keycloak_writes';
/** Schemas that are not Keycloak's data (the runner's ready marker). */
const EXCLUDED_SCHEMAS = ['pg_catalog', 'information_schema', 'pg_toast', 'kc_migration'];

export async function withClient<T>(connection: Connection, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...connection, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export interface FingerprintOptions {
  /**
   * Compare across PostgreSQL 11 and 12+: floats printed with `extra_float_digits = 0`, the one
   * setting whose text both use alike (12 changed the default to shortest-exact output). Values
   * differing only beyond 15 significant digits then look equal.
   * @default false (the server's default output)
   */
  readonly acrossMajors?: boolean;
}

export async function fingerprint(
  connection: Connection,
  excludeTables: readonly string[] = KEYCLOAK_RUNTIME_TABLES,
  options: FingerprintOptions = {},
): Promise<DatabaseFingerprint> {
  return withClient(connection, async (client) => {
    if (options.acrossMajors) await client.query('SET extra_float_digits = 0');
    const relations = await client.query<{ name: string }>(
      `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'm') AND n.nspname <> ALL($1) AND n.nspname NOT LIKE 'pg_temp%'
        ORDER BY 1`,
      [EXCLUDED_SCHEMAS],
    );
    const tables: Record<string, { rows: number; md5: string }> = {};
    for (const { name } of relations.rows) {
      if (excludeTables.includes(name)) continue;
      const result = await client.query<{ rows: number; md5: string | null }>(
        `SELECT count(*)::int AS rows, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS md5 FROM ${name} AS t`,
      );
      tables[name] = { rows: result.rows[0]!.rows, md5: result.rows[0]!.md5 ?? '' };
    }
    const sequences: Record<string, string> = {};
    for (const row of (
      await client.query<{ name: string; state: string }>(
        `SELECT schemaname || '.' || sequencename AS name, coalesce(last_value::text, 'null') AS state
           FROM pg_sequences WHERE schemaname <> ALL($1) ORDER BY 1`,
        [EXCLUDED_SCHEMAS],
      )
    ).rows) {
      sequences[row.name] = row.state;
    }
    const largeObjects: Record<string, string> = {};
    for (const row of (await client.query<{ oid: string; md5: string }>(`SELECT oid::text AS oid, md5(lo_get(oid)) AS md5 FROM pg_largeobject_metadata ORDER BY oid`)).rows) {
      largeObjects[row.oid] = row.md5;
    }
    return { tables, sequences, largeObjects };
  });
}

/** Human-readable differences between two fingerprints (empty when equal). */
export function fingerprintDifferences(expected: DatabaseFingerprint, actual: DatabaseFingerprint, label: string): string[] {
  const differences: string[] = [];
  const compare = (kind: string, a: Readonly<Record<string, unknown>>, b: Readonly<Record<string, unknown>>) => {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!(key in b)) differences.push(`${label}: ${kind} ${key} is missing`);
      else if (!(key in a)) differences.push(`${label}: ${kind} ${key} is extra`);
      else if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) {
        differences.push(`${label}: ${kind} ${key} differs: expected ${JSON.stringify(a[key])}, got ${JSON.stringify(b[key])}`);
      }
    }
  };
  compare('table', expected.tables, actual.tables);
  compare('sequence', expected.sequences, actual.sequences);
  compare('large object', expected.largeObjects, actual.largeObjects);
  return differences;
}

/** Writes through a connection (Pgpool) and reads the row back: the target takes writes. */
export async function probeWrite(connection: Connection): Promise<{ primary: boolean }> {
  return withClient(connection, async (client) => {
    await client.query('CREATE TEMP TABLE rehearsal_probe (id int)');
    await client.query('INSERT INTO rehearsal_probe VALUES (1)');
    const recovery = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
    return { primary: recovery.rows[0]!.r === false };
  });
}
