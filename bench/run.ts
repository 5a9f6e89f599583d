/**
 * `npm run bench`: the migration benchmark of issues 5 and 13, run by hand (never in CI's pass/fail path).
 *
 * Starts two local PostgreSQL 15 servers (source and target, same settings, durability on as in
 * production); for every data shape (bench/shapes.ts) and size it generates the source database,
 * lets each contender migrate it into a fresh target database for several rounds in alternating
 * order, checks every copy, drops the source; then times the short commands (pre-phase decision,
 * database gate, synth) and writes bench/RESULTS.md (+ RESULTS.json, scaling.svg).
 *
 *   npm run bench                       # wide, keycloak, lob: 3 rounds at 0.2 GiB, 1 at 1 GiB, latency (~12 min)
 *   npm run bench -- --sizes 0.2GiB,1GiB,4GiB --rounds 3,3,1   # and 4 GiB (~35 min)
 *   npm run bench -- --quick            # every shape at 0.05 GiB, 1 round, no latency: a smoke run
 *   npm run bench -- --shapes keycloak --sizes 0.5GiB,2GiB --rounds 5 --contenders runner,fd-z0
 *   npm run bench -- --rerender         # rewrite RESULTS.md from RESULTS.json (after changing the report's layout)
 *   flags: --shapes id,..  --sizes S,..  --rounds N|N,..  --contenders id,..  --jobs N
 *          --no-latency  --output FILE  --quick  --rerender
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres, type TestPostgres } from '../test/support/postgres.js';
import { ALL_CONTENDERS, type Contender, type ContenderContext } from './contenders.js';
import { measureLatency } from './measure-latency.js';
import { measureMigratedClusterLatency } from './pre-phase-latency.js';
import { renderResults, scalingPoints, type BenchCell, type BenchReport, type LatencyOutcome } from './results-report.js';
import { describeStep, dropDatabase, endpointOf, runMigration, type BenchServer, type MigrationResult } from './run-migration.js';
import { drawScalingChart } from './scaling-chart.js';
import { formatBytes, parseSize } from './size.js';
import { ALL_SHAPES, type DataShape } from './shapes.js';
import { snapshotDatabase } from './verify-copy.js';
import { measureChangeCheck, measureChecksumPass } from './checksum-pass.js';
import { SERVER_SETTINGS } from './measure.js';

const REPOSITORY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';
const RUNNER_BUNDLE = join(REPOSITORY_ROOT, 'runner', 'dist', 'runner.mjs');

interface Options {
  readonly shapes: readonly DataShape[];
  /** Source sizes, smallest first; each shape is generated and migrated at each. */
  readonly sizes: readonly number[];
  /** Rounds per size (same order as {@link sizes}). */
  readonly rounds: readonly number[];
  readonly contenders: readonly Contender[];
  readonly jobs: number;
  readonly latency: boolean;
  readonly output: string;
}

/**
 * The default matrix: every shape at 0.2 GiB three times and at 1 GiB once, which stays under 15
 * minutes on two cores (measured: one round of everything, generation and latency included, takes
 * ~8 minutes on a quiet machine; each further round at 0.2 GiB ~2). 4 GiB is on request
 * (`--sizes 0.2GiB,1GiB,4GiB --rounds 3,3,1`, ~35 min): its generation alone takes ~4 minutes for
 * the three shapes and one round of the four contenders ~3 minutes per shape.
 */
const DEFAULT_SIZES = '0.2GiB,1GiB';
const DEFAULT_ROUNDS = '3,1';
/** The contenders of issue 13's target; `fd-gzip` (issue 5's comparison) only on request. */
const DEFAULT_CONTENDERS = 'runner,pipe,fd-z0,pgcopydb';

