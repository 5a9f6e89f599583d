/**
 * Quiescing the applications that write to the legacy database (Keycloak): scale each configured
 * workload to 0 through its scale subresource, wait until its Pods are gone, and later scale it
 * back to the replica count recorded before. The migration Role needs `get`/`patch` on
 * `statefulsets/scale` / `deployments/scale`, `list` on `pods`, and `get`/`patch` on the named
 * workloads themselves, for one thing only: giving up the field ownership the scale recorded.
 *
 * Why: the API server records the writer of a scale as the owner of the workload's
 * `.spec.replicas` (managedFields, `subresource: scale`). Helm 4 applies its release server-side
 * without force, and so does Argo CD with `ServerSideApply=true`: their apply of the chart's
 * `replicas: 2` over the runner's 0 would be refused as a conflict ("conflict with
 * \"keycloak-migration\" with subresource \"scale\" using apps/v1: .spec.replicas"), failing the
 * upgrade before its deletions and post-upgrade hooks, with Keycloak at 0. So, right after each
 * scale, the runner removes its own managedFields entry (a JSON patch whose `test` operations
 * make sure it removes that entry and nothing else, the mechanism helm 4's own csaupgrade uses):
 * the replica count stays what the runner set, and nobody owns it until the GitOps tool applies
 * its value again, which it then does without a conflict, as helm 3's and kubectl's
 * client-side apply always did.
 */
import { Env, ExitCode } from '../../../lib/contract.js';
import { RunnerError } from '../errors.js';
import type { V1ObjectMeta } from '@kubernetes/client-node';

import { callApi, isKubeApiError, isNotFound, jsonPatchOptions, mergePatchOptions, type KubeContext } from './client.js';

/** The field manager of the runner's writes: its managedFields entries carry this name. */
export const RUNNER_FIELD_MANAGER = 'keycloak-migration';

export type WorkloadKind = 'statefulset' | 'deployment';

