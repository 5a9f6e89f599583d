/**
 * Stopping the applications that write to the legacy database, and starting them again.
 *
 * The original replica counts are written into the state BEFORE anything is scaled: a run killed
 * after scaling to 0 must not find 0 and record it as the original. Scaling back respects what
 * happened in between: a workload no longer at 0 (Helm re-applied its replicas, someone scaled it)
 * is left alone.
 */
import { mergeOriginalReplicas, parseWorkloadKey, quiesceWorkloads, readReplicas, scaleWorkload, workloadKey, WorkloadNotFoundError, type WorkloadRef } from '../kube/workloads.js';
import type { HookContext } from './context.js';
import { updateState } from './context.js';

/** Records the originals (keeping counts already on record), scales to 0, waits for the pods to go. */
export async function quiesce(ctx: HookContext): Promise<Readonly<Record<string, number>>> {
  if (ctx.config.workloads.length === 0) return ctx.state?.originalReplicas ?? {};
  ctx.lock?.assertHeld();
  const present = await workloadsStillPresent(ctx);
  if (present.length === 0) return ctx.state?.originalReplicas ?? {};
  return quiesceWorkloads(ctx.kube, present, {
    timeoutMs: ctx.config.quiesceTimeoutSeconds * 1000,
    pollMs: 1000,
    persistOriginals: async (observed) => {
      const state = await updateState(ctx, (current) => {
        const merged = mergeOriginalReplicas(current.originalReplicas, observed);
        const unchanged = Object.keys(merged).length === Object.keys(current.originalReplicas).length;
        return unchanged ? current : { ...current, originalReplicas: merged };
      });
      ctx.log.info('original replica counts on record', { originalReplicas: state.originalReplicas });
      return state.originalReplicas;
    },
  });
}

/**
 * The configured workloads, less those this migration already quiesced (their counts are on
 * record) that no longer exist: a resumed prepare after the take-over deleted a StatefulSet with
 * incompatible immutable fields, before the tool created the new one. Nothing of it runs. A
 * workload missing on the first run is still an error (WorkloadNotFound names it).
 */
async function workloadsStillPresent(ctx: HookContext): Promise<WorkloadRef[]> {
  const recorded = ctx.state?.originalReplicas ?? {};
  const present: WorkloadRef[] = [];
  for (const ref of ctx.config.workloads) {
    if (recorded[workloadKey(ref)] === undefined) {
      present.push(ref);
      continue;
    }
    try {
      await readReplicas(ctx.kube, ref);
      present.push(ref);
    } catch (error) {
      if (!(error instanceof WorkloadNotFoundError)) throw error;
      ctx.log.info('a workload quiesced earlier by this migration no longer exists (replaced for the new release); nothing to stop', { workload: workloadKey(ref) });
    }
  }
  return present;
}

export interface UnquiesceResult {
  /** `statefulset/keycloak` → replicas set by this run. */
  readonly scaled: Readonly<Record<string, number>>;
  /** Workloads left as they were (not at 0 any more, or gone). */
  readonly untouched: readonly string[];
}

/** Sets each workload back to its recorded count, but only where it is still at 0. */
export async function unquiesce(ctx: HookContext, originals: Readonly<Record<string, number>>): Promise<UnquiesceResult> {
  const scaled: Record<string, number> = {};
  const untouched: string[] = [];
  for (const [key, original] of Object.entries(originals)) {
    const ref = parseWorkloadKey(key);
    let current: number;
    try {
      current = await readReplicas(ctx.kube, ref);
    } catch (error) {
      if (!(error instanceof WorkloadNotFoundError)) throw error;
      ctx.log.warn('workload to scale back no longer exists; skipping', { workload: key });
      untouched.push(key);
      continue;
    }
    if (current !== 0 || original === 0) {
      ctx.log.info('leaving workload as it is', { workload: key, replicas: current, original });
      untouched.push(key);
      continue;
    }
    ctx.lock?.assertHeld();
    await scaleWorkload(ctx.kube, ref, original);
    scaled[key] = original;
  }
  return { scaled, untouched };
}
