/**
 * A fake Kubernetes API server: a real HTTP server on 127.0.0.1 that speaks the API server's
 * REST protocol (paths, verbs, Status bodies, resourceVersion, uid, generation, patch content
 * types, the scale and status subresources, discovery) and authorizes ServiceAccount tokens
 * against the stored RBAC objects. It is driven by the real `@kubernetes/client-node`, so the
 * runner's Kubernetes code is tested exactly as it runs in a cluster, minus the cluster.
 *
 * It also serves what the real helm binaries need: watch (watch.ts), server-side apply with
 * managedFields and conflicts (managed-fields.ts), the OpenAPI v3 documents (openapi.ts),
 * protobuf request bodies of Secrets and ConfigMaps (protobuf.ts), and, through an HTTPS front,
 * bearer tokens from client-go (tls-front.ts).
 *
 * Deletion is the real server's (object-store.ts): finalizers hold an object marked with a
 * deletionTimestamp, the propagationPolicy adds the garbage collector's `foregroundDeletion` /
 * `orphan` finalizer, and a garbage collector (garbage-collector.ts) deletes or orphans
 * dependents asynchronously, as kube-controller-manager's does.
 *
 * Not implemented: admission webhooks, graceful deletion of Pods (a Pod goes at once unless it
 * has finalizers), finalizers added by admission or controllers (`kubernetes.io/pvc-protection`
 * and the like: a test adds them when it models one), namespace lifecycle (any namespace exists;
 * deleting one deletes nothing in it), aggregated ClusterRoles, and controllers — tests react to
 * changes through `onChange` (see workload-controller.ts for a StatefulSet/Deployment one).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { KubeConfig } from '@kubernetes/client-node';
import {
  apiVersionOf,
  ResourceTypeRegistry,
  splitApiVersion,
  type ResourceType,
} from './resource-types.js';
import { badRequest, failure, forbidden, StatusError, type StatusBody } from './status.js';
import { applyPatch, PatchContentType, PatchError, type Json } from './patch.js';
import { compileFieldSelector, compileLabelSelector } from './selectors.js';
import { isAllowed, serviceAccountUser, type BindingLike, type RoleLike, type UserInfo } from './rbac.js';
import { FaultInjector, type FaultHandle, type FaultRule, type RequestMatcher } from './faults.js';
import {
  ObjectStore,
  type ChangeEvent,
  type ChangeInfo,
  type DeletePropagation,
  type KubeObject,
} from './object-store.js';
import { applyDefaults, carryAllocatedValues, validateObject, validateUpdate } from './admission.js';
import { groupVersionDocument, openApiRoot } from './openapi.js';
import { ApplyConflictError, describePath, managedFieldsAfterUpdate, serverSideApply } from './managed-fields.js';
import { decodeKubernetesProtobuf, ProtobufError } from './protobuf.js';
import { WatchHub } from './watch.js';
import { GarbageCollector } from './garbage-collector.js';

export type { KubeObject, ChangeEvent, ChangeInfo } from './object-store.js';
export type { FaultRule, FaultHandle, RequestMatcher } from './faults.js';
export type { UserInfo } from './rbac.js';

/** One API call, as the request log keeps it. */
export interface RequestRecord {
  method: string;
  path: string;
  /** Kubernetes verb (get, list, create, update, patch, delete, deletecollection) or 'discovery'. */
  verb: string;
  /** Plural, or `plural/subresource`; '' for discovery. */
  resource: string;
  group: string;
  namespace?: string;
  name?: string;
  user: string;
  /** HTTP status answered (0 for a dropped connection). */
  code: number;
  contentType?: string;
  /** Whether the request changed stored objects (a write that changed nothing keeps the resourceVersion). */
  changed?: boolean;
}

export type ChangeListener = (event: ChangeEvent, object: KubeObject, info: ChangeInfo) => void | Promise<void>;

export interface FakeKubeApiServerOptions {
  /** Token that authenticates as a cluster admin (bypasses RBAC). @default - random */
  adminToken?: string;
  /** Latency added to every request, in milliseconds. @default 0 */
  latencyMs?: number;
}

/** Which object a direct (test-side) read or write addresses. */
export interface ObjectReference {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
}

interface ParsedPath {
  group: string;
  version: string;
  namespace?: string;
  plural: string;
  name?: string;
  subresource?: string;
}

/** How long the API server keeps an idle keep-alive connection open (see start()). */
export const API_SERVER_IDLE_TIMEOUT_MS = 90_000;
const JSON_CONTENT_TYPE = 'application/json';
const PROTOBUF_CONTENT_TYPE = 'application/vnd.kubernetes.protobuf';
const KUBERNETES_VERSION = { major: '1', minor: '31', gitVersion: 'v1.31.0-fake', platform: 'linux/amd64' };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Scale's `status.selector`: the label query string form of the workload's selector. */
function selectorString(selector: unknown): string {
  if (!isPlainObject(selector)) return '';
  const parts: string[] = [];
  for (const [key, value] of Object.entries(isPlainObject(selector.matchLabels) ? selector.matchLabels : {})) {
    parts.push(`${key}=${String(value)}`);
  }
  for (const expression of Array.isArray(selector.matchExpressions) ? selector.matchExpressions : []) {
    const { key, operator, values } = expression as { key: string; operator: string; values?: string[] };
    if (operator === 'In') parts.push(`${key} in (${(values ?? []).join(',')})`);
    if (operator === 'NotIn') parts.push(`${key} notin (${(values ?? []).join(',')})`);
    if (operator === 'Exists') parts.push(key);
    if (operator === 'DoesNotExist') parts.push(`!${key}`);
  }
  return parts.join(',');
}

