/**
 * Wall time of a short command, run many times: with hyperfine when it is installed (warm-up runs,
 * outlier detection, no shell in between), else by spawning it ourselves the same number of times.
 *
 * Everything is spawned asynchronously: the command may talk to a server living in this very
 * process (the fake Kubernetes API server), which a blocked event loop could never answer.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface LatencyCommand {
  readonly name: string;
  /** argv, run without a shell. */
  readonly argv: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  readonly runs: number;
  readonly warmup: number;
}

export interface LatencyResult {
  readonly name: string;
  readonly command: string;
  readonly tool: 'hyperfine' | 'spawn';
  readonly runs: number;
  readonly medianSeconds: number;
  readonly meanSeconds: number;
  readonly minSeconds: number;
  readonly maxSeconds: number;
}

export function hyperfineAvailable(): boolean {
  return spawnSync('hyperfine', ['--version'], { encoding: 'utf8' }).status === 0;
}

interface Finished {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly output: string;
  readonly seconds: number;
}

function run(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string | undefined): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, output, seconds: (performance.now() - started) / 1000 }));
  });
}

/** shell-words quoting for hyperfine's command string (it splits it itself with -N). */
function quoteWord(word: string): string {
  return /^[\w./=:,@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Runs `command` and returns its timing; throws with the command's output when it fails. */
export async function measureLatency(command: LatencyCommand): Promise<LatencyResult> {
  const env = { ...process.env, ...command.env };
  const printable = command.argv.map(quoteWord).join(' ');
  // One checked run first: a failing command would otherwise be timed as a fast one.
  const probe = await run(command.argv, env, command.cwd);
  if (probe.code !== 0) {
    throw new Error(`${command.name}: '${printable}' exited with ${probe.code ?? probe.signal}: ${probe.output.trim().slice(-1500)}`);
  }
  if (hyperfineAvailable()) {
    const dir = mkdtempSync(join(tmpdir(), 'bench-hyperfine-'));
    try {
      const exportFile = join(dir, 'result.json');
      const result = await run(
        ['hyperfine', '-N', '--style', 'none', '--warmup', String(command.warmup), '--runs', String(command.runs), '--export-json', exportFile, printable],
        env,
        command.cwd,
      );
      if (result.code !== 0) throw new Error(`${command.name}: hyperfine failed: ${result.output.trim().slice(-1500)}`);
      const parsed = JSON.parse(readFileSync(exportFile, 'utf8')) as {
        results: Array<{ median: number; mean: number; min: number; max: number; times: number[] }>;
      };
      const timing = parsed.results[0]!;
      return {
        name: command.name,
        command: printable,
        tool: 'hyperfine',
        runs: timing.times.length,
        medianSeconds: timing.median,
        meanSeconds: timing.mean,
        minSeconds: timing.min,
        maxSeconds: timing.max,
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const times: number[] = [];
  for (let i = 0; i < command.warmup + command.runs; i += 1) {
    const finished = await run(command.argv, env, command.cwd);
    if (finished.code !== 0) throw new Error(`${command.name}: '${printable}' exited with ${finished.code ?? finished.signal} on run ${i + 1}`);
    if (i >= command.warmup) times.push(finished.seconds);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return {
    name: command.name,
    command: printable,
    tool: 'spawn',
    runs: times.length,
    medianSeconds: median(sorted),
    meanSeconds: times.reduce((a, b) => a + b, 0) / times.length,
    minSeconds: sorted[0]!,
    maxSeconds: sorted[sorted.length - 1]!,
  };
}

/** Median of numbers (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
