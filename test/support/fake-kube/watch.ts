/**
 * Watches, as the API server serves them (`GET …?watch=true`): a chunked stream of
 * `{"type": …, "object": …}` lines.
 *
 * - `resourceVersion` unset or "0": synthetic ADDED events for the objects that exist now, then
 *   every change; a specific resourceVersion: every change after it, from the server's event
 *   history; one older than the history is answered with an ERROR event carrying a 410 Expired
 *   Status ("too old resource version"), as etcd's compaction makes the real server do.
 * - `sendInitialEvents=true` (client-go's WatchList): the existing objects as ADDED, then a
 *   BOOKMARK annotated `k8s.io/initial-events-end: "true"`.
 * - Label and field selectors filter as for lists; an object that stops matching is sent as
 *   DELETED, one that starts matching as ADDED (the real watch cache does the same).
 * - `timeoutSeconds` ends the stream (the client then re-lists or re-watches).
 */
import type { ServerResponse } from 'node:http';

import type { ChangeEvent, KubeObject } from './object-store.js';
import type { ResourceType } from './resource-types.js';
import { apiVersionOf } from './resource-types.js';

export interface StoredEvent {
  readonly type: ChangeEvent;
  readonly object: KubeObject;
  readonly resourceType: ResourceType;
  /** The resourceVersion the event produced. */
  readonly resourceVersion: number;
}

export interface WatchRequest {
  readonly resourceType: ResourceType;
  readonly namespace: string | undefined;
  readonly query: URLSearchParams;
  readonly matches: (object: KubeObject) => boolean;
  /** The objects that exist now (for the initial events). */
  readonly current: () => KubeObject[];
  readonly currentResourceVersion: () => number;
}

/** How many events the server remembers for watches that resume from a resourceVersion. */
const HISTORY_LIMIT = 10_000;

function sameType(a: ResourceType, b: ResourceType): boolean {
  return a.group === b.group && a.plural === b.plural;
}

export class WatchHub {
  private readonly history: StoredEvent[] = [];
  private readonly watchers = new Set<(event: StoredEvent) => void>();
  private readonly responses = new Set<ServerResponse>();

  /** Records a stored change and hands it to the open watches. */
  publish(event: StoredEvent): void {
    this.history.push(event);
    if (this.history.length > HISTORY_LIMIT) this.history.splice(0, this.history.length - HISTORY_LIMIT);
    for (const watcher of this.watchers) watcher(event);
  }

  /** Ends every open watch (server shutdown). */
  closeAll(): void {
    for (const response of this.responses) response.end();
    this.responses.clear();
    this.watchers.clear();
  }

  serve(request: WatchRequest, response: ServerResponse): void {
    const { resourceType, namespace, query } = request;
    response.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const write = (type: string, object: unknown) => response.write(`${JSON.stringify({ type, object })}\n`);
    const inScope = (object: KubeObject) => namespace === undefined || object.metadata.namespace === namespace;
    // Which objects the client currently believes match (for selector transitions).
    const visible = new Set<string>();
    const keyOf = (object: KubeObject) => `${object.metadata.namespace ?? ''}/${object.metadata.name}`;

    const deliver = (event: StoredEvent): void => {
      if (!sameType(event.resourceType, resourceType) || !inScope(event.object)) return;
      const key = keyOf(event.object);
      const matchesNow = event.type !== 'DELETED' && request.matches(event.object);
      if (event.type === 'DELETED') {
        if (request.matches(event.object) || visible.has(key)) write('DELETED', event.object);
        visible.delete(key);
      } else if (matchesNow) {
        write(visible.has(key) ? 'MODIFIED' : 'ADDED', event.object);
        visible.add(key);
      } else if (visible.has(key)) {
        write('DELETED', event.object);
        visible.delete(key);
      }
    };

    const requested = query.get('resourceVersion') ?? '';
    const initialEvents = query.get('sendInitialEvents') === 'true';
    if (initialEvents || requested === '' || requested === '0') {
      for (const object of request.current().filter(inScope).filter(request.matches)) {
        write('ADDED', object);
        visible.add(keyOf(object));
      }
      if (initialEvents) {
        write('BOOKMARK', {
          kind: resourceType.kind,
          apiVersion: apiVersionOf(resourceType),
          metadata: { resourceVersion: String(request.currentResourceVersion()), annotations: { 'k8s.io/initial-events-end': 'true' } },
        });
      }
    } else {
      const from = Number(requested);
      const oldest = this.history[0]?.resourceVersion ?? request.currentResourceVersion() + 1;
      if (!Number.isInteger(from) || from < oldest - 1) {
        write('ERROR', {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          message: `too old resource version: ${requested} (${oldest - 1})`,
          reason: 'Expired',
          code: 410,
        });
        response.end();
        return;
      }
      // The client's view at `from`: unchanged objects that match, and the objects whose first
      // later event is not their creation (they existed then; the selector is assumed to have
      // matched, which holds while labels do not change).
      for (const object of request.current().filter(inScope)) {
        if (Number(object.metadata.resourceVersion) <= from && request.matches(object)) visible.add(keyOf(object));
      }
      const later = this.history.filter((event) => event.resourceVersion > from && sameType(event.resourceType, resourceType) && inScope(event.object));
      const seen = new Set<string>();
      for (const event of later) {
        const key = keyOf(event.object);
        if (seen.has(key)) continue;
        seen.add(key);
        if (event.type !== 'ADDED') visible.add(key);
      }
      for (const event of later) deliver(event);
    }

    this.watchers.add(deliver);
    this.responses.add(response);
    const finish = () => {
      this.watchers.delete(deliver);
      this.responses.delete(response);
      clearTimeout(timer);
    };
    const timeoutSeconds = Number(query.get('timeoutSeconds') ?? '0');
    // The real server ends a watch after timeoutSeconds, or after a random 30–60 min when unset.
    const timer = setTimeout(() => {
      finish();
      response.end();
    }, timeoutSeconds > 0 ? timeoutSeconds * 1000 : 30 * 60_000);
    timer.unref();
    response.on('close', finish);
  }
}
