/**
 * Renders a benchmark run as bench/RESULTS.md: the machine, the exact commands, one table per
 * measurement, the issue's targets with pass/miss and margins, and for each miss the measured
 * breakdown that explains it and what would close it.
 */
import type { ChecksumPass } from './checksum-pass.js';
import type { GenerationReport } from './generate.js';
import type { LatencyResult } from './measure-latency.js';
import { median } from './measure-latency.js';
import type { MigrationResult } from './run-migration.js';
import { QUIET_WAIT_MS } from './measure.js';
import { formatBytes } from './size.js';

export interface ContenderResults {
  readonly id: string;
  readonly label: string;
  readonly isRunner: boolean;
  /** The steps with this run's paths and ports (passwords masked). */
  readonly commands: readonly string[];
  readonly results: readonly MigrationResult[];
  /** Set when the contender could not run at all (e.g. the runner bundle is missing). */
  readonly unavailable?: string;
}

export interface ScalingPoint {
  readonly requestedBytes: number;
  readonly databaseBytes: number;
  readonly result?: MigrationResult;
  readonly unavailable?: string;
}

export interface LatencyOutcome {
  readonly name: string;
  readonly result?: LatencyResult;
  readonly unavailable?: string;
}

/** One data shape at one size: its generation and every contender's rounds. */
export interface BenchCell {
  readonly shape: string;
  readonly shapeLabel: string;
  readonly requestedBytes: number;
  readonly rounds: number;
  readonly generation: GenerationReport;
  readonly contenders: readonly ContenderResults[];
  /** One verification pass over the source, measured alone (absent in reports of older runs). */
  readonly checksumPass?: ChecksumPass;
}

export interface BenchReport {
  readonly startedAt: Date;
  readonly durationSeconds: number;
  readonly commandLine: string;
  readonly machine: Readonly<Record<string, string>>;
  readonly serverSettings: Readonly<Record<string, string>>;
  readonly jobs: number;
  readonly cells: readonly BenchCell[];
  readonly latency: readonly LatencyOutcome[];
  /** Relative path of the time-vs-size chart, when one was drawn. */
  readonly chartPath?: string;
}

/** The shape the scaling chart follows: the one Keycloak installations have. */
const CHART_SHAPE = 'keycloak';

/** The runner's median round at each size of the chart's shape (or the first shape measured). */
export function scalingPoints(cells: readonly BenchCell[]): ScalingPoint[] {
  const shape = cells.some((cell) => cell.shape === CHART_SHAPE) ? CHART_SHAPE : cells[0]?.shape;
  return cells
    .filter((cell) => cell.shape === shape)
    .map((cell) => {
      const runner = cell.contenders.find((contender) => contender.id === RUNNER_ID);
      const ok = runner?.results.filter((result) => result.ok) ?? [];
      const medianWall = ok.length > 0 ? median(ok.map((result) => result.wallSeconds)) : Number.NaN;
      const closest = ok.reduce<MigrationResult | undefined>(
        (best, result) => (!best || Math.abs(result.wallSeconds - medianWall) < Math.abs(best.wallSeconds - medianWall) ? result : best),
        undefined,
      );
      return { requestedBytes: cell.requestedBytes, databaseBytes: cell.generation.databaseBytes, ...(closest ? { result: closest } : {}) };
    });
}

/** The issue's targets. */
export const TARGETS = {
  /** Issue 13: verification for free (issue 5 asked for 1.25 ×). */
  runnerVsFastestPeer: 1.0,
  runnerPeakRssBytes: 150 * 1024 * 1024,
  latencySeconds: 0.5,
} as const;

/** The runner of the headline and the targets (as the Argo CD backup Job runs it, bench/contenders.ts). */
const RUNNER_ID = 'runner';

/** Contenders that count as "peers" for the target (the hand-made fast paths and pgcopydb). */
const FAST_PEERS = ['pipe', 'fd-z0', 'pgcopydb'];

interface Summary {
  readonly id: string;
  readonly label: string;
  readonly ok: readonly MigrationResult[];
  readonly failed: readonly MigrationResult[];
  readonly wall: number;
  readonly minWall: number;
  readonly maxWall: number;
}

function summarize(contender: ContenderResults): Summary | undefined {
  const ok = contender.results.filter((result) => result.ok);
  if (ok.length === 0) return undefined;
  const walls = ok.map((result) => result.wallSeconds);
  return {
    id: contender.id,
    label: contender.label,
    ok,
    failed: contender.results.filter((result) => !result.ok),
    wall: median(walls),
    minWall: Math.min(...walls),
    maxWall: Math.max(...walls),
  };
}

const s = (seconds: number): string => (Number.isFinite(seconds) ? seconds.toFixed(seconds < 10 ? 2 : 1) : '–');
const x = (ratio: number): string => (Number.isFinite(ratio) ? `${ratio.toFixed(2)} ×` : '–');
const mb = (bytes: number): string => (bytes > 0 ? formatBytes(bytes) : '–');
const medianOf = (results: readonly MigrationResult[], pick: (result: MigrationResult) => number): number =>
  median(results.map(pick));

interface CellSummary {
  readonly cell: BenchCell;
  readonly summaries: Map<string, Summary>;
  readonly runner?: Summary;
  readonly fastestPeer?: Summary;
  /** runner ÷ fastest peer (NaN when either is missing). */
  readonly ratio: number;
}

function summarizeCell(cell: BenchCell): CellSummary {
  const summaries = new Map<string, Summary>();
  for (const contender of cell.contenders) {
    const summary = summarize(contender);
    if (summary) summaries.set(contender.id, summary);
  }
  const peers = FAST_PEERS.map((id) => summaries.get(id)).filter((summary): summary is Summary => summary !== undefined);
  const fastestPeer = peers.reduce<Summary | undefined>((best, peer) => (!best || peer.wall < best.wall ? peer : best), undefined);
  const runner = summaries.get(RUNNER_ID);
  return { cell, summaries, runner, fastestPeer, ratio: runner && fastestPeer ? runner.wall / fastestPeer.wall : Number.NaN };
}

/**
 * Seconds from the downtime's start until the copy held everything the peers' copies hold when they
 * end (the runner's plain indexes, built after "target ready"); undefined for runs recorded before
 * the benchmark measured it.
 */
function completeSeconds(result: MigrationResult): number | undefined {
  const after = result.steps.at(-1)?.completeAfterDowntimeSeconds;
  return after === undefined ? undefined : result.wallSeconds + after;
}

/** Median client + server CPU seconds of a contender's passing rounds. */
const totalCpu = (summary: Summary): number => medianOf(summary.ok, (r) => r.clientCpuSeconds + r.serverCpuSeconds);

/**
 * The least wall time the runner's verification allows: the fastest peer's CPU plus the checksum
 * work the runner does in the downtime, run at the peer's core use. With the source's pass before
 * the downtime (measured change check), that work is one pass (the target's) plus the change
 * check; in runs measured before, two passes.
 */
interface VerificationFloor {
  readonly passCpu: number;
  readonly peerCpu: number;
  /** CPU seconds per wall second the peer kept busy. */
  readonly peerCores: number;
  /** Both passes in the downtime, ÷ fastest peer. */
  readonly bothPassesRatio: number;
  /** The source's proof that its tables are unchanged since the early pass (checksum-pass.ts `measureChangeCheck`). */
  readonly changeCheckCpu?: number;
  /** The same check once a transaction ended since the early pass (every table's rows read), and the floor with it ÷ fastest peer. */
  readonly rowByRow?: { readonly cpu: number; readonly ratio: number };
  /** The floor that applies to the runner measured: with the change check if measured, else both passes. ÷ fastest peer. */
  readonly ratio: number;
  readonly wall: number;
}

