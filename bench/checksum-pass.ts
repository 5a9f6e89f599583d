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
import { connect, withClient } from '../runner/src/pg/connection.js';
import { reusedStatsOptions, reuseEarlyPass, takeEarlyPass, type EarlyPass } from '../runner/src/pg/early-pass.js';
import { collectDatabaseStats } from '../runner/src/pg/manifest.js';
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
   * The backend's CPU seconds of {@link measureChangeCheck} on this idle source: what replaced the
   * source's pass inside the downtime once the pass ran before it. Absent in runs measured before
   * it did. Since the backup proves an unchanged source from the transaction ids alone, this is
   * that proof; in runs measured before (no `changeCheckRowByRowCpuSeconds`), the row-by-row check.
   */
  readonly changeCheckCpuSeconds?: number;
  /**
   * The same check once any transaction ended since the early pass (a source written meanwhile,
   * as Keycloak's own writes until it stops): every table's rows are read. Absent in runs measured
   * before the backup had the transaction-id proof.
   */
  readonly changeCheckRowByRowCpuSeconds?: number;
}

/** {@link measureChangeCheck}'s two costs, the backend's CPU seconds. */
export interface ChangeCheckCost {
  /** No transaction ended since the early pass: proven from the transaction ids, no row read. */
  readonly quietCpuSeconds: number;
  /** A transaction ended since: every table's rows read (xmin and count). */
  readonly rowByRowCpuSeconds: number;
  /** Early passes the quiet measurement needed (more than 1 when a background transaction ended meanwhile). */
  readonly quietEarlyPasses: number;
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

/** A fresh session per measurement, as the runner's dump session is. */
const CHANGE_CHECK_SESSION = { purpose: 'bench-change-check', action: 'check' };

/**
 * What the source's verification costs inside the downtime now that its pass runs before it
 * (runner/src/pg/early-pass.ts): in the dump's snapshot, the proof that each table is unchanged
 * since the early pass (its relfilenode, row count and rows written since: every row's xmin is
 * read, no column hashed), the same for the large objects, then the statistics with the early
 * checksums reused (the catalog inventory and the sequences are read again). Each run on a fresh
 * session, as the runner's dump session is (loading every table's catalog entries is part of the
 * cost: ~0.4 s for Keycloak's 85 tables), on the benchmark's idle source, where every table is
 * reused. Twice: as the benchmark's runner meets it (no transaction ended since the early pass: the
 * proof from the transaction ids, no row read), and after one transaction that changes no row
 * (`txid_current()`), as a source written meanwhile would: every table's rows read. The backend's
 * CPU, the cheaper of `runs` runs of each.
 */
export async function measureChangeCheck(
  endpoint: DatabaseEndpoint,
  runs = 2,
  /** Runs once after the first early pass (tests: a transaction ending there, as autovacuum's would). */
  afterFirstEarlyPass: () => Promise<void> = async () => undefined,
): Promise<ChangeCheckCost> {
  const settings = { host: endpoint.host, port: endpoint.port, user: endpoint.user, password: endpoint.password, database: endpoint.database };
  let early = await takeQuietEarlyPass(settings);
  let quietEarlyPasses = 1;
  await afterFirstEarlyPass();
  /** The backend's CPU of one change check, or 'transaction-ended' when a quiet check found one ended since. */
  const once = (expectQuiet: boolean): Promise<number | 'transaction-ended'> =>
    withClient(
      settings,
      async (client) => {
        const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const cpuBefore = processTotals(pid).cpuSeconds;
        const reuse = await reuseEarlyPass(client, early, settings);
        if (reuse.unusable || reuse.rescanned.length > 0) {
          throw new Error(`the idle source changed under the benchmark: ${reuse.unusable ?? reuse.rescanned.join(', ')}`);
        }
        if (expectQuiet && reuse.noTransactionSince !== true) {
          await client.query('ROLLBACK');
          return 'transaction-ended';
        }
        if (!expectQuiet && reuse.noTransactionSince === true) {
          throw new Error('the change check read no row although a transaction ended since the early pass');
        }
        await collectDatabaseStats(client, { concurrent: true, ...reusedStatsOptions(reuse) });
        const spent = processTotals(pid).cpuSeconds - cpuBefore;
        await client.query('COMMIT');
        return spent;
      },
      CHANGE_CHECK_SESSION,
    );
  const cheapest = async (expectQuiet: boolean): Promise<number> => {
    let best = Number.POSITIVE_INFINITY;
    for (let run = 0, attempts = 0; run < runs; ) {
      const cpuSeconds = await once(expectQuiet);
      if (cpuSeconds !== 'transaction-ended') {
        best = Math.min(best, cpuSeconds);
        run += 1;
        continue;
      }
      // A background transaction (autovacuum's ANALYZE of a freshly generated table writes
      // pg_statistic) ended since the early pass: the runner would rightly read rows now. The quiet
      // cost is measured again from a new early pass, once autovacuum is done.
      attempts += 1;
      if (attempts >= QUIET_ATTEMPTS) {
        throw new Error(`a transaction ended between the early pass and the change check in ${attempts} attempts: the source is not idle`);
      }
      early = await takeQuietEarlyPass(settings);
      quietEarlyPasses += 1;
    }
    return best;
  };
  const quietCpuSeconds = await cheapest(true);
  // One transaction id spent and committed, no row changed: the proof from the ids no longer holds.
  await withClient(settings, (client) => client.query('SELECT pg_catalog.txid_current()'), CHANGE_CHECK_SESSION);
  return { quietCpuSeconds, rowByRowCpuSeconds: await cheapest(false), quietEarlyPasses };
}

/** How often the quiet change check is tried again after a background transaction ended meanwhile. */
const QUIET_ATTEMPTS = 5;

/** The early pass, taken once no autovacuum worker runs in the database (waiting up to 2 minutes). */
async function takeQuietEarlyPass(settings: Parameters<typeof takeEarlyPass>[1]): Promise<EarlyPass> {
  return withClient(
    settings,
    async (client) => {
      for (const deadline = Date.now() + 120_000; Date.now() < deadline; ) {
        const busy = await client.query(
          "SELECT 1 FROM pg_catalog.pg_stat_activity WHERE backend_type = 'autovacuum worker' AND datname = current_database()",
        );
        if (busy.rows.length === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      return takeEarlyPass(client, settings);
    },
    CHANGE_CHECK_SESSION,
  );
}
