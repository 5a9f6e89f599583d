/**
 * Experiment (by hand, not part of `npm run bench`): what the table data in binary COPY would save,
 * the lever RESULTS.md listed as "a copy cheaper than the peers' by a pass".
 *
 * pg_restore cannot load binary COPY data, so a runner that copies the data itself must split
 * pg_restore into its sections: the schema (`--section=pre-data`), then the data, then indexes and
 * constraints (`--section=post-data -jN`). pg_restore -jN alone overlaps one table's index builds
 * with the next table's load; the split loses that. The contenders separate the effects:
 *
 * - `fd`: `pg_dump -Fd -jN -Z0` + `pg_restore -jN` (the benchmark's `fd-z0` peer);
 * - `split-text`: the same dump, restored in the three sections (the data by `pg_restore -L` of the
 *   TABLE DATA, BLOBS and SEQUENCE SET items, -jN): the cost of the split alone;
 * - `split-binary`: `pg_dump --exclude-table-data=<each table>` (not '*': that drops the sequences'
 *   values too) beside N psql sessions that `\copy` each
 *   table `TO` a file `(FORMAT binary)` in pg_dump's exported snapshot; restored in the three
 *   sections, the data by N psql sessions (`BEGIN; TRUNCATE; \copy ... FROM ... (FORMAT binary,
 *   FREEZE); COMMIT` per table, tables dealt to the sessions largest first) beside `pg_restore -L`
 *   of the BLOBS and SEQUENCE SET items: the split plus binary data;
 * - `binary-interleaved`: the same binary dump and loads, but each session builds a table's indexes
 *   and primary / unique keys (their SQL from `pg_restore --section=post-data -f`) right after
 *   loading it, as pg_restore -jN would; then `pg_restore -jN -L` of the rest of post-data (foreign
 *   keys, triggers, ...). An upper bound for a loader of the runner's own that keeps pg_restore's
 *   overlap.
 *
 * No contender verifies anything; each copy is checked afterwards as the benchmark checks its
 * contenders' (verify-copy.ts: every table's rows, large objects and their bytes, sequences,
 * indexes, foreign keys). Wall time from the dump's start to the restore's end; server CPU over
 * both servers' process trees, exited backends included (measure.ts `treeTotals`).
 *
 *   tsx bench/binary-copy-experiment.ts [--shapes wide,keycloak,lob] [--size-mib 205] [--rounds 3] [--jobs 2]
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startPostgres, type TestPostgres } from '../test/support/postgres.js';
import { postmasterPid, SERVER_SETTINGS, treeTotals } from './measure.js';
import { ALL_SHAPES } from './shapes.js';
import { compareSnapshots, snapshotDatabase } from './verify-copy.js';

const PG_BINDIR = '/usr/lib/postgresql/15/bin';
const CONTENDERS = ['fd', 'split-text', 'split-binary', 'binary-interleaved'] as const;
type Contender = (typeof CONTENDERS)[number];
/** The work item of the binary loads that pg_restore does: the large objects and the sequences' values. */
const OTHER_DATA = 'large objects and sequence values';
/** Types of post-data items the interleaved loader runs itself, right after their table's load. */
const PER_TABLE_ITEM = /^(INDEX|CONSTRAINT)$/;