function verificationFloor(c: CellSummary): VerificationFloor | undefined {
  const pass = c.cell.checksumPass;
  if (!pass || !c.fastestPeer) return undefined;
  const peerCpu = totalCpu(c.fastestPeer);
  const bothPassesRatio = 1 + (2 * pass.cpuSeconds) / peerCpu;
  const check = pass.changeCheckCpuSeconds;
  const ratio = check === undefined ? bothPassesRatio : 1 + (pass.cpuSeconds + check) / peerCpu;
  return {
    passCpu: pass.cpuSeconds,
    peerCpu,
    peerCores: peerCpu / c.fastestPeer.wall,
    bothPassesRatio,
    ...(check === undefined ? {} : { changeCheckCpu: check }),
    ...(pass.changeCheckRowByRowCpuSeconds === undefined
      ? {}
      : { rowByRow: { cpu: pass.changeCheckRowByRowCpuSeconds, ratio: 1 + (pass.cpuSeconds + pass.changeCheckRowByRowCpuSeconds) / peerCpu } }),
    ratio,
    wall: c.fastestPeer.wall * ratio,
  };
}

const cellName = (cell: BenchCell): string => `${cell.shape} ${formatBytes(cell.requestedBytes)}`;
const totalRowsOf = (generation: GenerationReport): number => Object.values(generation.rowCounts).reduce((sum, rows) => sum + rows, 0);

