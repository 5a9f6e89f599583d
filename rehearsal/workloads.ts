/**
 * Real processes behind the workloads applied to the fake API. H4's workload controller keeps one
 * Pod per desired replica; this module starts and stops what each Pod stands for and reports it
 * Ready only once the process really serves:
 *
 * | workload (recognised by its container's environment)        | process                                   |
 * |--------------------------------------------------------------|-------------------------------------------|
 * | StatefulSet with POSTGRES_USER and PGDATA, no REPMGR_*        | PostgreSQL (legacy Bitnami `postgresql`)  |
 * | same, with POSTGRES_REPLICATION_MODE=slave                    | hot standby cloned from POSTGRES_MASTER_HOST (Bitnami's read replica) |
 * | StatefulSet with REPMGR_USERNAME                              | repmgr node: ordinal 0 primary, others standbys |
 * | Deployment with PGPOOL_BACKEND_NODES                          | Pgpool-II over those backends             |
 * | StatefulSet with KC_DB                                        | init containers in the runner image (the database gate, `podman run`), then keycloak-standin.mjs |
 * | StatefulSet of Bitnami's Keycloak image (no KC_DB of its own)  | keycloak-standin.mjs on the database of `KC_DB_URL` / `KEYCLOAK_DATABASE_*` (bitnami-pods.ts) |
 *
 * Data directories are `PGDATA` mapped into the pod's `data` volume (its PVC from the
 * volumeClaimTemplate, see volumes.ts), so they survive scale to 0 and back. The PostgreSQL
 * major follows the image tag (15 from Debian; 11, 13, 16, 17 from the embedded npm packages).
 * Credentials come from the resolved environment (the Secrets in the fake API): a Secret that
 * does not exist yet keeps the pod waiting, as CreateContainerConfigError does.
 * Bitnami's `*_FILE` password variables are read from the pod's Secret volumes. Keycloak pods
 * serve the stand-in's HTTP port as their endpoint (what the Keycloak Service forwards to).
 *
 * Readiness: a pod's `Ready` condition turns True when its process serves, and the owner's
 * `readyReplicas`/`availableReplicas` count only such pods (H4's controller counts every pod; we
 * correct it inside the change notification of each of its status writes, so nothing observes it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { startWorkloadController, type FakeKubeApiServer, type KubeObject as StoredObject, type WorkloadController } from '../test/support/fake-kube/index.js';
import { isPostgresMajorHere, POSTGRES_MAJORS_HERE, postgresBinDir, type PostgresMajor } from '../test/support/postgres.js';

import { prepareContainer, startContainer, type ClientTools, type ContainerProcess, type PodSpec } from './container-runtime.js';
import { bitnamiKeycloakDatabase, bitnamiReplicationMode, isBitnamiKeycloak, resolvePasswordFiles } from './bitnami-pods.js';
import { Pgpool } from './pgpool.js';
import { PodConfigError, resolveContainerEnv, type Container } from './pod-env.js';
import { ident, literal, PostgresNode, type PostgresNodeOptions } from './postgres-node.js';
import { cloneStandby } from './clone-standby.js';
import { ensurePostgresDir, freePort, onProcessExit, PG_BIN, postgresUser, runAsPostgres, waitFor } from './postgres-processes.js';
import { RepmgrCluster } from './repmgr-cluster.js';
import type { PodEndpoints, ServiceProxies } from './service-proxy.js';
import type { Volumes } from './volumes.js';

const STANDIN = join(dirname(fileURLToPath(import.meta.url)), 'keycloak-standin.mjs');
const REPOSITORY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** A Keycloak stand-in's first write, as it reported it. */
export interface KeycloakWrite {
  readonly pod: string;
  /** When the stand-in began writing (ms since epoch). */
  readonly at: number;
  /** The database host from the manifest (before mapping). */
  readonly host: string;
  /** Whether it found an empty database and created Keycloak's tables. */
  readonly createdSchema: boolean;
}

/** One run of a Keycloak init container (the database gate). */
export interface InitContainerRun {
  readonly pod: string;
  readonly container: string;
  readonly args: readonly string[];
  readonly startedAt: number;
  endedAt?: number;
  exitCode?: number | null;
  readonly logFile: string;
}

