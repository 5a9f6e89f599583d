/**
 * Finding a workload by its labels when none of the configured name exists, and copying the
 * Secrets its pods read before its release takes them away (MIGRATION_WORKLOAD_DISCOVERY).
 *
 * Why: Bitnami's `fullnameOverride` / `nameOverride` rename the Keycloak StatefulSet (`sso`,
 * `<release>-iam`), while `app.kubernetes.io/instance` and `app.kubernetes.io/component` stay.
 * The new chart names its Keycloak otherwise, so the upgrade deletes the old StatefulSet and its
 * admin Secret `<that name>` with the old release: the runner must quiesce the renamed one, and
 * copy the admin Secret (the migrated master realm still holds that admin) to a name the new
 * release does not own. Secrets are read by the name the pod spec gives, never listed.
 */
import type { V1ObjectMeta, V1PodSpec, V1Secret } from '@kubernetes/client-node';

import { Env, ExitCode, KEEP_ANNOTATIONS, type WorkloadDiscoverySpec } from '../../../lib/contract.js';
import { RunnerError } from '../errors.js';
import { parseJsonVariable } from '../json-variable.js';
import { callApi, isAlreadyExists, isNotFound, type KubeContext } from './client.js';
import type { WorkloadKind, WorkloadRef } from './workloads.js';
import { isObjectName } from '../env-names.js';

export type { WorkloadDiscoverySpec } from '../../../lib/contract.js';

