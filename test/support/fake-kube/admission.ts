/**
 * The part of the real API server's defaulting and validation that a migration can trip over:
 * object names, label values, Secret `stringData` folding and base64 data, ConfigMap string data,
 * workload selectors matching their template, scale replicas, a Service's allocated cluster IP,
 * StatefulSet / Job / PVC / Service fields that are immutable after creation, and a PVC that may
 * only grow. Each failure is the same 422 Invalid Status, with the same field paths and messages,
 * that the real server returns (kubernetes pkg/apis/{apps,batch,core}/validation,
 * pkg/registry/core/service/storage/storage.go).
 */
import { invalid, type StatusError } from './status.js';
import type { ResourceType } from './resource-types.js';
import type { KubeObject } from './object-store.js';

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

type Cause = { field: string; message: string };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function rejectIfAny(resourceType: ResourceType, name: string, causes: Cause[]): void {
  if (causes.length > 0) throw invalid(resourceType, name, causes) as StatusError;
}

function isService(resourceType: ResourceType): boolean {
  return resourceType.group === '' && resourceType.plural === 'services';
}

/** The next address of the fake's service CIDR (10.96.0.0/12, kube-apiserver's default). */
let nextClusterIp = 10;
function allocateClusterIp(): string {
  const n = nextClusterIp++;
  return `10.96.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
}

/**
 * What an update leaves as it was when the client omits it: a Service's allocated `clusterIP` /
 * `clusterIPs` are copied from the stored object when the new one carries none
 * (pkg/registry/core/service/storage/storage.go `patchAllocatedValues`). This is why
 * `kubectl apply` and Helm's merge of a manifest without `clusterIP` keep the address, while a
 * manifest that names another one (`None` for a headless Service) is refused.
 */
export function carryAllocatedValues(resourceType: ResourceType, previous: KubeObject, next: KubeObject): void {
  if (!isService(resourceType)) return;
  const oldSpec = isPlainObject(previous.spec) ? previous.spec : {};
  const newSpec = isPlainObject(next.spec) ? next.spec : undefined;
  if (!newSpec || newSpec.type === 'ExternalName' || oldSpec.type === 'ExternalName') return;
  if ((newSpec.clusterIP === undefined || newSpec.clusterIP === '') && oldSpec.clusterIP !== undefined) {
    newSpec.clusterIP = oldSpec.clusterIP;
    if (newSpec.clusterIPs === undefined && oldSpec.clusterIPs !== undefined) newSpec.clusterIPs = structuredClone(oldSpec.clusterIPs);
  }
}

/** Defaults applied on create and update, as the real server's defaulting functions do. */
export function applyDefaults(resourceType: ResourceType, object: KubeObject): void {
  const spec = isPlainObject(object.spec) ? object.spec : undefined;
  if (isService(resourceType) && spec) {
    if (spec.type === undefined) spec.type = 'ClusterIP';
    if (spec.type !== 'ExternalName') {
      // A ClusterIP, NodePort or LoadBalancer Service gets an address unless it asks for none.
      if (spec.clusterIP === undefined || spec.clusterIP === '') spec.clusterIP = allocateClusterIp();
      if (spec.clusterIPs === undefined) spec.clusterIPs = [spec.clusterIP];
    }
  }
  if (resourceType.group === '' && resourceType.plural === 'secrets') {
    if (isPlainObject(object.stringData)) {
      const data: Record<string, unknown> = isPlainObject(object.data) ? { ...object.data } : {};
      for (const [key, value] of Object.entries(object.stringData)) {
        data[key] = Buffer.from(String(value), 'utf8').toString('base64');
      }
      object.data = data;
    }
    delete object.stringData;
    if (object.type === undefined) object.type = 'Opaque';
  }
  if (resourceType.group === 'apps' && (resourceType.plural === 'statefulsets' || resourceType.plural === 'deployments')) {
    if (spec && spec.replicas === undefined) spec.replicas = 1;
  }
  if (resourceType.group === '' && resourceType.plural === 'persistentvolumes' && spec) {
    if (spec.persistentVolumeReclaimPolicy === undefined) spec.persistentVolumeReclaimPolicy = 'Retain';
  }
  if (resourceType.group === '' && resourceType.plural === 'pods') {
    const status = isPlainObject(object.status) ? object.status : {};
    if (status.phase === undefined) status.phase = 'Pending';
    object.status = status;
  }
}

/** Validation of a whole object (create and update). */
export function validateObject(resourceType: ResourceType, object: KubeObject): void {
  const name = object.metadata.name;
  const causes: Cause[] = [];
  if (!name) {
    causes.push({ field: 'metadata.name', message: 'Required value: name or generateName is required' });
  } else if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    causes.push({
      field: 'metadata.name',
      message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
    });
  }
  for (const [key, value] of Object.entries(object.metadata.labels ?? {})) {
    if (typeof value !== 'string' || value.length > 63 || !LABEL_VALUE.test(value)) {
      causes.push({
        field: `metadata.labels`,
        message: `Invalid value: "${String(value)}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (label ${key})`,
      });
    }
  }
  for (const [key, value] of Object.entries(object.metadata.annotations ?? {})) {
    if (typeof value !== 'string') causes.push({ field: `metadata.annotations[${key}]`, message: 'Invalid value: must be a string' });
  }
  if (resourceType.group === '' && resourceType.plural === 'configmaps') {
    for (const [key, value] of Object.entries(isPlainObject(object.data) ? object.data : {})) {
      if (typeof value !== 'string') causes.push({ field: `data[${key}]`, message: 'Invalid value: must be a string' });
    }
  }
  if (resourceType.group === '' && resourceType.plural === 'secrets') {
    for (const [key, value] of Object.entries(isPlainObject(object.data) ? object.data : {})) {
      if (typeof value !== 'string' || value.length % 4 !== 0 || !BASE64.test(value)) {
        causes.push({ field: `data[${key}]`, message: 'Invalid value: illegal base64 data' });
      }
    }
  }
  const spec = isPlainObject(object.spec) ? object.spec : undefined;
  if (resourceType.group === 'apps' && spec) {
    const selector = isPlainObject(spec.selector) ? spec.selector : undefined;
    const matchLabels = selector && isPlainObject(selector.matchLabels) ? (selector.matchLabels as Record<string, string>) : undefined;
    if (!selector) {
      causes.push({ field: 'spec.selector', message: 'Required value' });
    } else if (matchLabels) {
      const template = isPlainObject(spec.template) ? spec.template : {};
      const templateMetadata = isPlainObject(template.metadata) ? template.metadata : {};
      const templateLabels = isPlainObject(templateMetadata.labels) ? (templateMetadata.labels as Record<string, string>) : {};
      if (!Object.entries(matchLabels).every(([key, value]) => templateLabels[key] === value)) {
        causes.push({ field: 'spec.template.metadata.labels', message: '`selector` does not match template `labels`' });
      }
    }
    if (spec.replicas !== undefined && (!Number.isInteger(spec.replicas) || (spec.replicas as number) < 0)) {
      causes.push({ field: 'spec.replicas', message: `Invalid value: ${JSON.stringify(spec.replicas)}: must be greater than or equal to 0` });
    }
  }
  rejectIfAny(resourceType, name, causes);
}

