/**
 * The benchmark's own check that a contender copied everything, independent of any contender's
 * verification: exact row counts of every table in schema public, the number and total size of
 * large objects, every sequence's last value, and the numbers of indexes and foreign keys (a plain
 * SQL restore that skipped failed statements would lose those silently).
 */
import pg from 'pg';

export interface DatabaseEndpoint {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password?: string;
  readonly database: string;
}

export interface DatabaseSnapshot {
  readonly rowCounts: Record<string, number>;
  readonly largeObjects: number;
  readonly largeObjectBytes: number;
  readonly sequences: Record<string, string>;
  readonly indexes: number;
  readonly foreignKeys: number;
}

/** Reads the snapshot of `endpoint.database`. */
export async function snapshotDatabase(endpoint: DatabaseEndpoint): Promise<DatabaseSnapshot> {
  const client = new pg.Client({ ...endpoint, application_name: 'bench-verify' });
  await client.connect();
  try {
    const tables = await client.query<{ relname: string }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname`,
    );
    const rowCounts: Record<string, number> = {};
    if (tables.rows.length > 0) {
      const counts = await client.query<{ t: string; n: string }>(
        tables.rows
          .map((row) => `SELECT ${pg.escapeLiteral(row.relname)} AS t, count(*) AS n FROM public.${pg.escapeIdentifier(row.relname)}`)
          .join(' UNION ALL '),
      );
      for (const row of counts.rows) rowCounts[`public.${row.t}`] = Number(row.n);
    }
    const largeObjects = await client.query<{ n: string; bytes: string | null }>(
      `SELECT (SELECT count(*) FROM pg_largeobject_metadata) AS n,
              (SELECT sum(octet_length(data)) FROM pg_largeobject) AS bytes`,
    );
    const sequences = await client.query<{ name: string; last_value: string | null }>(
      `SELECT schemaname || '.' || sequencename AS name, last_value::text FROM pg_sequences
        WHERE schemaname = 'public' ORDER BY 1`,
    );
    const shape = await client.query<{ indexes: string; foreign_keys: string }>(
      `SELECT (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public') AS indexes,
              (SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                WHERE n.nspname = 'public' AND c.contype = 'f') AS foreign_keys`,
    );
    return {
      rowCounts,
      largeObjects: Number(largeObjects.rows[0]!.n),
      largeObjectBytes: Number(largeObjects.rows[0]!.bytes ?? 0),
      sequences: Object.fromEntries(sequences.rows.map((row) => [row.name, row.last_value ?? 'unset'])),
      indexes: Number(shape.rows[0]!.indexes),
      foreignKeys: Number(shape.rows[0]!.foreign_keys),
    };
  } finally {
    await client.end();
  }
}

/** Every difference between the source's and the target's snapshot, as readable lines. */
export function compareSnapshots(source: DatabaseSnapshot, target: DatabaseSnapshot): string[] {
  const differences: string[] = [];
  const tables = new Set([...Object.keys(source.rowCounts), ...Object.keys(target.rowCounts)]);
  for (const table of [...tables].sort()) {
    const expected = source.rowCounts[table];
    const actual = target.rowCounts[table];
    if (expected !== actual) differences.push(`${table}: ${expected ?? 'missing'} rows on the source, ${actual ?? 'missing'} on the target`);
  }
  if (source.largeObjects !== target.largeObjects || source.largeObjectBytes !== target.largeObjectBytes) {
    differences.push(
      `large objects: ${source.largeObjects} (${source.largeObjectBytes} bytes) on the source, ` +
        `${target.largeObjects} (${target.largeObjectBytes} bytes) on the target`,
    );
  }
  const sequences = new Set([...Object.keys(source.sequences), ...Object.keys(target.sequences)]);
  for (const sequence of [...sequences].sort()) {
    if (source.sequences[sequence] !== target.sequences[sequence]) {
      differences.push(`sequence ${sequence}: ${source.sequences[sequence] ?? 'missing'} on the source, ${target.sequences[sequence] ?? 'missing'} on the target`);
    }
  }
  if (source.indexes !== target.indexes) differences.push(`indexes: ${source.indexes} on the source, ${target.indexes} on the target`);
  if (source.foreignKeys !== target.foreignKeys) {
    differences.push(`foreign keys: ${source.foreignKeys} on the source, ${target.foreignKeys} on the target`);
  }
  return differences;
}
