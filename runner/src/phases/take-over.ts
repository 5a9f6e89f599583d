/**
 * backup-phase's last step before Quiesced when the release being upgraded was made by another chart
 * (Bitnami's `keycloak`): replace the quiesced StatefulSets whose immutable fields the new
 * manifests change, and keep the old release's Secrets that the migrated data still needs. Both
 * are idempotent: a re-run finds the StatefulSet already matching (or gone) and the Secrets
 * already annotated. See kube/takeover.ts for why each is needed.
 */
import { workloadKey } from '../kube/workloads.js';
import { deleteStatefulSetOrphaning, immutableSpecDifferences, markSecretKept, readStatefulSetImmutableSpec } from '../kube/takeover.js';
import type { HookContext } from './context.js';

export interface TakeOverResult {
  /** `statefulset/<name>` deleted by this run, for the new manifest to create. */
  readonly replaced: readonly string[];
  /** Secrets annotated by this run or already annotated. */
  readonly kept: readonly string[];
}

/**
 * Must run only once the workloads' pods are gone (after quiesce): a StatefulSet deleted with
 * running pods would leave them writing to the legacy database.
 */
export async function takeOverReleaseObjects(ctx: HookContext): Promise<TakeOverResult> {
  const replaced: string[] = [];
  for (const ref of ctx.config.workloads) {
    const wanted = ctx.config.workloadSpecs[workloadKey(ref)];
    if (ref.kind !== 'statefulset' || !wanted) continue;
    const live = await readStatefulSetImmutableSpec(ctx.kube, ref.name);
    if (!live) continue;
    const differences = immutableSpecDifferences(live, wanted);
    if (differences.length === 0) continue;
    ctx.lock?.assertHeld();
    if (await deleteStatefulSetOrphaning(ctx.kube, ref.name)) {
      replaced.push(workloadKey(ref));
      ctx.log.info('deleted the quiesced StatefulSet whose immutable fields the new manifest changes; the upgrade creates it anew', {
        workload: workloadKey(ref),
        differences,
      });
    }
  }
  const kept: string[] = [];
  for (const name of ctx.config.keepSecrets) {
    const outcome = await markSecretKept(ctx.kube, name);
    if (outcome === 'absent') continue;
    kept.push(name);
    if (outcome === 'marked') ctx.log.info('annotated the Secret so that the upgrade keeps it', { secret: name });
  }
  return { replaced, kept };
}
