/**
 * Resource accounting for a migration run, from /proc (Linux only):
 *
 * - client CPU and bytes written: deltas of this process's `cutime`/`cstime` (/proc/self/stat)
 *   and `write_bytes` (/proc/self/io). The kernel adds a child's totals, including those of every
 *   descendant it waited for, to its parent when the parent waits for it, so after the last
 *   spawned process has exited these deltas cover the whole client process tree exactly (at
 *   10 ms CPU resolution), whatever the tools fork.
 * - server CPU and bytes written: the same sums over each PostgreSQL server's process tree
 *   (postmaster and live backends, plus what the postmaster collected from exited backends).
 * - peak memory: sampled every {@link SAMPLE_INTERVAL_MS} over the live client process tree, as the
 *   largest sum of PSS at one instant (every 5th sample) (proportional set size: pages shared by forked workers, as
 *   pg_dump -j and pgcopydb fork them, count once in total instead of once per process), and the
 *   largest VmHWM (the kernel's own RSS high-water mark) of any single process, so a short spike
 *   in one process between samples is not lost.
 */
import { readFileSync, readdirSync } from 'node:fs';

/**
 * Both servers run with PostgreSQL's own defaults for durability (the test harness turns fsync
 * off for speed; a migration target in production has it on), so restore costs are real.
 */
export const SERVER_SETTINGS: Readonly<Record<string, string>> = {
  fsync: 'on',
  synchronous_commit: 'on',
  full_page_writes: 'on',
  shared_buffers: '128MB',
  max_wal_size: '1GB',
  max_connections: '100',
};

export const SAMPLE_INTERVAL_MS = 20;
const PSS_EVERY_NTH_SAMPLE = 5;

/** Kernel clock ticks per second (USER_HZ): 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

export interface ProcessTotals {
  /** user + system CPU seconds, own and of waited-for descendants. */
  readonly cpuSeconds: number;
  /** Bytes sent to the storage layer, own and of waited-for descendants. */
  readonly writeBytes: number;
}

/** CPU and write totals of one process including the descendants it has waited for. */
export function processTotals(pid: number | 'self'): ProcessTotals {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name (which may contain spaces): state is field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = [11, 12, 13, 14].reduce((sum, field) => sum + Number(fields[field]), 0); // utime stime cutime cstime
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const writeBytes = Number(/^write_bytes:\s*(\d+)/m.exec(io)?.[1] ?? 0);
  return { cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND, writeBytes };
}

/**
 * CPU and write totals of this process's waited-for children only (its own work excluded), i.e.
 * of every client tool the benchmark has spawned and reaped so far.
 */
export function reapedChildrenTotals(): ProcessTotals {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[13]) + Number(fields[14]); // cutime cstime
  // write_bytes has no children-only counterpart; the benchmark process itself writes nothing
  // while a contender runs (its database clients only use sockets), so the delta is the children's.
  return { cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND, writeBytes: processTotals('self').writeBytes };
}

/** Direct children of `pid` (over all of its threads). */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return children;
  }
  for (const task of tasks) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text) for (const child of text.split(' ')) children.push(Number(child));
    } catch {
      // The thread or the process ended while we looked.
    }
  }
  return children;
}

/** `pid` and all of its live descendants. */
export function processTree(pid: number): number[] {
  const tree = [pid];
  for (let i = 0; i < tree.length; i += 1) tree.push(...childrenOf(tree[i]!));
  return tree;
}

/**
 * CPU and write totals of a server's whole process tree. A backend that exits between two calls
 * moves its totals into the postmaster's, so differences between two calls are exact.
 */
export function treeTotals(rootPid: number): ProcessTotals {
  let cpuSeconds = 0;
  let writeBytes = 0;
  for (const pid of processTree(rootPid)) {
    try {
      const totals = processTotals(pid);
      cpuSeconds += totals.cpuSeconds;
      writeBytes += totals.writeBytes;
    } catch {
      // Exited between listing and reading: its totals are in its parent by now.
    }
  }
  return { cpuSeconds, writeBytes };
}

export interface MemoryPeak {
  /** Largest sum of PSS over the client process tree at one sample. */
  readonly treePeakRssBytes: number;
  /** Largest VmHWM of any single process, and its command name. */
  readonly processPeakRssBytes: number;
  readonly processPeakCommand: string;
  /** Largest VmHWM per command name (`node`, `pg_dump`, `pg_restore`, `psql`, `pgcopydb`). */
  readonly peakRssByCommand: Record<string, number>;
}