export function renderResults(report: BenchReport): string {
  const cells = report.cells.map(summarizeCell);
  const allRuns = report.cells.flatMap((cell) => cell.contenders.flatMap((contender) => contender.results.filter((r) => r.ok)));
  const noisyRuns = allRuns.filter((r) => isNoisy(r, report.machine));

  const lines: string[] = [];
  lines.push('# Benchmark results', '');
  lines.push(
    `Generated by \`${report.commandLine}\` on ${report.startedAt.toISOString()} (took ${Math.round(report.durationSeconds)} s, ` +
      'data generation included). Every number below comes from that run; nothing is edited by hand. Re-run to refresh.',
    '',
  );
  lines.push('## Machine and setup', '');
  lines.push('| | |', '|---|---|');
  for (const [key, value] of Object.entries(report.machine)) lines.push(`| ${key} | ${value} |`);
  lines.push(`| parallel jobs (N) | ${report.jobs} |`);
  lines.push(
    `| rounds | ${[...new Set(report.cells.map((cell) => `${formatBytes(cell.requestedBytes)}: ${cell.rounds}`))].join(', ')} ` +
      '(contenders in alternating order: forward, reversed, forward ...) |',
  );
  lines.push(
    `| server settings (source and target) | ${Object.entries(report.serverSettings).map(([k, v]) => `\`${k}=${v}\``).join(', ')} |`,
  );
  lines.push('');

  lines.push('## Headline: the runner against the fastest unverified peer', '');
  lines.push(
    'Median wall time per data shape and size, from the first command\'s start to the last one\'s exit (the runner\'s: to its ' +
      '"target ready" line, after which Keycloak may start while the runner builds the plain indexes and ANALYZEs; the ' +
      'column "runner to its last index" measures to the end of those index builds); every copy passed the ' +
      'benchmark\'s own check (row counts of every table, large objects and their bytes, sequence values, index and foreign key ' +
      'counts). The runner alone also verifies every row, sequence and large object against the source (see "What the runner does ' +
      `more"). Ratio = runner ÷ the fastest of ${FAST_PEERS.join(', ')} in the same cell (target ≤ ${TARGETS.runnerVsFastestPeer.toFixed(2)}).`,
    '',
  );
  const peerIds = FAST_PEERS.filter((id) => report.cells.some((cell) => cell.contenders.some((c) => c.id === id)));
  const peerLabel = (id: string): string => ({ pipe: '`pg_dump \\| psql`', 'fd-z0': '`pg_dump -Fd -Z0` + `pg_restore`', pgcopydb: '`pgcopydb clone`' })[id] ?? id;
  lines.push(
    `| shape | size on disk | runner | ${peerIds.map(peerLabel).join(' | ')} | runner ÷ fastest peer | CPU: runner ÷ that peer | runner to its last index (÷ that peer) | rounds | noisy runs |`,
    `|---|---:|---:|${peerIds.map(() => '---:').join('|')}|---:|---:|---:|---:|---:|`,
  );
  for (const c of cells) {
    const wall = (id: string): string => {
      const summary = c.summaries.get(id);
      if (!summary) return 'failed';
      const text = `${s(summary.wall)} s`;
      return c.fastestPeer?.id === id ? `**${text}**` : text;
    };
    const runs = c.cell.contenders.flatMap((contender) => contender.results.filter((r) => r.ok));
    const complete = c.runner && c.runner.ok.every((r) => completeSeconds(r) !== undefined) ? medianOf(c.runner.ok, (r) => completeSeconds(r)!) : undefined;
    const completeText = complete === undefined ? '–' : `${s(complete)} s${c.fastestPeer ? ` (${x(complete / c.fastestPeer.wall)})` : ''}`;
    lines.push(
      `| ${c.cell.shape} | ${formatBytes(c.cell.generation.databaseBytes)} | ${c.runner ? `${s(c.runner.wall)} s` : 'failed'} | ` +
        `${peerIds.map(wall).join(' | ')} | ${Number.isFinite(c.ratio) ? `${x(c.ratio)}${c.ratio <= TARGETS.runnerVsFastestPeer ? '' : ' (miss)'}` : '–'} | ` +
        `${c.runner && c.fastestPeer ? x(totalCpu(c.runner) / totalCpu(c.fastestPeer)) : '–'} | ${completeText} | ` +
        `${c.cell.rounds} | ${runs.filter((r) => isNoisy(r, report.machine)).length}/${runs.length} |`,
    );
  }
  lines.push(
    '',
    'Bold: the fastest peer of that row. "CPU" divides the runner\'s median client + server CPU seconds by that peer\'s: on a ' +
      'machine shared with other work it is steadier than the wall-time ratio, and on two busy cores the wall-time ratio tends ' +
      'towards it. "Runner to its last index": the runner builds the plain (non-unique) indexes after "target ready", while ' +
      'Keycloak boots (runner/src/pg/deferred-indexes.ts; keys, unique indexes and foreign keys are restored and verified before ' +
      'it), so its wall time ends before the target holds everything the fd-z0 and pipe peers\' copies hold when they end; this ' +
      'column measures to that point (the "indexes built" line), the comparison of the whole copy. (pgcopydb\'s wall time also ' +
      'includes its VACUUM ANALYZE, which the runner runs after this point.)',
    '',
  );
  if (noisyRuns.length > 0) {
    lines.push(
      `**Noise:** ${noisyRuns.length} of ${allRuns.length} runs were noisy (other work used over a quarter of the cores while they ran; ` +
        'the machine was shared with other work). Their wall times are inflated, and not evenly across contenders: see the "other CPU" ' +
        'column of each cell below.',
      '',
    );
  }

  lines.push('## Data', '');
  lines.push(
    'Generated server-side by `bench/shapes.ts` (keycloak: `bench/generate.ts`), then VACUUM and `CHECKPOINT`, once ' +
      'per shape and size; dropped after its rounds.',
    '',
  );
  for (const shape of [...new Set(report.cells.map((cell) => cell.shape))]) {
    lines.push(`- **${shape}**: ${escapeCell(report.cells.find((cell) => cell.shape === shape)!.shapeLabel)}`);
  }
  lines.push('');
  lines.push(
    '| shape | asked | on disk | tables | rows | large objects | gzip sample ratio | uncompressed dump | generated in |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const c of cells) {
    const g = c.cell.generation;
    const z0 = c.summaries.get('fd-z0');
    lines.push(
      `| ${c.cell.shape} | ${formatBytes(g.targetBytes)} | ${formatBytes(g.databaseBytes)} | ${g.tables} | ${totalRowsOf(g).toLocaleString('en')} | ` +
        `${g.largeObjects.toLocaleString('en')} | ${g.sampleGzipRatio.toFixed(2)} : 1 | ${z0 ? mb(medianOf(z0.ok, (r) => r.dumpBytes)) : '–'} | ${g.seconds} s |`,
    );
  }
  lines.push('');

  lines.push('## Each shape and size, by contender', '');
  lines.push(
    'Medians over the rounds that passed the copy check. CPU is user + system, of the contender\'s own processes (client) and of both ' +
      'PostgreSQL servers (server); "other CPU" is what the rest of the machine used meanwhile (all busy CPU time minus those two and the ' +
      'benchmark\'s own sampling): kernel threads writing back dirty pages, plus any other work competing for the cores (each run waits ' +
      `up to ${QUIET_WAIT_MS / 1000} s for a quiet machine before it starts; "noisy" counts the rounds where other CPU exceeded a quarter of the cores). ` +
      'Peak memory is the largest sum of PSS over the contender\'s process tree at one 20 ms sample, and the largest RSS of a single ' +
      'process (VmHWM). Writes are bytes sent to storage (/proc/<pid>/io), client and servers (the target\'s checkpoint after the run included).',
    '',
  );
  for (const c of cells) {
    lines.push(`### ${cellName(c.cell)} (${formatBytes(c.cell.generation.databaseBytes)} on disk)`, '');
    lines.push(
      '| contender | wall (median) | min – max | steps (median) | client CPU | server CPU | other CPU | peak PSS, tree | largest process RSS | client writes | server writes | dump on disk | vs fastest peer | rounds ok | noisy |',
      '|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const contender of c.cell.contenders) {
      const summary = c.summaries.get(contender.id);
      if (!summary) {
        const reason = contender.unavailable ?? contender.results.find((r) => !r.ok)?.failure ?? 'no result';
        lines.push(`| ${escapeCell(contender.label)} | not measured: ${escapeCell(reason).slice(0, 300)} | | | | | | | | | | | | 0/${contender.results.length} | |`);
        continue;
      }
      const ok = summary.ok;
      const largest = ok.reduce((best, r) => (r.memory.processPeakRssBytes > best.memory.processPeakRssBytes ? r : best));
      const steps = ok[0]!.steps.map((step, i) => `${escapeCell(shortCommand(step.command))} ${stepTime(ok, i)}`);
      lines.push(
        `| ${escapeCell(contender.label)} | ${s(summary.wall)} s | ${s(summary.minWall)} – ${s(summary.maxWall)} s | ${steps.length > 1 ? steps.join(', ') : '–'} | ` +
          `${s(medianOf(ok, (r) => r.clientCpuSeconds))} s | ${s(medianOf(ok, (r) => r.serverCpuSeconds))} s | ` +
          `${s(medianOf(ok, (r) => r.otherCpuSeconds))} s | ` +
          `${mb(Math.max(...ok.map((r) => r.memory.treePeakRssBytes)))} | ` +
          `${mb(largest.memory.processPeakRssBytes)} (${largest.memory.processPeakCommand}) | ` +
          `${mb(medianOf(ok, (r) => r.clientWriteBytes))} | ${mb(medianOf(ok, (r) => r.serverWriteBytes))} | ` +
          `${mb(medianOf(ok, (r) => r.dumpBytes))} | ${c.fastestPeer ? x(summary.wall / c.fastestPeer.wall) : '–'} | ` +
          `${ok.length}/${contender.results.length} | ${ok.filter((r) => isNoisy(r, report.machine)).length} |`,
      );
    }
    const failures = c.cell.contenders.flatMap((contender) =>
      contender.results.filter((r) => !r.ok).map((r) => `- ${contender.label}: ${escapeCell(r.failure ?? '')}`),
    );
    if (failures.length > 0) lines.push('', 'Rounds that failed (their times do not count):', '', ...failures);
    lines.push('');
  }

  const points = scalingPoints(report.cells);
  if (points.length > 1) {
    lines.push(`## Scaling: the runner on the ${points.length > 0 ? report.cells.find((cell) => cell.generation.databaseBytes === points[0]!.databaseBytes)?.shape : ''} shape`, '');
    lines.push('| requested | on disk | wall | seconds per GiB | runner (node) peak RSS | tree peak PSS | client CPU | server CPU |', '|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const point of points) {
      if (!point.result) {
        lines.push(`| ${formatBytes(point.requestedBytes)} | ${mb(point.databaseBytes)} | not measured | | | | | |`);
        continue;
      }
      const r = point.result;
      lines.push(
        `| ${formatBytes(point.requestedBytes)} | ${formatBytes(point.databaseBytes)} | ${s(r.wallSeconds)} s | ` +
          `${s(r.wallSeconds / (point.databaseBytes / 1024 ** 3))} | ${mb(r.memory.peakRssByCommand.node ?? 0)} | ` +
          `${mb(r.memory.treePeakRssBytes)} | ${s(r.clientCpuSeconds)} s | ${s(r.serverCpuSeconds)} s |`,
      );
    }
    lines.push('');
    if (report.chartPath) lines.push(`![wall time vs database size](${report.chartPath})`, '');
  }

  lines.push('## Latency', '');
  if (report.latency.length === 0) lines.push('Not measured in this run (`--quick` or `--no-latency`).', '');
  else {
    lines.push('| what | command | median | mean | min – max | runs | tool |', '|---|---|---:|---:|---:|---:|---|');
    for (const outcome of report.latency) {
      if (!outcome.result) {
        lines.push(`| ${outcome.name} | not measured: ${escapeCell(outcome.unavailable ?? '')} | | | | | |`);
        continue;
      }
      const r = outcome.result;
      lines.push(
        `| ${outcome.name} | \`${escapeCell(r.command)}\` | ${s(r.medianSeconds)} s | ${s(r.meanSeconds)} s | ${s(r.minSeconds)} – ${s(r.maxSeconds)} s | ${r.runs} | ${r.tool} |`,
      );
    }
    lines.push('');
  }

  lines.push('## Targets (issue 13)', '');
  lines.push('| target | goal | measured | result |', '|---|---|---|---|');
  const verdicts: Verdict[] = [];
  for (const c of cells) {
    const target = `Runner total vs fastest peer, ${cellName(c.cell)}`;
    const goal = `≤ ${TARGETS.runnerVsFastestPeer.toFixed(2)} × ${c.fastestPeer ? c.fastestPeer.label : 'the fastest peer'}`;
    if (c.runner && c.fastestPeer) {
      verdicts.push(verdict(target, goal, `${s(c.runner.wall)} s vs ${s(c.fastestPeer.wall)} s = ${x(c.ratio)}`, c.ratio <= TARGETS.runnerVsFastestPeer,
        `${((c.ratio / TARGETS.runnerVsFastestPeer - 1) * 100).toFixed(0)} % over, ${s(c.runner.wall - c.fastestPeer.wall * TARGETS.runnerVsFastestPeer)} s`,
        `${((1 - c.ratio / TARGETS.runnerVsFastestPeer) * 100).toFixed(0)} % under`));
    } else {
      const runnerContender = c.cell.contenders.find((contender) => contender.id === RUNNER_ID);
      verdicts.push({ target, goal, measured: runnerContender?.unavailable ?? (c.runner ? 'no peer measured' : 'the runner produced no passing round'), result: 'not measured' });
    }
  }
  const rssPoints = cells.flatMap((c) => (c.runner ? c.runner.ok.map((r) => r.memory.peakRssByCommand.node ?? 0) : []));
  if (rssPoints.length > 0) {
    const worst = Math.max(...rssPoints);
    verdicts.push(verdict('Runner peak RSS, every shape and size (the node process)', `≤ ${formatBytes(TARGETS.runnerPeakRssBytes)}`,
      `max ${formatBytes(worst)} over ${rssPoints.length} runs`, worst <= TARGETS.runnerPeakRssBytes,
      `${formatBytes(worst - TARGETS.runnerPeakRssBytes)} over`, `${formatBytes(TARGETS.runnerPeakRssBytes - worst)} to spare`));
  }
  for (const outcome of report.latency.filter((o) => o.name !== 'npm run synth')) {
    if (!outcome.result) {
      verdicts.push({ target: outcome.name, goal: `≤ ${TARGETS.latencySeconds} s`, measured: outcome.unavailable ?? '–', result: 'not measured' });
      continue;
    }
    const m = outcome.result.medianSeconds;
    verdicts.push(verdict(outcome.name, `≤ ${TARGETS.latencySeconds} s wall incl. node start-up`, `median ${s(m)} s`,
      m <= TARGETS.latencySeconds, `${s(m - TARGETS.latencySeconds)} s over`, `${s(TARGETS.latencySeconds - m)} s to spare`));
  }
  for (const v of verdicts) lines.push(`| ${escapeCell(v.target)} | ${escapeCell(v.goal)} | ${escapeCell(v.measured)} | ${v.result} |`);
  lines.push('');

  const misses = cells.filter((c) => Number.isFinite(c.ratio) && c.ratio > TARGETS.runnerVsFastestPeer);
  lines.push('## What the runner does more, and where the misses come from', '');
  // Runs measured before the backup had the proof from the transaction ids have no row-by-row cost recorded.
  const proofFromIds = cells.some((c) => c.cell.checksumPass?.changeCheckRowByRowCpuSeconds !== undefined);
  lines.push(...explainRunnerWork(proofFromIds), '');
  lines.push(...renderVerificationFloor(cells));
  if (misses.length > 0) {
    lines.push('Measured, per missed cell (median round; runner steps against the fastest peer\'s):', '');
    for (const c of misses) lines.push(`- ${explainMiss(c, report)}`);
    lines.push('');
  }
  const otherMisses = verdicts.filter((v) => !v.target.startsWith('Runner total') && v.result.startsWith('**miss**'));
  const mostlyNoisy = allRuns.length > 0 && noisyRuns.length * 2 > allRuns.length;
  for (const v of otherMisses) {
    lines.push(
      `- **${v.target}** missed: ${v.measured}.` +
        (mostlyNoisy && !v.target.startsWith('Runner peak RSS')
          ? ` Measured while other work kept the machine busy (${noisyRuns.length} of ${allRuns.length} migration runs of this report ` +
            'were noisy): most of such a short command is node loading the bundle, which waits for a core like everything else; ' +
            're-measure on an idle machine before reading it as a regression.'
          : ''),
    );
  }
  if (otherMisses.length > 0) lines.push('');

  lines.push('## Exact commands', '');
  lines.push(
    'As run for the first cell; the other cells differ only in the source database\'s name (`<shape>_<MiB>mib`). Paths and ports are this ' +
      'run\'s; passwords are passed in the environment (masked in pgcopydb\'s URIs).',
    '',
  );
  for (const contender of report.cells[0]?.contenders ?? []) {
    lines.push(`- ${escapeCell(contender.label)}:`);
    for (const command of contender.commands) lines.push(`  - \`${command}\``);
  }
  for (const outcome of report.latency) if (outcome.result) lines.push(`- ${outcome.name}: \`${outcome.result.command}\``);
  lines.push('');
  return lines.join('\n');
}
/** Other work used more than a quarter of the machine's cores over the run. */
function isNoisy(result: MigrationResult, machine: Readonly<Record<string, string>>): boolean {
  const cores = Number(machine.cores ?? 1);
  return result.otherCpuSeconds > 0.25 * cores * result.wallSeconds;
}