function run(command: string, args: string[], env: Record<string, string>, stdoutPath?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const stdout = stdoutPath ? openSync(stdoutPath, 'w') : 'ignore';
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', stdout, 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    child.on('exit', (code) => {
      if (typeof stdout === 'number') closeSync(stdout);
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.slice(0, 2000)}`));
    });
  });
}

/** Both servers' CPU seconds so far: their whole process trees, exited backends included (measure.ts). */
function serverCpuSeconds(...servers: TestPostgres[]): number {
  return servers.reduce((sum, server) => sum + treeTotals(postmasterPid(server.dataDir)).cpuSeconds, 0);
}

/** Deals `items` to `sessions` lists, largest first, each to the least loaded list. */
function deal(items: readonly string[], bytes: ReadonlyMap<string, number>, sessions: number): string[][] {
  const lists = Array.from({ length: sessions }, () => [] as string[]);
  const load = new Array<number>(sessions).fill(0);
  for (const item of [...items].sort((a, b) => (bytes.get(b) ?? 0) - (bytes.get(a) ?? 0))) {
    const least = load.indexOf(Math.min(...load));
    lists[least]!.push(item);
    load[least]! += bytes.get(item) ?? 0;
  }
  return lists;
}

const { values } = parseArgs({
  options: { shapes: { type: 'string', default: 'wide,keycloak,lob' }, 'size-mib': { type: 'string', default: '205' }, rounds: { type: 'string', default: '3' }, jobs: { type: 'string', default: '2' } },
});
const sizeMib = Number(values['size-mib']);
const rounds = Number(values.rounds);
const jobs = Number(values.jobs);
const shapes = values.shapes.split(',').map((id) => {
  const shape = ALL_SHAPES.find((candidate) => candidate.id === id);
  if (!shape) throw new Error(`--shapes: unknown shape ${id}; use ${ALL_SHAPES.map((s) => s.id).join(', ')}`);
  return shape;
});

const source = await startPostgres({ major: 15, settings: SERVER_SETTINGS });
const target = await startPostgres({ major: 15, settings: SERVER_SETTINGS });
const scratch = mkdtempSync(join(tmpdir(), 'binary-copy-'));
const results = new Map<string, Array<{ dump: number; restore: number; total: number; cpu: number }>>();
try {
  for (const shape of shapes) {
    const database = `${shape.id}_experiment`;
    await source.createDatabase(database);
    const endpoint = { host: '127.0.0.1', port: source.port, user: source.superuser, password: source.password, database };
    await shape.generate(endpoint as never, { targetBytes: sizeMib * 1024 ** 2, log: () => {} });
    const sourceClient = new pg.Client(endpoint);
    await sourceClient.connect();
    await sourceClient.query('VACUUM');
    await sourceClient.query('CHECKPOINT');
    const tableBytes = new Map<string, number>(
      (
        await sourceClient.query<{ name: string; bytes: number }>(
          `SELECT format('%I.%I', n.nspname, c.relname) AS name, pg_catalog.pg_total_relation_size(c.oid)::float8 AS bytes
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname = 'public'`,
        )
      ).rows.map((row) => [row.name, row.bytes]),
    );
    tableBytes.set(OTHER_DATA, (await sourceClient.query<{ bytes: number }>(`SELECT pg_catalog.pg_total_relation_size('pg_catalog.pg_largeobject')::float8 AS bytes`)).rows[0]!.bytes);
    const tables = [...tableBytes.keys()].filter((name) => name !== OTHER_DATA);
    // The benchmark's own check of every copy (verify-copy.ts): rows, large objects, sequences, indexes, foreign keys.
    const expected = await snapshotDatabase(endpoint);
    const sourceEnv = { PGHOST: '127.0.0.1', PGPORT: String(source.port), PGUSER: source.superuser, PGPASSWORD: source.password, PGDATABASE: database };
    const targetEnv = { PGHOST: '127.0.0.1', PGPORT: String(target.port), PGUSER: target.superuser, PGPASSWORD: target.password, PGDATABASE: 'copy' };

    for (let round = 0; round < rounds; round += 1) {
      for (const contender of round % 2 === 0 ? CONTENDERS : [...CONTENDERS].reverse()) {
        await target.query('DROP DATABASE IF EXISTS copy');
        await target.query('CREATE DATABASE copy');
        const dumpDir = join(scratch, 'dump');
        const binaryDir = join(scratch, 'binary');
        rmSync(dumpDir, { recursive: true, force: true });
        rmSync(binaryDir, { recursive: true, force: true });
        mkdirSync(binaryDir);
        await run('sync', [], {});
        const cpuBefore = serverCpuSeconds(source, target);
        const started = Date.now();
        await dump(contender, { dumpDir, binaryDir, sourceClient, sourceEnv, tables, tableBytes });
        const dumped = Date.now();
        await restore(contender, { dumpDir, binaryDir, targetEnv, tables, tableBytes });
        const restored = Date.now();
        const cpu = serverCpuSeconds(source, target) - cpuBefore;
        const differences = compareSnapshots(expected, await snapshotDatabase({ ...endpoint, port: target.port, password: target.password, database: 'copy' }));
        if (differences.length > 0) throw new Error(`${contender} lost data: ${differences.join('; ')}`);
        const sample = { dump: dumped - started, restore: restored - dumped, total: restored - started, cpu };
        console.log(`${shape.id} ${sizeMib} MiB round ${round + 1} ${contender.padEnd(12)} dump ${sample.dump} ms, restore ${sample.restore} ms, total ${sample.total} ms, server CPU ${cpu.toFixed(2)} s`);
        const key = `${shape.id} ${contender}`;
        results.set(key, [...(results.get(key) ?? []), sample]);
      }
    }
    await sourceClient.end();
    await source.query(`DROP DATABASE ${database}`);
  }
  const median = (samples: number[]) => [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;
  console.log(`\nmedians over ${rounds} round(s), ${sizeMib} MiB, ${jobs} jobs:`);
  for (const [key, samples] of results) {
    console.log(
      `${key.padEnd(24)} dump ${median(samples.map((s) => s.dump))} ms, restore ${median(samples.map((s) => s.restore))} ms, total ${median(samples.map((s) => s.total))} ms, server CPU ${median(samples.map((s) => s.cpu)).toFixed(2)} s`,
    );
  }
} finally {
  await Promise.allSettled([source.stop(), target.stop()]);
  rmSync(scratch, { recursive: true, force: true });
}

interface DumpInputs {
  dumpDir: string;
  binaryDir: string;
  sourceClient: pg.Client;
  sourceEnv: Record<string, string>;
  tables: readonly string[];
  tableBytes: ReadonlyMap<string, number>;
}

async function dump(contender: Contender, inputs: DumpInputs): Promise<void> {
  const pgDump = join(PG_BINDIR, 'pg_dump');
  if (contender === 'fd' || contender === 'split-text') return run(pgDump, ['-Fd', `-j${jobs}`, '-Z0', '-f', inputs.dumpDir], inputs.sourceEnv);
  await inputs.sourceClient.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  const snapshot = (await inputs.sourceClient.query<{ id: string }>('SELECT pg_catalog.pg_export_snapshot() AS id')).rows[0]!.id;
  const sessions = deal(inputs.tables, inputs.tableBytes, jobs).map((tables, session) => {
    const script = join(scratch, `copy-out-${session}.sql`);
    const copies = tables.map((table) => `\\copy ${table} TO '${join(inputs.binaryDir, table)}' (FORMAT binary)`);
    writeFileSync(script, ['BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;', `SET TRANSACTION SNAPSHOT '${snapshot}';`, ...copies, 'COMMIT;', ''].join('\n'));
    return run(join(PG_BINDIR, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', script], inputs.sourceEnv);
  });
  await Promise.all([run(pgDump, ['-Fd', `-j${jobs}`, '-Z0', `--snapshot=${snapshot}`, ...inputs.tables.map((table) => `--exclude-table-data=${table}`), '-f', inputs.dumpDir], inputs.sourceEnv), ...sessions]);
  await inputs.sourceClient.query('COMMIT');
}

interface RestoreInputs {
  dumpDir: string;
  binaryDir: string;
  targetEnv: Record<string, string>;
  tables: readonly string[];
  tableBytes: ReadonlyMap<string, number>;
}

async function restore(contender: Contender, inputs: RestoreInputs): Promise<void> {
  const pgRestore = join(PG_BINDIR, 'pg_restore');
  if (contender === 'fd') return run(pgRestore, [`-j${jobs}`, '-d', 'copy', inputs.dumpDir], inputs.targetEnv);
  await run(pgRestore, ['--section=pre-data', '-d', 'copy', inputs.dumpDir], inputs.targetEnv);
  // The data items of the listing (TABLE DATA; BLOBS: the large objects' contents; SEQUENCE SET:
  // the sequences' values; each object's BLOB item is pre-data and already restored).
  const listing = join(scratch, 'listing');
  await run(pgRestore, ['--list', inputs.dumpDir], {}, listing);
  const dataItems = readFileSync(listing, 'utf8').split('\n').filter((line) => / (TABLE DATA|BLOBS|SEQUENCE SET) /.test(line));
  const dataList = join(scratch, 'data-items');
  writeFileSync(dataList, `${dataItems.join('\n')}\n`);
  if (contender === 'split-text') {
    await run(pgRestore, [`-j${jobs}`, '-L', dataList, '-d', 'copy', inputs.dumpDir], inputs.targetEnv);
  } else if (contender === 'binary-interleaved') {
    return loadInterleaved(inputs, dataList, dataItems.length > 0, listing);
  } else {
    // No TABLE DATA item is left in the listing of a dump without table data: pg_restore loads the rest.
    await loadBinary(inputs, dataList, dataItems.length > 0);
  }
  await run(pgRestore, ['--section=post-data', `-j${jobs}`, '-d', 'copy', inputs.dumpDir], inputs.targetEnv);
}

/**
 * `binary-interleaved`: each session loads its tables and builds each one's indexes and keys right
 * after it; the rest of post-data (foreign keys, which need two tables) by pg_restore -jN at the end.
 */
async function loadInterleaved(inputs: RestoreInputs, dataList: string, hasOtherData: boolean, listing: string): Promise<void> {
  const pgRestore = join(PG_BINDIR, 'pg_restore');
  // pg_restore's script of post-data: a preamble of SETs, then one "-- Name: ...; Type: ...;"
  // header per item, followed by its SQL.
  const postDataScript = join(scratch, 'post-data.sql');
  await run(pgRestore, ['--section=post-data', '-f', postDataScript, inputs.dumpDir], {});
  // Without pg_dump's \restrict / \unrestrict lines (PostgreSQL 15.14+): restricted psql refuses
  // every backslash command, \copy included, and the loads run in the same script.
  const postData = readFileSync(postDataScript, 'utf8').replace(/^\\(un)?restrict .*$/gm, '');
  const [preamble, ...items] = postData.split(/\n(?=--\n-- Name: )/);
  const perTable = new Map<string, string[]>();
  for (const item of items) {
    const type = /; Type: ([^;]+);/.exec(item)?.[1] ?? '';
    if (!PER_TABLE_ITEM.test(type)) continue;
    const table = type === 'INDEX' ? / ON (?:ONLY )?(\S+) USING /.exec(item)?.[1] : /ALTER TABLE ONLY (\S+)\n/.exec(item)?.[1];
    if (!table || !inputs.tables.includes(table)) throw new Error(`cannot tell the table of post-data item: ${item.slice(0, 300)}`);
    perTable.set(table, [...(perTable.get(table) ?? []), item]);
  }
  await loadBinary(inputs, dataList, hasOtherData, { preamble, perTable });
  // The rest of post-data: the listing's post-data items that are not per-table indexes or keys.
  const rest = readFileSync(listing, 'utf8')
    .split('\n')
    .filter((line) => /^\d+; \d+ \d+ (FK CONSTRAINT|TRIGGER|RULE|POLICY|INDEX ATTACH|STATISTICS|EVENT TRIGGER) /.test(line));
  if (rest.length === 0) return;
  const restList = join(scratch, 'post-data-rest');
  writeFileSync(restList, `${rest.join('\n')}\n`);
  await run(pgRestore, [`-j${jobs}`, '-L', restList, '-d', 'copy', inputs.dumpDir], inputs.targetEnv);
}

/**
 * The binary loads on `jobs` sessions, tables dealt largest first: each table truncated and loaded
 * `(FORMAT binary, FREEZE)` in one transaction, then `afterLoad`'s SQL for it (its indexes and keys,
 * after the preamble of SETs of pg_restore's script); beside them, on the session dealt
 * {@link OTHER_DATA}, pg_restore of the data items in `dataList` (large objects, sequences' values).
 */
async function loadBinary(
  inputs: RestoreInputs,
  dataList: string,
  hasOtherData: boolean,
  afterLoad: { preamble: string; perTable: ReadonlyMap<string, readonly string[]> } = { preamble: '', perTable: new Map() },
): Promise<void> {
  const work = hasOtherData ? [OTHER_DATA, ...inputs.tables] : [...inputs.tables];
  await Promise.all(
    deal(work, inputs.tableBytes, jobs).map(async (items, session) => {
      const script = join(scratch, `binary-load-${session}.sql`);
      const steps = items
        .filter((item) => item !== OTHER_DATA)
        .map((table) => [`BEGIN;\nTRUNCATE ${table};\n\\copy ${table} FROM '${join(inputs.binaryDir, table)}' (FORMAT binary, FREEZE)\nCOMMIT;`, ...(afterLoad.perTable.get(table) ?? [])].join('\n'));
      writeFileSync(script, `${afterLoad.preamble}\n${steps.join('\n')}\n`);
      await Promise.all([
        run(join(PG_BINDIR, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', script], inputs.targetEnv),
        ...(items.includes(OTHER_DATA) ? [run(join(PG_BINDIR, 'pg_restore'), ['-L', dataList, '-d', 'copy', inputs.dumpDir], inputs.targetEnv)] : []),
      ]);
    }),
  );
}
