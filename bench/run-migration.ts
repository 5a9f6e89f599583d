/**
 * One measured migration: a contender copies the source database into a fresh, empty target
 * database; the benchmark then checks the copy and records time, CPU, memory and bytes written.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import type { Contender, ContenderContext, Step } from './contenders.js';
import { machineBusySeconds, MemorySampler, waitForQuietMachine, postmasterPid, reapedChildrenTotals, treeTotals, type MemoryPeak } from './measure.js';
import { compareSnapshots, snapshotDatabase, type DatabaseEndpoint, type DatabaseSnapshot } from './verify-copy.js';

/** A PostgreSQL server the benchmark talks to as superuser. */
export interface BenchServer {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly dataDir: string;
}

export interface MigrationSetup {
  readonly contender: Contender;
  readonly source: BenchServer;
  readonly sourceDatabase: string;
  /** What the source holds, taken once per database (the source never changes). */
  readonly sourceSnapshot: DatabaseSnapshot;
  readonly target: BenchServer;
  /** Created empty before, dropped after. */
  readonly targetDatabase: string;
  readonly jobs: number;
  readonly repositoryRoot: string;
  readonly pgBinDir: string;
  /** Parent of this run's work directory. */
  readonly scratchDir: string;
}

export interface StepTiming {
  readonly command: string;
  /** Until the process exited, or until its {@link Step.downtimeEndsAt} line. */
  readonly wallSeconds: number;
  /** From the {@link Step.downtimeEndsAt} line to the exit: work done while the application starts. */
  readonly afterDowntimeSeconds?: number;
  /** From the {@link Step.downtimeEndsAt} line to the {@link Step.completeAt} line (0: the same line). */
  readonly completeAfterDowntimeSeconds?: number;
  /** A {@link Step.beforeDowntime} step: its time is not in the wall time. */
  readonly beforeDowntime?: true;
}

export interface MigrationResult {
  readonly contenderId: string;
  /** Passed the benchmark's own check of the copy; when false, `failure` says why. */
  readonly ok: boolean;
  readonly failure?: string;
  /**
   * From the first start (after any {@link Step.beforeDowntime} steps) to the last exit, or to the
   * last step's {@link Step.downtimeEndsAt} line: the downtime.
   */
  readonly wallSeconds: number;
  readonly steps: readonly StepTiming[];
  /** user + system CPU of the contender's processes (the client side). */
  readonly clientCpuSeconds: number;
  /** user + system CPU of both PostgreSQL servers' processes during the run. */
  readonly serverCpuSeconds: number;
  readonly memory: MemoryPeak;
  /**
   * CPU seconds the rest of the machine used meanwhile: all busy time minus client, servers and
   * this benchmark process (its sampling), i.e. other work competing for the cores plus kernel
   * threads (writeback of the dirty pages the migration produced): to judge noise.
   */
  readonly otherCpuSeconds: number;
  /** Whether the machine was idle for a second before the run (else it started after waiting QUIET_WAIT_MS). */
  readonly startedQuiet: boolean;
  /** CPU seconds of the benchmark process itself during the run (memory sampling). */
  readonly benchCpuSeconds: number;
  /** Bytes the contender's processes wrote (dump files, work files). */
  readonly clientWriteBytes: number;
  /** Bytes both servers wrote, including the target's checkpoint after the run (WAL and data files). */
  readonly serverWriteBytes: number;
  /** Size of the dump directory the contender left (0: none). */
  readonly dumpBytes: number;
}

