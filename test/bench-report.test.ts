/**
 * The benchmark report's arithmetic (bench/results-report.ts), on a synthetic run: the headline
 * ratio against the fastest peer, and the floor two verification passes set; and the measurement
 * of one pass (bench/checksum-pass.ts) against a real server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureChangeCheck, measureChecksumPass } from '../bench/checksum-pass.js';
import { renderResults, type BenchCell, type BenchReport } from '../bench/results-report.js';
import type { MigrationResult } from '../bench/run-migration.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { withClient } from '../runner/src/pg/connection.js';

function result(contenderId: string, wallSeconds: number, clientCpuSeconds: number, serverCpuSeconds: number): MigrationResult {
  return {
    contenderId,
    ok: true,
    wallSeconds,
    steps: [{ command: 'x', wallSeconds }],
    clientCpuSeconds,
    serverCpuSeconds,
    memory: { treePeakRssBytes: 1, processPeakRssBytes: 1, processPeakCommand: 'node', peakRssByCommand: {} },
    otherCpuSeconds: 0,
    startedQuiet: true,
    benchCpuSeconds: 0,
    clientWriteBytes: 0,
    serverWriteBytes: 0,
    dumpBytes: 0,
  };
}

function cell(checksumPassCpu?: number, changeCheckCpu?: number, rowByRowCpu?: number): BenchCell {
  return {
    shape: 'wide',
    shapeLabel: 'wide',
    requestedBytes: 1024 ** 3,
    rounds: 1,
    generation: {
      generatorVersion: 1,
      shape: 'wide',
      targetBytes: 1024 ** 3,
      databaseBytes: 1024 ** 3,
      users: 0,
      tables: 3,
      largeObjects: 0,
      rowCounts: { 'public.a': 1 },
      sampleGzipRatio: 1,
      seconds: 1,
    },
    contenders: [
      { id: 'runner', label: 'runner', isRunner: true, commands: [], results: [result('runner', 6, 1, 9)] },
      // The fastest peer: 4 s wall, 6 s of CPU.
      { id: 'pipe', label: 'pg_dump | psql', isRunner: false, commands: [], results: [result('pipe', 4, 1, 5)] },
      { id: 'fd-z0', label: 'fd', isRunner: false, commands: [], results: [result('fd-z0', 5, 1, 6)] },
    ],
    ...(checksumPassCpu === undefined
      ? {}
      : {
          checksumPass: {
            cpuSeconds: checksumPassCpu,
            wallSeconds: checksumPassCpu,
            tables: 3,
            runs: 2,
            ...(changeCheckCpu === undefined ? {} : { changeCheckCpuSeconds: changeCheckCpu }),
            ...(rowByRowCpu === undefined ? {} : { changeCheckRowByRowCpuSeconds: rowByRowCpu }),
          },
        }),
  };
}

function report(cells: BenchCell[]): BenchReport {
  return { startedAt: new Date(0), durationSeconds: 1, commandLine: 'npm run bench', machine: { cores: '2' }, serverSettings: {}, jobs: 2, cells, latency: [] };
}

describe('bench report: the floor of two verification passes', () => {
  it('puts the floor at peer wall × (1 + 2 × pass CPU ÷ peer CPU) and shows the runner against it', () => {
    const text = renderResults(report([cell(0.75)]));
    // Peer: 4 s, 6 s CPU (1.50 cores); pass 0.75 s → floor 4 × 1.25 = 5 s; runner 6 s = 1.50 × the peer, 1.20 × the floor.
    const row = text.split('\n').find((line) => line.startsWith('| wide | 1.00 GiB | pg_dump \\| psql |'));
    expect(row).toBe('| wide | 1.00 GiB | pg_dump \\| psql | 4.00 s | 6.00 s | 1.50 | 0.75 s | – | – | 1.25 × | – | – | 1.50 × | 1.20 × |');
    expect(text).toContain('two verification passes alone (0.75 s of CPU each) put the floor at 1.25 ×, the rest (1.20 × of the floor)');
    expect(text).toContain('in this run inside the downtime, during the dump');
  });

  it('puts the floor with the source pass before the downtime at peer wall × (1 + (pass + change check) ÷ peer CPU)', () => {
    const text = renderResults(report([cell(0.75, 0.15)]));
    // (0.75 + 0.15) ÷ 6 = 0.15 → 1.15 × the peer (4.60 s), against 1.25 × with both passes in the downtime;
    // the runner's 6 s is 1.30 × that floor.
    const row = text.split('\n').find((line) => line.startsWith('| wide | 1.00 GiB | pg_dump \\| psql |'));
    expect(row).toBe('| wide | 1.00 GiB | pg_dump \\| psql | 4.00 s | 6.00 s | 1.50 | 0.75 s | 0.15 s | – | 1.25 × | 1.15 × | – | 1.50 × | 1.30 × |');
    expect(text).toContain("the target's pass (0.75 s of CPU) and the source's change check (0.15 s) alone put the floor at 1.15 × (1.25 × with both");
    expect(text).toContain('now before the downtime');
    expect(text).not.toContain('from the transaction ids alone and reads no row');
  });

  it('shows the change check from the transaction ids beside the row-by-row one a source written meanwhile pays, with the floor of each', () => {
    const text = renderResults(report([cell(0.75, 0.03, 0.15)]));
    // (0.75 + 0.03) ÷ 6 = 0.13 → 1.13 × (4.52 s; the runner's 6 s is 1.33 × of it); after a write (0.75 + 0.15) ÷ 6 → 1.15 ×.
    const row = text.split('\n').find((line) => line.startsWith('| wide | 1.00 GiB | pg_dump \\| psql |'));
    expect(row).toBe('| wide | 1.00 GiB | pg_dump \\| psql | 4.00 s | 6.00 s | 1.50 | 0.75 s | 0.03 s | 0.15 s | 1.25 × | 1.13 × | 1.15 × | 1.50 × | 1.33 × |');
    expect(text).toContain('from the transaction ids alone and reads no row');
  });

  it('leaves the section out for runs measured before the pass was (their RESULTS.json has none)', () => {
    const text = renderResults(report([cell()]));
    expect(text).not.toContain('The floor the verification sets');
    expect(text).toContain('1.50 × (miss)');
  });
});

describe('bench: one verification pass, measured alone', () => {
  let server: TestPostgres;
  beforeAll(async () => {
    // No autovacuum: an ANALYZE of its own would spend a transaction id between the early pass and
    // the check measured as the benchmark's idle source meets it.
    server = await startPostgres({ settings: { autovacuum: 'off' } });
    await server.createDatabase('pass');
    // Several text and numeric columns: the pass hashes each value, the change check reads only
    // xmin, so the pass costs clearly more even in the server's 10 ms CPU ticks.
    await server.query('CREATE TABLE a (id int PRIMARY KEY, note text, label text, code text, amount numeric); CREATE TABLE b (id bigint, doc bytea)', [], 'pass');
    await server.query(
      "INSERT INTO a SELECT n, repeat('x', n % 300), md5(n::text), 'C-' || n, n / 7.0 FROM generate_series(1, 400000) n; INSERT INTO b SELECT n, decode(md5(n::text), 'hex') FROM generate_series(1, 1000) n",
      [],
      'pass',
    );
  }, 60_000);
  afterAll(async () => server?.stop());

  it("counts the backend's CPU for the runner's statistics of every table", async () => {
    const pass = await measureChecksumPass({ host: server.host, port: server.port, user: server.superuser, password: server.password, database: 'pass' });
    expect(pass.tables).toBe(2);
    expect(pass.runs).toBe(2);
    // 400,000 rows take tens of milliseconds of the backend's CPU (10 ms ticks), and never more than the pass's wall time.
    expect(pass.cpuSeconds).toBeGreaterThan(0);
    expect(pass.cpuSeconds).toBeLessThanOrEqual(pass.wallSeconds + 0.01);
  });

  it('measures the change check that replaced the pass in the downtime, from the transaction ids and row by row, both below the pass', async () => {
    const endpoint = { host: server.host, port: server.port, user: server.superuser, password: server.password, database: 'pass' };
    const pass = await measureChecksumPass(endpoint);
    const check = await measureChangeCheck(endpoint);
    expect(check.quietCpuSeconds).toBeGreaterThanOrEqual(0);
    // Counting rows and reading xmin costs a fraction of hashing every column of every row, and
    // more than reading none (400,000 rows: tens of milliseconds, several of the server's 10 ms ticks).
    expect(check.rowByRowCpuSeconds).toBeLessThan(pass.cpuSeconds);
    expect(check.rowByRowCpuSeconds).toBeGreaterThan(check.quietCpuSeconds);
    expect(check.quietEarlyPasses).toBe(1);
  });

  it('takes the early pass again when a background transaction ended before the quiet check (autovacuum on a fresh 4 GiB source did)', async () => {
    const endpoint = { host: server.host, port: server.port, user: server.superuser, password: server.password, database: 'pass' };
    const spendTransactionId = () =>
      withClient({ ...endpoint }, (client) => client.query('SELECT pg_catalog.txid_current()'), { purpose: 'test', action: 'write' }).then(() => undefined);
    const check = await measureChangeCheck(endpoint, 2, spendTransactionId);
    expect(check.quietEarlyPasses).toBe(2);
    expect(check.rowByRowCpuSeconds).toBeGreaterThan(check.quietCpuSeconds);
  });
});
