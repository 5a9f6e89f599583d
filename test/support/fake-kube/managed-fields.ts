/**
 * Field ownership (`metadata.managedFields`) and server-side apply, as the API server implements
 * them with sigs.k8s.io/structured-merge-diff:
 *
 * - Every write records which manager owns which fields. A create, update or patch
 *   (operation `Update`) gives its manager the fields it *changed* and takes them from every other
 *   manager; it never conflicts. A write through the `scale` subresource is recorded with
 *   `subresource: scale` and owns the parent's `.spec.replicas` (that is what it changes).
 * - An apply (`PATCH` with `application/apply-patch+yaml`, operation `Apply`) makes its manager own
 *   exactly the fields of the applied configuration. A field it sets to a value other than the live
 *   one while another manager owns it is a conflict: 409 with the real message, unless `force=true`,
 *   which takes the field from the other managers. Fields the manager applied before and no longer
 *   applies are removed from the object when nobody else owns them.
 * - A request that carries `metadata.managedFields` replaces the recorded ownership with it (what
 *   `csaupgrade`, which helm 4 itself uses, and a manager relinquishing its entry rely on); an empty
 *   list resets it.
 *
 * Lists are associative (merged by key, one owner per element field) where Kubernetes declares
 * them so (`x-kubernetes-list-type: map`) for the kinds the project uses, atomic otherwise. Field
 * paths use the FieldsV1 notation (`f:spec`, `k:{"name":"app"}`, `.`). Status is not tracked:
 * no client of this project applies status.
 */
import { kubeTimestamp, type KubeObject } from './object-store.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: JsonObject;
  subresource?: string;
}

/** A path of FieldsV1 segments, e.g. ['f:spec', 'f:replicas']. */
type FieldPath = readonly string[];

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The keys of an associative list, by field name, as Kubernetes' OpenAPI declares them
 * (`x-kubernetes-list-map-keys`); undefined for an atomic list. Ports differ between containers
 * (containerPort, protocol) and Services (port, protocol).
 */
export function listMapKeys(field: string, items: readonly Json[]): readonly string[] | undefined {
  switch (field) {
    case 'containers':
    case 'initContainers':
    case 'ephemeralContainers':
    case 'env':
    case 'volumes':
    case 'imagePullSecrets':
    case 'resourceClaims':
      return ['name'];
    case 'volumeMounts':
      return ['mountPath'];
    case 'volumeDevices':
      return ['devicePath'];
    case 'ports':
      return items.some((item) => isObject(item) && 'containerPort' in item) ? ['containerPort', 'protocol'] : ['port', 'protocol'];
    case 'topologySpreadConstraints':
      return ['topologyKey', 'whenUnsatisfiable'];
    case 'ownerReferences':
      return ['uid'];
    default:
      return undefined;
  }
}

/** Key values of a list element; a missing `protocol` is TCP, the API server's default. */
function elementKey(item: JsonObject, keys: readonly string[]): JsonObject {
  const key: JsonObject = {};
  for (const name of keys) key[name] = item[name] ?? (name === 'protocol' ? 'TCP' : null);
  return key;
}

function keySegment(item: JsonObject, keys: readonly string[]): string {
  // structured-merge-diff serializes the key with its fields sorted by name.
  const key = elementKey(item, keys);
  return `k:${JSON.stringify(Object.fromEntries(Object.entries(key).sort(([a], [b]) => (a < b ? -1 : 1))))}`;
}

const UNTRACKED_TOP_LEVEL = new Set(['apiVersion', 'kind', 'status']);
const UNTRACKED_METADATA = new Set(['name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds']);

/** The leaf paths of an object (and `.` for each associative list element). */
export function fieldSet(object: KubeObject | JsonObject): Set<string> {
  const paths = new Set<string>();
  const visit = (value: Json, path: string[], field: string): void => {
    if (isObject(value)) {
      const entries = Object.entries(value);
      if (entries.length === 0) paths.add(encode(path));
      for (const [key, inner] of entries) visit(inner, [...path, `f:${key}`], key);
      return;
    }
    if (Array.isArray(value)) {
      const keys = listMapKeys(field, value);
      if (!keys || !value.every(isObject)) {
        paths.add(encode(path));
        return;
      }
      for (const item of value as JsonObject[]) {
        const itemPath = [...path, keySegment(item, keys)];
        paths.add(encode([...itemPath, '.']));
        for (const [key, inner] of Object.entries(item)) visit(inner, [...itemPath, `f:${key}`], key);
      }
      return;
    }
    paths.add(encode(path));
  };
  for (const [key, value] of Object.entries(object as JsonObject)) {
    if (UNTRACKED_TOP_LEVEL.has(key) || value === undefined) continue;
    if (key === 'metadata' && isObject(value)) {
      for (const [metaKey, metaValue] of Object.entries(value)) {
        if (UNTRACKED_METADATA.has(metaKey) || metaValue === undefined) continue;
        visit(metaValue, ['f:metadata', `f:${metaKey}`], metaKey);
      }
      continue;
    }
    visit(value, [`f:${key}`], key);
  }
  return paths;
}