/** Runs `setup.contender` once and checks its copy. */
export async function runMigration(setup: MigrationSetup): Promise<MigrationResult> {
  const target: DatabaseEndpoint = { ...endpointOf(setup.target), database: setup.targetDatabase };
  const source: DatabaseEndpoint = { ...endpointOf(setup.source), database: setup.sourceDatabase };
  await recreateDatabase(setup.target, setup.targetDatabase);
  // Start every contender from the same place: nothing dirty in either server's buffers.
  await checkpoint(setup.source);
  await checkpoint(setup.target);
  const workDir = await mkdtemp(join(setup.scratchDir, `${setup.contender.id}-`));
  const quiet = await waitForQuietMachine();
  const context: ContenderContext = {
    source,
    target,
    jobs: setup.jobs,
    workDir,
    repositoryRoot: setup.repositoryRoot,
    pgBinDir: setup.pgBinDir,
  };
  const servers = [postmasterPid(setup.source.dataDir), postmasterPid(setup.target.dataDir)];
  const clientBefore = reapedChildrenTotals();
  const serversBefore = servers.map(treeTotals);
  const busyBefore = machineBusySeconds();
  const benchBefore = process.cpuUsage();
  const sampler = new MemorySampler();
  let started = performance.now();
  const steps: StepTiming[] = [];
  let failure: string | undefined;
  let downtimeEnded: number | undefined;
  try {
    const all = setup.contender.steps(context);
    for (const [index, step] of all.entries()) {
      if (step.downtimeEndsAt && index !== all.length - 1) throw new Error(`${setup.contender.id}: downtimeEndsAt is only allowed on the last step`);
      if (step.beforeDowntime && all.slice(0, index).some((earlier) => !earlier.beforeDowntime)) {
        throw new Error(`${setup.contender.id}: beforeDowntime is only allowed on leading steps`);
      }
      const stepStarted = performance.now();
      // The downtime starts with the first step that needs the application stopped.
      if (!step.beforeDowntime && all.slice(0, index).every((earlier) => earlier.beforeDowntime)) started = stepStarted;
      const { downtimeEndedAt, completeAt } = await runStep(step, setup.repositoryRoot);
      const exited = performance.now();
      if (step.downtimeEndsAt && downtimeEndedAt === undefined) {
        throw new Error(`${describeStep(step).slice(0, 200)} exited without printing a line matching ${step.downtimeEndsAt}`);
      }
      downtimeEnded = downtimeEndedAt;
      steps.push({
        command: describeStep(step),
        wallSeconds: ((downtimeEndedAt ?? exited) - stepStarted) / 1000,
        ...(downtimeEndedAt !== undefined ? { afterDowntimeSeconds: (exited - downtimeEndedAt) / 1000 } : {}),
        ...(downtimeEndedAt !== undefined && completeAt !== undefined ? { completeAfterDowntimeSeconds: Math.max(0, completeAt - downtimeEndedAt) / 1000 } : {}),
        ...(step.beforeDowntime ? { beforeDowntime: true as const } : {}),
      });
    }
  } catch (error) {
    failure = error instanceof Error ? error.message : String(error);
  }
  const wallSeconds = ((downtimeEnded ?? performance.now()) - started) / 1000;
  const memory = sampler.stop();
  const clientAfter = reapedChildrenTotals();
  const serversAtEnd = servers.map(treeTotals);
  const busySeconds = machineBusySeconds() - busyBefore;
  const benchUsage = process.cpuUsage(benchBefore);
  const benchSeconds = (benchUsage.user + benchUsage.system) / 1e6;
  // The target's data pages reach disk at the next checkpoint: count them for this contender.
  await checkpoint(setup.target);
  const serversAfter = servers.map(treeTotals);
  const dumpDir = setup.contender.dumpDir?.(context);
  const dumpBytes = dumpDir ? await directoryBytes(dumpDir) : 0;

  if (!failure) {
    const expected = setup.contender.expectedTarget?.(setup.sourceSnapshot) ?? setup.sourceSnapshot;
    const differences = compareSnapshots(expected, await snapshotDatabase(target));
    if (differences.length > 0) failure = `copy differs from the source: ${differences.slice(0, 5).join('; ')}`;
  }
  await rm(workDir, { recursive: true, force: true });
  await dropDatabase(setup.target, setup.targetDatabase);
  return {
    contenderId: setup.contender.id,
    ok: !failure,
    ...(failure ? { failure } : {}),
    wallSeconds,
    steps,
    clientCpuSeconds: clientAfter.cpuSeconds - clientBefore.cpuSeconds,
    serverCpuSeconds: serversAfter.reduce((sum, after, i) => sum + after.cpuSeconds - serversBefore[i]!.cpuSeconds, 0),
    otherCpuSeconds: Math.max(
      0,
      busySeconds -
        benchSeconds -
        (clientAfter.cpuSeconds - clientBefore.cpuSeconds) -
        serversAtEnd.reduce((sum, end, i) => sum + end.cpuSeconds - serversBefore[i]!.cpuSeconds, 0),
    ),
    memory,
    benchCpuSeconds: benchSeconds,
    startedQuiet: quiet.quiet,
    clientWriteBytes: clientAfter.writeBytes - clientBefore.writeBytes,
    serverWriteBytes: serversAfter.reduce((sum, after, i) => sum + after.writeBytes - serversBefore[i]!.writeBytes, 0),
    dumpBytes,
  };
}