/** Go's `%#v` of a `[]string`, as field.Invalid prints the value. */
function goStringSlice(values: readonly string[]): string {
  return `[]string{${values.map((value) => JSON.stringify(value)).join(', ')}}`;
}

function withoutKeys(value: Record<string, unknown>, keys: string[]): string {
  const copy = { ...value };
  for (const key of keys) delete copy[key];
  return JSON.stringify(copy);
}

/** Fields that cannot change after creation, with the real server's messages. */
export function validateUpdate(resourceType: ResourceType, previous: KubeObject, next: KubeObject): void {
  const name = next.metadata.name;
  const oldSpec = isPlainObject(previous.spec) ? previous.spec : {};
  const newSpec = isPlainObject(next.spec) ? next.spec : {};
  const causes: Cause[] = [];
  if (resourceType.group === 'apps' && resourceType.plural === 'statefulsets') {
    const mutable = ['replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy', 'minReadySeconds'];
    if (withoutKeys(oldSpec, mutable) !== withoutKeys(newSpec, mutable)) {
      causes.push({
        field: 'spec',
        message:
          "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
      });
    }
  }
  if (resourceType.group === 'apps' && resourceType.plural === 'deployments') {
    if (JSON.stringify(oldSpec.selector) !== JSON.stringify(newSpec.selector)) {
      causes.push({ field: 'spec.selector', message: 'Invalid value: field is immutable' });
    }
  }
  if (resourceType.group === 'batch' && resourceType.plural === 'jobs') {
    // pkg/apis/batch/validation ValidateJobSpecUpdate: selector and template are immutable.
    if (JSON.stringify(oldSpec.selector) !== JSON.stringify(newSpec.selector)) {
      causes.push({ field: 'spec.selector', message: `Invalid value: ${JSON.stringify(newSpec.selector ?? null)}: field is immutable` });
    }
    if (JSON.stringify(oldSpec.template) !== JSON.stringify(newSpec.template)) {
      causes.push({ field: 'spec.template', message: 'Invalid value: field is immutable' });
    }
  }
  if (isService(resourceType) && oldSpec.type !== 'ExternalName' && newSpec.type !== 'ExternalName') {
    // pkg/apis/core/validation validateUpgradeDowngradeClusterIPs: the primary address stays.
    const oldIps = Array.isArray(oldSpec.clusterIPs) ? (oldSpec.clusterIPs as string[]) : [];
    const newIps = Array.isArray(newSpec.clusterIPs) ? (newSpec.clusterIPs as string[]) : newSpec.clusterIP ? [String(newSpec.clusterIP)] : [];
    if (oldIps.length > 0 && newIps.length > 0 && oldIps[0] !== newIps[0]) {
      causes.push({ field: 'spec.clusterIPs[0]', message: `Invalid value: ${goStringSlice(newIps)}: may not change once set` });
    } else if (oldSpec.clusterIP !== undefined && newSpec.clusterIP !== undefined && oldSpec.clusterIP !== newSpec.clusterIP) {
      causes.push({ field: 'spec.clusterIPs[0]', message: `Invalid value: ${goStringSlice([String(newSpec.clusterIP)])}: may not change once set` });
    }
  }
  if (resourceType.group === '' && resourceType.plural === 'persistentvolumeclaims') {
    const mutable = ['resources', 'volumeAttributesClassName', 'volumeName'];
    if (withoutKeys(oldSpec, mutable) !== withoutKeys(newSpec, mutable)) {
      causes.push({
        field: 'spec',
        message: 'Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims',
      });
    }
  }
  rejectIfAny(resourceType, name, causes);
}