function encode(path: FieldPath): string {
  return path.join('\u0000');
}

function decode(path: string): FieldPath {
  return path.split('\u0000');
}

/** FieldsV1 JSON of a set of paths. */
export function toFieldsV1(paths: Iterable<string>): JsonObject {
  const root: JsonObject = {};
  for (const path of paths) {
    let node = root;
    for (const segment of decode(path)) {
      if (!isObject(node[segment])) node[segment] = {};
      node = node[segment] as JsonObject;
    }
  }
  return root;
}

/** The paths of a FieldsV1 document. */
export function fromFieldsV1(fields: JsonObject): Set<string> {
  const paths = new Set<string>();
  const visit = (node: JsonObject, path: string[]): void => {
    const entries = Object.entries(node);
    if (entries.length === 0 && path.length > 0) paths.add(encode(path));
    for (const [segment, inner] of entries) visit(isObject(inner) ? inner : {}, [...path, segment]);
  };
  visit(fields, []);
  return paths;
}

/** `.spec.replicas`, `.spec.template.spec.containers[name="app"].image` — the API server's notation. */
export function describePath(path: string): string {
  return decode(path)
    .map((segment) => {
      if (segment.startsWith('f:')) return `.${segment.slice(2)}`;
      if (segment.startsWith('k:')) {
        const key = JSON.parse(segment.slice(2)) as JsonObject;
        return `[${Object.entries(key).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}]`;
      }
      return segment === '.' ? '' : segment;
    })
    .join('');
}

/** The value at a path, or undefined when absent (`.` of an element: the element itself). */
function valueAt(object: Json, path: FieldPath): Json | undefined {
  let current: Json | undefined = object;
  let field = '';
  for (const segment of path) {
    if (current === undefined) return undefined;
    if (segment === '.') return current;
    if (segment.startsWith('f:')) {
      field = segment.slice(2);
      current = isObject(current) ? current[field] : undefined;
    } else if (segment.startsWith('k:')) {
      if (!Array.isArray(current)) return undefined;
      const list: Json[] = current;
      const keys = listMapKeys(field, list);
      current = keys ? list.find((item) => isObject(item) && keySegment(item, keys) === segment) : undefined;
    } else {
      return undefined;
    }
  }
  return current;
}

/** Removes the field at a path (an element for a `.` path); absent paths are ignored. */
function removeAt(object: JsonObject, path: FieldPath): void {
  let parent: Json | undefined = object;
  let field = '';
  for (let index = 0; index < path.length; index++) {
    const segment = path[index] as string;
    const last = index === path.length - 1 || (index === path.length - 2 && path[index + 1] === '.');
    if (parent === undefined) return;
    if (segment.startsWith('f:')) {
      field = segment.slice(2);
      if (!isObject(parent)) return;
      if (last) {
        delete parent[field];
        return;
      }
      parent = parent[field];
    } else if (segment.startsWith('k:')) {
      if (!Array.isArray(parent)) return;
      const list: Json[] = parent;
      const keys = listMapKeys(field, list);
      const position = keys ? list.findIndex((item) => isObject(item) && keySegment(item, keys) === segment) : -1;
      if (position < 0) return;
      if (last) {
        list.splice(position, 1);
        return;
      }
      parent = list[position];
    }
  }
}

/** Deep merge of an applied configuration into the live object (associative lists by key). */
function mergeApplied(live: Json | undefined, applied: Json, field: string): Json {
  if (isObject(applied)) {
    const result: JsonObject = isObject(live) ? structuredClone(live) : {};
    for (const [key, value] of Object.entries(applied)) result[key] = mergeApplied(result[key], value, key);
    return result;
  }
  if (Array.isArray(applied)) {
    const keys = listMapKeys(field, applied);
    if (!keys || !Array.isArray(live) || !applied.every(isObject) || !live.every(isObject)) return structuredClone(applied);
    const result = structuredClone(live) as JsonObject[];
    for (const item of applied as JsonObject[]) {
      const position = result.findIndex((existing) => keySegment(existing, keys) === keySegment(item, keys));
      if (position >= 0) result[position] = mergeApplied(result[position], item, field) as JsonObject;
      else result.push(structuredClone(item));
    }
    return result;
  }
  return structuredClone(applied);
}