/** CloudNativePG scales `spec.instances`; the built-in workloads `spec.replicas`. */
function scaleField(resourceType: ResourceType): 'replicas' | 'instances' {
  return resourceType.group === 'postgresql.cnpg.io' ? 'instances' : 'replicas';
}

export class FakeKubeApiServer {
  readonly adminToken: string;
  readonly types = new ResourceTypeRegistry();
  private readonly store: ObjectStore;
  private readonly faults = new FaultInjector();
  private readonly tokens = new Map<string, UserInfo>();
  private readonly listeners = new Set<ChangeListener>();
  private readonly sockets = new Set<Socket>();
  private readonly log: RequestRecord[] = [];
  private readonly watches = new WatchHub();
  private readonly garbageCollector: GarbageCollector;
  /** Errors thrown by change listeners (a listener bug must not look like an API failure). */
  readonly listenerErrors: unknown[] = [];
  private server: Server | undefined;
  private port = 0;

  constructor(options: FakeKubeApiServerOptions = {}) {
    this.adminToken = options.adminToken ?? `admin-${randomBytes(12).toString('hex')}`;
    this.tokens.set(this.adminToken, { name: 'kubernetes-admin', groups: ['system:masters', 'system:authenticated'], admin: true });
    if (options.latencyMs) this.faults.addLatency(options.latencyMs);
    this.store = new ObjectStore((event, object, info) => this.notify(event, object, info));
    this.garbageCollector = new GarbageCollector(this.store, (error) => this.listenerErrors.push(error));
  }