function parseOptions(argv: readonly string[]): Options {
  const quick = argv.includes('--quick');
  const flags = new Map<string, string>();
  const switches = new Set(['--quick', '--no-latency', '--rerender']);
  const valued = ['--shapes', '--sizes', '--size', '--rounds', '--contenders', '--jobs', '--output'];
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i]!;
    if (switches.has(flag)) continue;
    if (!valued.includes(flag)) {
      throw new Error(`unknown argument '${flag}'; flags: ${valued.join(' ')} --quick --no-latency --rerender`);
    }
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    flags.set(flag, value);
    i += 1;
  }
  const shapeIds = (flags.get('--shapes') ?? ALL_SHAPES.map((shape) => shape.id).join(',')).split(',');
  const shapes = shapeIds.map((id) => {
    const shape = ALL_SHAPES.find((candidate) => candidate.id === id);
    if (!shape) throw new Error(`--shapes: unknown shape '${id}'; known: ${ALL_SHAPES.map((candidate) => candidate.id).join(', ')}`);
    return shape;
  });
  const sizesText = flags.get('--sizes') ?? flags.get('--size') ?? (quick ? '0.05GiB' : DEFAULT_SIZES);
  const sizes = sizesText.split(',').map((text) => parseSize('--sizes', text));
  const roundsText = flags.get('--rounds') ?? (quick ? '1' : flags.has('--sizes') || flags.has('--size') ? '3' : DEFAULT_ROUNDS);
  const roundList = roundsText.split(',').map(Number);
  if (roundList.some((rounds) => !Number.isInteger(rounds) || rounds < 1) || (roundList.length !== 1 && roundList.length !== sizes.length)) {
    throw new Error(`--rounds must be one positive integer or one per size (${sizes.length}), got '${roundsText}'`);
  }
  const rounds = sizes.map((_, index) => roundList[roundList.length === 1 ? 0 : index]!);
  const ids = (flags.get('--contenders') ?? DEFAULT_CONTENDERS).split(',');
  const contenders = ids.map((id) => {
    const contender = ALL_CONTENDERS.find((c) => c.id === id);
    if (!contender) throw new Error(`--contenders: unknown contender '${id}'; known: ${ALL_CONTENDERS.map((c) => c.id).join(', ')}`);
    return contender;
  });
  const jobs = Number(flags.get('--jobs') ?? availableParallelism());
  if (!Number.isInteger(jobs) || jobs < 1) throw new Error(`--jobs must be a positive integer, got '${flags.get('--jobs')}'`);
  return {
    shapes,
    sizes,
    rounds,
    contenders,
    jobs,
    latency: !argv.includes('--no-latency') && !quick,
    output: resolve(flags.get('--output') ?? join(REPOSITORY_ROOT, 'bench', 'RESULTS.md')),
  };
}

const benchStarted = performance.now();
function log(line: string): void {
  const elapsed = ((performance.now() - benchStarted) / 1000).toFixed(0).padStart(4);
  process.stderr.write(`[bench ${elapsed}s] ${line}\n`);
}

function benchServer(server: TestPostgres): BenchServer {
  return { host: server.host, port: server.port, user: server.superuser, password: server.password, dataDir: server.dataDir };
}

/** Makes sure runner/dist/runner.mjs exists (building it if the sources are there); else says why not. */
function ensureRunnerBundle(): string | undefined {
  if (existsSync(RUNNER_BUNDLE)) return undefined;
  if (!existsSync(join(REPOSITORY_ROOT, 'runner', 'build.mjs'))) {
    return 'runner/dist/runner.mjs is missing and runner/build.mjs does not exist yet (the runner is not written)';
  }
  log('building the runner bundle (npm run build:runner)');
  const build = spawnSync('npm', ['run', '--silent', 'build:runner'], { cwd: REPOSITORY_ROOT, encoding: 'utf8' });
  if (build.status !== 0 || !existsSync(RUNNER_BUNDLE)) {
    return `npm run build:runner failed: ${(build.stderr || build.stdout).trim().slice(-500)}`;
  }
  return undefined;
}

function machineInfo(postgresVersion: string): Record<string, string> {
  const pgcopydb = spawnSync('pgcopydb', ['--version'], { encoding: 'utf8' });
  return {
    cores: String(availableParallelism()),
    cpu: cpus()[0]?.model ?? 'unknown',
    memory: formatBytes(totalmem()),
    kernel: release(),
    node: process.version,
    postgresql: postgresVersion,
    pgcopydb: /pgcopydb version (\S+)/.exec(`${pgcopydb.stdout}${pgcopydb.stderr}`)?.[1] ?? 'not installed',
    hyperfine: spawnSync('hyperfine', ['--version'], { encoding: 'utf8' }).stdout?.trim() || 'not installed',
  };
}

