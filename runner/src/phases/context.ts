/**
 * What every hook command works with: its configuration, the Kubernetes context, the state store,
 * the lock it holds, the summary rows it collects, and the step in progress (for `lastError`).
 *
 * The helpers here are the only way the phases touch the state: each write is a compare-and-swap
 * through the StateStore (a 409 re-reads and re-runs the mutator on the fresh state), and every
 * mutator re-decides on what it is given — a phase already reached by someone else is not
 * advanced again.
 */
import { randomBytes } from 'node:crypto';
import { ExitCode, NON_RETRIABLE_EXIT_CODES, type PhaseName } from '../../../lib/contract.js';
import { hookConfigFromEnv, type HookConfig } from '../config.js';
import { configWithAdoptedLegacy } from './adopt-legacy.js';
import { isRunnerError, RunnerError } from '../errors.js';
import { createKubeContext, type KubeContext } from '../kube/client.js';
import { acquireLock, type HeldLock } from '../kube/lock.js';
import { StateStore } from '../kube/state-store.js';
import { redact, type Logger, type SummaryRow } from '../log.js';
import type { DigestedBackup, RestoreResult } from '../pg/restore.js';
import { advance, closeStep, effectivePhase, hasReached, recordFailure, startStep, type AdvanceOptions, type MigrationState } from '../state.js';

export interface HookContext {
  /** The command running (`prepare`, `backup-phase`, …), for logs and lastError. */
  readonly command: string;
  /**
   * The configuration in use: the Job's, with the adopted legacy database applied once the state
   * records one ({@link useAdoptedLegacy}).
   */
  config: HookConfig;
  /** The configuration from the environment, before any adoption. */
  readonly configuredConfig: HookConfig;
  readonly kube: KubeContext;
  readonly store: StateStore;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Rows of the end-of-run summary table. */
  readonly summary: SummaryRow[];
  /** The step in progress: what a failure is recorded against. */
  currentStep: string | undefined;
  /** The last state this run read or wrote. */
  state: MigrationState | undefined;
  /** The lock, while held. */
  lock: HeldLock | undefined;
  /**
   * The restore this process ran and finished (restore-phase), in memory only: its checksums
   * taken during the restore and whether it ANALYZEd may be trusted only by the process that saw
   * the restore finish. A restore that crashed, or one run by an earlier process, leaves this
   * undefined, so the verification scans every table and the hygiene ANALYZEs.
   */
  restoredInThisRun: RestoredInThisRun | undefined;
  /**
   * The backup (`state.backup.manifestSha256`) whose files this process digested, and when: the
   * dump computed every file's sha256 as pg_dump finished it, or verify-backup recomputed them. In
   * memory only, like {@link restoredInThisRun}: the verification right after the dump and a
   * restore in the same process (the Argo CD backup Job that also restores; within
   * DIGESTS_TRUSTED_FOR_MS, pg/restore.ts) use those digests instead of reading every file again,
   * while a later process — a retry, a restore Job — recomputes them, since the backup sat on its
   * volume in between.
   */
  backupDigestedInThisRun: DigestedBackup | undefined;
}

export interface RestoredInThisRun {
  /** The backup restored (`state.backup.manifestSha256`): the result is used only for that backup. */
  readonly manifestSha256: string;
  readonly result: RestoreResult;
}

export interface HookContextOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** @default - from KUBECONFIG / the in-cluster ServiceAccount */
  readonly kube?: KubeContext;
  /** @default - hookConfigFromEnv(env) */
  readonly config?: HookConfig;
  /** @default undefined - see {@link HookContext.backupDigestedInThisRun}; for a command run after another in one process */
  readonly backupDigestedInThisRun?: DigestedBackup;
}

export function createHookContext(command: string, options: HookContextOptions): HookContext {
  const config = options.config ?? hookConfigFromEnv(options.env);
  const log = options.log.child({ command });
  const kube = options.kube ?? createKubeContext({ env: options.env, log });
  return {
    command,
    config,
    configuredConfig: config,
    kube,
    store: new StateStore(kube, { name: config.stateConfigMap, instance: config.podName }),
    log,
    signal: options.signal ?? new AbortController().signal,
    summary: [],
    currentStep: undefined,
    state: undefined,
    lock: undefined,
    restoredInThisRun: undefined,
    backupDigestedInThisRun: options.backupDigestedInThisRun,
  };
}

