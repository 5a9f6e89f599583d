/**
 * The three patch formats client-node sends (`PatchStrategy` in client-node):
 * - JSON merge patch (RFC 7386): maps merge, `null` deletes a key, lists are replaced;
 * - strategic merge patch: like merge patch, except that lists merge by the `patchMergeKey` of
 *   their Go type (containers and env by `name`, a Service's ports by `port`, a container's by
 *   `containerPort`, volumeMounts by `mountPath`, …) with the `$patch`, `$setElementOrder`,
 *   `$deleteFromPrimitiveList` and `$retainKeys` directives — what helm 3's three-way patches use;
 * - JSON patch (RFC 6902): add, remove, replace, move, copy, test.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export const PatchContentType = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

export class PatchError extends Error {}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

export function applyMergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const result: JsonObject = isObject(target) ? clone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}

/**
 * How a list field merges under a strategic merge patch: the `patchStrategy`/`patchMergeKey` tags of
 * the Go types in k8s.io/api (what apimachinery's strategicpatch reads), for the kinds the product,
 * Bitnami's charts and the tools use. Every list not named here is atomic (replaced whole), as
 * `tolerations`, `args`, `rules`, `subjects`, `volumeClaimTemplates` and `envFrom` are.
 */
type ListStrategy = { readonly mergeKey: string } | 'primitive-merge' | 'replace';

const MERGE_KEY_BY_FIELD: Readonly<Record<string, string>> = {
  // core/v1 PodSpec
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  volumes: 'name',
  imagePullSecrets: 'name',
  hostAliases: 'ip',
  topologySpreadConstraints: 'topologyKey',
  resourceClaims: 'name',
  schedulingGates: 'name',
  // core/v1 Container
  env: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  // meta/v1 ObjectMeta
  ownerReferences: 'uid',
  // status of Pods, workloads and Jobs
  conditions: 'type',
};

/** The merge strategy of the list at `path` (the map keys from the object's root) of a `kind`. */
function listStrategy(kind: string | undefined, path: readonly string[]): ListStrategy {
  const field = path[path.length - 1] as string;
  if (field === 'finalizers' && path.length === 2 && path[0] === 'metadata') return 'primitive-merge';
  if (field === 'ports') {
    // ServiceSpec.ports: patchMergeKey "port"; Container.ports: patchMergeKey "containerPort".
    if (kind === 'Service' && path.length === 2 && path[0] === 'spec') return { mergeKey: 'port' };
    if (path.some((key) => key === 'containers' || key === 'initContainers' || key === 'ephemeralContainers')) return { mergeKey: 'containerPort' };
    return 'replace';
  }
  const mergeKey = MERGE_KEY_BY_FIELD[field];
  return mergeKey === undefined ? 'replace' : { mergeKey };
}