export interface WorkloadBackingOptions {
  readonly server: FakeKubeApiServer;
  readonly namespace: string;
  readonly root: string;
  readonly volumes: Volumes;
  readonly proxies: ServiceProxies;
  readonly endpoints: PodEndpoints;
  /** Client tools instead of the image's own (container-runtime.ts HOST_CLIENT_TOOLS). @default - the image's */
  readonly clientTools?: ClientTools;
  /**
   * Called once when a legacy database is initialised, before its pod turns Ready: the data
   * that was in the production volume (e.g. H3's createKeycloakData through the app user).
   */
  readonly seedLegacy?: (connection: { host: string; port: number; database: string; user: string; password: string; superuserPassword: string }) => Promise<void>;
  /** Base of restart back-offs for crashing containers (the kubelet's is 10 s). @default 500 */
  readonly restartBackoffMs?: number;
  /**
   * The server major a legacy database pod runs, from its image.
   * @default {@link imageMajor} (the tag's major)
   */
  readonly legacyMajorOf?: (image: string | undefined) => PostgresMajor;
  /**
   * When set, every Keycloak stand-in also writes one row every this many ms (a login event, as a
   * busy Keycloak does) and reports each accepted write: {@link WorkloadBacking.keycloakAcceptedWrites}.
   * @default - only the start-up writes
   */
  readonly keycloakWriteIntervalMs?: number;
}

/** A write a Keycloak stand-in saw committed (with a write interval set). */
export interface KeycloakAcceptedWrite {
  readonly pod: string;
  /** The database host from the manifest (before mapping). */
  readonly host: string;
  /** Commit acknowledged (ms since epoch). */
  readonly at: number;
  /** Primary key of the row in `public.rehearsal_keycloak_writes`. */
  readonly id: string;
}

type Backing =
  | { kind: 'legacy'; node: PostgresNode }
  | { kind: 'repmgr'; cluster: RepmgrCluster; ordinal: number }
  | { kind: 'pgpool'; pool?: Pgpool }
  | { kind: 'keycloak'; process?: ChildProcess | ContainerProcess };

interface PodRuntime {
  readonly pod: string;
  backing?: Backing;
  stopping: boolean;
  /** Resolves when the start routine finished (or gave up because the pod is stopping). */
  started?: Promise<void>;
}

export class WorkloadBacking {
  private readonly controller: WorkloadController;
  private readonly pods = new Map<string, PodRuntime>();
  private readonly clusters = new Map<string, Promise<RepmgrCluster>>();
  private readonly legacyPorts = new Map<string, number>();
  private readonly unsubscribe: () => void;
  /** First writes of every Keycloak stand-in, in order. */
  readonly keycloakWrites: KeycloakWrite[] = [];
  /** Every write the stand-ins saw committed, in order (only with `keycloakWriteIntervalMs`). */
  readonly keycloakAcceptedWrites: KeycloakAcceptedWrite[] = [];
  /** The servers legacy pods ran (by pod name), to read what the volume holds after the pod went. */
  readonly legacyServers = new Map<string, PostgresNodeOptions>();
  readonly initContainerRuns: InitContainerRun[] = [];
  /** Errors of start routines (a backing that could not start is a rehearsal failure). */
  readonly errors: Error[] = [];

  constructor(private readonly options: WorkloadBackingOptions) {
    const { server } = options;
    this.controller = startWorkloadController(server, {
      onPodStarted: (pod, workload) => this.podStarted(pod, workload),
      onPodStopping: (pod) => this.stopPod(pod.metadata.name),
    });
    this.unsubscribe = server.onChange((event, object, info) => {
      if (object.metadata.namespace !== options.namespace) return;
      if (event === 'DELETED' && object.kind === 'Pod') void this.stopPod(object.metadata.name);
      // Correct H4's controller's count of ready replicas the moment it has written it: a nested
      // write inside the change notification, so no reader (API request or tool) sees the count
      // of pods that are not Ready. Our own correction notifies again and finds nothing to change.
      if ((object.kind === 'StatefulSet' || object.kind === 'Deployment') && event === 'MODIFIED' && info.subresource === 'status') {
        this.recomputeStatus(object.kind as string, object.metadata.name);
      }
      if ((object.kind === 'StatefulSet' || object.kind === 'Deployment') && event === 'MODIFIED' && !info.subresource) {
        this.rollOut(object);
      }
    });
  }

  /** The repmgr cluster behind a StatefulSet (for checks on primary and standbys). */
  async repmgrCluster(statefulSetName: string): Promise<RepmgrCluster | undefined> {
    return this.clusters.get(statefulSetName);
  }

  /** The legacy server's local port (for checks), while its pod runs. */
  legacyPort(podName: string): number | undefined {
    return this.options.endpoints.get(podName);
  }

  /**
   * Waits until the controller is idle and every database/Pgpool pod finished starting (Keycloak
   * pods are supervised for their whole life and may wait on their gate: not awaited).
   */
  async settled(): Promise<void> {
    await this.controller.settled();
    await Promise.allSettled([...this.pods.values()].filter((runtime) => runtime.backing?.kind !== 'keycloak').map((runtime) => runtime.started));
  }

  async close(): Promise<void> {
    this.controller.stop();
    this.unsubscribe();
    // The rehearsal's directory goes next: no server needs its shutdown checkpoint.
    await Promise.allSettled([...this.pods.keys()].map((pod) => this.stopPod(pod, 'immediate')));
    for (const cluster of this.clusters.values()) await (await cluster).stop('immediate').catch(() => undefined);
  }