/** Renders RESULTS.md again from the RESULTS.json of the last run: no measuring, no new numbers. */
function rerender(output: string): void {
  const json = output.replace(/\.md$/, '.json');
  const parsed = JSON.parse(readFileSync(json, 'utf8')) as BenchReport & { startedAt: string };
  writeFileSync(output, renderResults({ ...parsed, startedAt: new Date(parsed.startedAt) }));
  log(`rewrote ${relative(process.cwd(), output)} from ${relative(process.cwd(), json)}`);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (process.argv.includes('--rerender')) return rerender(options.output);
  const startedAt = new Date();
  const commandLine = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const runnerUnavailable = ensureRunnerBundle();
  if (runnerUnavailable) log(`runner not runnable: ${runnerUnavailable}`);

  log('starting source and target PostgreSQL 15 servers');
  const sourcePg = await startPostgres({ major: 15, settings: SERVER_SETTINGS });
  const targetPg = await startPostgres({ major: 15, settings: SERVER_SETTINGS });
  const scratchDir = mkdtempSync(join(tmpdir(), 'kc-bench-'));
  // A long run stopped by hand (Ctrl-C) still stops its servers and removes its files.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping the servers`);
      void Promise.allSettled([sourcePg.stop(), targetPg.stop()]).then(() => {
        rmSync(scratchDir, { recursive: true, force: true });
        process.exit(130);
      });
    });
  }
  try {
    const source = benchServer(sourcePg);
    const target = benchServer(targetPg);
    const versionRows = await sourcePg.query<{ v: string }>('SELECT version() AS v');

    const cells: BenchCell[] = [];
    const runnable = options.contenders.filter((c) => !(c.isRunner && runnerUnavailable));
    for (const shape of options.shapes) {
      for (const [sizeIndex, bytes] of options.sizes.entries()) {
        const rounds = options.rounds[sizeIndex]!;
        const database = `${shape.id}_${Math.round(bytes / 1024 ** 2)}mib`;
        log(`${shape.id} ${formatBytes(bytes)}: generating source database ${database}`);
        await sourcePg.createDatabase(database);
        const generation = await shape.generate({ ...endpointOf(source), database }, { targetBytes: bytes, log: (line) => log(`  ${line}`) });
        const snapshot = await snapshotDatabase({ ...endpointOf(source), database });
        const pass = await measureChecksumPass({ ...endpointOf(source), database });
        const changeCheck = await measureChangeCheck({ ...endpointOf(source), database });
        const checksumPass = {
          ...pass,
          changeCheckCpuSeconds: changeCheck.quietCpuSeconds,
          changeCheckRowByRowCpuSeconds: changeCheck.rowByRowCpuSeconds,
        };
        log(
          `  one verification pass: ${checksumPass.cpuSeconds.toFixed(2)} s of CPU, ${checksumPass.wallSeconds.toFixed(2)} s wall, ${checksumPass.tables} tables; ` +
            `the proof of unchanged tables that replaces it in the downtime: ${changeCheck.quietCpuSeconds.toFixed(2)} s of CPU, ` +
            `${changeCheck.rowByRowCpuSeconds.toFixed(2)} s once a transaction ended since the early pass` +
            (changeCheck.quietEarlyPasses > 1 ? ` (quiet check after ${changeCheck.quietEarlyPasses} early passes: a background transaction ended meanwhile)` : ''),
        );
        const results = new Map<string, MigrationResult[]>(options.contenders.map((c) => [c.id, []]));
        for (let round = 0; round < rounds; round += 1) {
          const order = round % 2 === 0 ? runnable : [...runnable].reverse();
          for (const contender of order) {
            log(`${shape.id} ${formatBytes(bytes)} round ${round + 1}/${rounds}: ${contender.label}`);
            const result = await runMigration({
              contender,
              source,
              sourceDatabase: database,
              sourceSnapshot: snapshot,
              target,
              targetDatabase: `target_${contender.id.replace(/-/g, '_')}`,
              jobs: options.jobs,
              repositoryRoot: REPOSITORY_ROOT,
              pgBinDir: PG_BIN_DIR,
              scratchDir,
            });
            results.get(contender.id)!.push(result);
            log(
              result.ok
                ? `  ${result.wallSeconds.toFixed(2)} s wall, client CPU ${result.clientCpuSeconds.toFixed(2)} s, server CPU ${result.serverCpuSeconds.toFixed(2)} s, ` +
                    `tree PSS ${formatBytes(result.memory.treePeakRssBytes)}, largest RSS ${formatBytes(result.memory.processPeakRssBytes)} (${result.memory.processPeakCommand}), dump ${formatBytes(result.dumpBytes)}`
                : `  FAILED: ${result.failure}`,
            );
          }
        }
        cells.push({
          shape: shape.id,
          shapeLabel: shape.label,
          requestedBytes: bytes,
          rounds,
          generation,
          checksumPass,
          contenders: options.contenders.map((contender) => ({
            id: contender.id,
            label: contender.label,
            isRunner: contender.isRunner,
            commands: contender.steps(exampleContext(source, target, database, options.jobs, scratchDir)).map(describeStep),
            results: results.get(contender.id) ?? [],
            ...(contender.isRunner && runnerUnavailable ? { unavailable: runnerUnavailable } : {}),
          })),
        });
        // Not needed again: free the disk for the next one.
        await dropDatabase(source, database);
      }
    }

    const latency: LatencyOutcome[] = [];
    if (options.latency) {
      const prePhaseName = 'Pre-phase no-op decision (already migrated)';
      const gateName = 'Database gate (marker present)';
      if (runnerUnavailable) {
        latency.push({ name: prePhaseName, unavailable: runnerUnavailable }, { name: gateName, unavailable: runnerUnavailable });
      } else {
        log('latency: migrating a small cluster through the hook commands, then timing prepare and gate');
        try {
          const measured = await measureMigratedClusterLatency({ repositoryRoot: REPOSITORY_ROOT });
          for (const result of [measured.prePhase, measured.gate]) {
            log(`  ${result.name}: median ${result.medianSeconds.toFixed(3)} s over ${result.runs} runs`);
            latency.push({ name: result.name, result });
          }
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          log(`  not measured: ${reason}`);
          latency.push({ name: prePhaseName, unavailable: reason }, { name: gateName, unavailable: reason });
        }
      }
      latency.push(
        await latencyOutcome('npm run synth', async () =>
          measureLatency({ name: 'npm run synth', argv: ['npm', 'run', '--silent', 'synth'], cwd: REPOSITORY_ROOT, runs: 5, warmup: 1 }),
        ),
      );
    }

    mkdirSync(dirname(options.output), { recursive: true });
    const chartFile = join(dirname(options.output), 'scaling.svg');
    const chartDrawn = drawScalingChart(scalingPoints(cells), chartFile);
    const report: BenchReport = {
      startedAt,
      durationSeconds: (performance.now() - benchStarted) / 1000,
      commandLine,
      machine: machineInfo(versionRows[0]!.v),
      serverSettings: SERVER_SETTINGS,
      jobs: options.jobs,
      cells,
      latency,
      ...(chartDrawn ? { chartPath: relative(dirname(options.output), chartFile) } : {}),
    };
    mkdirSync(dirname(options.output), { recursive: true });
    writeFileSync(options.output, renderResults(report));
    writeFileSync(options.output.replace(/\.md$/, '.json'), JSON.stringify(report, null, 2));
    log(`wrote ${relative(process.cwd(), options.output)} in ${Math.round(report.durationSeconds)} s`);
  } finally {
    await sourcePg.stop();
    await targetPg.stop();
    rmSync(scratchDir, { recursive: true, force: true });
  }
}

/** A context with placeholder paths, for printing each contender's exact commands. */
function exampleContext(source: BenchServer, target: BenchServer, database: string, jobs: number, scratchDir: string): ContenderContext {
  return {
    source: { ...endpointOf(source), password: '***', database },
    target: { ...endpointOf(target), password: '***', database: 'target' },
    jobs,
    workDir: join(scratchDir, 'work'),
    repositoryRoot: REPOSITORY_ROOT,
    pgBinDir: PG_BIN_DIR,
  };
}

async function latencyOutcome(name: string, measure: () => Promise<LatencyOutcome['result']>): Promise<LatencyOutcome> {
  log(`latency: ${name}`);
  try {
    const result = await measure();
    if (result) log(`  median ${result.medianSeconds.toFixed(3)} s over ${result.runs} runs`);
    return { name, result };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    log(`  not measured: ${reason}`);
    return { name, unavailable: reason };
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(1);
});
