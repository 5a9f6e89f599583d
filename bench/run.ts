/**
 * `npm run bench`: the migration benchmark of issue 5, run by hand (never in CI's pass/fail path).
 *
 * Starts two local PostgreSQL 15 servers (source and target, same settings, durability on as in
 * production), generates the Keycloak-shaped source database once per size, then lets each
 * contender migrate it into a fresh target database for several rounds in alternating order,
 * checks every copy, runs the runner at several sizes, times the short commands (pre-phase
 * decision, database gate, synth) and writes bench/RESULTS.md.
 *
 *   npm run bench                       # 1 GiB, 3 rounds, scaling 0.25/1/4 GiB, latency
 *   npm run bench -- --quick            # 0.1 GiB, 1 round, no scaling: a smoke run (~1 min)
 *   npm run bench -- --size 0.5GiB --rounds 5 --scaling 0.25GiB,2GiB --contenders runner,fd-z0
 *   npm run bench -- --rerender         # rewrite RESULTS.md from RESULTS.json (after changing the report's layout)
 *   flags: --size S  --rounds N  --scaling S,S,..|none  --contenders id,id,..  --jobs N
 *          --no-latency  --output FILE  --quick  --rerender
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres, type TestPostgres } from '../test/support/postgres.js';
import { ALL_CONTENDERS, type Contender, type ContenderContext } from './contenders.js';
import { generateKeycloakDatabase, type GenerationReport } from './generate.js';
import { measureLatency, median } from './measure-latency.js';
import { measureMigratedClusterLatency } from './pre-phase-latency.js';
import { renderResults, type BenchReport, type ContenderResults, type LatencyOutcome, type ScalingPoint } from './results-report.js';
import { describeStep, dropDatabase, endpointOf, runMigration, type BenchServer, type MigrationResult } from './run-migration.js';
import { drawScalingChart } from './scaling-chart.js';
import { formatBytes, parseSize } from './size.js';
import { snapshotDatabase, type DatabaseSnapshot } from './verify-copy.js';

const REPOSITORY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';
const RUNNER_BUNDLE = join(REPOSITORY_ROOT, 'runner', 'dist', 'runner.mjs');

/**
 * Both servers run with PostgreSQL's own defaults for durability (the test harness turns fsync
 * off for speed; a migration target in production has it on), so restore costs are real.
 */
const SERVER_SETTINGS: Readonly<Record<string, string>> = {
  fsync: 'on',
  synchronous_commit: 'on',
  full_page_writes: 'on',
  shared_buffers: '128MB',
  max_wal_size: '1GB',
  max_connections: '100',
};

interface Options {
  readonly sizeBytes: number;
  readonly rounds: number;
  readonly scalingBytes: readonly number[];
  readonly contenders: readonly Contender[];
  readonly jobs: number;
  readonly latency: boolean;
  readonly output: string;
}

