/**
 * The cost of one verification pass, measured on its own: the runner's own statistics collection
 * (runner/src/pg/manifest.ts `collectDatabaseStats`: the checksum of every table, the large
 * objects' checksum, sequences and the catalog inventory) over the source database, on one
 * session, nothing else running.
 *
 * The runner makes this pass twice in every migration — on the source during the dump and on the
 * target during the restore — and no peer makes it at all. Its CPU time sets a floor under the
 * runner's wall time on a machine whose cores the copy already keeps busy: the results report
 * (results-report.ts) turns it into the least ratio to the fastest peer that two passes allow.
 *
 * CPU is the backend's own user + system time from /proc/<pid>/stat (the benchmark runs on the
 * server's machine); the client's share (the pg protocol for a few rows per table) is negligible.
 */
import { connect, qualifiedName } from '../runner/src/pg/connection.js';
import { collectDatabaseStats, listTables, type TableStats } from '../runner/src/pg/manifest.js';
import { processTotals } from './measure.js';
import type { DatabaseEndpoint } from './verify-copy.js';

export interface ChecksumPass {
  /** The backend's CPU seconds (user + system) for the whole pass. */
  readonly cpuSeconds: number;
  readonly wallSeconds: number;
  readonly tables: number;
  /** Number of times the pass was measured; the values above are from the fastest (warm cache). */
  readonly runs: number;
  /**
   * The backend's CPU seconds for the {@link measureChangeCheck} that would replace the source's
   * pass inside the downtime if the pass ran before it. Absent in runs measured before it was.
   */
  readonly changeCheckCpuSeconds?: number;
}

/** Measures {@link ChecksumPass} `runs` times (the first warms the cache) and keeps the cheapest. */
export async function measureChecksumPass(endpoint: DatabaseEndpoint, runs = 2): Promise<ChecksumPass> {
  let best: ChecksumPass | undefined;
  for (let run = 0; run < runs; run += 1) {
    const client = await connect(
      { host: endpoint.host, port: endpoint.port, user: endpoint.user, password: endpoint.password, database: endpoint.database },
      { purpose: 'bench-checksum-pass', action: 'checksum' },
    );
    try {
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const cpuBefore = processTotals(pid).cpuSeconds;
      const started = performance.now();
      // As the runner's backup runs it: on the dump's snapshot, next to pg_dump (no parallel
      // workers, no JIT), here on one session.
      const stats = await collectDatabaseStats(client, { concurrent: true });
      const wallSeconds = (performance.now() - started) / 1000;
      const cpuSeconds = processTotals(pid).cpuSeconds - cpuBefore;
      await client.query('COMMIT');
      const pass: ChecksumPass = { cpuSeconds, wallSeconds, tables: stats.tables.length, runs };
      if (!best || pass.cpuSeconds < best.cpuSeconds) best = pass;
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return best!;
}

/**
 * What the source's verification would cost inside the downtime if its pass ran before it — the
 * lever the results report names first (README, "What would close it"): checksum every table while
 * Keycloak still runs, keep that early snapshot open through the quiescing, and inside the dump's
 * snapshot only prove each table unchanged since: the same row count and relfilenode, and no row
 * whose xmin the early snapshot cannot see (committed after it, or running when it was taken; while
 * it is held, no such row can have been frozen). The large objects the same way (their rows in
 * pg_largeobject; a superuser's read, as the benchmark's is), then the catalog inventory and the
 * sequences, which the runner would read again in the dump's snapshot anyway.
 *
 * The runner does not do this yet (it would need the quiescing and the dump in one Job); this
 * measures only its cost, on the benchmark's idle source, where the early snapshot is the check's
 * own (nothing is newer, the check scans what it would scan). The backend's CPU, the cheaper of
 * `runs` runs on one session.
 */
export async function measureChangeCheck(endpoint: DatabaseEndpoint, runs = 2): Promise<number> {
  const client = await connect(
    { host: endpoint.host, port: endpoint.port, user: endpoint.user, password: endpoint.password, database: endpoint.database },
    { purpose: 'bench-change-check', action: 'check' },
  );
  try {
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    let best = Number.POSITIVE_INFINITY;
    // The first run warms the backend's catalog caches (for ~85 tables that alone is ~0.4 s) and is
    // not counted: the runner would check on a session that took part in the early pass.
    for (let run = 0; run <= runs; run += 1) {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await client.query("SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = 'off'");
      const cpuBefore = processTotals(pid).cpuSeconds;
      await checkUnchanged(client);
      const cpuSeconds = processTotals(pid).cpuSeconds - cpuBefore;
      await client.query('COMMIT');
      if (run > 0) best = Math.min(best, cpuSeconds);
    }
    return best;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * SQL condition on `t.xmin`: the row was written by a transaction an earlier snapshot cannot see
 * (its xmax and in-progress list, as 32-bit xids). age(xmin) is relative to one transaction id per
 * transaction, so "at least as new as xmax" is age(xmin) <= age(xmax), without wraparound
 * arithmetic per row (frozen rows have the greatest age).
 */
export function rowsNewerThan(xmax: string, xip: readonly string[]): string {
  for (const xid of [xmax, ...xip]) if (!/^\d+$/.test(xid)) throw new Error(`not a transaction id: ${xid}`);
  return `(pg_catalog.age(t.xmin) <= (SELECT pg_catalog.age('${xmax}'::xid)) OR t.xmin = ANY ('{${xip.join(',')}}'::xid[]))`;
}

async function checkUnchanged(client: Awaited<ReturnType<typeof connect>>): Promise<void> {
  const early = (
    await client.query<{ xmax: string; xip: string[] | null }>(
      `SELECT (pg_catalog.txid_snapshot_xmax(s) % 4294967296)::text AS xmax,
              (SELECT array_agg((x % 4294967296)::text) FROM pg_catalog.txid_snapshot_xip(s) AS x) AS xip
         FROM pg_catalog.txid_current_snapshot() AS s`,
    )
  ).rows[0]!;
  const newer = rowsNewerThan(early.xmax, early.xip ?? []);
  const tables = await listTables(client, { sizes: false });
  const unchanged = new Map<string, TableStats>();
  for (const table of tables) {
    const name = qualifiedName(table.schema, table.name);
    const row = (
      await client.query<{ rows: string; newer: string; relfilenode: string }>(
        `SELECT count(*)::bigint AS rows, count(*) FILTER (WHERE ${newer})::bigint AS newer,
                (SELECT c.relfilenode FROM pg_catalog.pg_class c WHERE c.oid = '${name.replace(/'/g, "''")}'::regclass)::text AS relfilenode
           FROM ONLY ${name} AS t`,
      )
    ).rows[0]!;
    if (row.newer !== '0') throw new Error(`${table.schema}.${table.name} has rows newer than the change check's own snapshot`);
    // The early pass's statistics would stand for the table; the benchmark measures the cost only.
    unchanged.set(`${table.schema}.${table.name}`, { schema: table.schema, name: table.name, kind: 'table', rows: Number(row.rows), checksum: '0', sizeBytes: 0 });
  }
  await client.query(`SELECT count(*) FILTER (WHERE ${newer}) FROM pg_catalog.pg_largeobject AS t`);
  await collectDatabaseStats(client, { concurrent: true, checksummedTables: unchanged, checksummedLargeObjects: { count: 0, checksum: '0' } });
}
