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
 * - Label and field selectors filter as for lists, evaluated as the watch cache does on both the
 *   object before and after each change (k8s.io/apiserver pkg/storage/cacher, cacheWatcher
 *   convertToWatchEvent): matched after only → ADDED, before and after → MODIFIED, before only →
 *   DELETED (with the content it last matched with, at the event's resourceVersion), neither →
 *   nothing. A watch resumed from a resourceVersion replays its history the same way.
 * - `timeoutSeconds` ends the stream (the client then re-lists or re-watches).
 */
import type { ServerResponse } from 'node:http';

import type { ChangeEvent, KubeObject } from './object-store.js';
import type { ResourceType } from './resource-types.js';
import { apiVersionOf } from './resource-types.js';

export interface PublishedEvent {
  readonly type: ChangeEvent;
  readonly object: KubeObject;
  readonly resourceType: ResourceType;
  /** The resourceVersion the event produced. */
  readonly resourceVersion: number;
}

export interface StoredEvent extends PublishedEvent {
  /**
   * The object before the change (MODIFIED, DELETED; none for ADDED), as the watch cache keeps it
   * (watchCacheEvent.PrevObject): the previous event's object, shared, not copied.
   */
  readonly previous?: KubeObject;
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
  /** The last published state of each live object (type/namespace/name), for the next event's `previous`. */
  private readonly latest = new Map<string, KubeObject>();

  /** Records a stored change and hands it to the open watches. */
  publish(published: PublishedEvent): void {
    const key = `${published.resourceType.group}/${published.resourceType.plural}/${published.object.metadata.namespace ?? ''}/${published.object.metadata.name}`;
    const previous = published.type === 'ADDED' ? undefined : this.latest.get(key);
    const event: StoredEvent = previous ? { ...published, previous } : published;
    if (published.type === 'DELETED') this.latest.delete(key);
    else this.latest.set(key, published.object);
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
    const deliver = (event: StoredEvent): void => {
      if (!sameType(event.resourceType, resourceType) || !inScope(event.object)) return;
      const matchesNow = event.type !== 'DELETED' && request.matches(event.object);
      const before = event.previous ?? (event.type === 'DELETED' ? event.object : undefined);
      const matchedBefore = before !== undefined && request.matches(before);
      if (matchesNow) {
        write(matchedBefore ? 'MODIFIED' : 'ADDED', event.object);
      } else if (matchedBefore) {
        const last = structuredClone(before);
        last.metadata.resourceVersion = String(event.resourceVersion);
        write('DELETED', last);
      }
    };

    const requested = query.get('resourceVersion') ?? '';
    const initialEvents = query.get('sendInitialEvents') === 'true';
    if (initialEvents || requested === '' || requested === '0') {
      for (const object of request.current().filter(inScope).filter(request.matches)) write('ADDED', object);
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
      const later = this.history.filter((event) => event.resourceVersion > from);
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
