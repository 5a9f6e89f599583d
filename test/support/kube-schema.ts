/**
 * Validates synthesized manifests offline, the way a strict API server would:
 *
 * 1. types, required fields, enums and formats against the Kubernetes OpenAPI schemas
 *    (kubernetes-models 5.1, Kubernetes 1.3x; every kind we emit exists since 1.27);
 * 2. unknown fields, which kubernetes-models lets pass (and the API server would drop silently,
 *    hiding a typo such as `securityContxt`), by walking the field maps of
 *    @kubernetes/client-node's models, generated from the same OpenAPI spec;
 * 3. `postgresql.cnpg.io/v1` `Cluster` against the real CloudNativePG CRD (see cnpg-crd.ts);
 * 4. names: every object has a valid metadata.name, and no two share kind and name.
 *
 * Use `validateObjects(Testing.synth(chart))`: it throws one Error listing every problem.
 */
import * as clientNode from '@kubernetes/client-node';
import * as apps from 'kubernetes-models/apps/v1';
import * as autoscaling from 'kubernetes-models/autoscaling/v2';
import * as batch from 'kubernetes-models/batch/v1';
import * as coordination from 'kubernetes-models/coordination.k8s.io/v1';
import * as networking from 'kubernetes-models/networking.k8s.io/v1';
import * as policy from 'kubernetes-models/policy/v1';
import * as rbac from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import * as storage from 'kubernetes-models/storage.k8s.io/v1';
import * as core from 'kubernetes-models/v1';
import { cnpgClusterProblems } from './cnpg-crd.js';

/** A model class of kubernetes-models: construct with the object, `validate()` throws. */
type ModelClass = new (data: any) => { validate(): void };

const MODELS_BY_API_VERSION: Record<string, Record<string, unknown>> = {
  v1: core,
  'apps/v1': apps,
  'batch/v1': batch,
  'policy/v1': policy,
  'rbac.authorization.k8s.io/v1': rbac,
  'coordination.k8s.io/v1': coordination,
  'networking.k8s.io/v1': networking,
  'autoscaling/v2': autoscaling,
  'storage.k8s.io/v1': storage,
};

/** Kinds validated by a custom resource definition instead of the Kubernetes schema. */
const CUSTOM_RESOURCE_VALIDATORS: Record<string, (object: unknown) => string[]> = {
  'postgresql.cnpg.io/v1/Cluster': cnpgClusterProblems,
};

interface AttributeType {
  readonly baseName: string;
  readonly type: string;
}
interface ClientModel {
  getAttributeTypeMap(): AttributeType[];
}

const clientModels = clientNode as unknown as Record<string, ClientModel | undefined>;

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The client-node model for an apiVersion and kind: `V1StatefulSet`, or `CoreV1Event` style. */
function clientModelName(apiVersion: string, kind: string): string | undefined {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['core', apiVersion];
  const groupPrefix = capitalize((group ?? '').split('.')[0] ?? '');
  for (const candidate of [`${capitalize(version ?? '')}${kind}`, `${groupPrefix}${capitalize(version ?? '')}${kind}`]) {
    const model = clientModels[candidate];
    if (model && typeof model.getAttributeTypeMap === 'function') {
      const fields = model.getAttributeTypeMap().map((a) => a.baseName);
      if (fields.includes('kind') && fields.includes('metadata')) return candidate;
    }
  }
  return undefined;
}

const ARRAY = /^Array<(.+)>$/;
const MAP = /^\{ \[key: string\]: (.+); \}$/;
const LEAF_TYPES = new Set(['string', 'number', 'boolean', 'Date', 'IntOrString', 'any', 'object']);