function sameKey(a: Json | undefined, b: Json | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Orders a merged list as `$setElementOrder` says; elements it does not name keep their place after them. */
function ordered(list: Json[], order: Json | undefined, keyOf: (item: Json) => Json | undefined): Json[] {
  if (!Array.isArray(order)) return list;
  const orderKeys = order.map((entry) => keyOf(entry));
  const named = orderKeys.flatMap((key) => list.filter((item) => sameKey(keyOf(item), key)));
  const rest = list.filter((item) => !orderKeys.some((key) => sameKey(keyOf(item), key)));
  return [...named, ...rest];
}

function mergeList(kind: string | undefined, path: string[], current: Json | undefined, patch: Json[], order: Json | undefined, deletions: Json | undefined): Json[] {
  const strategy = listStrategy(kind, path);
  const base = Array.isArray(current) ? current : [];
  if (strategy === 'primitive-merge') {
    const removed = Array.isArray(deletions) ? deletions : [];
    const merged = [...base, ...patch.filter((value) => !base.some((item) => sameKey(item, value)))].filter((value) => !removed.some((r) => sameKey(r, value)));
    return ordered(merged, order, (item) => item);
  }
  if (strategy === 'replace') {
    if (patch.some((entry) => isObject(entry) && '$patch' in entry)) {
      throw new PatchError(`${path.join('.')}: a $patch directive in a list that has no merge key`);
    }
    return clone(patch);
  }
  const { mergeKey } = strategy;
  // `[{$patch: replace}, …]`: the list becomes exactly the other entries.
  if (patch.some((entry) => isObject(entry) && entry.$patch === 'replace')) {
    return patch.filter((entry) => !(isObject(entry) && entry.$patch === 'replace')).map((entry) => clone(entry));
  }
  const keyOf = (item: Json): Json | undefined => (isObject(item) ? item[mergeKey] : undefined);
  const merged: Json[] = base.map((item) => clone(item));
  for (const entry of patch) {
    if (!isObject(entry) || entry[mergeKey] === undefined) {
      throw new PatchError(`${path.join('.')}: map: ${JSON.stringify(entry)} does not contain declared merge key: ${mergeKey}`);
    }
    const index = merged.findIndex((item) => sameKey(keyOf(item), entry[mergeKey]));
    if (entry.$patch === 'delete') {
      if (index >= 0) merged.splice(index, 1);
    } else if (index >= 0) {
      merged[index] = mergeMap(kind, path, merged[index], entry);
    } else {
      merged.push(mergeMap(kind, path, {}, entry));
    }
  }
  return ordered(merged, order, keyOf);
}

function mergeMap(kind: string | undefined, path: string[], target: Json | undefined, patch: JsonObject): JsonObject {
  if (patch.$patch === 'replace') {
    const { $patch: _ignored, ...rest } = patch;
    return clone(rest);
  }
  const result: JsonObject = isObject(target) ? clone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith('$')) continue;
    if (value === null) {
      delete result[key];
      continue;
    }
    if (isObject(value) && value.$patch === 'delete') {
      delete result[key];
      continue;
    }
    const fieldPath = [...path, key];
    if (Array.isArray(value)) {
      result[key] = mergeList(kind, fieldPath, result[key], value, patch[`$setElementOrder/${key}`], patch[`$deleteFromPrimitiveList/${key}`]);
    } else if (isObject(value)) {
      result[key] = mergeMap(kind, fieldPath, result[key], value);
    } else {
      result[key] = clone(value);
    }
  }
  // A list the patch only deletes from or reorders (no `key` entry of its own).
  for (const [key, value] of Object.entries(patch)) {
    const field = /^\$(?:deleteFromPrimitiveList|setElementOrder)\/(.+)$/.exec(key)?.[1];
    if (field === undefined || field in patch || !Array.isArray(result[field])) continue;
    result[field] = mergeList(kind, [...path, field], result[field], [], key.startsWith('$setElementOrder/') ? value : undefined, key.startsWith('$deleteFromPrimitiveList/') ? value : undefined);
  }
  if (Array.isArray(patch.$retainKeys)) {
    const retained = new Set(patch.$retainKeys.filter((key): key is string => typeof key === 'string'));
    for (const key of Object.keys(result)) if (!retained.has(key)) delete result[key];
  }
  return result;
}

/**
 * Strategic merge patch as apimachinery's strategicpatch applies it: maps merge (`null` deletes a
 * key), lists merge by the kind's `patchMergeKey` (see {@link listStrategy}) with `$patch: delete`,
 * `$patch: replace`, `$setElementOrder`, `$deleteFromPrimitiveList` and `$retainKeys`; atomic lists
 * are replaced. `kind` selects the merge keys where a field name is ambiguous (`ports`).
 */
export function applyStrategicMergePatch(target: Json | undefined, patch: Json, kind?: string): Json {
  if (!isObject(patch)) return clone(patch);
  return mergeMap(kind, [], target, patch);
}