export interface WorkloadRef {
  readonly kind: WorkloadKind;
  readonly name: string;
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** `statefulset/keycloak`: the key under which original replicas are recorded in the state. */
export function workloadKey(ref: WorkloadRef): string {
  return `${ref.kind}/${ref.name}`;
}

/**
 * Parses MIGRATION_WORKLOADS: comma-separated `statefulset/<name>` or `deployment/<name>`
 * (kinds case-insensitive, Kubernetes spelling `StatefulSet/x` accepted). Empty: no workloads.
 */
export function parseWorkloads(value: string | undefined, variable: string = Env.workloads): WorkloadRef[] {
  if (value === undefined || value.trim() === '') return [];
  const refs: WorkloadRef[] = [];
  for (const raw of value.split(',').map((part) => part.trim()).filter((part) => part.length > 0)) {
    const slash = raw.indexOf('/');
    const kind = slash > 0 ? raw.slice(0, slash).toLowerCase() : '';
    const name = slash > 0 ? raw.slice(slash + 1) : '';
    if ((kind !== 'statefulset' && kind !== 'deployment') || !NAME.test(name)) {
      throw new RunnerError(`${variable} has an invalid entry "${raw}" (in "${value}")`, {
        exitCode: ExitCode.usage,
        hint: `use comma-separated statefulset/<name> or deployment/<name>, e.g. statefulset/keycloak`,
      });
    }
    if (!refs.some((ref) => ref.kind === kind && ref.name === name)) refs.push({ kind, name });
  }
  return refs;
}

/** Parses a key written by `workloadKey`. */
export function parseWorkloadKey(key: string): WorkloadRef {
  const [ref] = parseWorkloads(key, 'the state ConfigMap originalReplicas');
  if (!ref) throw new RunnerError(`invalid workload key "${key}" in the state ConfigMap`, { exitCode: ExitCode.config });
  return ref;
}

function scaleResource(ref: WorkloadRef): string {
  return ref.kind === 'statefulset' ? 'statefulsets/scale' : 'deployments/scale';
}

/** A configured workload does not exist. */
export class WorkloadNotFoundError extends RunnerError {
  constructor(
    readonly workload: WorkloadRef,
    message: string,
    options: { exitCode: typeof ExitCode.usage; hint: string; cause: unknown },
  ) {
    super(message, options);
    this.name = 'WorkloadNotFoundError';
  }
}

function missingWorkload(kube: KubeContext, ref: WorkloadRef, cause: unknown): RunnerError {
  const kind = ref.kind === 'statefulset' ? 'StatefulSet' : 'Deployment';
  return new WorkloadNotFoundError(ref, `${Env.workloads} names ${workloadKey(ref)}, but no ${kind} ${ref.name} exists in namespace ${kube.namespace}`, {
    exitCode: ExitCode.usage,
    hint: `fix ${Env.workloads} (the Keycloak workload's kind and name)`,
    cause,
  });
}

interface ScaleView {
  readonly replicas: number;
  readonly selector: string;
}

async function readScale(kube: KubeContext, ref: WorkloadRef): Promise<ScaleView> {
  const action = { verb: 'get', resource: scaleResource(ref), group: 'apps', name: ref.name, namespace: kube.namespace };
  try {
    const scale = await callApi(kube, action, () =>
      ref.kind === 'statefulset'
        ? kube.apps.readNamespacedStatefulSetScale({ name: ref.name, namespace: kube.namespace })
        : kube.apps.readNamespacedDeploymentScale({ name: ref.name, namespace: kube.namespace }),
    );
    return { replicas: scale.spec?.replicas ?? 0, selector: scale.status?.selector ?? '' };
  } catch (error) {
    if (isNotFound(error)) throw missingWorkload(kube, ref, error);
    throw error;
  }
}

/** The workload's desired replica count (`spec.replicas`). */
export async function readReplicas(kube: KubeContext, ref: WorkloadRef): Promise<number> {
  return (await readScale(kube, ref)).replicas;
}

/** Sets the desired replica count through the scale subresource (a merge patch of /scale). */
export async function scaleWorkload(kube: KubeContext, ref: WorkloadRef, replicas: number): Promise<void> {
  const action = { verb: 'patch', resource: scaleResource(ref), group: 'apps', name: ref.name, namespace: kube.namespace };
  const body = { spec: { replicas } };
  try {
    const request = { name: ref.name, namespace: kube.namespace, body, fieldManager: RUNNER_FIELD_MANAGER };
    await callApi(kube, action, () =>
      ref.kind === 'statefulset'
        ? kube.apps.patchNamespacedStatefulSetScale(request, mergePatchOptions())
        : kube.apps.patchNamespacedDeploymentScale(request, mergePatchOptions()),
    );
    await relinquishReplicasOwnership(kube, ref);
  } catch (error) {
    if (isNotFound(error)) throw missingWorkload(kube, ref, error);
    throw error;
  }
  kube.log.info('scaled workload', { workload: workloadKey(ref), replicas });
}

/** How often the ownership release is retried when the workload changed between read and patch. */
const RELINQUISH_ATTEMPTS = 3;

/**
 * Removes the runner's managedFields entry of the scale subresource from the workload (see the
 * module comment). The patch tests that the entry at that index is still the runner's scale entry;
 * when the workload changed in between (422/409), it is read again.
 */
export async function relinquishReplicasOwnership(kube: KubeContext, ref: WorkloadRef): Promise<void> {
  const resource = ref.kind === 'statefulset' ? 'statefulsets' : 'deployments';
  const where = { group: 'apps', name: ref.name, namespace: kube.namespace, resource };
  for (let attempt = 1; ; attempt++) {
    const workload = await callApi<{ metadata?: V1ObjectMeta }>(kube, { verb: 'get', ...where }, () =>
      ref.kind === 'statefulset'
        ? kube.apps.readNamespacedStatefulSet({ name: ref.name, namespace: kube.namespace })
        : kube.apps.readNamespacedDeployment({ name: ref.name, namespace: kube.namespace }),
    );
    const index = (workload.metadata?.managedFields ?? []).findIndex((entry) => entry.manager === RUNNER_FIELD_MANAGER && entry.subresource === 'scale');
    if (index < 0) return;
    const body = [
      { op: 'test', path: `/metadata/managedFields/${index}/manager`, value: RUNNER_FIELD_MANAGER },
      { op: 'test', path: `/metadata/managedFields/${index}/subresource`, value: 'scale' },
      { op: 'remove', path: `/metadata/managedFields/${index}` },
    ];
    try {
      await callApi<unknown>(kube, { verb: 'patch', ...where }, () =>
        ref.kind === 'statefulset'
          ? kube.apps.patchNamespacedStatefulSet({ name: ref.name, namespace: kube.namespace, body, fieldManager: RUNNER_FIELD_MANAGER }, jsonPatchOptions())
          : kube.apps.patchNamespacedDeployment({ name: ref.name, namespace: kube.namespace, body, fieldManager: RUNNER_FIELD_MANAGER }, jsonPatchOptions()),
      );
      kube.log.info('gave up the ownership of the replica count', { workload: workloadKey(ref) });
      return;
    } catch (error) {
      // A failed `test` (the entries moved) is 422 Invalid; a concurrent write may also be a 409.
      const changedMeanwhile = isKubeApiError(error, 'Invalid') || isKubeApiError(error, 'Conflict');
      if (!changedMeanwhile || attempt >= RELINQUISH_ATTEMPTS) throw error;
    }
  }
}

/**
 * Names of the Pods that belong to the workload (matching its selector, as reported by the scale
 * subresource), terminating ones included: a terminating Pod may still write.
 */
export async function listWorkloadPods(kube: KubeContext, ref: WorkloadRef): Promise<string[]> {
  const { selector } = await readScale(kube, ref);
  if (!selector) {
    throw new RunnerError(`${workloadKey(ref)} reports no pod selector on its scale subresource`, {
      exitCode: ExitCode.usage,
      hint: 'quiesce supports StatefulSets and Deployments with spec.selector',
    });
  }
  const pods = await callApi(kube, { verb: 'list', resource: 'pods', namespace: kube.namespace }, () =>
    kube.core.listNamespacedPod({ namespace: kube.namespace, labelSelector: selector }),
  );
  return pods.items.map((pod) => pod.metadata?.name ?? '').filter((name) => name !== '');
}

export interface WaitOptions {
  /** @default 300_000 (MIGRATION_QUIESCE_TIMEOUT_SECONDS default) */
  readonly timeoutMs?: number;
  /** @default 2_000 */
  readonly pollMs?: number;
}

/** Waits until none of the workload's Pods exist; tempFail naming the Pods left on timeout. */
export async function waitForPodsGone(kube: KubeContext, ref: WorkloadRef, options: WaitOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 300_000;
  const pollMs = options.pollMs ?? 2_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pods = await listWorkloadPods(kube, ref);
    if (pods.length === 0) return;
    if (Date.now() >= deadline) {
      throw new RunnerError(
        `timed out after ${Math.round(timeoutMs / 1000)}s waiting for ${workloadKey(ref)} to stop: still running ${pods.join(', ')}`,
        {
          exitCode: ExitCode.tempFail,
          hint: `check why the Pods do not terminate (kubectl describe pod ${pods[0]}), or raise ${Env.quiesceTimeoutSeconds}`,
        },
      );
    }
    kube.log.debug('waiting for pods to stop', { workload: workloadKey(ref), pods });
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, Math.max(0, deadline - Date.now()))));
  }
}