  private podRef(name: string) {
    return { apiVersion: 'v1', kind: 'Pod', name, namespace: this.options.namespace };
  }

  private setPodReady(name: string, ready: boolean, reason?: string): void {
    const pod = this.options.server.get(this.podRef(name));
    if (!pod) return;
    this.options.server.setStatus(this.podRef(name), {
      phase: 'Running',
      conditions: [
        { type: 'Initialized', status: 'True' },
        { type: 'ContainersReady', status: ready ? 'True' : 'False' },
        { type: 'Ready', status: ready ? 'True' : 'False', ...(reason ? { reason } : {}) },
      ],
    });
    const owner = (pod.metadata.ownerReferences ?? []).find((reference) => reference.kind === 'StatefulSet' || reference.kind === 'Deployment');
    if (owner) this.recomputeStatus(owner.kind, owner.name);
  }

  private recomputeStatus(kind: string, name: string): void {
    const { server, namespace } = this.options;
    const workload = server.get({ apiVersion: 'apps/v1', kind, name, namespace });
    if (!workload) return;
    const pods = server
      .list('v1', 'Pod', namespace)
      .filter((pod) => (pod.metadata.ownerReferences ?? []).some((reference) => reference.uid === workload.metadata.uid));
    const ready = pods.filter((pod) =>
      (((pod.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')),
    ).length;
    const status = (workload.status ?? {}) as { readyReplicas?: number; availableReplicas?: number; replicas?: number };
    if (status.readyReplicas === ready && status.availableReplicas === ready && status.replicas === pods.length) return;
    server.setStatus({ apiVersion: 'apps/v1', kind, name, namespace }, { replicas: pods.length, readyReplicas: ready, availableReplicas: ready });
  }

  /**
   * The rolling update H4's controller does not do: pods whose spec differs from the workload's
   * current template are replaced one at a time, highest ordinal first, each replacement waited
   * for until Ready before the next (RollingUpdate with maxUnavailable 1, as StatefulSets and
   * Deployments default to). The controller recreates each deleted pod from the new template.
   */
  private rollOut(workload: StoredObject): void {
    const key = `${workload.kind}/${workload.metadata.name}`;
    if (this.rollouts.has(key)) {
      this.rolloutAgain.add(key);
      return;
    }
    const work = (async () => {
      do {
        this.rolloutAgain.delete(key);
        await this.rollOutOnce(workload.kind as string, workload.metadata.name);
      } while (this.rolloutAgain.has(key));
    })()
      .catch((error: unknown) => {
        this.errors.push(error as Error);
      })
      .finally(() => this.rollouts.delete(key));
    this.rollouts.set(key, work);
  }

  private readonly rollouts = new Map<string, Promise<void>>();
  private readonly rolloutAgain = new Set<string>();

  private async rollOutOnce(kind: string, name: string): Promise<void> {
    const { server, namespace } = this.options;
    for (;;) {
      const workload = server.get({ apiVersion: 'apps/v1', kind, name, namespace });
      if (!workload) return;
      const template = (workload.spec as { template?: { spec?: unknown } }).template?.spec;
      const stale = server
        .list('v1', 'Pod', namespace)
        .filter((pod) => (pod.metadata.ownerReferences ?? []).some((reference) => reference.uid === workload.metadata.uid))
        .filter((pod) => canonicalJson(pod.spec) !== canonicalJson(template))
        .sort((a, b) => b.metadata.name.localeCompare(a.metadata.name, undefined, { numeric: true }));
      const next = stale[0];
      if (!next) return;
      await this.stopPod(next.metadata.name);
      server.remove(this.podRef(next.metadata.name));
      // Wait for the controller to recreate it and for it to become Ready (or to go away, on a
      // scale-down meanwhile) before touching the next one.
      for (;;) {
        await sleep(100);
        const replacement = server.get(this.podRef(next.metadata.name));
        const current = server.get({ apiVersion: 'apps/v1', kind, name, namespace });
        if (!current) return;
        const desired = (current.spec as { replicas?: number }).replicas ?? 1;
        const ordinal = Number(/-(\d+)$/.exec(next.metadata.name)?.[1] ?? '0');
        if (!replacement && kind === 'StatefulSet' && ordinal >= desired) break;
        if (kind === 'Deployment' && !replacement) break;
        const ready = ((replacement?.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some(
          (c) => c.type === 'Ready' && c.status === 'True',
        );
        if (ready) break;
      }
    }
  }

  private podStarted(pod: StoredObject, workload: StoredObject): void {
    // Not Ready until the process serves (H4's controller creates pods Ready).
    const runtime: PodRuntime = { pod: pod.metadata.name, stopping: false };
    this.pods.set(pod.metadata.name, runtime);
    this.setPodReady(pod.metadata.name, false, 'ContainersNotReady');
    runtime.started = this.startBacking(runtime, pod, workload).catch((error: unknown) => {
      if (runtime.stopping) return;
      const wrapped = new Error(`pod ${pod.metadata.name} of ${workload.kind} ${workload.metadata.name} could not start: ${(error as Error).message}`, { cause: error });
      this.errors.push(wrapped);
      this.setPodReady(pod.metadata.name, false, 'StartError');
    });
  }

  private async startBacking(runtime: PodRuntime, pod: StoredObject, workload: StoredObject): Promise<void> {
    const spec = pod.spec as PodSpec;
    const container = spec.containers[0]!;
    const envNames = new Set((container.env ?? []).map((variable) => variable.name));
    if (workload.kind === 'StatefulSet' && envNames.has('REPMGR_USERNAME')) return this.startRepmgrNode(runtime, pod, workload, container);
    if (workload.kind === 'StatefulSet' && bitnamiReplicationMode(container) === 'slave') return this.startBitnamiReadReplica(runtime, pod, container);
    if (workload.kind === 'StatefulSet' && envNames.has('POSTGRES_USER') && envNames.has('PGDATA')) return this.startLegacy(runtime, pod, workload, container);
    if (workload.kind === 'Deployment' && envNames.has('PGPOOL_BACKEND_NODES')) return this.startPgpool(runtime, pod, container);
    if (workload.kind === 'StatefulSet' && envNames.has('KC_DB')) return this.startKeycloak(runtime, pod);
    if (workload.kind === 'StatefulSet' && isBitnamiKeycloak(container)) return this.startBitnamiKeycloak(runtime, pod, container);
    throw new Error(`no rehearsal backing for ${workload.kind} ${workload.metadata.name} (container ${container.name}, image ${container.image})`);
  }

  /** Resolves the container's env, waiting (as CreateContainerConfigError) for missing Secrets. */
  private async waitForEnv(runtime: PodRuntime, pod: StoredObject, container: Container): Promise<Record<string, string>> {
    for (;;) {
      if (runtime.stopping) throw new Error('pod stopped before its configuration appeared');
      try {
        // Bitnami's images read passwords from *_FILE in Secret volumes too.
        return resolvePasswordFiles(this.options.server, pod, container, resolveContainerEnv(this.options.server, pod, container));
      } catch (error) {
        if (!(error instanceof PodConfigError)) throw error;
        this.setPodReady(pod.metadata.name, false, 'CreateContainerConfigError');
        await sleep(100);
      }
    }
  }

  /** The directory PGDATA lands in: the mount holding it, mapped to its PVC's directory. */
  private async dataDirectory(runtime: PodRuntime, pod: StoredObject, container: Container, pgdata: string): Promise<string> {
    const spec = pod.spec as PodSpec;
    const mount = (container.volumeMounts ?? [])
      .filter((m) => pgdata === m.mountPath || pgdata.startsWith(`${m.mountPath}/`))
      .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    if (!mount) throw new Error(`PGDATA ${pgdata} is on no volume mount: the data would be lost with the pod`);
    const claimName = (spec.volumes ?? []).find((v) => v.name === mount.name)?.persistentVolumeClaim?.claimName ?? `${mount.name}-${pod.metadata.name}`;
    let directory: string | undefined;
    while (!(directory = this.options.volumes.directoryOfClaim(claimName))) {
      if (runtime.stopping) throw new Error('pod stopped before its volume was bound');
      await sleep(50);
    }
    const { uid, gid } = await postgresUser();
    chownSync(directory, uid, gid);
    return directory + pgdata.slice(mount.mountPath.length);
  }

  /**
   * The server of a Bitnami `postgresql` pod (not started): PGDATA in its volume, a port kept
   * across restarts of the pod, the major of its image.
   */
  private async legacyServer(runtime: PodRuntime, pod: StoredObject, container: Container, env: Record<string, string>): Promise<PostgresNode> {
    const dataDir = await this.dataDirectory(runtime, pod, container, requireEnv(env, 'PGDATA', pod));
    let port = this.legacyPorts.get(pod.metadata.name);
    if (port === undefined) {
      port = await freePort();
      this.legacyPorts.set(pod.metadata.name, port);
    }
    const socketDir = await ensurePostgresDir(join(this.options.root, 'run', pod.metadata.name));
    const node = new PostgresNode({ dataDir, port, socketDir, binDir: postgresBinDir((this.options.legacyMajorOf ?? imageMajor)(container.image)) });
    runtime.backing = { kind: 'legacy', node };
    this.legacyServers.set(pod.metadata.name, node.options);
    return node;
  }

  private async startLegacy(runtime: PodRuntime, pod: StoredObject, _workload: StoredObject, container: Container): Promise<void> {
    const env = await this.waitForEnv(runtime, pod, container);
    const node = await this.legacyServer(runtime, pod, container, env);
    const { port } = node;
    if (!node.isInitialised()) {
      // The Bitnami image's first start: initdb, the superuser password, the application user
      // and database. Later starts keep what the volume holds (passwords included).
      const user = requireEnv(env, 'POSTGRES_USER', pod);
      const password = requireEnv(env, 'POSTGRES_PASSWORD', pod);
      const database = env.POSTGRES_DATABASE ?? env.POSTGRES_DB ?? user;
      const superuserPassword = requireEnv(env, 'POSTGRES_POSTGRES_PASSWORD', pod);
      await node.initialise();
      await node.start();
      await node.superuserSql([
        `ALTER USER postgres PASSWORD ${literal(superuserPassword)}`,
        `CREATE USER ${ident(user)} PASSWORD ${literal(password)}`,
        `CREATE DATABASE ${ident(database)} OWNER ${ident(user)}`,
        // Bitnami's replication primary: the user its read replicas stream as.
        ...(bitnamiReplicationMode(container) === 'master'
          ? [`CREATE USER ${ident(requireEnv(env, 'POSTGRES_REPLICATION_USER', pod))} REPLICATION PASSWORD ${literal(requireEnv(env, 'POSTGRES_REPLICATION_PASSWORD', pod))}`]
          : []),
      ]);
      await this.options.seedLegacy?.({ host: '127.0.0.1', port, database, user, password, superuserPassword });
    } else {
      await node.start();
    }
    if (runtime.stopping) return node.stop();
    this.options.endpoints.set(pod.metadata.name, port);
    this.setPodReady(pod.metadata.name, true);
  }

  /**
   * A Bitnami read replica (`architecture: replication`): on first start a `pg_basebackup -R` of
   * the primary through its Service (retried until the primary serves; a fast checkpoint, else
   * the clone waits up to 4.5 min for a spread one), then a hot standby streaming from it, as the
   * image's `postgresql_slave_init_db` does.
   */
  private async startBitnamiReadReplica(runtime: PodRuntime, pod: StoredObject, container: Container): Promise<void> {
    const env = await this.waitForEnv(runtime, pod, container);
    const node = await this.legacyServer(runtime, pod, container, env);
    const { port, dataDir } = node;
    if (!node.isInitialised()) {
      const primary = await this.options.proxies.localPort(requireEnv(env, 'POSTGRES_MASTER_HOST', pod), Number(env.POSTGRES_MASTER_PORT_NUMBER ?? 5432));
      if (primary === undefined) throw new Error(`pod ${pod.metadata.name}: POSTGRES_MASTER_HOST ${env.POSTGRES_MASTER_HOST} is no Service of namespace ${this.options.namespace}`);
      const user = requireEnv(env, 'POSTGRES_REPLICATION_USER', pod);
      const password = requireEnv(env, 'POSTGRES_REPLICATION_PASSWORD', pod);
      // Debian's pg_basebackup 15 streams from servers up to 15; above, the low-level base backup
      // of the primary's data directory (clone-standby.ts) does what it would.
      const newerThanTheClient = (this.options.legacyMajorOf ?? imageMajor)(container.image) > 15;
      await waitFor(`${pod.metadata.name} to clone its primary`, async () => {
        if (runtime.stopping) throw new Error('pod stopped before its primary served');
        const clone = newerThanTheClient
          ? this.cloneThroughBackupApi(env.POSTGRES_MASTER_HOST!, dataDir, `host=127.0.0.1 port=${primary} user=${user} password=${password}`)
          : runAsPostgres(join(PG_BIN, 'pg_basebackup'), ['-D', dataDir, '-h', '127.0.0.1', '-p', String(primary), '-U', user, '-R', '-X', 'stream', '--checkpoint=fast', '--no-sync'], {
              env: { PGPASSWORD: password },
            });
        return clone.then(
          () => true,
          () => {
            // A partial clone would make the next attempt refuse a non-empty directory.
            rmSync(dataDir, { recursive: true, force: true });
            return false;
          },
        );
      }, 120_000, 500);
    }
    await node.start();
    if (runtime.stopping) return node.stop();
    this.options.endpoints.set(pod.metadata.name, port);
    this.setPodReady(pod.metadata.name, true);
  }

  /** The primary behind `host` (its Service), cloned as the superuser over its local socket. */
  private async cloneThroughBackupApi(host: string, dataDir: string, primaryConninfo: string): Promise<void> {
    const backend = this.options.proxies.currentBackend(host);
    const primary = [...this.legacyServers.values()].find((server) => backend !== undefined && server.port === backend);
    if (!primary) throw new Error(`no running legacy server behind ${host} yet`);
    await cloneStandby(primary, dataDir, primaryConninfo);
  }

  private async startRepmgrNode(runtime: PodRuntime, pod: StoredObject, workload: StoredObject, container: Container): Promise<void> {
    const env = await this.waitForEnv(runtime, pod, container);
    const ordinal = Number(/-(\d+)$/.exec(pod.metadata.name)?.[1] ?? '0');
    const statefulSetName = workload.metadata.name;
    const pgdata = requireEnv(env, 'PGDATA', pod);
    const dataDirs = new Map<number, string>();
    dataDirs.set(ordinal, await this.dataDirectory(runtime, pod, container, pgdata));
    let clusterPromise = this.clusters.get(statefulSetName);
    if (!clusterPromise) {
      clusterPromise = RepmgrCluster.create({
        baseDir: join(this.options.root, 'repmgr', statefulSetName),
        superuserPassword: requireEnv(env, 'POSTGRES_POSTGRES_PASSWORD', pod),
        repmgr: { user: requireEnv(env, 'REPMGR_USERNAME', pod), password: requireEnv(env, 'REPMGR_PASSWORD', pod), database: env.REPMGR_DATABASE ?? 'repmgr' },
        application: { user: requireEnv(env, 'POSTGRES_USER', pod), password: requireEnv(env, 'POSTGRES_PASSWORD', pod), database: env.POSTGRES_DB ?? env.POSTGRES_DATABASE ?? 'postgres' },
        dataDirOf: (index) => {
          const known = this.repmgrDataDirs.get(`${statefulSetName}-${index}`);
          if (!known) throw new Error(`the data directory of ${statefulSetName}-${index} is not known yet`);
          return known;
        },
      });
      this.clusters.set(statefulSetName, clusterPromise);
    }
    this.repmgrDataDirs.set(pod.metadata.name, dataDirs.get(ordinal)!);
    const cluster = await clusterPromise;
    runtime.backing = { kind: 'repmgr', cluster, ordinal };
    const node = await cluster.startNode(ordinal);
    if (runtime.stopping) return cluster.stopNode(ordinal);
    this.options.endpoints.set(pod.metadata.name, node.port);
    this.repmgrNodes.set(pod.metadata.name, node);
    this.setPodReady(pod.metadata.name, true);
  }

  private readonly repmgrDataDirs = new Map<string, string>();
  private readonly repmgrNodes = new Map<string, { port: number; dataDir: string }>();

  private async startPgpool(runtime: PodRuntime, pod: StoredObject, container: Container): Promise<void> {
    const env = await this.waitForEnv(runtime, pod, container);
    // PGPOOL_BACKEND_NODES: "0:<pod>.<headless svc>:5432,1:...": each host names a repmgr pod.
    const backendPods = requireEnv(env, 'PGPOOL_BACKEND_NODES', pod)
      .split(',')
      .map((entry) => entry.trim().split(':'))
      .map(([, host]) => host!.split('.')[0]!);
    const backends: { port: number; dataDir: string }[] = [];
    for (const backendPod of backendPods) {
      let node: { port: number; dataDir: string } | undefined;
      while (!(node = this.repmgrNodes.get(backendPod)) || this.options.endpoints.get(backendPod) === undefined) {
        if (runtime.stopping) return;
        await sleep(100);
      }
      backends.push(node);
    }
    const split = (value: string | undefined) => (value ?? '').split(/[,;]/).map((part) => part.trim()).filter(Boolean);
    const customUsers = split(env.PGPOOL_POSTGRES_CUSTOM_USERS);
    const customPasswords = split(env.PGPOOL_POSTGRES_CUSTOM_PASSWORDS);
    if (customUsers.length !== customPasswords.length) {
      throw new Error(`PGPOOL_POSTGRES_CUSTOM_USERS has ${customUsers.length} entries but PGPOOL_POSTGRES_CUSTOM_PASSWORDS ${customPasswords.length}`);
    }
    const pool = await Pgpool.start({
      dir: join(this.options.root, 'pgpool', pod.metadata.name),
      backends,
      users: [
        { user: requireEnv(env, 'PGPOOL_POSTGRES_USERNAME', pod), password: requireEnv(env, 'PGPOOL_POSTGRES_PASSWORD', pod) },
        ...customUsers.map((user, index) => ({ user, password: customPasswords[index]! })),
      ],
      checkUser: { user: requireEnv(env, 'PGPOOL_SR_CHECK_USER', pod), password: requireEnv(env, 'PGPOOL_SR_CHECK_PASSWORD', pod), database: env.PGPOOL_SR_CHECK_DATABASE ?? 'postgres' },
      admin: { user: requireEnv(env, 'PGPOOL_ADMIN_USERNAME', pod), password: requireEnv(env, 'PGPOOL_ADMIN_PASSWORD', pod) },
      loadBalancing: env.PGPOOL_ENABLE_LOAD_BALANCING === 'yes',
    });
    runtime.backing = { kind: 'pgpool', pool };
    if (runtime.stopping) return pool.stop();
    this.options.endpoints.set(pod.metadata.name, pool.port);
    this.setPodReady(pod.metadata.name, true);
  }

  private async startKeycloak(runtime: PodRuntime, pod: StoredObject): Promise<void> {
    const spec = pod.spec as PodSpec;
    const podDir = join(this.options.root, 'pods', pod.metadata.name);
    mkdirSync(podDir, { recursive: true });
    runtime.backing = { kind: 'keycloak' };
    const backoff = this.options.restartBackoffMs ?? 500;
    // Init containers in order, each until it exits 0 (restartPolicy Always: the kubelet retries).
    for (const init of spec.initContainers ?? []) {
      for (let attempt = 1; ; attempt++) {
        if (runtime.stopping) return;
        const prepared = await this.prepareWaiting(runtime, pod, spec, init, podDir);
        if (!prepared) return;
        const logFile = join(podDir, `${init.name}-${attempt}.log`);
        const run: InitContainerRun = { pod: pod.metadata.name, container: init.name, args: prepared.args, startedAt: Date.now(), logFile };
        this.initContainerRuns.push(run);
        const child = startContainer({ name: `${pod.metadata.name}-${init.name}-${attempt}`, hostname: pod.metadata.name, prepared, logFile });
        (runtime.backing as { process?: ContainerProcess }).process = child;
        const code = await exitOf(child);
        run.endedAt = Date.now();
        run.exitCode = code;
        if (code === 0) break;
        await sleep(Math.min(backoff * 2 ** (attempt - 1), 10_000));
      }
    }
    // The main container: the Keycloak stand-in, restarted when it crashes.
    const main = spec.containers[0]!;
    const originalHost = (main.env ?? []).find((variable) => variable.name === 'KC_DB_URL_HOST')?.value ?? '';
    await this.superviseStandin(runtime, pod, podDir, originalHost, async () => {
      const prepared = await this.prepareWaiting(runtime, pod, spec, { ...main, command: undefined, args: [] }, podDir);
      return prepared?.env;
    });
  }

  /**
   * Bitnami's Keycloak: its init container only copies files inside Bitnami's image (nothing the
   * database sees), so the stand-in starts at once, with the database Bitnami's variables name
   * (`KC_DB_URL` or `KEYCLOAK_DATABASE_*`, password from env or its Secret file) reached through
   * the Service proxy.
   */
  private async startBitnamiKeycloak(runtime: PodRuntime, pod: StoredObject, container: Container): Promise<void> {
    const podDir = join(this.options.root, 'pods', pod.metadata.name);
    mkdirSync(podDir, { recursive: true });
    runtime.backing = { kind: 'keycloak' };
    const database = bitnamiKeycloakDatabase(await this.waitForEnv(runtime, pod, container), pod.metadata.name);
    await this.superviseStandin(runtime, pod, podDir, database.host, async () => {
      const port = await this.options.proxies.localPort(database.host, database.port);
      if (port === undefined) throw new Error(`pod ${pod.metadata.name}: Keycloak's database host ${database.host} is no Service of namespace ${this.options.namespace}`);
      return {
        KC_DB: 'postgres',
        KC_DB_URL_HOST: '127.0.0.1',
        KC_DB_URL_PORT: String(port),
        KC_DB_URL_DATABASE: database.database,
        KC_DB_USERNAME: database.user,
        KC_DB_PASSWORD: database.password,
        KC_DB_SCHEMA: database.schema,
      };
    });
  }

  /**
   * Runs keycloak-standin.mjs with `env` (from `environment`, re-read before each restart) until
   * the pod stops, restarting it with back-off when it crashes, as the kubelet does. The pod is
   * Ready when the stand-in says so, and its HTTP port is the pod's endpoint.
   */
  private async superviseStandin(
    runtime: PodRuntime,
    pod: StoredObject,
    podDir: string,
    originalHost: string,
    environment: () => Promise<Record<string, string> | undefined>,
  ): Promise<void> {
    const backoff = this.options.restartBackoffMs ?? 500;
    const writeInterval = this.options.keycloakWriteIntervalMs;
    for (let attempt = 1; !runtime.stopping; attempt++) {
      const env = await environment();
      if (!env || runtime.stopping) return;
      const child = spawn(process.execPath, [STANDIN], {
        env: { ...env, HOSTNAME: pod.metadata.name, ...(writeInterval ? { STANDIN_WRITE_INTERVAL_MS: String(writeInterval) } : {}) },
        cwd: REPOSITORY_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      killOnExit(child);
      (runtime.backing as { process?: ChildProcess }).process = child;
      const logFd = openSync(join(podDir, `keycloak-${attempt}.log`), 'a');
      child.stderr.on('data', (chunk: Buffer) => appendLog(logFd, chunk));
      createInterface({ input: child.stdout }).on('line', (line) => {
        let event: { event?: string; at?: number; created?: boolean; id?: string; httpPort?: number };
        try {
          event = JSON.parse(line) as typeof event;
        } catch {
          appendLog(logFd, Buffer.from(`${line}\n`));
          return;
        }
        // One line per accepted write would drown the log.
        if (event.event !== 'write') appendLog(logFd, Buffer.from(`${line}\n`));
        if (event.event === 'write') {
          this.keycloakAcceptedWrites.push({ pod: pod.metadata.name, host: originalHost, at: event.at ?? Date.now(), id: event.id ?? '' });
        }
        if (event.event === 'first-write') {
          this.keycloakWrites.push({ pod: pod.metadata.name, at: event.at ?? Date.now(), host: originalHost, createdSchema: event.created === true });
        }
        if (event.event === 'ready' && !runtime.stopping) {
          if (event.httpPort) this.options.endpoints.set(pod.metadata.name, event.httpPort);
          this.setPodReady(pod.metadata.name, true);
        }
      });
      const code = await exitOf(child);
      closeSync(logFd);
      if (runtime.stopping) return;
      this.options.endpoints.delete(pod.metadata.name);
      this.setPodReady(pod.metadata.name, false, `keycloak exited ${code}`);
      await sleep(Math.min(backoff * 2 ** (attempt - 1), 10_000));
    }
  }

  private async prepareWaiting(runtime: PodRuntime, pod: StoredObject, spec: PodSpec, container: Container, podDir: string) {
    for (;;) {
      if (runtime.stopping) return undefined;
      try {
        return await prepareContainer(this.options, pod, spec, container, podDir);
      } catch (error) {
        if (!(error instanceof PodConfigError)) throw error;
        this.setPodReady(pod.metadata.name, false, 'CreateContainerConfigError');
        await sleep(100);
      }
    }
  }

  /**
   * Stops whatever backs the pod (scale-down, deletion, or garbage collection): PostgreSQL with a
   * fast shutdown, as the kubelet's SIGTERM makes it, unless `mode` says otherwise.
   */
  private async stopPod(name: string, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const runtime = this.pods.get(name);
    if (!runtime || runtime.stopping) return;
    runtime.stopping = true;
    this.options.endpoints.delete(name);
    this.repmgrNodes.delete(name);
    const backing = runtime.backing;
    if (backing?.kind === 'keycloak' && backing.process && backing.process.exitCode === null) {
      backing.process.kill('SIGTERM');
      await Promise.race([exitOf(backing.process), sleep(5000)]);
      if (backing.process.exitCode === null) backing.process.kill('SIGKILL');
    }
    // Wait for a start in progress, then stop what it started.
    await runtime.started;
    if (backing?.kind === 'legacy' || runtime.backing?.kind === 'legacy') await (runtime.backing as { node: PostgresNode }).node.stop(mode);
    if (runtime.backing?.kind === 'repmgr') await runtime.backing.cluster.stopNode(runtime.backing.ordinal, mode);
    if (runtime.backing?.kind === 'pgpool') await runtime.backing.pool?.stop();
    this.pods.delete(name);
  }
}

function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) =>
    typeof inner === 'object' && inner !== null && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : inner,
  );
}

function requireEnv(env: Record<string, string>, name: string, pod: StoredObject): string {
  const value = env[name];
  if (value === undefined || value === '') throw new Error(`pod ${pod.metadata.name}: ${name} is not set in its environment`);
  return value;
}

/** The PostgreSQL major of a Bitnami-style image tag (`...:15.8.0-debian-12-r0` → 15). */
export function imageMajor(image: string | undefined): PostgresMajor {
  const tag = /:(\d+)(?:\.|$)/.exec(image ?? '')?.[1];
  const major = Number(tag);
  if (isPostgresMajorHere(major)) return major;
  throw new Error(`image ${image} names PostgreSQL ${tag ?? '(no tag)'}; the rehearsal has servers for ${POSTGRES_MAJORS_HERE.join(', ')}`);
}

/** A child that must not outlive a crashed test process. */
function killOnExit(child: ChildProcess): void {
  const forget = onProcessExit(() => child.kill('SIGKILL'));
  child.once('exit', forget);
}

function appendLog(fd: number, chunk: Buffer): void {
  try {
    writeSync(fd, chunk);
  } catch {
    // The log is closed once the process exited.
  }
}

function exitOf(child: ChildProcess | ContainerProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolveExit) => child.once('exit', (code) => resolveExit(code)));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}