function parseOptions(argv: readonly string[]): Options {
  const quick = argv.includes('--quick');
  const flags = new Map<string, string>();
  const switches = new Set(['--quick', '--no-latency', '--rerender']);
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i]!;
    if (switches.has(flag)) continue;
    if (!['--size', '--rounds', '--scaling', '--contenders', '--jobs', '--output'].includes(flag)) {
      throw new Error(`unknown argument '${flag}'; flags: --size --rounds --scaling --contenders --jobs --output --quick --no-latency`);
    }
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    flags.set(flag, value);
    i += 1;
  }
  const sizeBytes = parseSize('--size', flags.get('--size') ?? (quick ? '0.1GiB' : '1GiB'));
  const rounds = Number(flags.get('--rounds') ?? (quick ? 1 : 3));
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got '${flags.get('--rounds')}'`);
  const scalingText = flags.get('--scaling') ?? (quick ? 'none' : '0.25GiB,1GiB,4GiB');
  const scalingBytes = scalingText === 'none' ? [] : scalingText.split(',').map((text) => parseSize('--scaling', text));
  const ids = (flags.get('--contenders') ?? ALL_CONTENDERS.map((c) => c.id).join(',')).split(',');
  const contenders = ids.map((id) => {
    const contender = ALL_CONTENDERS.find((c) => c.id === id);
    if (!contender) throw new Error(`--contenders: unknown contender '${id}'; known: ${ALL_CONTENDERS.map((c) => c.id).join(', ')}`);
    return contender;
  });
  const jobs = Number(flags.get('--jobs') ?? availableParallelism());
  if (!Number.isInteger(jobs) || jobs < 1) throw new Error(`--jobs must be a positive integer, got '${flags.get('--jobs')}'`);
  return {
    sizeBytes,
    rounds,
    scalingBytes,
    contenders,
    jobs,
    latency: !argv.includes('--no-latency'),
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
  try {
    const source = benchServer(sourcePg);
    const target = benchServer(targetPg);
    const versionRows = await sourcePg.query<{ v: string }>('SELECT version() AS v');

    const generated = new Map<number, { database: string; report: GenerationReport; snapshot: DatabaseSnapshot }>();
    async function sourceDatabase(bytes: number): Promise<{ database: string; report: GenerationReport; snapshot: DatabaseSnapshot }> {
      const existing = generated.get(bytes);
      if (existing) return existing;
      const database = `keycloak_${Math.round(bytes / 1024 ** 2)}mib`;
      log(`generating ${formatBytes(bytes)} of Keycloak-shaped data into source database ${database}`);
      await sourcePg.createDatabase(database);
      const report = await generateKeycloakDatabase(
        { ...endpointOf(source), database },
        { targetBytes: bytes, log: (line) => log(`  ${line}`) },
      );
      const snapshot = await snapshotDatabase({ ...endpointOf(source), database });
      const entry = { database, report, snapshot };
      generated.set(bytes, entry);
      return entry;
    }

    const main = await sourceDatabase(options.sizeBytes);
    const results = new Map<string, MigrationResult[]>(options.contenders.map((c) => [c.id, []]));
    const runnable = options.contenders.filter((c) => !(c.isRunner && runnerUnavailable));
    for (let round = 0; round < options.rounds; round += 1) {
      const order = round % 2 === 0 ? runnable : [...runnable].reverse();
      for (const contender of order) {
        log(`round ${round + 1}/${options.rounds}: ${contender.label}`);
        const result = await runMigration({
          contender,
          source,
          sourceDatabase: main.database,
          sourceSnapshot: main.snapshot,
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

    const scaling: ScalingPoint[] = [];
    const runner = options.contenders.find((c) => c.isRunner);
    if (runner && options.scalingBytes.length > 0) {
      for (const bytes of options.scalingBytes) {
        if (runnerUnavailable) {
          scaling.push({ requestedBytes: bytes, databaseBytes: 0, unavailable: runnerUnavailable });
          continue;
        }
        if (bytes === options.sizeBytes) {
          const okRuns = results.get(runner.id)!.filter((r) => r.ok);
          if (okRuns.length > 0) {
            const medianWall = median(okRuns.map((r) => r.wallSeconds));
            const closest = okRuns.reduce((best, r) => (Math.abs(r.wallSeconds - medianWall) < Math.abs(best.wallSeconds - medianWall) ? r : best));
            scaling.push({ requestedBytes: bytes, databaseBytes: main.report.databaseBytes, result: closest });
            continue;
          }
        }
        const data = await sourceDatabase(bytes);
        log(`scaling: runner at ${formatBytes(data.report.databaseBytes)}`);
        const result = await runMigration({
          contender: runner,
          source,
          sourceDatabase: data.database,
          sourceSnapshot: data.snapshot,
          target,
          targetDatabase: 'target_scaling',
          jobs: options.jobs,
          repositoryRoot: REPOSITORY_ROOT,
          pgBinDir: PG_BIN_DIR,
          scratchDir,
        });
        log(result.ok ? `  ${result.wallSeconds.toFixed(2)} s, node peak RSS ${formatBytes(result.memory.peakRssByCommand.node ?? 0)}` : `  FAILED: ${result.failure}`);
        scaling.push({ requestedBytes: bytes, databaseBytes: data.report.databaseBytes, result });
        // Large source databases are not needed again; free their disk for the next size.
        if (bytes !== options.sizeBytes) {
          await dropDatabase(source, data.database);
          generated.delete(bytes);
        }
      }
      scaling.sort((a, b) => a.requestedBytes - b.requestedBytes);
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

    const contenderResults: ContenderResults[] = options.contenders.map((contender) => ({
      id: contender.id,
      label: contender.label,
      isRunner: contender.isRunner,
      commands: contender.steps(exampleContext(source, target, main.database, options.jobs, scratchDir)).map(describeStep),
      results: results.get(contender.id) ?? [],
      ...(contender.isRunner && runnerUnavailable ? { unavailable: runnerUnavailable } : {}),
    }));
    mkdirSync(dirname(options.output), { recursive: true });
    const chartFile = join(dirname(options.output), 'scaling.svg');
    const chartDrawn = drawScalingChart(scaling, chartFile);
    const report: BenchReport = {
      startedAt,
      durationSeconds: (performance.now() - benchStarted) / 1000,
      commandLine,
      machine: machineInfo(versionRows[0]!.v),
      serverSettings: SERVER_SETTINGS,
      jobs: options.jobs,
      rounds: options.rounds,
      generation: main.report,
      contenders: contenderResults,
      scaling,
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