interface Verdict {
  readonly target: string;
  readonly goal: string;
  readonly measured: string;
  readonly result: string;
}

function verdict(target: string, goal: string, measured: string, pass: boolean, missBy: string, passBy: string): Verdict {
  return { target, goal, measured, result: pass ? `pass (${passBy})` : `**miss** (${missBy})` };
}

/** The runner's extra work, as fixed text: what the measured numbers of the misses are made of. */
function explainRunnerWork(proofFromIds: boolean): string[] {
  return [
    'The runner runs the same `pg_dump -Fd -Z0 -jN` / `pg_restore -jN` as the fastest script and adds what makes the migration safe, ' +
      'overlapped where it can be: before the downtime (`checksum-source`, while Keycloak still runs; not in the wall time), a ' +
      'checksum pass over every table and the large objects in a snapshot of its own (runner/src/pg/manifest.ts: one 64-bit hash ' +
      'per column value — integers, booleans, uuids and timestamps by value with their type\'s own hash function, other values by ' +
      'their text, bytea values of 1 KiB or more by their sha256); during the dump, in the dump\'s exported snapshot, the proof ' +
      'that each table is unchanged since (runner/src/pg/early-pass.ts: ' +
      (proofFromIds
        ? 'when no transaction at all ended since that pass, from the transaction ids alone, no row read — the case on this ' +
          'benchmark\'s idle source; otherwise same relfilenode and row count and no row written since, every row\'s xmin read, ' +
          'nothing hashed: the floor table shows both costs), '
        : 'same relfilenode and row count, no row written since — every row\'s xmin is read, nothing hashed; on this ' +
          'benchmark\'s idle source every table passes; this run predates the proof from the transaction ids alone), ') +
      'a checksum of the tables ' +
      'it cannot prove unchanged, and sha256 of each file as pg_dump finishes it; during the restore, a checksum pass of each table as soon as pg_restore reports it loaded ' +
      '(runner/src/pg/verify-during-restore.ts), the large objects\' checksum, then the catalog, sequence and ownership checks, ' +
      'fsyncs and Keycloak hygiene. Backup and restore run in one process (`copy`), as the Argo CD backup Job runs them by ' +
      'default: node starts once, and the restore takes the files\' digests from the backup just taken (run in two processes, ' +
      'as Helm\'s two hook Jobs do — `--contenders runner-two-jobs` — node starts twice and the restore digests every file again ' +
      'while pg_restore reads them: a backup that sat on its volume between two processes must be proven unaltered). ' +
      'The restore leaves the plain (non-unique) indexes out of pg_restore (runner/src/pg/deferred-indexes.ts; keys, unique ' +
      'indexes and foreign keys stay in, and are verified with the rest). Then it logs "target ready" — Keycloak may start — ' +
      'builds those indexes from the same dump and ANALYZEs every restored table on N sessions while Keycloak boots (the ' +
      'Helm hooks do the same after scaling Keycloak back; under Argo CD\'s default the GitOps tool starts Keycloak after the ' +
      'Job, which then builds every index in the restore): the runner\'s wall time ends at "target ready", the index builds and ' +
      'the ANALYZE after it show in the steps column ("while Keycloak starts") and the headline\'s "to its last index" column, ' +
      'and their CPU, memory and writes stay in the other columns. Overlapping hides the waiting but not the CPU: on two cores every ' +
      'extra pass takes cycles from pg_dump and pg_restore, so the runner\'s wall time is roughly the peer\'s plus half its extra CPU.',
    '',
    'Where the extra CPU goes, by shape (measured separately on this machine, as the sessions\' own CPU time from /proc/<pid>/stat; JIT compilation of the checksum expression was measured too and saves nothing at these sizes):',
    '',
    '- **wide**: the checksum, ~0.1–0.2 µs per column value on each server (0.43–0.7 s per 120,000 rows of 34 columns, by run); ANALYZE (about ' +
      '1 s of CPU per table of 34 columns whatever its size) now runs after "target ready". Neither peer but pgcopydb runs ANALYZE.',
    '- **keycloak**: fixed costs of 85 tables and the node start-up (a checksum query per table, the catalog ' +
      'inventory on both sides, `pg_restore --list` once (the backup records its listing for the restore), ~0.15 s for node) weigh most at 0.2 GiB; ' +
      'at 1 GiB the checksums of the event and session tables.',
    '- **lob**: bytes hashed twice: sha256 of every dump file in the backup, and the contents\' ' +
      'checksum on each server (documents by sha256, large objects by sha256, split over the sessions after the restore); ' +
      'the large objects are restored one by one in one pg_restore item, the long pole of every contender.',
    '',
    'The last change to the runner: the plain (non-unique) indexes leave the downtime. On Keycloak-shaped data their builds were most of ' +
      'pg_restore\'s time after the data load — keycloak 1 GiB, `pg_restore -j2` alone on two cores: 9.6 s with every index, 5.4 s ' +
      'without the plain ones, 4.2 s to build them afterwards from the same dump (`pg_restore --use-list` of their items) — while a ' +
      'plain index over columns only makes queries faster: it decides no write but for btree\'s ~2.7 kB entry limit. So the ' +
      'restore leaves out every INDEX item that is a single non-unique `CREATE INDEX` over columns (no expression, no predicate) ' +
      'nothing else in the dump refers to (no comment on it, not a partitioned index or one attached to it), the verification allows exactly those missing (any other difference ' +
      'still fails it), and the indexes are built after "target ready" while Keycloak boots, with synchronous commits, then the ' +
      'ANALYZE. A run killed in the builds resumes at the complete step and builds what is missing (test/runner-crash-inside.test.ts). ' +
      'Measured alone before this run (keycloak 1 GiB, 3 alternating rounds of the builds with and without it, start → "target ' +
      'ready"): 14.1 / 17.5 / 14.5 → 10.8 / 15.2 / 11.4 s, median −21 %. At 0.2 GiB it gains less (the builds are a smaller part ' +
      'there, and the fixed costs and the verification pass the same), and on wide and lob the only plain indexes are one ' +
      'timestamp index per wide table and one on 3,000 documents. The round before: ' +
      'backup and restore in one process, as the Argo CD backup Job has run them since the last round (it ' +
      'restores right after its backup; there is no restore Job), so the restore takes the dump files\' digests from the ' +
      'backup this process just took instead of reading and hashing every file again (only for the manifest that backup ' +
      'wrote, and when pg_restore starts within a minute of it), and one node start and one connection ' +
      'set-up fewer come before it (runner/src/pg/restore.ts `recomputeDigests`; the low-level `copy` command, which this ' +
      'benchmark\'s runner now runs; a restore by another process — Helm\'s restore Job, a retried Job — digests every file as ' +
      'before). Measured against the two-process layout (`--contenders runner,runner-two-jobs`, runs apart from this one, ' +
      'alternating rounds, medians): 0.2 GiB, 5 rounds per shape: keycloak 5.36 → 4.74 s, lob 7.47 → 6.82 s, wide 5.56 → ' +
      '5.54 s (within its spread, 4.89–6.64 s); client CPU 2.84 → 2.20, 3.67 → 3.15 and 2.51 → 2.06 s; keycloak 1 GiB, 3 ' +
      'rounds beside fd-z0: 16.0 → 16.8 s, within both spreads (15.8–19.3 and 15.2–20.9 s; fd-z0 15.0 s, 14.5–16.2 s), client ' +
      'CPU 5.80 → 5.03 s: the CPU it saves shows, the wall time at 1 GiB drowns in this machine\'s noise. The hooks\' backup Job also ' +
      'checks its own dump as the low-level `backup` does — presence, sizes and toc.dat\'s digest against the digests and the ' +
      'TOC listing the dump took from these files — instead of digesting every file and running `pg_restore --list` again in ' +
      'the downtime (a resumed run still does both, and so does one that deletes the legacy database next): keycloak 0.2 GiB 156 → 9 ms, about 1 s per GiB of dump (the benchmark, ' +
      'which runs the low-level commands, never paid it). ' +
      'Two rounds before, on the fixed costs around pg_dump and pg_restore (each measured alone, alternating the builds with and ' +
      'without it, medians of 5 on the 0.2 GiB databases; the whole runs above differ from the last round\'s by more than these ' +
      'gains, in both directions: the machine\'s speed varies through the day): (1) The checksum the restore\'s verifier is still ' +
      'taking when pg_restore ends is handed over to the verification after it (runner/src/pg/verify-during-restore.ts ' +
      '`handOver`), which reads the catalog and scans the other tables meanwhile instead of waiting for it and then connecting; ' +
      'its further sessions connect alongside the main one; the large objects\' checksum during the restore runs on `--jobs` ' +
      'sessions. pg_restore\'s end → "target ready": wide 291 → 268 ms, keycloak 286 → 262 ms; lob no clearer than its spread ' +
      '(465–1074 → 290–931 ms, whole restore 3.71 → 3.66 s): its last table\'s checksum (the documents, ~0.65 s) can only start ' +
      'when pg_restore has loaded them, and the large objects\' checksum then runs beside it. (2) The backup records ' +
      'pg_restore\'s listing of the dump in the manifest (listed while toc.dat is digested), and the restore uses it instead of ' +
      'running `pg_restore --list` again, after checking toc.dat\'s digest before pg_restore starts: start → pg_restore 297 → ' +
      '286 ms, pg_dump\'s end → backup verified 80 → 73 ms. (3) The hook Jobs load 2.5 MB of the Kubernetes client instead of ' +
      '5.4 MB (a namespace import for `--version` kept all of client-node in the bundle): 0.24 → 0.17 s per Job here, which ' +
      'the latency rows above include. (4) The waits in the downtime that the benchmark does not run (Keycloak\'s database gate, ' +
      'the restore Job waiting for the new primary, the prepare Job waiting for Keycloak\'s pods to go) poll every 0.5 s instead ' +
      'of 2, 2 and 1 s. Before it, each index was built in pg_restore\'s sessions without parallel workers ' +
      '(`max_parallel_maintenance_workers=0`: wide 0.2 GiB, pg_restore -j2 alone, 2.3–2.4 → 1.9 s), a setting the peers could ' +
      'use as well; earlier still, the source\'s checksum pass moved before the downtime (`checksum-source`, then the dump\'s proof ' +
      'that each table is unchanged since: runner/src/pg/early-pass.ts).',
    '',
    'What would close the rest, in order of what it would save (the floor below shows why nothing closes all of it on two ' +
      'shared cores while the target\'s pass stays): (1) here both servers share the two cores, so the source\'s change check takes cycles from pg_dump and the ' +
      'target\'s pass from pg_restore; in a cluster they run in different pods, usually on different nodes; (2) a copy cheaper than the ' +
      'peers\': the table data in binary COPY instead of pg_dump\'s text (server CPU of COPY alone, wide tables at 0.2 GiB: out ' +
      '1.15 → 0.94 s, into a table without indexes 2.00 → 1.28 s; keycloak\'s text columns gain 0.13 s), with pg_dump and ' +
      'pg_restore kept for the schema and the large objects and a fallback to text for types whose binary form may differ ' +
      'between majors. Measured end to end without verification against `pg_dump -Fd -j2 -Z0` + `pg_restore -j2` ' +
      '(bench/binary-copy-experiment.ts, 2026-12-05; medians of 5 alternating rounds at 0.2 GiB, three runs, and of 3 at 1 GiB, two runs): ' +
      'the dump (`pg_dump --exclude-table-data` beside two sessions copying each table out `(FORMAT binary)` in its exported ' +
      'snapshot) is faster (keycloak 0.2 GiB 0.93–0.99 → 0.73–0.77 s; lob least, its large objects dumped as before); the restore has to split pg_restore into its sections around the loader ' +
      '(`--section=pre-data`; two sessions loading each table `(FORMAT binary, FREEZE)` in the transaction that truncates it and ' +
      'building its indexes and keys right after, as pg_restore -j2 would, beside pg_restore of the large objects; the foreign ' +
      'keys by pg_restore -j2 at the end). Whole copy: wide −16 % / −17 % / −15 % at 0.2 GiB and −8 % (split-binary) / ' +
      '−37 % at 1 GiB; lob −9 % / +1 % / −21 % and −16 % (split-binary) / −12 %; keycloak +4 % / +3 % / +2 % and −1 % / +6 % (the ' +
      'runs but the third at 0.2 GiB left the sequences\' values out, a few setval calls; it restored them): Keycloak\'s columns are ' +
      'mostly varchar, whose binary form is its text, and its 85 tables pay the split\'s extra pg_restore runs and the ' +
      'per-table transactions (without the per-table index builds: +9 % at 0.2 GiB, from −10 % to +17 % in three runs at 1 GiB). So the binary data path would narrow wide and lob ' +
      'and leave keycloak where it is (the plain indexes after "target ready" brought keycloak under the peer from 1 GiB on ' +
      'instead). Not built (a data ' +
      'path of the runner\'s own beside pg_restore, with its own crash, resume and cross-major tests, for no gain on Keycloak); ' +
      '(3) the runner\'s own COPY FREEZE ' +
      'loader of pg_dump\'s text files: measured, it would spare only the hint bits the target\'s pass sets (~0.4 µs per row, ' +
      'about a tenth of that pass on the wide tables) and the second read of each file (not its sha256) — less than it was expected to; ' +
      '(4) the foreign keys added `NOT VALID` in the restore (enforced for every new write at once) and validated after "target ' +
      'ready" (a lock that does not block writes), as the plain indexes are built: their validation was 0.64 s of the ~17 s that ' +
      'pg_restore\'s two sessions spent on keycloak 1 GiB, so at most ~0.3 s of wall time there — not built; (5) under Argo CD\'s ' +
      'default (Keycloak started by the GitOps tool after the hook Job) the plain indexes are still built in the restore: a PostSync ' +
      'Job building them after Keycloak is healthy would bring the same gain there.',
    '',
    'What nothing measured closes by itself on this machine: on wide 0.2 GiB the target\'s pass alone puts the floor 15–25 % ' +
      'above `pg_dump | psql` (runs so far; the floor table of bench/RESULTS.md gives the last run\'s), so the target needs a ' +
      'copy that much cheaper than that pipe, and the binary data path measured above saves 15–17 % of the -Fd peer\'s time ' +
      'there, only about 3–10 % under the pipe in the runs so far, before anything else the runner does. On lob the floor ' +
      'counts the target\'s pass at what a pass over the source costs, while over freshly restored TOAST and large-object ' +
      'pages it costs about 3 × that (lob 4 GiB, below), and only part of that is the hint bits a COPY FREEZE load would ' +
      'spare (measured below): the binary data path is what is left there (−9 to −21 % against the -Fd peer, measured ' +
      'above), not enough by itself for the misses of 30 % and more that lob shows. On ' +
      'keycloak 0.2 GiB, which misses by less, the levers left are each worth 1–3 % (below and (4)). Where ' +
      'the downtime goes, measured apart from this run on keycloak 0.2 GiB (two servers as here, CPU of every process from ' +
      '/proc sampled every 40 ms, from the start to "target ready", alternating with `pg_dump -Fd -j2 -Z0` + `pg_restore -j2`): ' +
      'the runner used 5.6 s of CPU against the peer\'s 4.6 s (target backends 3.0 against 3.4 s — the pass is paid back ' +
      'by the plain indexes built after "target ready" — source backends 0.85 against 0.68 s, pg_dump and pg_restore 0.7 ' +
      'against 0.55 s, and the runner\'s node process 1.1 s, now the largest extra: its start and module loading, sha256 of ' +
      'every file, garbage collection, the files\' sizes, the protocol), with the two cores 1.64 busy on average. Its backup ' +
      'alone took 1.37–1.57 s against pg_dump\'s 0.88–1.00 s (4 alternating rounds): ~0.25 s to reach pg_dump (node ~0.15 s, ' +
      'the snapshot session and checks), pg_dump ~0.15 s slower beside the digests and the change check, ~0.09 s after it ' +
      '(the TOC listing, the last digests, the manifest written durably). On lob at 4 GiB (measured the same way, to "target ' +
      'ready"): 124 s of CPU against the peer\'s 85 s — target backends 70 against 52 s, so the target\'s pass costs ~18 s ' +
      'there against 5.7 s for a pass over the source (RESULTS-4GiB.md\'s floor table, on pages read before): the first read of ' +
      'freshly restored TOAST and large-object pages costs about twice a later one (a large-object checksum right after a ' +
      'restore: 0.32 s on 0.2 GiB, 0.08–0.15 s on later passes; the documents\' checksum at 1 GiB, one session: 1.41–1.50 s ' +
      'first, 0.75–0.80 s second), and loading the documents with `COPY ... FREEZE` in the transaction that truncates them ' +
      '(no hint bits left to set and write back) took only 0.1–0.25 s of that: 1.16–1.38 s first, 0.65–0.76 s second (2 ' +
      'rounds; the cause of the rest not measured); node ' +
      '10.9 s (reading and hashing 5.3 GiB of dump files 6.6 s, the sizes of its 6,172 files 1.8 s); pg_dump and pg_restore ' +
      '6.7 s more than the peer\'s, beside the rest on the same two cores.',
    '',
    'Measured this round and not taken (keycloak and lob 0.2 GiB, with the peers\' own commands where the runner\'s would ' +
      'need new code first, alternating rounds): (a) the schema restored while pg_dump still dumps the data (pg_dump 15 ' +
      'writes and closes toc.dat before the first table\'s data, so `pg_restore --section=pre-data` can read it then): 0.22 s ' +
      'alone, but 0.9 s beside the dump, which itself grew from 0.85–1.04 to 1.30–1.76 s; whole copy, medians of 4, ' +
      '4.17 → 4.13 s: on two busy cores it moves the work. (b) A large-object loader of the runner\'s own (`lo_put` of each ' +
      'whole file, 1 MiB pieces, one transaction per object, so that each could be checksummed as soon as it commits instead ' +
      'of after pg_restore\'s single BLOBS transaction): 3.12 s on one session and 2.39 s on two against 1.89–1.91 s for ' +
      'pg_restore\'s BLOBS item — the server\'s insert of every 2 KB page into pg_largeobject is the cost, not pg_restore\'s ' +
      '4 KB `lo_write` calls; the lob tail after pg_restore is mostly the large objects\' first read (above). (c) The dump\'s ' +
      'write-out beside the restore instead of before ' +
      'it: pg_dump spends 0.22 s (keycloak) and 0.34 s (lob) after its last item syncing its files; with `--no-sync` and the ' +
      'sync beside pg_restore, medians of 4 went 3712 → 3617 ms on keycloak (−2.6 %), and on lob 5.10 / 4.28 → 4.09 / 4.21 s ' +
      '(2 rounds). The backup is complete only once durable (its manifest is written after the sync) and the hooks record ' +
      'BackedUp, BackupVerified and LegacyProtected before the restore starts, so taking this means running the restore ' +
      'beside the end of backup-phase — the most promising step left for small databases, not built.',
    '',
    'The fixed costs of one process against two (the round before; keycloak 0.2 GiB, 5 runs of each layout, log timestamps from ' +
      'the first process\'s start, medians; this machine was slower than in the run above): the backup\'s end → the restore\'s ' +
      'pg_restore 119 ms against 344 ms (a node exit and start, the restore\'s connection and checks), pg_restore with the ' +
      'restore\'s checks beside it 2.87 against 2.95 s (no second sha256 of the dump), start → "target ready" 4.79 against ' +
      '5.10 s (−6 %). The round before, measured the same way on keycloak 0.2 GiB: node starts in ' +
      '~0.15 s per Job; the backup reaches pg_dump after ~0.24 s and verifies its dump ~0.07 s after pg_dump\'s end, the ' +
      'restore reaches pg_restore after ~0.29 s (two rounds ago 0.48 s), and after pg_restore\'s end "target ready" comes ' +
      '~0.26 s later (pg_restore\'s own exit ~0.03 s, the catalog, sequence and ownership checks ~0.15 s, the hygiene ~0.04 s). The runner\'s node processes also take CPU in proportion to the dump: ' +
      'on keycloak 1 GiB (a 644 MiB dump) 2.0 s in the backup and 2.7 s in the restore (sha256 of every file, its reads, the ' +
      'files\' sizes, pg_restore\'s progress lines), next to 1.5 s for pg_dump and 0.9 s for pg_restore themselves. ' +
      'This benchmark runs the bundle with the host\'s Node 20; the image runs it with Node 24 and V8\'s compiled code of ' +
      'the bundle made in the build (runner/Dockerfile, Node\'s compile cache), which takes a hook command from its start to ' +
      'its first decision in ~240 ms instead of ~285 ms (measured apart from this run: 11 alternating starts of one bundle in ' +
      'the image with and without it).',
    '',
    'Measured and not taken, a restore by another process trusting the table checksums instead of re-digesting the data ' +
      'files (~1 s of CPU per GiB of dump): the sha256 chain from the state ConfigMap (manifest digest) to every file is what ' +
      'stops a backup altered on its volume between two processes; the table checksums are not collision-resistant, so someone ' +
      'able to write the volume could craft rows that pass them. In one process the chain is the digests the backup took from ' +
      'these files moments before.',
    '',
    'Measured and not taken, per-type hashes beyond v4\'s (one 118,000-row wide table, ~390 ms per pass): jsonb by ' +
      '`jsonb_hash_extended` halves that column\'s cost (~30 ms) but hashes 1.0 and 1.00 inside a document alike; numeric by ' +
      '`hash_numeric_extended` plus its scale costs as much as its text; dates through `timestamp_hash_extended` save ~8 ms ' +
      'per column but fail on dates past the year 294276. Together under a tenth of a pass on the wide shape, nothing on ' +
      'keycloak\'s, for a weaker check: not taken.',
    '',
    'Measured and not taken: verifying the target by the sha256 of its `COPY ... TO STDOUT` against the dump files (which would ' +
      'spare the source its checksum pass, pg_dump having read every row already): the target\'s COPY out takes more server CPU ' +
      'than the checksum it would replace (1.2–1.4 s against 0.8–0.95 s for 128 MB of a 6-column table) and the client\'s ' +
      'hashing comes on top, and its bytes differ across majors for floats (PostgreSQL 12 changed their text form).',
    '',
    'Measured and not taken: checksumming each large table during the restore in block ranges (TID range scans, PostgreSQL ' +
      '14+, about 16 MiB each; the checksum is a sum over rows, so the ranges add up to the same value), so that when pg_restore ' +
      'ends a second session could take the ranges left of the table in progress instead of one session finishing it alone. ' +
      'Restore to "target ready", 0.2 GiB, 5 alternating rounds, medians: wide 2.71 → 2.98 s, keycloak 2.85 → 3.04 s, lob ' +
      '3.73 → 3.86 s (its tail after pg_restore 757 → 869 ms) — slower everywhere. The ranges\' checksums themselves took ' +
      'longer during the restore (wide: the first table 332 → 484 ms), while on a table already read 16 ranges cost only 3–10 % ' +
      'more than one scan: most likely because a TID range scan is begun without the bulk-read ring buffer that a ' +
      'whole-table scan larger than a quarter of shared_buffers uses (tableam.h: `table_beginscan_tidrange` sets no SO_ALLOW_STRAT), so it evicts pg_restore\'s pages. And the cores are seldom idle when pg_restore ends: on lob the ' +
      'large objects\' checksum runs on two sessions then.',
    '',
    'Measured and not taken: making the dump durable while pg_dump writes it. pg_dump syncs every file after its last table, ' +
      'and with memory to spare the kernel has written nothing back by then (dirty pages wait for 10 % of memory or 30 s): on ' +
      '0.2 GiB its exit came 0.18–0.34 s after its last item, against 0.03–0.04 s with `--no-sync` (3 runs per shape). The ' +
      'runner ran pg_dump with `--no-sync` and fdatasynced each file itself as pg_dump reported it finished, the files still ' +
      'growing every 0.25 s, and the rest after pg_dump\'s exit, 4 at a time. The write-out moved rather than vanished: ' +
      '0.10–0.22 s were still left after the exit (the last table\'s file, and hundreds of large-object files written at the ' +
      'end), and the writes during the dump slowed it. Backup medians over 8–16 alternating rounds went from −0.16 s to ' +
      '+0.22 s per shape between runs (lob, 16 rounds: 2.60 → 2.58 s), within the rounds\' own spread of ±0.3 s: not taken ' +
      'for a gain no run could separate from the noise.',
    '',
    'Measured and not taken: opening the target\'s sessions of the verification, the ownership check and the hygiene at the ' +
      'restore\'s start, to be taken once pg_restore ends (~18 ms per connection here: TCP, SCRAM, the session settings). ' +
      'From "restore complete" to "target ready" (6 alternating rounds, medians): keycloak 185 → 139 ms, wide 169 → 105 ms, ' +
      'lob 582 → 552 ms; but the restore\'s start to "restoring" grew by as much (266 → 351, 247 → 294, 297 → 336 ms: ' +
      'their authentication competes with the start\'s own work). Opened once pg_restore runs, they could spare at most the ' +
      'tail\'s ~50 ms, about 1 % of the wall time, and a connection that idled through a long restore can be dropped by the ' +
      'network in between.',
  ];
}