/** Samples the memory of the processes `rootPid` starts from now on, and their descendants, until stopped. */
export class MemorySampler {
  private treePeak = 0;
  private samples = 0;
  private readonly byCommand = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  /** Descendants alive before the contender started (tsx's esbuild service): not the contender's. */
  private readonly preexisting: Set<number>;

  constructor(private readonly rootPid: number = process.pid) {
    this.preexisting = new Set(processTree(rootPid));
    this.timer = setInterval(() => this.sample(), SAMPLE_INTERVAL_MS);
    this.timer.unref();
  }

  sample(): void {
    this.samples += 1;
    // PSS needs a page-table walk per process (smaps_rollup): every 5th sample keeps the
    // benchmark's own CPU use low while node's 150 MiB are being walked; VmHWM catches the peaks.
    const withPss = this.samples % PSS_EVERY_NTH_SAMPLE === 1;
    let sum = 0;
    for (const pid of processTree(this.rootPid)) {
      if (this.preexisting.has(pid)) continue;
      let status: string;
      try {
        status = readFileSync(`/proc/${pid}/status`, 'utf8');
      } catch {
        continue;
      }
      const hwm = kib(status, 'VmHWM');
      const command = /^Name:\s*(.*)$/m.exec(status)?.[1] ?? '?';
      if (withPss) sum += proportionalSetSize(pid);
      if (hwm > (this.byCommand.get(command) ?? 0)) this.byCommand.set(command, hwm);
    }
    if (sum > this.treePeak) this.treePeak = sum;
  }

  stop(): MemoryPeak {
    clearInterval(this.timer);
    let processPeakRssBytes = 0;
    let processPeakCommand = '-';
    for (const [command, bytes] of this.byCommand) {
      if (bytes > processPeakRssBytes) {
        processPeakRssBytes = bytes;
        processPeakCommand = command;
      }
    }
    return {
      treePeakRssBytes: this.treePeak,
      processPeakRssBytes,
      processPeakCommand,
      peakRssByCommand: Object.fromEntries(this.byCommand),
    };
  }
}

/** PSS of a process from smaps_rollup (0 if it ended meanwhile). */
function proportionalSetSize(pid: number): number {
  try {
    return kib(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss');
  } catch {
    return 0;
  }
}

function kib(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/**
 * CPU seconds all processes on the machine spent busy so far (/proc/stat): subtracting what the
 * contender and the servers used gives the load other work put on the machine during a run.
 */
export function machineBusySeconds(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
  const busy = fields[0]! + fields[1]! + fields[2]! + fields[5]! + fields[6]! + fields[7]!;
  return busy / CLOCK_TICKS_PER_SECOND;
}

/**
 * Waits until the machine has been quiet for a second (less than `maxBusyCores` of CPU used, e.g.
 * by other jobs on a shared machine), at most `timeoutMs`; returns the seconds waited and whether
 * it became quiet. Runs are fairer when they start on an idle machine.
 */
/**
 * How long a run waits for a quiet machine. Short: on a machine shared for longer stretches a long
 * wait does not buy a quiet start, it only stretches the run past its 15 minutes (72 runs by
 * default); the alternating order and the medians absorb the noise, and "noisy" flags it.
 */
export const QUIET_WAIT_MS = 5_000;

export async function waitForQuietMachine(maxBusyCores = 0.25, timeoutMs = QUIET_WAIT_MS): Promise<{ waitedSeconds: number; quiet: boolean }> {
  const started = performance.now();
  for (;;) {
    const before = machineBusySeconds();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const busyCores = machineBusySeconds() - before;
    const waitedSeconds = (performance.now() - started) / 1000;
    if (busyCores < maxBusyCores) return { waitedSeconds, quiet: true };
    if (waitedSeconds * 1000 >= timeoutMs) return { waitedSeconds, quiet: false };
  }
}

/** Main pid of a running PostgreSQL server (first line of postmaster.pid). */
export function postmasterPid(dataDir: string): number {
  const pid = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no running server in ${dataDir} (postmaster.pid unreadable)`);
  return pid;
}
