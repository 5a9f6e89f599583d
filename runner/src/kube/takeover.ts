/**
 * Taking over another chart's release (Bitnami's `keycloak`) in place: the two API operations a
 * GitOps tool cannot do for itself.
 *
 * 1. A StatefulSet whose immutable fields (selector, serviceName, volumeClaimTemplates) differ
 *    from the new manifest's can never be updated by Helm or Argo CD — the API server refuses
 *    the apply, and under Helm that happens after the pre-upgrade hook scaled Keycloak to 0, so
 *    the upgrade fails with Keycloak down. Once its pods are gone, the runner deletes it
 *    (propagation `Orphan`: nothing is left to orphan at 0 replicas, and nothing is cascaded
 *    should a pod linger), waits until it is gone, and the tool creates the new one: Helm's Update creates a release
 *    object that is missing live (pkg/kube/client.go), Argo CD's apply creates it too.
 * 2. Secrets the old chart shipped and the new one does not are deleted by the upgrade; the
 *    realm being migrated still authenticates its admin with the old password. The runner marks
 *    the live Secret with Helm's and Argo CD's keep annotations, which both tools read on the live
 *    object.
 */
import { ExitCode, KEEP_ANNOTATIONS, parseArgoSyncOptions, type WorkloadImmutableSpec } from '../../../lib/contract.js';
import { parseJsonVariable } from '../json-variable.js';
import type { V1StatefulSet } from '@kubernetes/client-node';
import { RunnerError } from '../errors.js';
import { callApi, isNotFound, mergePatchOptions, type KubeContext } from './client.js';