  /** Listens on 127.0.0.1 on a random free port. */
  async start(): Promise<this> {
    const server = createServer((request, response) => {
      void this.handle(request, response);
    });
    // The API server keeps an idle connection for 90 s (k8s.io/apiserver secure serving:
    // http.Server IdleTimeout and the HTTP/2 server's, both 90 s, as client-go's transport), not
    // Node's 5 s: a client that sends on a connection the server is closing gets EOF, and Go
    // replays only GET/HEAD/OPTIONS/TRACE, so helm's DELETE of a finished hook Job would fail.
    server.keepAliveTimeout = API_SERVER_IDLE_TIMEOUT_MS;
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.garbageCollector.stop();
    this.watches.closeAll();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** `http://127.0.0.1:<port>`. */
  get url(): string {
    if (!this.server) throw new Error('fake API server is not started: call start() first');
    return `http://127.0.0.1:${this.port}`;
  }

  // ---- identities -------------------------------------------------------------------------

  /** Registers a bearer token for a user (name and groups). */
  addToken(token: string, user: UserInfo): void {
    this.tokens.set(token, user);
  }

  /**
   * A token that authenticates as `system:serviceaccount:<namespace>:<name>`, authorized by the
   * stored RBAC objects (the ServiceAccount object itself need not exist, as with a real token).
   */
  tokenForServiceAccount(namespace: string, name: string): string {
    const token = `sa-${namespace}-${name}-${randomBytes(6).toString('hex')}`;
    this.tokens.set(token, serviceAccountUser(namespace, name));
    return token;
  }

  /** A KubeConfig for client-node that talks to this server with `token` (admin by default). */
  kubeConfig(token: string = this.adminToken, namespace = 'default'): KubeConfig {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake-user', token }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake-user', namespace }],
      currentContext: 'fake',
    });
    return kubeConfig;
  }

  /** Writes a kubeconfig file (for `KUBECONFIG`, read by `loadFromDefault`) and returns its path. */
  writeKubeconfig(path: string, token: string = this.adminToken, namespace = 'default'): string {
    const document = {
      apiVersion: 'v1',
      kind: 'Config',
      // client-node refuses plain http unless TLS verification is explicitly off.
      clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake-user', user: { token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake-user', namespace } }],
      'current-context': 'fake',
    };
    // JSON is valid YAML, which is what client-node's loadFromFile parses.
    writeFileSync(path, JSON.stringify(document, null, 2), { mode: 0o600 });
    return path;
  }

  // ---- observation and faults -------------------------------------------------------------

  /** Calls `listener` after every stored change (not awaited: controllers are asynchronous). */
  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(event: ChangeEvent, object: KubeObject, info: ChangeInfo): void {
    this.watches.publish({ type: event, object: structuredClone(object), resourceType: info.resourceType, resourceVersion: Number(object.metadata.resourceVersion) });
    this.garbageCollector.changed(event === 'DELETED', object);
    for (const listener of this.listeners) {
      try {
        const result = listener(event, structuredClone(object), info);
        if (result && typeof (result as Promise<void>).catch === 'function') {
          (result as Promise<void>).catch((error: unknown) => this.listenerErrors.push(error));
        }
      } catch (error) {
        this.listenerErrors.push(error);
      }
    }
  }

  /** The next `times` requests matching the rule fail as described. */
  injectFault(rule: FaultRule): FaultHandle {
    return this.faults.inject(rule);
  }

  /** Adds latency to matching requests (all by default); returns a function that removes it. */
  addLatency(ms: number, matcher: RequestMatcher = {}): () => void {
    return this.faults.addLatency(ms, matcher);
  }

  /** Holds the next matching request until `until()` resolves (see FaultInjector.hold). */
  holdRequest(matcher: RequestMatcher, until: () => Promise<void>): () => void {
    return this.faults.hold(matcher, until);
  }

  clearFaults(): void {
    this.faults.clear();
  }

  /** Every API call answered so far, oldest first. */
  get requests(): readonly RequestRecord[] {
    return this.log;
  }

  /** Number of API calls matching the matcher (all by default), discovery excluded. */
  requestCount(matcher: RequestMatcher & { user?: string } = {}): number {
    return this.log.filter(
      (record) =>
        record.verb !== 'discovery' &&
        (matcher.verb === undefined || record.verb === matcher.verb) &&
        (matcher.resource === undefined || record.resource === matcher.resource) &&
        (matcher.name === undefined || record.name === matcher.name) &&
        (matcher.namespace === undefined || record.namespace === matcher.namespace) &&
        (matcher.user === undefined || record.user === matcher.user),
    ).length;
  }

  clearRequestLog(): void {
    this.log.length = 0;
  }

  // ---- direct access for tests and harnesses (no auth, no faults, no request log) ----------

  /**
   * The cluster without the CRDs of an API group (e.g. `postgresql.cnpg.io` with no operator
   * installed): discovery omits it and every request under it is answered 404.
   */
  withdrawGroup(group: string): void {
    this.types.withdrawGroup(group);
  }

  /** Whether the API server serves objects of `apiVersion` (false for a withdrawn group). */
  serves(apiVersion: string): boolean {
    return this.types.serves(apiVersion);
  }

  /** Makes a custom resource type known (needed for cluster-scoped custom resources). */
  registerResourceType(resourceType: ResourceType): void {
    this.types.register(resourceType);
  }

  /** Stores objects as an admin `create` would, keeping any status they carry. */
  seed(...objects: KubeObject[]): KubeObject[] {
    return objects.map((object) => {
      const resourceType = this.types.forObject(object.apiVersion ?? '', object.kind ?? '');
      const copy = structuredClone(object);
      applyDefaults(resourceType, copy);
      validateObject(resourceType, copy);
      return this.store.create(resourceType, copy);
    });
  }

  /** Creates or replaces (no precondition) an object, status included. */
  upsert(object: KubeObject): KubeObject {
    const resourceType = this.types.forObject(object.apiVersion ?? '', object.kind ?? '');
    const copy = structuredClone(object);
    const existing = this.store.get(resourceType, copy.metadata.namespace, copy.metadata.name);
    if (existing) carryAllocatedValues(resourceType, existing, copy);
    applyDefaults(resourceType, copy);
    if (!existing) return this.store.create(resourceType, copy);
    return this.store.update(resourceType, copy);
  }

  get(reference: ObjectReference): KubeObject | undefined {
    // Nothing of a withdrawn group can exist.
    if (!this.types.serves(reference.apiVersion)) return undefined;
    const resourceType = this.types.forObject(reference.apiVersion, reference.kind);
    return this.store.get(resourceType, reference.namespace, reference.name);
  }

  list(apiVersion: string, kind: string, namespace?: string): KubeObject[] {
    if (!this.types.serves(apiVersion)) return [];
    return this.store.list(this.types.forObject(apiVersion, kind), namespace);
  }

  /**
   * Deletes an object as a DELETE with `propagation` would (see ObjectStore.delete): an object
   * with finalizers, or deleted in the foreground or orphaning, is only marked and goes later
   * (`waitUntilGone`); dependents are the garbage collector's, asynchronously. Returns whether it
   * existed.
   */
  remove(reference: ObjectReference, propagation: DeletePropagation = 'Background'): boolean {
    const resourceType = this.types.forObject(reference.apiVersion, reference.kind);
    if (!this.store.get(resourceType, reference.namespace, reference.name)) return false;
    this.store.delete(resourceType, reference.namespace, reference.name, { propagation });
    return true;
  }

  /**
   * Resolves once the object is gone (or replaced by another of the same name), as a client
   * polling after a foreground deletion sees it; rejects after `timeoutMs`.
   */
  async waitUntilGone(reference: ObjectReference, timeoutMs = 30_000, pollMs = 10): Promise<void> {
    const uid = this.get(reference)?.metadata.uid;
    if (uid === undefined) return;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = this.get(reference);
      if (!live || live.metadata.uid !== uid) return;
      if (Date.now() > deadline) {
        const finalizers = live.metadata.finalizers?.join(', ') || 'none';
        throw new Error(`${reference.kind} ${reference.name} not gone after ${timeoutMs} ms (deletionTimestamp ${live.metadata.deletionTimestamp ?? 'unset'}, finalizers ${finalizers})`);
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  /**
   * Pauses the garbage collector until the returned function is called: objects stay marked
   * (`orphan`, `foregroundDeletion`) and dependents stay, as in a cluster whose collector lags.
   */
  holdGarbageCollection(): () => void {
    return this.garbageCollector.hold();
  }

  /** Merges `status` into an object's status, as its controller would. */
  setStatus(reference: ObjectReference, status: Record<string, unknown>): KubeObject {
    const resourceType = this.types.forObject(reference.apiVersion, reference.kind);
    const current = this.store.getOrThrow(resourceType, reference.namespace, reference.name);
    current.status = { ...(isPlainObject(current.status) ? current.status : {}), ...status };
    return this.store.update(resourceType, current, { subresource: 'status' });
  }

  // ---- HTTP -------------------------------------------------------------------------------

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const method = (request.method ?? 'GET').toUpperCase();
    const record: RequestRecord = { method, path: url.pathname, verb: '', resource: '', group: '', user: '', code: 0 };
    const contentType = (request.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    if (contentType) record.contentType = contentType;
    try {
      const rawBody = await readBody(request);
      const user = this.authenticate(request);
      record.user = user.name;

      if (method === 'GET' && url.pathname.replace(/\/+$/, '') === '/openapi/v2') {
        // The deprecated OpenAPI v2 document, which client-go reads only as protobuf. Clients
        // (kubectl's and helm's validation) fall back to it for kinds the v3 documents lack, and
        // the real server's v2 document lacks them too: an empty gnostic Document (zero bytes is
        // a valid empty message) says exactly that, so validation of such a kind is skipped and
        // the missing mapping is what fails, with helm's "no matches for kind … ensure CRDs are
        // installed first".
        record.verb = 'discovery';
        record.code = 200;
        this.log.push(record);
        response.writeHead(200, { 'content-type': OPENAPI_V2_PROTOBUF, 'content-length': 0 });
        response.end();
        return;
      }
      const discovery = this.discovery(method, url.pathname);
      if (discovery) {
        record.verb = 'discovery';
        record.code = 200;
        this.log.push(record);
        send(response, 200, discovery);
        return;
      }

      const parsed = parsePath(url.pathname);
      if (!parsed) throw failure(404, 'the server could not find the requested resource', 'NotFound', {});
      const body = rawBody.length > 0 ? parseBody(rawBody, contentType) : undefined;
      const kindFromBody = isPlainObject(body) && typeof body.kind === 'string' && method !== 'PATCH' ? body.kind : undefined;
      const resourceType = this.types.resolve(parsed.group, parsed.version, parsed.plural, parsed.subresource ? undefined : kindFromBody);
      // A group nobody registered (its CRD not installed): the real API server's plain 404.
      if (!resourceType) throw failure(404, 'the server could not find the requested resource', 'NotFound', {});
      const verb = verbFor(method, parsed, url.searchParams);
      record.verb = verb;
      record.group = parsed.group;
      record.resource = parsed.subresource ? `${parsed.plural}/${parsed.subresource}` : parsed.plural;
      if (parsed.namespace !== undefined) record.namespace = parsed.namespace;
      if (parsed.name !== undefined) record.name = parsed.name;

      const hold = this.faults.takeHold({ verb, resource: record.resource, name: parsed.name, namespace: parsed.namespace });
      if (hold) await hold();
      const latency = this.faults.latencyFor({ verb, resource: record.resource, name: parsed.name, namespace: parsed.namespace });
      if (latency > 0) await new Promise((resolve) => setTimeout(resolve, latency));
      const fault = this.faults.take({ verb, resource: record.resource, name: parsed.name, namespace: parsed.namespace });
      if (fault) {
        if (fault.status === 'reset') {
          this.log.push(record);
          request.socket.destroy();
          return;
        }
        throw failure(fault.status, fault.message ?? `injected fault: ${fault.status}`, fault.reason);
      }

      if (
        !isAllowed(
          user,
          {
            verb,
            apiGroup: parsed.group,
            resource: parsed.plural,
            ...(parsed.subresource ? { subresource: parsed.subresource } : {}),
            ...(parsed.name ? { name: parsed.name } : {}),
            ...(parsed.namespace ? { namespace: parsed.namespace } : {}),
          },
          this.rbacObjects(),
        )
      ) {
        throw forbidden({ user: user.name, verb, resourceType, subresource: parsed.subresource, name: parsed.name, namespace: parsed.namespace });
      }

      const manager = fieldManagerOf(url.searchParams, request.headers['user-agent']);
      const versionBefore = this.store.currentResourceVersion();
      const { code, payload } = await this.execute(verb, resourceType, parsed, url.searchParams, body, contentType, manager, response);
      if (code === 0) {
        // A watch: the response streams until the client or the server ends it.
        record.code = 200;
        this.log.push(record);
        return;
      }
      record.code = code;
      record.changed = this.store.currentResourceVersion() !== versionBefore;
      this.log.push(record);
      send(response, code, payload);
    } catch (error) {
      const status =
        error instanceof StatusError
          ? error.status
          : failure(500, `fake API server error: ${error instanceof Error ? error.message : String(error)}`).status;
      record.code = status.code;
      this.log.push(record);
      send(response, status.code, status);
    }
  }

  private authenticate(request: IncomingMessage): UserInfo {
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    const user = match ? this.tokens.get((match[1] as string).trim()) : undefined;
    if (!user) throw failure(401, 'Unauthorized', 'Unauthorized');
    return user;
  }

  private rbacObjects() {
    const rbac = (plural: string) => this.types.byPlural('rbac.authorization.k8s.io', 'v1', plural) as ResourceType;
    return {
      roles: (namespace: string) => this.store.list(rbac('roles'), namespace) as unknown as RoleLike[],
      roleBindings: (namespace: string) => this.store.list(rbac('rolebindings'), namespace) as unknown as BindingLike[],
      clusterRoles: () => this.store.list(rbac('clusterroles')) as unknown as RoleLike[],
      clusterRoleBindings: () => this.store.list(rbac('clusterrolebindings')) as unknown as BindingLike[],
    };
  }

  /** /version, /api, /apis, /api/v1, /apis/<group>, /apis/<group>/<version>. */
  private discovery(method: string, path: string): unknown {
    if (method !== 'GET') return undefined;
    const trimmed = path.replace(/\/+$/, '');
    if (trimmed === '/version') return KUBERNETES_VERSION;
    if (trimmed === '/openapi/v3') return openApiRoot(this.types.all());
    if (trimmed.startsWith('/openapi/v3/')) {
      return groupVersionDocument(this.types.all(), trimmed.slice('/openapi/v3/'.length)) ?? undefined;
    }
    if (trimmed === '/api') return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] };
    const groups = new Map<string, Set<string>>();
    for (const resourceType of this.types.all()) {
      if (!resourceType.group) continue;
      const versions = groups.get(resourceType.group) ?? new Set<string>();
      versions.add(resourceType.version);
      groups.set(resourceType.group, versions);
    }
    const groupDocument = (name: string, versions: Set<string>) => {
      const list = [...versions].map((version) => ({ groupVersion: `${name}/${version}`, version }));
      return { name, versions: list, preferredVersion: list[0] };
    };
    if (trimmed === '/apis') {
      return {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [...groups.entries()].map(([name, versions]) => groupDocument(name, versions)),
      };
    }
    const groupMatch = /^\/apis\/([^/]+)$/.exec(trimmed);
    if (groupMatch && groups.has(groupMatch[1] as string)) {
      return { kind: 'APIGroup', apiVersion: 'v1', ...groupDocument(groupMatch[1] as string, groups.get(groupMatch[1] as string) as Set<string>) };
    }
    const versionMatch = /^\/api\/(v1)$/.exec(trimmed) ?? /^\/apis\/([^/]+\/[^/]+)$/.exec(trimmed);
    if (versionMatch) {
      const groupVersion = versionMatch[1] as string;
      const { group, version } = splitApiVersion(groupVersion);
      const resources = this.types
        .all()
        .filter((t) => t.group === group && t.version === version)
        .flatMap((t) => [
          {
            name: t.plural,
            singularName: t.kind.toLowerCase(),
            namespaced: t.namespaced,
            kind: t.kind,
            verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update'],
          },
          ...t.subresources.map((subresource) => ({
            name: `${t.plural}/${subresource}`,
            singularName: '',
            namespaced: t.namespaced,
            group: subresource === 'scale' ? 'autoscaling' : undefined,
            version: subresource === 'scale' ? 'v1' : undefined,
            kind: subresource === 'scale' ? 'Scale' : t.kind,
            verbs: ['get', 'patch', 'update'],
          })),
        ]);
      return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources };
    }
    return undefined;
  }

  private async execute(
    verb: string,
    resourceType: ResourceType,
    parsed: ParsedPath,
    query: URLSearchParams,
    body: unknown,
    contentType: string,
    manager: string,
    response: ServerResponse,
  ): Promise<{ code: number; payload: unknown }> {
    if (resourceType.namespaced && parsed.namespace === undefined && verb !== 'list') {
      throw failure(404, 'the server could not find the requested resource', 'NotFound', {});
    }
    if (!resourceType.namespaced && parsed.namespace !== undefined) {
      throw failure(404, 'the server could not find the requested resource', 'NotFound', {});
    }
    if (parsed.subresource && !resourceType.subresources.includes(parsed.subresource as 'scale' | 'status')) {
      throw failure(404, 'the server could not find the requested resource', 'NotFound', {});
    }
    const namespace = resourceType.namespaced ? parsed.namespace : undefined;
    const name = parsed.name as string;
    switch (verb) {
      case 'get': {
        const object = this.store.getOrThrow(resourceType, namespace, name);
        return { code: 200, payload: parsed.subresource === 'scale' ? toScale(object, resourceType) : object };
      }
      case 'list':
        return { code: 200, payload: this.listPayload(resourceType, namespace, query) };
      case 'watch': {
        const labelMatches = compileLabelSelector(query.get('labelSelector'));
        const fieldMatches = compileFieldSelector(query.get('fieldSelector'));
        this.watches.serve(
          {
            resourceType,
            namespace,
            query,
            matches: (object) => labelMatches(object.metadata.labels) && fieldMatches(object),
            current: () => this.store.list(resourceType, namespace),
            currentResourceVersion: () => Number(this.store.currentResourceVersion()),
          },
          response,
        );
        return { code: 0, payload: undefined };
      }
      case 'create':
        return { code: 201, payload: this.create(resourceType, namespace, body, manager) };
      case 'update':
        return { code: 200, payload: this.replace(resourceType, namespace, name, parsed.subresource, body, manager) };
      case 'patch':
        if (contentType === PatchContentType.apply) return this.apply(resourceType, namespace, name, parsed.subresource, body, query, manager);
        return { code: 200, payload: this.patch(resourceType, namespace, name, parsed.subresource, body, contentType, manager) };
      case 'delete':
        return this.deleteOne(resourceType, namespace, name, body, query);
      case 'deletecollection': {
        // store.go DeleteCollection: each listed object is deleted as by its own DELETE, and the
        // answer is the list as it was read before.
        const propagation = propagationOf(body, query);
        const listed = this.selectForList(resourceType, namespace, query);
        for (const object of listed) {
          try {
            this.store.delete(resourceType, object.metadata.namespace, object.metadata.name, propagation ? { propagation } : {});
          } catch (error) {
            // Gone meanwhile: DeleteCollection ignores NotFound.
            if (!(error instanceof StatusError && error.status.code === 404)) throw error;
          }
        }
        return { code: 200, payload: this.listDocument(resourceType, listed) };
      }
      default:
        throw failure(405, `${verb} is not supported by the fake API server`, 'MethodNotAllowed');
    }
  }

  private selectForList(resourceType: ResourceType, namespace: string | undefined, query: URLSearchParams): KubeObject[] {
    const labelMatches = compileLabelSelector(query.get('labelSelector'));
    const fieldMatches = compileFieldSelector(query.get('fieldSelector'));
    return this.store
      .list(resourceType, namespace)
      .filter((object) => labelMatches(object.metadata.labels) && fieldMatches(object));
  }

  private listDocument(resourceType: ResourceType, items: KubeObject[]): unknown {
    return {
      apiVersion: apiVersionOf(resourceType),
      kind: `${resourceType.kind}List`,
      metadata: { resourceVersion: this.store.currentResourceVersion() },
      items,
    };
  }

  private listPayload(resourceType: ResourceType, namespace: string | undefined, query: URLSearchParams): unknown {
    return this.listDocument(resourceType, this.selectForList(resourceType, namespace, query));
  }

  private requireObjectBody(body: unknown): KubeObject {
    if (!isPlainObject(body)) throw badRequest('the body of the request was in an unknown format');
    const object = body as unknown as KubeObject;
    if (!isPlainObject(object.metadata)) object.metadata = { name: '' };
    return object;
  }

  private checkTypeOfBody(resourceType: ResourceType, object: KubeObject): void {
    if (object.apiVersion !== undefined && object.apiVersion !== apiVersionOf(resourceType)) {
      throw badRequest(`the API version in the data (${object.apiVersion}) does not match the expected API version (${apiVersionOf(resourceType)})`);
    }
    if (object.kind !== undefined && object.kind !== resourceType.kind) {
      throw badRequest(`the kind in the data (${object.kind}) does not match the expected kind (${resourceType.kind})`);
    }
  }

  private checkNamespaceOfBody(object: KubeObject, namespace: string | undefined): void {
    if (namespace === undefined) return;
    if (object.metadata.namespace !== undefined && object.metadata.namespace !== '' && object.metadata.namespace !== namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    object.metadata.namespace = namespace;
  }

  private create(resourceType: ResourceType, namespace: string | undefined, body: unknown, manager: string): KubeObject {
    const object = this.requireObjectBody(body);
    this.checkTypeOfBody(resourceType, object);
    this.checkNamespaceOfBody(object, namespace);
    if (!object.metadata.name && object.metadata.generateName) {
      object.metadata.name = `${object.metadata.generateName}${randomBytes(3).toString('hex').slice(0, 5)}`;
    }
    // A client cannot set what the server owns.
    delete object.metadata.resourceVersion;
    delete object.metadata.uid;
    delete object.metadata.creationTimestamp;
    delete object.metadata.generation;
    if (resourceType.subresources.includes('status') && resourceType.plural !== 'pods') delete object.status;
    applyDefaults(resourceType, object);
    validateObject(resourceType, object);
    object.metadata.managedFields = managedFieldsAfterUpdate(undefined, object, { manager, apiVersion: apiVersionOf(resourceType) }, object.metadata.managedFields);
    return this.store.create(resourceType, object);
  }

  /**
   * The common tail of update and patch: precondition, what the subresource may change, defaults,
   * validation, immutability.
   */
  private write(
    resourceType: ResourceType,
    current: KubeObject,
    next: KubeObject,
    subresource: string | undefined,
    manager: string,
    ownership: 'update' | 'applied' = 'update',
  ): KubeObject {
    const expectedResourceVersion = next.metadata.resourceVersion || undefined;
    let toStore: KubeObject;
    if (subresource === 'status') {
      // The status subresource writes status only.
      toStore = { ...current, status: next.status };
    } else {
      toStore = next;
      // The main resource cannot write status when a status subresource exists.
      if (resourceType.subresources.includes('status')) {
        if (current.status === undefined) delete toStore.status;
        else toStore.status = current.status;
      }
    }
    carryAllocatedValues(resourceType, current, toStore);
    applyDefaults(resourceType, toStore);
    validateObject(resourceType, toStore);
    validateUpdate(resourceType, current, toStore);
    if (ownership === 'update') {
      const context = { manager, apiVersion: apiVersionOf(resourceType), ...(subresource ? { subresource } : {}) };
      toStore.metadata.managedFields = managedFieldsAfterUpdate(current, toStore, context, next.metadata.managedFields);
    }
    const options: { expectedResourceVersion?: string; subresource?: string } = {};
    if (expectedResourceVersion) options.expectedResourceVersion = expectedResourceVersion;
    if (subresource) options.subresource = subresource;
    return this.store.update(resourceType, toStore, options);
  }

  private replace(
    resourceType: ResourceType,
    namespace: string | undefined,
    name: string,
    subresource: string | undefined,
    body: unknown,
    manager: string,
  ): unknown {
    const object = this.requireObjectBody(body);
    if (object.metadata.name && object.metadata.name !== name) {
      throw badRequest(`the name of the object (${object.metadata.name}) does not match the name on the URL (${name})`);
    }
    const current = this.store.getOrThrow(resourceType, namespace, name);
    if (subresource === 'scale') return this.writeScale(resourceType, current, object, manager);
    this.checkTypeOfBody(resourceType, object);
    this.checkNamespaceOfBody(object, namespace);
    object.metadata.name = name;
    return this.write(resourceType, current, object, subresource, manager);
  }

  private patch(
    resourceType: ResourceType,
    namespace: string | undefined,
    name: string,
    subresource: string | undefined,
    body: unknown,
    contentType: string,
    manager: string,
  ): unknown {
    if (![PatchContentType.json, PatchContentType.merge, PatchContentType.strategic].includes(contentType as never)) {
      throw failure(415, `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`, 'UnsupportedMediaType');
    }
    const current = this.store.getOrThrow(resourceType, namespace, name);
    const base = subresource === 'scale' ? toScale(current, resourceType) : current;
    let patched: Json;
    try {
      patched = applyPatch(contentType, base as unknown as Json, body as Json, subresource === 'scale' ? 'Scale' : resourceType.kind);
    } catch (error) {
      if (error instanceof PatchError) {
        throw failure(422, `the server rejected our request due to an error in our request: ${error.message}`, 'Invalid', { name, kind: resourceType.plural });
      }
      throw error;
    }
    if (!isPlainObject(patched)) throw badRequest('the patch produced something that is not an object');
    const next = patched as unknown as KubeObject;
    if (!isPlainObject(next.metadata)) next.metadata = { name };
    if (next.metadata.name !== name) {
      throw badRequest(`the name of the object (${String(next.metadata.name)}) does not match the name on the URL (${name})`);
    }
    // A patch only carries a resourceVersion precondition when the client put one in it.
    const patchRv = isPlainObject(body) && isPlainObject(body.metadata) ? body.metadata.resourceVersion : undefined;
    if (typeof patchRv === 'string' && patchRv) next.metadata.resourceVersion = patchRv;
    else if (contentType !== PatchContentType.json) delete next.metadata.resourceVersion;
    else if (next.metadata.resourceVersion === base.metadata.resourceVersion) delete next.metadata.resourceVersion;
    if (subresource === 'scale') return this.writeScale(resourceType, current, next, manager);
    if (namespace !== undefined) next.metadata.namespace = namespace;
    return this.write(resourceType, current, next, subresource, manager);
  }

  /**
   * Server-side apply (managed-fields.ts): creates the object when absent (201), otherwise merges
   * the configuration and records the manager's ownership; a conflict is a 409 naming each field,
   * unless `force=true`.
   */
  private apply(
    resourceType: ResourceType,
    namespace: string | undefined,
    name: string,
    subresource: string | undefined,
    body: unknown,
    query: URLSearchParams,
    manager: string,
  ): { code: number; payload: unknown } {
    if (!query.get('fieldManager')) {
      throw failure(422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch', 'Invalid', {});
    }
    if (subresource) throw failure(415, `server-side apply of the ${subresource} subresource is not supported by the fake API server`, 'UnsupportedMediaType');
    const applied = this.requireObjectBody(body);
    if (applied.apiVersion === undefined || applied.kind === undefined) {
      throw badRequest('invalid object type: apiVersion and kind must be set in an applied configuration');
    }
    this.checkTypeOfBody(resourceType, applied);
    if (applied.metadata.name && applied.metadata.name !== name) {
      throw badRequest(`the name of the object (${applied.metadata.name}) does not match the name on the URL (${name})`);
    }
    applied.metadata.name = name;
    if (namespace !== undefined) applied.metadata.namespace = namespace;
    const current = this.store.get(resourceType, namespace, name);
    const context = { manager, apiVersion: apiVersionOf(resourceType) };
    let merged: KubeObject;
    try {
      merged = serverSideApply(current, applied, context, query.get('force') === 'true');
    } catch (error) {
      if (!(error instanceof ApplyConflictError)) throw error;
      throw failure(409, error.message, 'Conflict', {
        name,
        ...(resourceType.group ? { group: resourceType.group } : {}),
        kind: resourceType.plural,
        causes: error.conflicts.map((conflict) => ({
          reason: 'FieldManagerConflict',
          message: `conflict with "${conflict.manager}"${conflict.subresource ? ` with subresource "${conflict.subresource}"` : ''} using ${conflict.apiVersion}`,
          field: describePath(conflict.path),
        })),
      });
    }
    if (!current) {
      delete merged.metadata.resourceVersion;
      if (resourceType.subresources.includes('status') && resourceType.plural !== 'pods') delete merged.status;
      applyDefaults(resourceType, merged);
      validateObject(resourceType, merged);
      return { code: 201, payload: this.store.create(resourceType, merged) };
    }
    // An applied configuration carries a resourceVersion precondition only when the client set one.
    if (!applied.metadata.resourceVersion) delete merged.metadata.resourceVersion;
    return { code: 200, payload: this.write(resourceType, current, merged, undefined, manager, 'applied') };
  }

  private writeScale(resourceType: ResourceType, current: KubeObject, scale: KubeObject, manager: string): unknown {
    const spec = isPlainObject(scale.spec) ? scale.spec : {};
    const replicas = spec.replicas;
    if (!Number.isInteger(replicas) || (replicas as number) < 0) {
      throw failure(422, `Scale.autoscaling "${current.metadata.name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`, 'Invalid', {
        name: current.metadata.name,
        group: 'autoscaling',
        kind: 'Scale',
        causes: [{ reason: 'FieldValueInvalid', message: 'must be greater than or equal to 0', field: 'spec.replicas' }],
      });
    }
    const next = structuredClone(current);
    next.spec = { ...(isPlainObject(current.spec) ? current.spec : {}), [scaleField(resourceType)]: replicas };
    // The scale subresource's writer owns the parent's replicas field, recorded as a subresource write.
    next.metadata.managedFields = managedFieldsAfterUpdate(current, next, { manager, apiVersion: apiVersionOf(resourceType), subresource: 'scale' });
    const options: { expectedResourceVersion?: string; subresource: string } = { subresource: 'scale' };
    if (scale.metadata.resourceVersion) options.expectedResourceVersion = scale.metadata.resourceVersion;
    const stored = this.store.update(resourceType, next, options);
    return toScale(stored, resourceType);
  }

  private deleteOne(
    resourceType: ResourceType,
    namespace: string | undefined,
    name: string,
    body: unknown,
    query: URLSearchParams,
  ): { code: number; payload: unknown } {
    const preconditions = isPlainObject(body) && isPlainObject(body.preconditions) ? body.preconditions : {};
    const options: { propagation?: DeletePropagation; expectedUid?: string; expectedResourceVersion?: string } = {};
    const propagation = propagationOf(body, query);
    if (propagation) options.propagation = propagation;
    if (typeof preconditions.uid === 'string') options.expectedUid = preconditions.uid;
    if (typeof preconditions.resourceVersion === 'string') options.expectedResourceVersion = preconditions.resourceVersion;
    const { object: deleted, removed } = this.store.delete(resourceType, namespace, name, options);
    // handlers/delete.go: 200 (202 only for the deprecated orphanDependents=false, not served
    // here), with what the registry returned: the object itself while it waits for finalizers
    // (whatever its type), else the deleted object for the registries that return it and a
    // Status of success for the others (store.go finalizeDelete, ReturnDeletedObject).
    if (!removed || resourceType.deleteReturnsObject) return { code: 200, payload: deleted };
    const status: StatusBody = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Success',
      details: {
        name,
        ...(resourceType.group ? { group: resourceType.group } : {}),
        kind: resourceType.plural,
        ...(deleted.metadata.uid ? { uid: deleted.metadata.uid } : {}),
      },
      code: 200,
    };
    return { code: 200, payload: status };
  }
}