/** One missed cell: the runner's steps and CPU against the fastest peer's. */
function explainMiss(c: CellSummary, report: BenchReport): string {
  const runner = c.runner!;
  const peer = c.fastestPeer!;
  const floor = verificationFloor(c);
  const stepsOf = (summary: Summary): string =>
    summary.ok[0]!.steps.map((step, i) => `${shortCommand(step.command)} ${stepTime(summary.ok, i)}`).join(' + ');
  const cpu = (summary: Summary): string =>
    `client CPU ${s(medianOf(summary.ok, (r) => r.clientCpuSeconds))} s, server CPU ${s(medianOf(summary.ok, (r) => r.serverCpuSeconds))} s`;
  return (
    `**${cellName(c.cell)}**: runner ${s(runner.wall)} s (${stepsOf(runner)}; ${cpu(runner)}) vs ${escapeCell(peer.label)} ` +
    `${s(peer.wall)} s (${stepsOf(peer)}; ${cpu(peer)}) on ${report.machine.cores ?? '?'} cores: ${x(c.ratio)}, ` +
    `${s(runner.wall - peer.wall)} s over` +
    (floor
      ? floor.changeCheckCpu === undefined
        ? `; two verification passes alone (${s(floor.passCpu)} s of CPU each) put the floor at ${x(floor.ratio)}, ` +
          `the rest (${x(runner.wall / floor.wall)} of the floor) is what the runner adds besides them.`
        : `; the target's pass (${s(floor.passCpu)} s of CPU) and the source's change check (${s(floor.changeCheckCpu)} s) alone ` +
          `put the floor at ${x(floor.ratio)} (${x(floor.bothPassesRatio)} with both passes in the downtime), the rest ` +
          `(${x(runner.wall / floor.wall)} of the floor) is what the runner adds besides them.`
      : '.')
  );
}