/** Adds a problem for every field of `value` that the model `type` does not define. */
function unknownFields(value: unknown, type: string, path: string, problems: string[]): void {
  if (value === null || value === undefined || LEAF_TYPES.has(type)) return;
  const array = ARRAY.exec(type);
  if (array) {
    if (Array.isArray(value)) value.forEach((item, index) => unknownFields(item, array[1]!, `${path}/${index}`, problems));
    return;
  }
  const map = MAP.exec(type);
  if (map) {
    if (typeof value === 'object') {
      for (const [key, item] of Object.entries(value as object)) unknownFields(item, map[1]!, `${path}/${key}`, problems);
    }
    return;
  }
  const model = clientModels[type];
  // Enums and other non-object types have no field map: their values were checked in step 1.
  if (!model || typeof model.getAttributeTypeMap !== 'function' || typeof value !== 'object' || Array.isArray(value)) return;
  const attributes = model.getAttributeTypeMap();
  for (const [key, item] of Object.entries(value as object)) {
    const attribute = attributes.find((a) => a.baseName === key);
    if (!attribute) {
      problems.push(`${path}/${key}: unknown field (${type.replace(/^(Core)?V\d\w*?(?=[A-Z])/, '')} has no '${key}')`);
      continue;
    }
    unknownFields(item, attribute.type, `${path}/${key}`, problems);
  }
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Every problem of one object, each prefixed by nothing (the caller names the object). */
export function objectProblems(object: unknown): string[] {
  if (object === null || typeof object !== 'object' || Array.isArray(object)) {
    return [`not an object: ${JSON.stringify(object)}`];
  }
  const { apiVersion, kind, metadata } = object as { apiVersion?: unknown; kind?: unknown; metadata?: any };
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return ['apiVersion and kind must be strings'];
  const problems: string[] = [];
  const name = metadata?.name;
  if (typeof name !== 'string' || name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    problems.push(`/metadata/name: must be a DNS-1123 subdomain, got ${JSON.stringify(name)}`);
  }

  const custom = CUSTOM_RESOURCE_VALIDATORS[`${apiVersion}/${kind}`];
  if (custom) {
    problems.push(...custom(object));
    // The CRD leaves metadata open; check it against ObjectMeta.
    const meta = new core.Pod({ metadata });
    try {
      meta.validate();
    } catch (error) {
      problems.push(...validationMessages(error));
    }
    unknownFields(metadata, 'V1ObjectMeta', '/metadata', problems);
    return problems;
  }

  const group = MODELS_BY_API_VERSION[apiVersion];
  const Model = group?.[kind] as ModelClass | undefined;
  if (typeof Model !== 'function') {
    return [
      ...problems,
      `no schema for apiVersion ${apiVersion} kind ${kind}: add its group to test/support/kube-schema.ts ` +
        `(or its CRD validator), or fix the apiVersion/kind`,
    ];
  }
  try {
    new Model(object).validate();
  } catch (error) {
    problems.push(...validationMessages(error));
  }
  const modelName = clientModelName(apiVersion, kind);
  if (!modelName) {
    problems.push(`no field map for ${apiVersion} ${kind} in @kubernetes/client-node: unknown fields not checked`);
  } else {
    unknownFields(object, modelName, '', problems);
  }
  return problems;
}

function validationMessages(error: unknown): string[] {
  const errors = (error as { errors?: Array<{ instancePath?: string; message?: string; params?: unknown }> }).errors;
  if (Array.isArray(errors) && errors.length > 0) {
    return errors.map((e) => {
      const params = e.params && Object.keys(e.params).length > 0 ? ` ${JSON.stringify(e.params)}` : '';
      return `${e.instancePath || '/'}: ${e.message ?? 'invalid'}${params}`;
    });
  }
  return [String((error as Error)?.message ?? error)];
}

function label(object: any, index: number): string {
  const kind = object?.kind ?? '<no kind>';
  const name = object?.metadata?.name ?? `<unnamed #${index}>`;
  return `${object?.apiVersion ?? '<no apiVersion>'} ${kind}/${name}`;
}

/** Every problem of every object, prefixed with `apiVersion Kind/name`; empty when all are valid. */
export function schemaProblems(objects: readonly unknown[]): string[] {
  if (!Array.isArray(objects)) return [`expected an array of objects, got ${typeof objects}`];
  if (objects.length === 0) return ['no objects to validate (did the chart synthesize anything?)'];
  const problems: string[] = [];
  const seen = new Map<string, number>();
  objects.forEach((object: any, index) => {
    for (const problem of objectProblems(object)) problems.push(`${label(object, index)}: ${problem}`);
    const key = `${object?.kind}/${object?.metadata?.namespace ?? ''}/${object?.metadata?.name}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  });
  for (const [key, count] of seen) {
    if (count > 1) {
      const [kind, namespace, name] = key.split('/');
      problems.push(`${kind}/${name}${namespace ? ` in ${namespace}` : ''}: defined ${count} times (one would replace the other)`);
    }
  }
  return problems;
}

/**
 * Throws one Error listing every schema, unknown-field, CRD and naming problem of `objects`
 * (e.g. `Testing.synth(chart)`). Returns the number of objects validated.
 */
export function validateObjects(objects: readonly unknown[]): number {
  const problems = schemaProblems(objects);
  if (problems.length > 0) {
    throw new Error(`${problems.length} schema problem(s) in ${objects.length} object(s):\n  ${problems.join('\n  ')}`);
  }
  return objects.length;
}