/**
 * The manager of a write: the `fieldManager` query parameter, else the User-Agent up to its first
 * `/` (k8s.io/apiserver `prefixFromUserAgent`), as the API server names it.
 */
function fieldManagerOf(query: URLSearchParams, userAgent: string | undefined): string {
  const explicit = query.get('fieldManager');
  if (explicit) return explicit;
  return (userAgent ?? 'unknown').split('/')[0]!.slice(0, 128) || 'unknown';
}

/** The DeleteOptions' propagationPolicy; undefined when the client sent none (the type's default applies). */
function propagationOf(body: unknown, query: URLSearchParams): DeletePropagation | undefined {
  const fromBody = isPlainObject(body) ? body.propagationPolicy : undefined;
  const value = typeof fromBody === 'string' ? fromBody : query.get('propagationPolicy');
  if (value === null || value === undefined) return undefined;
  if (value === 'Orphan' || value === 'Background' || value === 'Foreground') return value;
  throw badRequest(`invalid propagationPolicy "${value}": must be Orphan, Background or Foreground`);
}

/** The autoscaling/v1 Scale view of a workload. */
function toScale(object: KubeObject, resourceType: ResourceType): KubeObject {
  const spec = isPlainObject(object.spec) ? object.spec : {};
  const status = isPlainObject(object.status) ? object.status : {};
  const field = scaleField(resourceType);
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: {
      name: object.metadata.name,
      namespace: object.metadata.namespace,
      uid: object.metadata.uid,
      resourceVersion: object.metadata.resourceVersion,
      creationTimestamp: object.metadata.creationTimestamp,
    },
    spec: { replicas: typeof spec[field] === 'number' ? spec[field] : 1 },
    status: {
      replicas: typeof status.replicas === 'number' ? status.replicas : typeof status.instances === 'number' ? status.instances : 0,
      selector: selectorString(spec.selector),
    },
  };
}