/** The table of {@link verificationFloor} per cell, with what it means for the target. */
function renderVerificationFloor(cells: readonly CellSummary[]): string[] {
  const floors = cells.map((c) => ({ c, floor: verificationFloor(c) })).filter((entry) => entry.floor !== undefined);
  if (floors.length === 0) return [];
  const early = floors.some(({ floor }) => floor!.changeCheckCpu !== undefined);
  const lines = ['### The floor the verification sets', ''];
  lines.push(
    'A verification pass is the runner\'s own statistics collection (runner/src/pg/manifest.ts `collectDatabaseStats`: every ' +
      'table\'s checksum, the large objects\' checksum, sequences, the catalog inventory) over the source database, measured alone ' +
      'on one session once per cell, before the rounds (bench/checksum-pass.ts; the backend\'s CPU time, the cheaper of two runs). ' +
      'No peer makes it. The runner makes it on the target during the restore (there on pages whose hint bits are not set yet: ' +
      '~0.4 µs more per row) and on the source — ' +
      (early
        ? 'now before the downtime, leaving in it only the change check (the proof that each table is unchanged since, ' +
          'bench/checksum-pass.ts `measureChangeCheck`: the runner\'s own early-pass.ts on a fresh session, as in the backup). ' +
          (floors.some(({ floor }) => floor!.rowByRow !== undefined)
            ? 'On this benchmark\'s idle source no transaction ends between `checksum-source` and the backup, so the backup proves ' +
              'every table unchanged from the transaction ids alone and reads no row ("change check"); a source where anything was ' +
              'written meanwhile — a Keycloak still writing until it stops — reads every table\'s rows instead ("after a write", ' +
              'measured after one committed transaction that changed no row), and its floor is the column "floor, after a write". '
            : '')
        : 'in this run inside the downtime, during the dump. ') +
      'Had the runner done nothing but the fastest peer\'s work plus its checksum work in the downtime, keeping the cores as ' +
      'busy as that peer did, its wall time would be the floor: peer wall × (1 + (pass CPU + change check CPU) ÷ peer CPU) ' +
      '(with both passes in the downtime: 1 + 2 × pass CPU ÷ peer CPU, the column before). A ratio of 1.00 × needs a pass that ' +
      'costs nothing, or a copy cheaper than the peer\'s by a pass; "runner ÷ floor" is what the runner adds besides (node ' +
      'start-ups and file digests, the steps that do not overlap, the cores left idle between them).',
    '',
    '| shape | size on disk | fastest peer | its wall | its CPU | cores it kept busy | one pass: CPU | change check: CPU | change check after a write: CPU | floor, both passes in the downtime | floor, source pass before it | floor, after a write | runner ÷ peer | runner ÷ floor |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const { c, floor } of floors) {
    const f = floor!;
    const check = f.changeCheckCpu;
    lines.push(
      `| ${c.cell.shape} | ${formatBytes(c.cell.generation.databaseBytes)} | ${escapeCell(c.fastestPeer!.label)} | ${s(c.fastestPeer!.wall)} s | ` +
        `${s(f.peerCpu)} s | ${f.peerCores.toFixed(2)} | ${s(f.passCpu)} s | ${check === undefined ? '–' : `${s(check)} s`} | ` +
        `${f.rowByRow ? `${s(f.rowByRow.cpu)} s` : '–'} | ` +
        `${x(f.bothPassesRatio)} | ${check === undefined ? '–' : x(f.ratio)} | ${f.rowByRow ? x(f.rowByRow.ratio) : '–'} | ` +
        `${c.runner ? x(c.ratio) : '–'} | ${c.runner ? x(c.runner.wall / f.wall) : '–'} |`,
    );
  }
  lines.push('');
  return lines;
}