function sameJson(a: Json | undefined, b: Json | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function entriesOf(object: KubeObject): ManagedFieldsEntry[] {
  const entries = object.metadata.managedFields;
  return Array.isArray(entries) ? (structuredClone(entries) as ManagedFieldsEntry[]) : [];
}

function sameManager(entry: ManagedFieldsEntry, manager: string, operation: ManagedFieldsEntry['operation'], subresource: string | undefined): boolean {
  return entry.manager === manager && entry.operation === operation && (entry.subresource ?? '') === (subresource ?? '');
}

/** Drops `paths` from every entry but the writer's; entries left owning nothing disappear. */
function takeFromOthers(entries: ManagedFieldsEntry[], paths: Iterable<string>, keep: (entry: ManagedFieldsEntry) => boolean): ManagedFieldsEntry[] {
  const taken = new Set(paths);
  return entries.flatMap((entry) => {
    if (keep(entry)) return [entry];
    const owned = [...fromFieldsV1(entry.fieldsV1)].filter((path) => !taken.has(path));
    if (owned.length === 0) return [];
    return [{ ...entry, fieldsV1: toFieldsV1(owned) }];
  });
}

function withEntry(entries: ManagedFieldsEntry[], entry: Omit<ManagedFieldsEntry, 'time' | 'fieldsType' | 'fieldsV1'>, owned: Set<string>): ManagedFieldsEntry[] {
  const index = entries.findIndex((existing) => sameManager(existing, entry.manager, entry.operation, entry.subresource));
  const previous = index >= 0 ? entries[index] : undefined;
  const rest = entries.filter((_, position) => position !== index);
  if (owned.size === 0) return rest;
  const fieldsV1 = toFieldsV1(owned);
  // An unchanged entry keeps its time, so a no-op write stays a no-op (same resourceVersion).
  const time = previous && sameJson(previous.fieldsV1, fieldsV1) ? previous.time : kubeTimestamp();
  const next: ManagedFieldsEntry = { manager: entry.manager, operation: entry.operation, apiVersion: entry.apiVersion, time, fieldsType: 'FieldsV1', fieldsV1 };
  if (entry.subresource) next.subresource = entry.subresource;
  return index >= 0 ? [...rest.slice(0, index), next, ...rest.slice(index)] : [...rest, next];
}

function normalizeEntries(raw: readonly unknown[]): ManagedFieldsEntry[] {
  return raw
    .filter((entry): entry is ManagedFieldsEntry => isObject(entry) && typeof entry.manager === 'string' && isObject(entry.fieldsV1))
    .map((entry) => {
      const time = Date.parse(String(entry.time));
      const normalized: ManagedFieldsEntry = {
        manager: entry.manager,
        operation: entry.operation,
        apiVersion: entry.apiVersion,
        time: Number.isNaN(time) ? kubeTimestamp() : kubeTimestamp(new Date(time)),
        fieldsType: 'FieldsV1',
        fieldsV1: entry.fieldsV1,
      };
      if (entry.subresource) normalized.subresource = entry.subresource;
      return normalized;
    });
}

export interface WriteContext {
  readonly manager: string;
  readonly apiVersion: string;
  readonly subresource?: string;
}

/**
 * The managedFields after an Update-operation write (create, update, non-apply patch, scale)
 * from `before` (undefined for a create) to `after`. `requested` is what the request itself
 * carried in metadata.managedFields, if anything (it then replaces the recorded ownership).
 */
export function managedFieldsAfterUpdate(before: KubeObject | undefined, after: KubeObject, context: WriteContext, requested?: unknown): ManagedFieldsEntry[] {
  let entries = before ? entriesOf(before) : [];
  if (Array.isArray(requested)) {
    // Compared as the server decodes them: a client may re-serialize times with milliseconds.
    const asked = normalizeEntries(requested);
    if (!sameJson(asked as unknown as Json, normalizeEntries(entries) as unknown as Json)) entries = asked;
  }
  const beforeFields = before ? fieldSet(before) : new Set<string>();
  const afterFields = fieldSet(after);
  const changed = new Set<string>();
  for (const path of new Set([...beforeFields, ...afterFields])) {
    if (!sameJson(before ? valueAt(before as unknown as Json, decode(path)) : undefined, valueAt(after as unknown as Json, decode(path)))) changed.add(path);
  }
  if (changed.size === 0) return entries;
  const mine = (entry: ManagedFieldsEntry) => sameManager(entry, context.manager, 'Update', context.subresource);
  entries = takeFromOthers(entries, changed, mine);
  const current = entries.find(mine);
  const owned = new Set([...(current ? fromFieldsV1(current.fieldsV1) : []), ...[...changed].filter((path) => afterFields.has(path))]);
  for (const path of owned) if (!afterFields.has(path)) owned.delete(path);
  return withEntry(entries, { manager: context.manager, operation: 'Update', apiVersion: context.apiVersion, subresource: context.subresource }, owned);
}

export interface ApplyConflict {
  readonly manager: string;
  readonly apiVersion: string;
  readonly subresource?: string;
  readonly path: string;
}

export class ApplyConflictError extends Error {
  constructor(readonly conflicts: readonly ApplyConflict[]) {
    super(conflictMessage(conflicts));
  }
}

/**
 * The API server's message (k8s.io/apiserver fieldmanager `NewConflictError`): one conflict is
 * `Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`; several are
 * listed one per line, grouped by manager; a subresource manager is named `with subresource "scale"`.
 */
export function conflictMessage(conflicts: readonly ApplyConflict[]): string {
  const byManager = new Map<string, ApplyConflict[]>();
  for (const conflict of conflicts) {
    const id = `"${conflict.manager}"${conflict.subresource ? ` with subresource "${conflict.subresource}"` : ''} using ${conflict.apiVersion}`;
    byManager.set(id, [...(byManager.get(id) ?? []), conflict]);
  }
  const count = `${conflicts.length} conflict${conflicts.length === 1 ? '' : 's'}`;
  if (conflicts.length === 1) {
    const [id, [conflict]] = [...byManager.entries()][0] as [string, ApplyConflict[]];
    return `Apply failed with ${count}: conflict with ${id}: ${describePath(conflict!.path)}`;
  }
  const lines = [...byManager.entries()].map(([id, list]) => `conflicts with ${id}:\n${list.map((c) => `- ${describePath(c.path)}`).join('\n')}`);
  return `Apply failed with ${count}: ${lines.join('\n')}`;
}

/**
 * Server-side apply of `applied` by `context.manager` over `live` (undefined: the object is
 * created). Returns the merged object with its managedFields; throws {@link ApplyConflictError}
 * when another manager owns a field the configuration changes and `force` is false.
 */
export function serverSideApply(live: KubeObject | undefined, applied: KubeObject, context: WriteContext, force: boolean): KubeObject {
  const entries = live ? entriesOf(live) : [];
  const appliedFields = fieldSet(applied);
  const mine = (entry: ManagedFieldsEntry) => sameManager(entry, context.manager, 'Apply', context.subresource);

  const base = (live ? structuredClone(live) : { metadata: { name: applied.metadata.name } }) as unknown as JsonObject;
  // Fields this manager applied before and no longer applies go, unless someone else owns them.
  const previous = entries.find(mine);
  if (previous) {
    const ownedByOthers = new Set(entries.filter((entry) => !mine(entry)).flatMap((entry) => [...fromFieldsV1(entry.fieldsV1)]));
    const dropped = [...fromFieldsV1(previous.fieldsV1)].filter((path) => !appliedFields.has(path) && !ownedByOthers.has(path));
    // Deepest first, so an element's fields go before the element.
    for (const path of dropped.sort((a, b) => decode(b).length - decode(a).length)) removeAt(base, decode(path));
  }
  const { managedFields: _ignored, ...appliedMetadata } = applied.metadata;
  const merged = mergeApplied(base, { ...(applied as unknown as JsonObject), metadata: appliedMetadata as JsonObject }, '') as unknown as KubeObject;

  const conflicts: ApplyConflict[] = [];
  for (const entry of entries) {
    if (mine(entry)) continue;
    for (const path of fromFieldsV1(entry.fieldsV1)) {
      if (!appliedFields.has(path) || decode(path).at(-1) === '.') continue;
      if (sameJson(valueAt(live as unknown as Json, decode(path)), valueAt(merged as unknown as Json, decode(path)))) continue;
      conflicts.push({ manager: entry.manager, apiVersion: entry.apiVersion, path, ...(entry.subresource ? { subresource: entry.subresource } : {}) });
    }
  }
  if (conflicts.length > 0 && !force) throw new ApplyConflictError(conflicts);
  let next = force ? takeFromOthers(entries, conflicts.map((c) => c.path), mine) : entries;
  next = withEntry(next, { manager: context.manager, operation: 'Apply', apiVersion: context.apiVersion, subresource: context.subresource }, appliedFields);
  merged.metadata.managedFields = next;
  return merged;
}