/** One `key=value` label requirement (what a selector of equality requirements is made of). */
export const LABEL_REQUIREMENT = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?=[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

const WORKLOAD_KEY = /^(statefulset|deployment)\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;

/** Parses MIGRATION_WORKLOAD_DISCOVERY; empty or unset: none. */
export function parseWorkloadDiscovery(value: string | undefined, variable: string = Env.workloadDiscovery): Record<string, WorkloadDiscoverySpec> {
  const json = parseJsonVariable(
    variable,
    value,
    `set it to JSON like {"statefulset/keycloak":{"selector":"app.kubernetes.io/instance=keycloak,app.kubernetes.io/component=keycloak","secretCopies":[{"key":"admin-password","to":"keycloak"}]}}, or unset it`,
  );
  if (!json) return {};
  const { parsed, invalid } = json;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid('must be a JSON object keyed by statefulset/<name> or deployment/<name>');
  const specs: Record<string, WorkloadDiscoverySpec> = {};
  for (const [key, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (!WORKLOAD_KEY.test(key)) throw invalid(`has an invalid key ${JSON.stringify(key)} (statefulset/<name> or deployment/<name> expected)`);
    const entry = (raw ?? {}) as { selector?: unknown; secretCopies?: unknown };
    const requirements = typeof entry.selector === 'string' ? entry.selector.split(',').map((part) => part.trim()) : [];
    if (requirements.length === 0 || requirements.some((requirement) => !LABEL_REQUIREMENT.test(requirement))) {
      throw invalid(`${key}.selector must be comma-separated key=value label requirements, got ${JSON.stringify(entry.selector)}`);
    }
    const copies = entry.secretCopies ?? [];
    if (!Array.isArray(copies)) throw invalid(`${key}.secretCopies must be a list of {"key", "to"}`);
    const secretCopies = copies.map((copy: { key?: unknown; to?: unknown }, index) => {
      if (typeof copy?.key !== 'string' || !SECRET_KEY.test(copy.key)) throw invalid(`${key}.secretCopies[${index}].key must be a Secret key, got ${JSON.stringify(copy?.key)}`);
      if (typeof copy.to !== 'string' || !isObjectName(copy.to)) {
        throw invalid(`${key}.secretCopies[${index}].to must be a Secret name, got ${JSON.stringify(copy?.to)}`);
      }
      return { key: copy.key, to: copy.to };
    });
    specs[key] = { selector: requirements.join(','), ...(secretCopies.length > 0 ? { secretCopies } : {}) };
  }
  return specs;
}

/** A workload found by its labels: its name and the pod template the secret copies read. */
export interface LabelledWorkload {
  readonly ref: WorkloadRef;
  readonly podSpec?: V1PodSpec;
}

/** Workloads of `kind` carrying every label of `selector` (one list call, by label). */
export async function listWorkloadsByLabel(kube: KubeContext, kind: WorkloadKind, selector: string): Promise<LabelledWorkload[]> {
  const { namespace } = kube;
  const resource = kind === 'statefulset' ? 'statefulsets' : 'deployments';
  type Listed = { items?: { metadata?: V1ObjectMeta; spec?: { template?: { spec?: V1PodSpec } } }[] };
  const list = await callApi<Listed>(kube, { verb: 'list', resource, group: 'apps', namespace }, () =>
    kind === 'statefulset'
      ? kube.apps.listNamespacedStatefulSet({ namespace, labelSelector: selector })
      : kube.apps.listNamespacedDeployment({ namespace, labelSelector: selector }),
  );
  return (list.items ?? [])
    .filter((item) => !item.metadata?.deletionTimestamp)
    .map((item) => ({ ref: { kind, name: item.metadata?.name ?? '' }, podSpec: item.spec?.template?.spec }))
    .sort((a, b) => a.ref.name.localeCompare(b.ref.name));
}

/** The pod spec of a live workload; undefined when it is gone. */
export async function readWorkloadPodSpec(kube: KubeContext, ref: WorkloadRef): Promise<V1PodSpec | undefined> {
  const { namespace } = kube;
  const resource = ref.kind === 'statefulset' ? 'statefulsets' : 'deployments';
  try {
    const workload = await callApi<{ spec?: { template?: { spec?: V1PodSpec } } }>(kube, { verb: 'get', resource, group: 'apps', name: ref.name, namespace }, () =>
      ref.kind === 'statefulset'
        ? kube.apps.readNamespacedStatefulSet({ name: ref.name, namespace })
        : kube.apps.readNamespacedDeployment({ name: ref.name, namespace }),
    );
    return workload.spec?.template?.spec;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/**
 * The Secrets a pod spec may read `key` from: `sure` when the spec names the key (an env
 * `secretKeyRef`, a volume's `items`), `maybe` when it takes a whole Secret (a Secret volume or
 * projected source without items, `envFrom`) — only reading it tells.
 */
export function secretsReadingKey(pod: V1PodSpec | undefined, key: string): { sure: string[]; maybe: string[] } {
  const sure: string[] = [];
  const maybe: string[] = [];
  for (const container of [...(pod?.initContainers ?? []), ...(pod?.containers ?? [])]) {
    for (const variable of container.env ?? []) {
      const ref = variable.valueFrom?.secretKeyRef;
      if (ref?.name && ref.key === key) sure.push(ref.name);
    }
    for (const source of container.envFrom ?? []) if (source.secretRef?.name) maybe.push(source.secretRef.name);
  }
  for (const volume of pod?.volumes ?? []) {
    const sources = volume.secret?.secretName
      ? [{ name: volume.secret.secretName, items: volume.secret.items }]
      : (volume.projected?.sources ?? []).flatMap((source) => (source.secret?.name ? [{ name: source.secret.name, items: source.secret.items }] : []));
    for (const source of sources) {
      if (!source.items) maybe.push(source.name);
      else if (source.items.some((item) => item.key === key)) sure.push(source.name);
    }
  }
  const unique = (names: string[]) => [...new Set(names)];
  const sureNames = unique(sure);
  return { sure: sureNames, maybe: unique(maybe).filter((name) => !sureNames.includes(name)) };
}

async function readSecret(kube: KubeContext, name: string): Promise<V1Secret | undefined> {
  const { namespace } = kube;
  try {
    return await callApi(kube, { verb: 'get', resource: 'secrets', name, namespace }, () => kube.core.readNamespacedSecret({ name, namespace }));
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

export type SecretCopyOutcome = { readonly status: 'exists' } | { readonly status: 'copied'; readonly from: string };

/**
 * Copies the Secret `pod` reads `key` from to `to`, whole (every key, its type), with the keep
 * annotations, unless `to` exists. When the spec reads the key from no Secret that holds it, it
 * stops (exit 78) before anything changed, naming what the spec references.
 */
export async function copySecretReadingKey(
  kube: KubeContext,
  workload: WorkloadRef,
  pod: V1PodSpec | undefined,
  copy: { readonly key: string; readonly to: string },
  labels: Readonly<Record<string, string>>,
): Promise<SecretCopyOutcome> {
  if (await readSecret(kube, copy.to)) return { status: 'exists' };
  const { sure, maybe } = secretsReadingKey(pod, copy.key);
  let source: V1Secret | undefined;
  for (const name of [...sure, ...maybe]) {
    const candidate = await readSecret(kube, name);
    if (candidate?.data?.[copy.key] !== undefined) {
      source = candidate;
      break;
    }
  }
  const from = source?.metadata?.name;
  if (!source || !from) {
    const referenced = [...sure, ...maybe];
    throw new RunnerError(
      `${workload.kind}/${workload.name} (found by its labels) reads key ${copy.key} from no existing Secret: ${
        referenced.length > 0 ? `its pod spec would read it from ${referenced.join(', ')} (absent or without the key)` : 'its pod spec references no Secret that could hold it'
      }`,
      {
        exitCode: ExitCode.config,
        hint: `create Secret ${copy.to} with key ${copy.key} (the value the old release used) yourself, then upgrade again; nothing was changed`,
      },
    );
  }
  const { helmResourcePolicy, argoSyncOptions } = KEEP_ANNOTATIONS;
  const body: V1Secret = {
    metadata: {
      name: copy.to,
      labels: { ...labels },
      annotations: {
        [helmResourcePolicy.key]: helmResourcePolicy.value,
        [argoSyncOptions.key]: argoSyncOptions.value,
        'keycloak-migration/copied-from': `Secret/${from}`,
      },
    },
    type: source.type ?? 'Opaque',
    data: { ...source.data },
  };
  try {
    await callApi(kube, { verb: 'create', resource: 'secrets', namespace: kube.namespace }, () => kube.core.createNamespacedSecret({ namespace: kube.namespace, body }));
  } catch (error) {
    // Another runner copied it first.
    if (isAlreadyExists(error)) return { status: 'exists' };
    throw error;
  }
  // Key names only: the values are passwords.
  kube.log.info('copied the Secret of the workload found by its labels', { from: `Secret/${from}`, to: `Secret/${copy.to}`, keys: Object.keys(source.data ?? {}).sort() });
  return { status: 'copied', from };
}
