/**
 * Stopping the applications that write to the legacy database, and starting them again.
 *
 * The original replica counts are written into the state BEFORE anything is scaled: a run killed
 * after scaling to 0 must not find 0 and record it as the original. Scaling back respects what
 * happened in between: a workload no longer at 0 (Helm re-applied its replicas, someone scaled it)
 * is left alone. Which workloads are stopped (the configured ones, or the one found by its labels
 * when a configured name does not exist) is discover-workloads.ts's.
 */
import { mergeOriginalReplicas, parseWorkloadKey, quiesceWorkloads, readReplicas, scaleWorkload, WorkloadNotFoundError } from '../kube/workloads.js';
import { workloadsToQuiesce } from './discover-workloads.js';
import type { HookContext } from './context.js';
import { updateState } from './context.js';

/** Records the originals (keeping counts already on record), scales to 0, waits for the pods to go. */
export async function quiesce(ctx: HookContext): Promise<Readonly<Record<string, number>>> {
  if (ctx.config.workloads.length === 0) return ctx.state?.originalReplicas ?? {};
  ctx.lock?.assertHeld();
  const present = await workloadsToQuiesce(ctx);
  if (present.length === 0) return ctx.state?.originalReplicas ?? {};
  return quiesceWorkloads(ctx.kube, present, {
    timeoutMs: ctx.config.quiesceTimeoutSeconds * 1000,
    // Keycloak is already stopped: until the next look at its pods, the downtime only waits.
    pollMs: 500,
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
  // A workload found by its labels belongs to the release taken over: its pods would run the old
  // template against the legacy database. The new release's own workload replaces it.
  const adopted = new Set(Object.values(ctx.state?.adoptedWorkloads ?? {}).map((entry) => entry.workload));
  for (const [key, original] of Object.entries(originals)) {
    if (adopted.has(key)) {
      ctx.log.info('leaving the workload found by its labels at 0: it belongs to the release taken over', { workload: key });
      untouched.push(key);
      continue;
    }
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