export function endpointOf(server: BenchServer): Omit<DatabaseEndpoint, 'database'> {
  return { host: server.host, port: server.port, user: server.user, password: server.password };
}

/** The command line of a step as it would be typed, environment first, passwords masked. */
export function describeStep(step: Step): string {
  const env = Object.entries(step.env)
    .filter(([name]) => name !== 'PATH')
    .map(([name, value]) => `${name}=${/PASSWORD/.test(name) ? '***' : quote(value)}`);
  const argv = step.argv
    .map((arg) => arg.replace(/:\/\/([^:@/]+):[^@]+@/, '://$1:***@'))
    .map(quote);
  return [...env, ...argv].join(' ');
}

function quote(text: string): string {
  return /^[\w./=:,@%+-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

const STDERR_TAIL_BYTES = 4000;

/**
 * Runs one step to its exit; `downtimeEndedAt` and `completeAt` are when its
 * {@link Step.downtimeEndsAt} and {@link Step.completeAt} lines came (performance.now()).
 */
function runStep(step: Step, cwd: string): Promise<{ downtimeEndedAt?: number; completeAt?: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(step.argv[0]!, step.argv.slice(1), {
      cwd,
      env: { ...process.env, ...step.env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let downtimeEndedAt: number | undefined;
    let completeAt: number | undefined;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      // On the tail so far: a line may arrive in two chunks.
      stderr = (stderr + chunk).slice(-STDERR_TAIL_BYTES);
      if (step.downtimeEndsAt && downtimeEndedAt === undefined && step.downtimeEndsAt.test(stderr)) downtimeEndedAt = performance.now();
      if (step.completeAt && completeAt === undefined && step.completeAt.test(stderr)) completeAt = performance.now();
    });
    child.on('error', (error) => reject(new Error(`could not start ${step.argv[0]}: ${error.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve({ ...(downtimeEndedAt === undefined ? {} : { downtimeEndedAt }), ...(completeAt === undefined ? {} : { completeAt }) });
      else reject(new Error(`${describeStep(step).slice(0, 200)} exited with ${code ?? signal}: ${stderr.trim().slice(-1500)}`));
    });
  });
}

async function withAdmin<T>(server: BenchServer, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...endpointOf(server), database: 'postgres', application_name: 'bench' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export function checkpoint(server: BenchServer): Promise<void> {
  return withAdmin(server, async (client) => {
    await client.query('CHECKPOINT');
  });
}

export function recreateDatabase(server: BenchServer, name: string): Promise<void> {
  return withAdmin(server, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE template0 ENCODING 'UTF8'`);
  });
}

export function dropDatabase(server: BenchServer, name: string): Promise<void> {
  return withAdmin(server, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  });
}

/** Total size of the regular files under `dir` (0 when it does not exist). */
export async function directoryBytes(dir: string): Promise<number> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch {
    return 0;
  }
  let total = 0;
  for (const entry of entries) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}