/** A readable, unique id for a new migration: `m-20260101-120000-a1b2c3`. */
export function newMigrationId(now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `m-${stamp}-${randomBytes(3).toString('hex')}`;
}

/** `Quiesced`, or `Failed (resumes from Quiesced)`: the phase as an operator needs to read it. */
export function describePhase(state: MigrationState): string {
  return state.phase === 'Failed' ? `Failed (resumes from ${effectivePhase(state)})` : state.phase;
}

/** Reads the state (one API request); undefined when no migration has started. */
export async function readState(ctx: HookContext): Promise<MigrationState | undefined> {
  const stored = await ctx.store.read();
  ctx.state = stored?.state;
  await useAdoptedLegacy(ctx);
  return ctx.state;
}

/**
 * Applies the legacy database the state says was adopted (phases/adopt-legacy.ts) to
 * `ctx.config`: its host, its password read again by name from its Secret, its StatefulSet and
 * PVCs. Without one, the configuration stays the Job's own.
 */
export async function useAdoptedLegacy(ctx: HookContext): Promise<void> {
  const adopted = ctx.state?.adoptedLegacy;
  if (!adopted) return;
  ctx.config = await configWithAdoptedLegacy(ctx.kube, ctx.configuredConfig, adopted);
}

/** A CAS update of the state; the mutator must be a pure function of the state it is given. */
export async function updateState(ctx: HookContext, mutator: (state: MigrationState) => MigrationState | undefined): Promise<MigrationState> {
  const stored = await ctx.store.update(mutator);
  ctx.state = stored.state;
  return ctx.state;
}

/** Records that `phase` was reached, unless the fresh state shows it already was. */
export async function advanceTo(
  ctx: HookContext,
  phase: PhaseName,
  detail?: string,
  changes?: AdvanceOptions['changes'],
): Promise<MigrationState> {
  return updateState(ctx, (state) => {
    // Another runner got there first (a 409 re-read brought its state): keep what it recorded.
    if (hasReached(state, phase)) return state;
    return advance(state, phase, detail, { ...(ctx.currentStep ? { step: ctx.currentStep } : {}), ...(changes ? { changes } : {}) });
  });
}

/** Counts an attempt of `step` in the state and remembers it as the step in progress. */
export async function beginStep(ctx: HookContext, step: string): Promise<MigrationState> {
  ctx.currentStep = step;
  ctx.log.info(`step ${step}: starting`, { step, phase: ctx.state?.phase });
  return updateState(ctx, (state) => startStep(state, step));
}

/** Closes the step in progress without reaching a phase (see state.ts closeStep). */
export async function endStep(ctx: HookContext): Promise<MigrationState> {
  ctx.currentStep = undefined;
  return updateState(ctx, (state) => closeStep(state));
}

/** What a step reports for the summary and the state. */
export interface StepOutcome {
  /** History detail of the phase reached. */
  readonly detail?: string;
  /** Other state fields written with the transition. */
  readonly changes?: AdvanceOptions['changes'];
  readonly rows?: number;
  readonly bytes?: number;
  readonly note?: string;
}

export interface StepDefinition {
  readonly name: string;
  /** The phase this step records once its work is durable. */
  readonly reaches: PhaseName;
  run(state: MigrationState): Promise<StepOutcome>;
}

/**
 * Runs a step over the persisted state: skipped when its phase was already reached, otherwise the
 * attempt is counted, the work done, and the phase recorded — only after the work is durable, so a
 * crash anywhere before re-runs exactly this step.
 */
export async function runStep(ctx: HookContext, step: StepDefinition): Promise<MigrationState> {
  const current = ctx.state;
  if (!current) throw new Error(`runStep(${step.name}) without a state: this is a bug in the runner`);
  if (hasReached(current, step.reaches)) {
    ctx.log.info(`step ${step.name}: already done`, { step: step.name, phase: current.phase });
    ctx.summary.push({ step: step.name, durationMs: 0, note: `already done (${current.phase})` });
    return current;
  }
  ctx.lock?.assertHeld();
  const started = Date.now();
  const state = await beginStep(ctx, step.name);
  const outcome = await step.run(state);
  ctx.lock?.assertHeld();
  const next = await advanceTo(ctx, step.reaches, outcome.detail, outcome.changes);
  const durationMs = Date.now() - started;
  ctx.log.info(`step ${step.name}: done`, { step: step.name, phase: next.phase, durationMs });
  ctx.summary.push({
    step: step.name,
    durationMs,
    ...(outcome.rows !== undefined ? { rows: outcome.rows } : {}),
    ...(outcome.bytes !== undefined ? { bytes: outcome.bytes } : {}),
    note: outcome.note ?? `→ ${step.reaches}`,
  });
  ctx.currentStep = undefined;
  return next;
}

