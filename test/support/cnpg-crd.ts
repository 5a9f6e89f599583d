/**
 * Validates synthesized CloudNativePG `Cluster` objects against the real CRD's openAPIV3Schema
 * (../shared/crds/postgresql.cnpg.io_clusters.yaml beside the checkout), strictly: a field the
 * schema does not know is an error, as with `kubectl apply --validate=strict`, instead of being
 * silently pruned by the API server.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parse } from 'yaml';

/** The repository root (this file is test/support/cnpg-crd.ts). */
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where the CRD lives: `../shared/crds/` relative to the repository root, as on CI. */
export const CNPG_CLUSTER_CRD_PATH = resolve(REPO_ROOT, '..', 'shared', 'crds', 'postgresql.cnpg.io_clusters.yaml');

type JsonSchema = Record<string, any>;

let cachedSchema: JsonSchema | undefined;
let cachedValidator: ValidateFunction | undefined;

/** The `v1` openAPIV3Schema of the Cluster CRD. Throws, naming the path, when the file is missing. */
export function loadCnpgClusterSchema(): JsonSchema {
  if (cachedSchema) return cachedSchema;
  if (!existsSync(CNPG_CLUSTER_CRD_PATH)) {
    throw new Error(
      `CloudNativePG Cluster CRD not found at ${CNPG_CLUSTER_CRD_PATH}: tests expect the shared directory ` +
        `beside the checkout (../shared/crds/postgresql.cnpg.io_clusters.yaml relative to ${REPO_ROOT})`,
    );
  }
  const crd = parse(readFileSync(CNPG_CLUSTER_CRD_PATH, 'utf8'));
  if (crd?.kind !== 'CustomResourceDefinition' || crd?.spec?.names?.kind !== 'Cluster') {
    throw new Error(`${CNPG_CLUSTER_CRD_PATH} is not the CloudNativePG Cluster CustomResourceDefinition`);
  }
  const version = (crd.spec.versions as JsonSchema[]).find((v) => v.name === 'v1');
  const schema = version?.schema?.openAPIV3Schema;
  if (!schema) throw new Error(`${CNPG_CLUSTER_CRD_PATH} has no v1 openAPIV3Schema`);
  cachedSchema = schema as JsonSchema;
  return cachedSchema;
}

/**
 * A copy of a structural schema in which every object with `properties` rejects other fields,
 * except where Kubernetes keeps unknown fields (`x-kubernetes-preserve-unknown-fields`).
 * `metadata` is left open: ObjectMeta is validated by the Kubernetes schema instead.
 */
function strict(schema: JsonSchema, path: string[] = []): JsonSchema {
  if (Array.isArray(schema)) return schema.map((item) => strict(item, path)) as unknown as JsonSchema;
  if (schema === null || typeof schema !== 'object') return schema;
  const copy: JsonSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'properties') {
      copy.properties = Object.fromEntries(
        Object.entries(value as JsonSchema).map(([name, sub]) => [name, strict(sub as JsonSchema, [...path, name])]),
      );
    } else if (key === 'items' || key === 'additionalProperties' || key === 'not') {
      copy[key] = typeof value === 'object' ? strict(value as JsonSchema, path) : value;
    } else if (key === 'allOf' || key === 'anyOf' || key === 'oneOf') {
      copy[key] = (value as JsonSchema[]).map((sub) => strict(sub, path));
    } else {
      copy[key] = value;
    }
  }
  const isTopLevelMetadata = path.length === 1 && path[0] === 'metadata';
  if (
    copy.properties &&
    copy.additionalProperties === undefined &&
    copy['x-kubernetes-preserve-unknown-fields'] !== true &&
    !isTopLevelMetadata
  ) {
    copy.additionalProperties = false;
  }
  return copy;
}

function validator(): ValidateFunction {
  if (cachedValidator) return cachedValidator;
  const ajv = new Ajv({
    allErrors: true,
    strict: false,
    // The CRD uses Kubernetes' own keywords (x-kubernetes-*); they carry no JSON Schema meaning.
    formats: {
      int32: true,
      int64: true,
      double: true,
      float: true,
      byte: true,
      'int-or-string': true,
      'date-time': /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/,
    },
  });
  cachedValidator = ajv.compile(strict(loadCnpgClusterSchema()));
  return cachedValidator;
}

function describeError(error: ErrorObject): string {
  const where = error.instancePath || '/';
  if (error.keyword === 'additionalProperties') {
    return `${where}/${String(error.params.additionalProperty)}: unknown field (not in the Cluster CRD schema)`;
  }
  if (error.keyword === 'enum') {
    return `${where}: ${error.message} ${JSON.stringify(error.params.allowedValues)}`;
  }
  return `${where}: ${error.message}`;
}

/**
 * Problems of one `postgresql.cnpg.io/v1` Cluster against the CRD (empty when valid). The CRD's
 * CEL rules (x-kubernetes-validations) are not evaluated.
 */
export function cnpgClusterProblems(object: unknown): string[] {
  const validate = validator();
  if (validate(object)) return [];
  return (validate.errors ?? []).map(describeError);
}