/** The immutable fields of a live StatefulSet; undefined when it does not exist. */
export async function readStatefulSetImmutableSpec(kube: KubeContext, name: string): Promise<WorkloadImmutableSpec | undefined> {
  const action = { verb: 'get', resource: 'statefulsets', group: 'apps', name, namespace: kube.namespace };
  try {
    const live = await callApi(kube, action, () => kube.apps.readNamespacedStatefulSet({ name, namespace: kube.namespace }));
    const selector = live.spec?.selector;
    // matchExpressions cannot be expressed by a chart's matchLabels: always a difference.
    const labels = { ...(selector?.matchLabels ?? {}), ...(selector?.matchExpressions?.length ? { '(matchExpressions)': JSON.stringify(selector.matchExpressions) } : {}) };
    return {
      selector: labels,
      ...(live.spec?.serviceName ? { serviceName: live.spec.serviceName } : {}),
      volumeClaimTemplates: (live.spec?.volumeClaimTemplates ?? []).map((template) => template.metadata?.name ?? ''),
    };
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** The immutable fields in which `live` differs from `wanted`, as readable lines (empty: none). */
export function immutableSpecDifferences(live: WorkloadImmutableSpec, wanted: WorkloadImmutableSpec): string[] {
  const differences: string[] = [];
  const canonical = (labels: Readonly<Record<string, string>>) => JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  if (canonical(live.selector) !== canonical(wanted.selector)) {
    differences.push(`selector ${canonical(live.selector)} → ${canonical(wanted.selector)}`);
  }
  if ((live.serviceName ?? '') !== (wanted.serviceName ?? '')) {
    differences.push(`serviceName ${JSON.stringify(live.serviceName ?? '')} → ${JSON.stringify(wanted.serviceName ?? '')}`);
  }
  if (JSON.stringify(live.volumeClaimTemplates) !== JSON.stringify(wanted.volumeClaimTemplates)) {
    differences.push(`volumeClaimTemplates ${JSON.stringify(live.volumeClaimTemplates)} → ${JSON.stringify(wanted.volumeClaimTemplates)}`);
  }
  return differences;
}

export interface GoneWaitOptions {
  /** @default 60_000 */
  readonly timeoutMs?: number;
  /** @default 200 */
  readonly pollMs?: number;
}

/**
 * Deletes a StatefulSet, leaving whatever it owns (pods, PVCs) in place, and waits until it is
 * gone; false when it was already gone. An Orphan deletion does not remove the object at once: the
 * API server adds the `orphan` finalizer and answers with the object (apiserver registry store.go,
 * shouldOrphanDependents), and the garbage collector removes it once it has released the
 * dependents. Until then the upgrade would patch the terminating StatefulSet — which the garbage
 * collector then deletes — instead of creating the new one.
 */
export async function deleteStatefulSetOrphaning(kube: KubeContext, name: string, options: GoneWaitOptions = {}): Promise<boolean> {
  const action = { verb: 'delete', resource: 'statefulsets', group: 'apps', name, namespace: kube.namespace };
  try {
    await callApi(kube, action, () =>
      kube.apps.deleteNamespacedStatefulSet({ name, namespace: kube.namespace, body: { propagationPolicy: 'Orphan' } }),
    );
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
  await waitForStatefulSetGone(kube, name, options);
  return true;
}

/** Waits until StatefulSet `name` is gone (404), or exists anew (no deletionTimestamp); tempFail (75) on timeout. */
async function waitForStatefulSetGone(kube: KubeContext, name: string, options: GoneWaitOptions): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const pollMs = options.pollMs ?? 200;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let live: V1StatefulSet;
    try {
      live = await callApi(kube, { verb: 'get', resource: 'statefulsets', group: 'apps', name, namespace: kube.namespace }, () =>
        kube.apps.readNamespacedStatefulSet({ name, namespace: kube.namespace }),
      );
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    if (!live.metadata?.deletionTimestamp) return;
    if (Date.now() >= deadline) {
      throw new RunnerError(
        `StatefulSet ${name} is still being deleted ${Math.round(timeoutMs / 1000)}s after the runner deleted it (finalizers: ${(live.metadata.finalizers ?? []).join(', ') || 'none'}); the upgrade must not apply the new one over it`,
        { exitCode: ExitCode.tempFail, hint: `check the cluster's garbage collector (kube-controller-manager) and kubectl get statefulset ${name} -o yaml; the Job retries` },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, Math.max(0, deadline - Date.now()))));
  }
}

/** `argocd.argoproj.io/sync-options` with `Prune=false` added to what is there (comma-separated options). */
export function withPruneDisabled(current: string | undefined): string {
  const options = parseArgoSyncOptions(current).filter((option) => !/^Prune=/.test(option));
  return [...options, KEEP_ANNOTATIONS.argoSyncOptions.value].join(',');
}

export type KeepOutcome = 'marked' | 'already-kept' | 'absent';

/**
 * Annotates a live Secret so that neither Helm nor Argo CD deletes it when the new chart drops it.
 * Reads it by name (never lists Secrets: a list returns every Secret's data).
 */
export async function markSecretKept(kube: KubeContext, name: string): Promise<KeepOutcome> {
  const getAction = { verb: 'get', resource: 'secrets', name, namespace: kube.namespace };
  let annotations: Record<string, string>;
  try {
    const secret = await callApi(kube, getAction, () => kube.core.readNamespacedSecret({ name, namespace: kube.namespace }));
    annotations = secret.metadata?.annotations ?? {};
  } catch (error) {
    if (isNotFound(error)) return 'absent';
    throw error;
  }
  const { helmResourcePolicy, argoSyncOptions } = KEEP_ANNOTATIONS;
  const syncOptions = withPruneDisabled(annotations[argoSyncOptions.key]);
  if (annotations[helmResourcePolicy.key] === helmResourcePolicy.value && annotations[argoSyncOptions.key] === syncOptions) return 'already-kept';
  const body = { metadata: { annotations: { [helmResourcePolicy.key]: helmResourcePolicy.value, [argoSyncOptions.key]: syncOptions } } };
  await callApi(kube, { verb: 'patch', resource: 'secrets', name, namespace: kube.namespace }, () =>
    kube.core.patchNamespacedSecret({ name, namespace: kube.namespace, body }, mergePatchOptions()),
  );
  return 'marked';
}

/** Parses MIGRATION_WORKLOAD_SPECS; empty or unset: none. */
export function parseWorkloadSpecs(value: string | undefined, variable: string): Record<string, WorkloadImmutableSpec> {
  const json = parseJsonVariable(
    variable,
    value,
    `set it to JSON like {"statefulset/keycloak":{"selector":{"app.kubernetes.io/name":"keycloak"},"serviceName":"keycloak-discovery","volumeClaimTemplates":[]}}`,
  );
  if (!json) return {};
  const { parsed, invalid } = json;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid('must be a JSON object keyed by statefulset/<name>');
  const specs: Record<string, WorkloadImmutableSpec> = {};
  for (const [key, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (!/^statefulset\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(key)) throw invalid(`has an invalid key ${JSON.stringify(key)} (statefulset/<name> expected)`);
    const entry = raw as { selector?: unknown; serviceName?: unknown; volumeClaimTemplates?: unknown };
    const selector = entry?.selector;
    if (typeof selector !== 'object' || selector === null || Array.isArray(selector) || !Object.values(selector).every((v) => typeof v === 'string')) {
      throw invalid(`${key}.selector must be an object of label strings`);
    }
    if (entry.serviceName !== undefined && typeof entry.serviceName !== 'string') throw invalid(`${key}.serviceName must be a string`);
    const templates = entry.volumeClaimTemplates ?? [];
    if (!Array.isArray(templates) || !templates.every((name) => typeof name === 'string')) throw invalid(`${key}.volumeClaimTemplates must be a list of names`);
    specs[key] = {
      selector: selector as Record<string, string>,
      ...(entry.serviceName ? { serviceName: entry.serviceName } : {}),
      volumeClaimTemplates: templates as string[],
    };
  }
  return specs;
}