/** Times a piece of work as a summary row (sub-steps that record no phase of their own). */
export async function timed<T>(ctx: HookContext, step: string, work: () => Promise<T>, describe?: (result: T) => Omit<SummaryRow, 'step' | 'durationMs'>): Promise<T> {
  const started = Date.now();
  const previous = ctx.currentStep;
  ctx.currentStep = step;
  const result = await work();
  ctx.currentStep = previous;
  ctx.summary.push({ step, durationMs: Date.now() - started, ...(describe ? describe(result) : {}) });
  return result;
}

/** Errors that must not be written into the state (e.g. "another runner holds the lock"). */
const notRecorded = new WeakSet<object>();

/**
 * Runs `fn` holding the migration Lease. A Lease held by another runner is waited for up to its
 * TTL plus a margin: a runner killed without releasing it (a crashed pod, a deleted Job) stops
 * renewing, so its Lease expires and the Job's next pod takes over instead of failing; a live
 * holder that keeps it longer makes this run exit tempFail (75) naming it.
 */
export async function withMigrationLock<T>(ctx: HookContext, fn: (lock: HeldLock) => Promise<T>): Promise<T> {
  const waitMs = ((ctx.config.lock.ttlSeconds ?? 60) + 5) * 1000;
  const deadline = Date.now() + waitMs;
  let lock: HeldLock | undefined;
  for (let announced = false; lock === undefined; ) {
    try {
      lock = await acquireLock(ctx.kube, ctx.config.lock);
    } catch (error) {
      if (!isRunnerError(error) || error.exitCode !== ExitCode.tempFail) throw error;
      if (Date.now() >= deadline || ctx.signal.aborted) {
        notRecorded.add(error);
        throw error;
      }
      if (!announced) ctx.log.info('waiting for the migration lock', { lease: ctx.config.lock.name, reason: error.message });
      announced = true;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  ctx.lock = lock;
  try {
    return await fn(lock);
  } finally {
    ctx.lock = undefined;
    await lock.release();
  }
}

/** The RunnerError an error becomes at the top level (anything else is `unexpected`). */
function asRunnerError(error: unknown): RunnerError {
  if (isRunnerError(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new RunnerError(`unexpected error: ${message}`, { exitCode: ExitCode.unexpected, cause: error });
}

/**
 * Writes `lastError {step, message, exitCode, at}` into the state, best effort (the API may be the
 * thing that failed). A non-retriable exit code also moves the phase to Failed, keeping the phase
 * reached in `resumeFrom`; a retriable one leaves the phase as it is for the Job's retry.
 */
export async function recordStepFailure(ctx: HookContext, error: unknown): Promise<void> {
  if (typeof error === 'object' && error !== null && notRecorded.has(error)) return;
  if (!ctx.state) return;
  const runnerError = asRunnerError(error);
  const failure = {
    step: ctx.currentStep ?? ctx.command,
    message: redact(runnerError.oneLine()).slice(0, 2000),
    exitCode: runnerError.exitCode,
    terminal: NON_RETRIABLE_EXIT_CODES.includes(runnerError.exitCode),
  };
  try {
    await updateState(ctx, (state) => recordFailure(state, failure));
  } catch (recordError) {
    ctx.log.warn('could not record the failure in the state ConfigMap', {
      error: isRunnerError(recordError) ? recordError.oneLine() : String(recordError),
    });
  }
}

/**
 * The frame of every hook command: runs `body`, prints the summary table when steps ran, and on
 * failure records it in the state before the error reaches main.ts (one line, the exit code).
 */
export async function runHook(ctx: HookContext, body: () => Promise<number | void>): Promise<number> {
  try {
    const code = (await body()) ?? 0;
    if (ctx.summary.length > 0) ctx.log.summary(ctx.summary, `${ctx.command} summary`);
    return code;
  } catch (error) {
    await recordStepFailure(ctx, error);
    if (ctx.summary.length > 0) ctx.log.summary(ctx.summary, `${ctx.command} summary (failed)`);
    throw error;
  }
}
