/**
 * The OpenAPI v3 documents of the fake API server, as far as clients read them.
 *
 * kubectl's validator, which helm 3 and 4 use when they build objects from a release manifest
 * (`kube.Client.Build` → `Factory.Validator("Strict")`), first asks the OpenAPI v3 documents whether
 * the server supports the `fieldValidation` query parameter for the object's kind (k8s.io/cli-runtime
 * `queryParamVerifierV3`: the PATCH operation tagged with the kind's `x-kubernetes-group-version-kind`
 * lists a `fieldValidation` query parameter). A server that supports it (every server since 1.27)
 * validates objects itself, so the client downloads no schema. With neither /openapi/v3 nor
 * /openapi/v2, helm fails: "failed to download openapi".
 *
 * So the fake serves the real documents' structure: `/openapi/v3` lists each group-version's
 * document by `serverRelativeURL` (with a `hash` query, as the real server does), and each
 * group-version document holds, per resource, the paths with their operations and the vendor
 * extensions clients match on. Component schemas are left out: no client of this project reads them.
 */
import { createHash } from 'node:crypto';

import type { ResourceType } from './resource-types.js';

/** `api/v1`, `apis/apps/v1`: the key of a group-version in the /openapi/v3 root document. */
export function openApiPathOf(resourceType: Pick<ResourceType, 'group' | 'version'>): string {
  return resourceType.group ? `apis/${resourceType.group}/${resourceType.version}` : `api/${resourceType.version}`;
}

const COMMON_QUERY_PARAMETERS = ['dryRun', 'fieldManager', 'fieldValidation', 'pretty'];

function queryParameters(names: readonly string[]): unknown[] {
  return names.map((name) => ({ name, in: 'query', schema: { type: name === 'force' ? 'boolean' : 'string', uniqueItems: true } }));
}

function operation(action: string, resourceType: ResourceType, parameters: readonly string[]): Record<string, unknown> {
  return {
    operationId: `${action}${resourceType.kind}`,
    parameters: queryParameters(parameters),
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': { group: resourceType.group, version: resourceType.version, kind: resourceType.kind },
  };
}

/** The group-version document: its resources' paths and operations. */
export function groupVersionDocument(types: readonly ResourceType[], groupVersionPath: string): unknown | undefined {
  const inGroupVersion = types.filter((t) => openApiPathOf(t) === groupVersionPath);
  if (inGroupVersion.length === 0) return undefined;
  const paths: Record<string, unknown> = {};
  for (const resourceType of inGroupVersion) {
    const scope = resourceType.namespaced ? '/namespaces/{namespace}' : '';
    const collection = `/${groupVersionPath}${scope}/${resourceType.plural}`;
    paths[collection] = {
      get: operation('list', resourceType, ['labelSelector', 'fieldSelector', 'resourceVersion', 'watch', 'limit', 'continue']),
      post: operation('post', resourceType, COMMON_QUERY_PARAMETERS),
      delete: operation('deletecollection', resourceType, ['labelSelector', 'fieldSelector', 'propagationPolicy']),
    };
    paths[`${collection}/{name}`] = {
      get: operation('get', resourceType, ['pretty']),
      put: operation('put', resourceType, COMMON_QUERY_PARAMETERS),
      patch: operation('patch', resourceType, [...COMMON_QUERY_PARAMETERS, 'force']),
      delete: operation('delete', resourceType, ['dryRun', 'gracePeriodSeconds', 'propagationPolicy']),
    };
  }
  return {
    openapi: '3.0.0',
    info: { title: 'Kubernetes', version: 'v1.31.0-fake' },
    paths,
    components: {},
  };
}

/** The /openapi/v3 root: every group-version the server serves, each with its document's URL. */
export function openApiRoot(types: readonly ResourceType[]): unknown {
  const paths: Record<string, { serverRelativeURL: string }> = {};
  for (const groupVersionPath of new Set(types.map(openApiPathOf))) {
    const hash = createHash('sha512').update(JSON.stringify(groupVersionDocument(types, groupVersionPath))).digest('hex').slice(0, 128).toUpperCase();
    paths[groupVersionPath] = { serverRelativeURL: `/openapi/v3/${groupVersionPath}?hash=${hash}` };
  }
  return { paths };
}