/** Median wall time of step `index`, and the median of what it ran after the downtime ended (not in the wall). */
function stepTime(results: readonly MigrationResult[], index: number): string {
  const wall = `${s(medianOf(results, (r) => r.steps[index]?.wallSeconds ?? Number.NaN))} s`;
  if (results.every((r) => r.steps[index]?.beforeDowntime)) return `${wall} (before the downtime, not in the wall)`;
  if (results.every((r) => r.steps[index]?.afterDowntimeSeconds === undefined)) return wall;
  const after = s(medianOf(results, (r) => r.steps[index]?.afterDowntimeSeconds ?? Number.NaN));
  const indexes = results.every((r) => (r.steps[index]?.completeAfterDowntimeSeconds ?? 0) > 0)
    ? `: the plain indexes ${s(medianOf(results, (r) => r.steps[index]!.completeAfterDowntimeSeconds!))} s, then ANALYZE`
    : '';
  return `${wall} (then ${after} s more while Keycloak starts${indexes})`;
}

function shortCommand(command: string): string {
  const words = command.split(' ').filter((word) => !/^[A-Z_]+=/.test(word));
  const tool = (words[0] ?? '').split('/').pop() ?? '';
  if (tool === 'node') return `runner ${words[2] ?? ''}`;
  if (tool === 'bash') return 'pg_dump | psql';
  return `${tool} ${words[1] ?? ''}`.trim();
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}
