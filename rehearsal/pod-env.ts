/**
 * A container's environment as the kubelet builds it, from the objects in the fake API:
 * `env[].value` with `$(VAR)` expansion from earlier entries, `valueFrom.secretKeyRef`,
 * `configMapKeyRef` (both honouring `optional`), `fieldRef` (metadata.name, metadata.namespace,
 * metadata.uid, metadata.labels['k'], metadata.annotations['k'], spec.serviceAccountName), and
 * `envFrom` Secret/ConfigMap refs. A missing non-optional Secret or key is a
 * {@link PodConfigError}: the kubelet keeps such a pod in CreateContainerConfigError until it
 * appears, which callers model by waiting.
 *
 * Then the rehearsal's one deliberate change, {@link mapServiceHosts}: a variable whose name ends
 * in `HOST` and whose value is a Service (or a StatefulSet pod behind a headless Service) of the
 * namespace is set to `127.0.0.1`, and its partner variable (same name with `HOST` → `PORT`,
 * e.g. `TARGET_PGHOST`/`TARGET_PGPORT`, `KC_DB_URL_HOST`/`KC_DB_URL_PORT`; 5432 when absent) to
 * the local port of the Service proxy for that Service port (see service-proxy.ts). The runner's
 * containers (those with MIGRATION_* variables) also get MIGRATION_SERVICE_ADDRESSES for every
 * port of every Service of the namespace: the names the runner finds at run time (an adopted
 * legacy database's Service) are reached through the same proxies. Every other value is passed
 * exactly as resolved.
 */
import type { FakeKubeApiServer, KubeObject as StoredObject } from '../test/support/fake-kube/index.js';

import { Env } from '../lib/contract.js';
import { formatServiceAddresses } from '../runner/src/kube/service-address.js';

import type { ServiceProxies } from './service-proxy.js';

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: { name: string; key: string; optional?: boolean };
    fieldRef?: { fieldPath: string };
    resourceFieldRef?: unknown;
  };
}

export interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: { secretRef?: { name: string; optional?: boolean }; configMapRef?: { name: string; optional?: boolean }; prefix?: string }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}

/** The pod cannot start yet: a referenced Secret/ConfigMap (or key) is missing. */
export class PodConfigError extends Error {
  override readonly name = 'PodConfigError';
}

export function resolveContainerEnv(server: FakeKubeApiServer, pod: StoredObject, container: Container): Record<string, string> {
  const namespace = pod.metadata.namespace;
  const env: Record<string, string> = {};
  const readData = (kind: 'Secret' | 'ConfigMap', name: string): Record<string, string> | undefined => {
    const object = server.get({ apiVersion: 'v1', kind, name, namespace });
    if (!object) return undefined;
    if (kind === 'ConfigMap') return (object.data ?? {}) as Record<string, string>;
    const data = (object.data ?? {}) as Record<string, string>;
    return Object.fromEntries(Object.entries(data).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]));
  };

  for (const source of container.envFrom ?? []) {
    const reference = source.secretRef ?? source.configMapRef;
    if (!reference) continue;
    const kind = source.secretRef ? 'Secret' : 'ConfigMap';
    const data = readData(kind, reference.name);
    if (!data) {
      if (reference.optional) continue;
      throw new PodConfigError(`container ${container.name}: ${kind.toLowerCase()} "${reference.name}" not found (envFrom)`);
    }
    for (const [key, value] of Object.entries(data)) env[`${source.prefix ?? ''}${key}`] = value;
  }

  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) {
      env[variable.name] = expand(variable.value, env);
      continue;
    }
    const from = variable.valueFrom;
    if (!from) {
      env[variable.name] = '';
      continue;
    }
    const keyRef = from.secretKeyRef ?? from.configMapKeyRef;
    if (keyRef) {
      const kind = from.secretKeyRef ? 'Secret' : 'ConfigMap';
      const data = readData(kind, keyRef.name);
      const value = data?.[keyRef.key];
      if (value === undefined) {
        if (keyRef.optional) continue;
        throw new PodConfigError(
          data === undefined
            ? `container ${container.name}: ${kind.toLowerCase()} "${keyRef.name}" not found (env ${variable.name})`
            : `container ${container.name}: couldn't find key ${keyRef.key} in ${kind} ${namespace}/${keyRef.name} (env ${variable.name})`,
        );
      }
      env[variable.name] = value;
      continue;
    }
    if (from.fieldRef) {
      env[variable.name] = fieldValue(pod, from.fieldRef.fieldPath);
      continue;
    }
    throw new Error(`container ${container.name}: env ${variable.name} uses a valueFrom the rehearsal does not model: ${JSON.stringify(from)}`);
  }
  return env;
}

function fieldValue(pod: StoredObject, fieldPath: string): string {
  const labelMatch = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (labelMatch) return String((pod.metadata[labelMatch[1] as 'labels' | 'annotations'] ?? {})[labelMatch[2]!] ?? '');
  switch (fieldPath) {
    case 'metadata.name':
      return pod.metadata.name;
    case 'metadata.namespace':
      return pod.metadata.namespace ?? '';
    case 'metadata.uid':
      return String(pod.metadata.uid ?? '');
    case 'spec.serviceAccountName':
      return String((pod.spec as { serviceAccountName?: string } | undefined)?.serviceAccountName ?? 'default');
    case 'spec.nodeName':
      return 'rehearsal-node';
    case 'status.podIP':
    case 'status.hostIP':
      return '127.0.0.1';
    default:
      throw new Error(`fieldRef ${fieldPath} is not modelled by the rehearsal`);
  }
}

/** Kubernetes' `$(VAR)` expansion: known names are replaced, `$$` escapes, unknown stay literal. */
export function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (match, name: string | undefined) => {
    if (match === '$$') return '$';
    return name !== undefined && env[name] !== undefined ? env[name] : match;
  });
}

/** What {@link mapServiceHosts} changed, for logs and tests. */
export interface HostMapping {
  readonly variable: string;
  readonly from: string;
  readonly to: string;
}

/** Rewrites `*HOST` / `*PORT` pairs that name Services of the namespace (see the module comment). */
export async function mapServiceHosts(env: Record<string, string>, proxies: ServiceProxies): Promise<HostMapping[]> {
  const mappings: HostMapping[] = [];
  for (const name of Object.keys(env)) {
    if (!name.endsWith('HOST')) continue;
    const host = env[name]!;
    if (!proxies.parseHost(host)) continue;
    const portVariable = `${name.slice(0, -'HOST'.length)}PORT`;
    const declared = env[portVariable] ?? '5432';
    const port = Number(declared);
    if (!Number.isInteger(port)) throw new Error(`${portVariable} must be a port number, got ${JSON.stringify(declared)}`);
    const local = await proxies.localPort(host, port);
    if (local === undefined) continue;
    env[name] = '127.0.0.1';
    env[portVariable] = String(local);
    mappings.push({ variable: name, from: `${host}:${port}`, to: `127.0.0.1:${local}` });
  }
  if (Object.keys(env).some((name) => name.startsWith('MIGRATION_')) && env[Env.serviceAddresses] === undefined) {
    env[Env.serviceAddresses] = formatServiceAddresses(await proxies.everyServicePort());
  }
  return mappings;
}