/** Current replicas of each workload, keyed by `workloadKey`. */
export async function readReplicaCounts(kube: KubeContext, refs: readonly WorkloadRef[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const ref of refs) counts[workloadKey(ref)] = await readReplicas(kube, ref);
  return counts;
}

export interface QuiesceOptions extends WaitOptions {
  /**
   * Persists the observed replica counts before anything is scaled and returns the counts on
   * record (a resumed run keeps the counts recorded by the first run, when it sees 0 now).
   */
  readonly persistOriginals: (observed: Readonly<Record<string, number>>) => Promise<Readonly<Record<string, number>>>;
}

/**
 * Records the original replica counts (through `persistOriginals`, before touching anything, so a
 * crash never loses them), scales every workload to 0, then waits for all their Pods to be gone.
 * Idempotent: a re-run scales to 0 again (a no-op) and waits. Returns the counts on record.
 */
export async function quiesceWorkloads(
  kube: KubeContext,
  refs: readonly WorkloadRef[],
  options: QuiesceOptions,
): Promise<Readonly<Record<string, number>>> {
  const recorded = await options.persistOriginals(await readReplicaCounts(kube, refs));
  for (const ref of refs) await scaleWorkload(kube, ref, 0);
  for (const ref of refs) await waitForPodsGone(kube, ref, options);
  return recorded;
}

/** Keeps counts already on record; adds the observed ones for workloads not yet recorded. */
export function mergeOriginalReplicas(
  recorded: Readonly<Record<string, number>>,
  observed: Readonly<Record<string, number>>,
): Record<string, number> {
  return { ...observed, ...recorded };
}