function verbFor(method: string, parsed: ParsedPath, query: URLSearchParams): string {
  const hasName = parsed.name !== undefined;
  switch (method) {
    case 'GET':
      if (!hasName) return query.get('watch') === 'true' || query.get('watch') === '1' ? 'watch' : 'list';
      return 'get';
    case 'POST':
      if (hasName) throw failure(405, `POST on a named ${parsed.plural} is not allowed`, 'MethodNotAllowed');
      return 'create';
    case 'PUT':
      if (!hasName) throw failure(405, 'PUT requires a name', 'MethodNotAllowed');
      return 'update';
    case 'PATCH':
      if (!hasName) throw failure(405, 'PATCH requires a name', 'MethodNotAllowed');
      return 'patch';
    case 'DELETE':
      return hasName ? 'delete' : 'deletecollection';
    default:
      throw failure(405, `method ${method} is not allowed`, 'MethodNotAllowed');
  }
}

/**
 * /api/v1/[namespaces/<ns>/]<plural>[/<name>[/<subresource>]] and the same under
 * /apis/<group>/<version>/. `namespaces/<name>/status` is the Namespace's own subresource.
 */
function parsePath(pathname: string): ParsedPath | undefined {
  const segments = pathname.split('/').filter((segment) => segment.length > 0).map(decodeURIComponent);
  let group: string;
  let version: string;
  let rest: string[];
  if (segments[0] === 'api' && segments.length >= 3) {
    group = '';
    version = segments[1] as string;
    rest = segments.slice(2);
  } else if (segments[0] === 'apis' && segments.length >= 4) {
    group = segments[1] as string;
    version = segments[2] as string;
    rest = segments.slice(3);
  } else {
    return undefined;
  }
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3 && rest[2] !== 'status' && rest[2] !== 'finalize') {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  if (rest.length === 0 || rest.length > 3) return undefined;
  const parsed: ParsedPath = { group, version, plural: rest[0] as string };
  if (namespace !== undefined) parsed.namespace = namespace;
  if (rest[1] !== undefined) parsed.name = rest[1];
  if (rest[2] !== undefined) parsed.subresource = rest[2];
  return parsed;
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const ACCEPTED_MEDIA_TYPES = 'application/json, application/yaml, application/vnd.kubernetes.protobuf';

function parseBody(raw: Buffer, contentType: string): unknown {
  if (contentType === PROTOBUF_CONTENT_TYPE) {
    try {
      return decodeKubernetesProtobuf(raw);
    } catch (error) {
      if (error instanceof ProtobufError) throw failure(415, `the body of the request was in an unknown format - accepted media types include: ${ACCEPTED_MEDIA_TYPES} (${error.message})`, 'UnsupportedMediaType');
      throw error;
    }
  }
  if (contentType && !contentType.includes('json') && contentType !== PatchContentType.apply) {
    throw failure(415, `the body of the request was in an unknown format - accepted media types include: ${ACCEPTED_MEDIA_TYPES}`, 'UnsupportedMediaType');
  }
  const text = raw.toString('utf8');
  try {
    // An apply patch is YAML (of which JSON is a subset): client-go sends JSON, kubectl YAML.
    return contentType === PatchContentType.apply ? parseYaml(text) : JSON.parse(text);
  } catch (error) {
    throw badRequest(`the body of the request could not be decoded: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * The media type kube-openapi answers the OpenAPI v2 protobuf with (client-go asks for the
 * deprecated `…spec.v2@v1.0+protobuf`, which Go's mime parser cannot read back).
 */
const OPENAPI_V2_PROTOBUF = 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf';

function send(response: ServerResponse, code: number, payload: unknown): void {
  const text = JSON.stringify(payload);
  response.writeHead(code, { 'content-type': JSON_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

/** Starts a fake API server on a random port. Close it with `await server.close()`. */
export async function startFakeKubeApiServer(options: FakeKubeApiServerOptions = {}): Promise<FakeKubeApiServer> {
  return new FakeKubeApiServer(options).start();
}