interface JsonPatchOperation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: Json;
}

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new PatchError(`invalid JSON pointer "${pointer}": must start with "/"`);
  return pointer
    .slice(1)
    .split('/')
    .map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function getAt(document: Json, tokens: string[], pointer: string): Json {
  let current: Json = document;
  for (const token of tokens) {
    if (Array.isArray(current)) {
      const index = Number(token);
      if (!Number.isInteger(index) || index < 0 || index >= current.length) {
        throw new PatchError(`path "${pointer}": index ${token} out of range`);
      }
      current = current[index] as Json;
    } else if (isObject(current) && token in current) {
      current = current[token] as Json;
    } else {
      throw new PatchError(`path "${pointer}" does not exist`);
    }
  }
  return current;
}

function parentOf(document: Json, pointer: string): { parent: Json; key: string } {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) throw new PatchError(`path "${pointer}" cannot address the document root`);
  const key = tokens[tokens.length - 1] as string;
  return { parent: getAt(document, tokens.slice(0, -1), pointer), key };
}

function addAt(document: Json, pointer: string, value: Json): Json {
  if (pointer === '') return clone(value);
  const { parent, key } = parentOf(document, pointer);
  if (Array.isArray(parent)) {
    const index = key === '-' ? parent.length : Number(key);
    if (!Number.isInteger(index) || index < 0 || index > parent.length) {
      throw new PatchError(`path "${pointer}": index ${key} out of range`);
    }
    parent.splice(index, 0, clone(value));
  } else if (isObject(parent)) {
    parent[key] = clone(value);
  } else {
    throw new PatchError(`path "${pointer}": parent is not an object or array`);
  }
  return document;
}

function removeAt(document: Json, pointer: string): Json {
  const { parent, key } = parentOf(document, pointer);
  if (Array.isArray(parent)) {
    const index = Number(key);
    if (!Number.isInteger(index) || index < 0 || index >= parent.length) {
      throw new PatchError(`path "${pointer}": index ${key} out of range`);
    }
    parent.splice(index, 1);
  } else if (isObject(parent) && key in parent) {
    delete parent[key];
  } else {
    throw new PatchError(`path "${pointer}" does not exist`);
  }
  return document;
}

export function applyJsonPatch(target: Json, operations: Json): Json {
  if (!Array.isArray(operations)) throw new PatchError('a JSON patch must be an array of operations');
  let document = clone(target);
  for (const raw of operations) {
    if (!isObject(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') {
      throw new PatchError(`invalid JSON patch operation ${JSON.stringify(raw)}`);
    }
    const operation = raw as unknown as JsonPatchOperation;
    switch (operation.op) {
      case 'add':
        document = addAt(document, operation.path, operation.value ?? null);
        break;
      case 'remove':
        document = removeAt(document, operation.path);
        break;
      case 'replace':
        getAt(document, parsePointer(operation.path), operation.path);
        document = removeAt(document, operation.path);
        document = addAt(document, operation.path, operation.value ?? null);
        break;
      case 'move': {
        const from = operation.from ?? '';
        const value = getAt(document, parsePointer(from), from);
        document = removeAt(document, from);
        document = addAt(document, operation.path, value);
        break;
      }
      case 'copy': {
        const from = operation.from ?? '';
        document = addAt(document, operation.path, getAt(document, parsePointer(from), from));
        break;
      }
      case 'test': {
        const actual = getAt(document, parsePointer(operation.path), operation.path);
        if (JSON.stringify(actual) !== JSON.stringify(operation.value)) {
          throw new PatchError(`testing value ${operation.path} failed`);
        }
        break;
      }
      default:
        throw new PatchError(`unsupported JSON patch operation "${String((operation as { op: unknown }).op)}"`);
    }
  }
  return document;
}

/** Applies a patch body of the given content type; throws PatchError for malformed patches. */
export function applyPatch(contentType: string, target: Json, patch: Json, kind?: string): Json {
  switch (contentType) {
    case PatchContentType.json:
      return applyJsonPatch(target, patch);
    case PatchContentType.merge:
      return applyMergePatch(target, patch);
    case PatchContentType.strategic:
      return applyStrategicMergePatch(target, patch, kind);
    default:
      throw new PatchError(`unsupported patch content type "${contentType}"`);
  }
}
