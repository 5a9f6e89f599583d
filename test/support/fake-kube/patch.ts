/**
 * The three patch formats client-node sends (`PatchStrategy` in client-node):
 * - JSON merge patch (RFC 7386): maps merge, `null` deletes a key, lists are replaced;
 * - strategic merge patch: like merge patch, except that lists of objects that all carry a
 *   `name` (containers, env, volumes, ports: the common `patchMergeKey: name` lists) are merged
 *   by name, and `$patch: delete` / `$retainKeys` directives are honoured for those entries.
 *   Other merge keys (`mountPath`, `containerPort`) fall back to replacement — a documented
 *   simplification, since the fake has no OpenAPI schema to read them from;
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

function mergeableByName(list: Json[]): list is JsonObject[] {
  return list.every((item) => isObject(item) && typeof item.name === 'string');
}

export function applyStrategicMergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const result: JsonObject = isObject(target) ? clone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key === '$patch' || key === '$retainKeys') continue;
    if (key.startsWith('$setElementOrder/')) continue;
    if (value === null) {
      delete result[key];
      continue;
    }
    const current = result[key];
    if (Array.isArray(value) && Array.isArray(current) && mergeableByName(value) && mergeableByName(current)) {
      const merged = [...current];
      for (const entry of value) {
        const index = merged.findIndex((item) => item.name === entry.name);
        if (entry.$patch === 'delete') {
          if (index >= 0) merged.splice(index, 1);
        } else if (index >= 0) {
          merged[index] = applyStrategicMergePatch(merged[index], entry) as JsonObject;
        } else {
          merged.push(applyStrategicMergePatch({}, entry) as JsonObject);
        }
      }
      result[key] = merged;
    } else if (isObject(value) && value.$patch === 'replace') {
      const { $patch: _ignored, ...rest } = value;
      result[key] = clone(rest);
    } else {
      result[key] = applyStrategicMergePatch(current, value);
    }
  }
  return result;
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
export function applyPatch(contentType: string, target: Json, patch: Json): Json {
  switch (contentType) {
    case PatchContentType.json:
      return applyJsonPatch(target, patch);
    case PatchContentType.merge:
      return applyMergePatch(target, patch);
    case PatchContentType.strategic:
      return applyStrategicMergePatch(target, patch);
    default:
      throw new PatchError(`unsupported patch content type "${contentType}"`);
  }
}
