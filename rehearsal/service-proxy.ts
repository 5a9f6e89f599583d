/**
 * The rehearsal's kube-proxy and cluster DNS. Every process here listens on 127.0.0.1 at a port
 * the OS chose, while the manifests say `<service>:5432`. For each Service port (and each
 * StatefulSet pod's stable name behind a headless Service) that a container's environment names,
 * this opens one local TCP proxy whose port never changes; each connection is forwarded to a
 * Ready pod selected by the Service's selector *at connect time*, from the fake API's live
 * objects — so a scaled-down database refuses connections, a restarted one is found again at its
 * new port, and a Service whose selector matches nothing behaves like one without endpoints.
 *
 * How a name is recognised (namespace `ns`): `svc`, `svc.ns`, `svc.ns.svc`,
 * `svc.ns.svc.cluster.local`, and `<pod>.<headless svc>` with the same suffixes.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

import type { FakeKubeApiServer, KubeObject as StoredObject } from '../test/support/fake-kube/index.js';

/** Where a pod's process listens, registered by the workload backing when it is up. */
export class PodEndpoints {
  private readonly ports = new Map<string, number>();

  set(podName: string, port: number): void {
    this.ports.set(podName, port);
  }

  delete(podName: string): void {
    this.ports.delete(podName);
  }

  get(podName: string): number | undefined {
    return this.ports.get(podName);
  }
}

interface ParsedHost {
  readonly service: string;
  readonly pod?: string;
}

export class ServiceProxies {
  private readonly proxies = new Map<string, { server: Server; port: number }>();
  private readonly sockets = new Set<Socket>();
  /** Services made unreachable by a fault (connections refused, as with no endpoints). */
  private readonly blocked = new Set<string>();

  constructor(
    private readonly server: FakeKubeApiServer,
    private readonly namespace: string,
    private readonly endpoints: PodEndpoints,
  ) {}

  /** Parses a cluster DNS name of this namespace; undefined when it names no Service here. */
  parseHost(host: string): ParsedHost | undefined {
    const suffixes = [`.${this.namespace}.svc.cluster.local`, `.${this.namespace}.svc`, `.${this.namespace}`, ''];
    for (const suffix of suffixes) {
      if (suffix && !host.endsWith(suffix)) continue;
      const base = suffix ? host.slice(0, -suffix.length) : host;
      const parts = base.split('.');
      if (parts.length === 1 && this.service(parts[0]!)) return { service: parts[0]! };
      if (parts.length === 2 && this.service(parts[1]!)) return { service: parts[1]!, pod: parts[0]! };
    }
    return undefined;
  }

  /**
   * A local port that reaches `host:port` as the cluster would, or undefined when `host` is not
   * a Service of this namespace. Throws when the Service exists but does not expose `port`.
   */
  async localPort(host: string, port: number): Promise<number | undefined> {
    const parsed = this.parseHost(host);
    if (!parsed) return undefined;
    const service = this.service(parsed.service)!;
    const ports = ((service.spec as { ports?: { port: number; name?: string }[] } | undefined)?.ports ?? []).map((p) => p.port);
    if (!ports.includes(port)) {
      throw new Error(`Service ${parsed.service} exposes port(s) ${ports.join(', ') || 'none'}, but the environment asks for ${host}:${port}`);
    }
    const key = `${parsed.pod ?? ''}.${parsed.service}:${port}`;
    const existing = this.proxies.get(key);
    if (existing) return existing.port;
    const proxy = createServer((client) => this.forward(client, parsed));
    const listening = await new Promise<number>((resolve, reject) => {
      proxy.once('error', reject);
      proxy.listen(0, '127.0.0.1', () => resolve((proxy.address() as { port: number }).port));
    });
    this.proxies.set(key, { server: proxy, port: listening });
    return listening;
  }

  /**
   * `<service>:<port>` → this proxy's local address, for every port of every Service of the
   * namespace now: what cluster DNS + kube-proxy give a pod for names it learns at run time.
   */
  async everyServicePort(): Promise<[string, { host: string; port: number }][]> {
    const entries: [string, { host: string; port: number }][] = [];
    for (const service of this.server.list('v1', 'Service', this.namespace)) {
      const name = service.metadata.name;
      for (const { port } of (service.spec as { ports?: { port: number }[] } | undefined)?.ports ?? []) {
        const local = await this.localPort(name, port);
        if (local !== undefined) entries.push([`${name}:${port}`, { host: '127.0.0.1', port: local }]);
      }
    }
    return entries;
  }

  /** Fault: every new connection to the Service is refused until {@link unblock}. */
  block(service: string): void {
    this.blocked.add(service);
  }

  unblock(service: string): void {
    this.blocked.delete(service);
  }

  /** The port of a Ready pod behind the name right now (for harness checks), if any. */
  currentBackend(host: string): number | undefined {
    const parsed = this.parseHost(host);
    return parsed ? this.pickBackend(parsed) : undefined;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await Promise.all([...this.proxies.values()].map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve()))));
    this.proxies.clear();
  }

  private service(name: string): StoredObject | undefined {
    return this.server.get({ apiVersion: 'v1', kind: 'Service', name, namespace: this.namespace });
  }

  private pickBackend(parsed: ParsedHost): number | undefined {
    if (this.blocked.has(parsed.service)) return undefined;
    const service = this.service(parsed.service);
    if (!service) return undefined;
    const selector = (service.spec as { selector?: Record<string, string> } | undefined)?.selector;
    if (!selector || Object.keys(selector).length === 0) return undefined;
    const pods = this.server
      .list('v1', 'Pod', this.namespace)
      .filter((pod) => Object.entries(selector).every(([key, value]) => pod.metadata.labels?.[key] === value))
      .filter((pod) => parsed.pod === undefined || pod.metadata.name === parsed.pod)
      .filter((pod) => {
        // A headless Service with publishNotReadyAddresses resolves pods that are not Ready yet.
        if ((service.spec as { publishNotReadyAddresses?: boolean }).publishNotReadyAddresses) return true;
        const conditions = ((pod.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []);
        return conditions.some((c) => c.type === 'Ready' && c.status === 'True');
      });
    for (const pod of pods) {
      const port = this.endpoints.get(pod.metadata.name);
      if (port !== undefined) return port;
    }
    return undefined;
  }

  private forward(client: Socket, parsed: ParsedHost): void {
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    const backendPort = this.pickBackend(parsed);
    if (backendPort === undefined) {
      // No endpoints: the connection is refused, as with a Service whose pods are all gone.
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: '127.0.0.1', port: backendPort });
    this.sockets.add(upstream);
    upstream.on('close', () => this.sockets.delete(upstream));
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  }
}
