/**
 * A stand-in for the CloudNativePG operator (release line 1.30, the CRD in ../shared/crds): it
 * reacts to `postgresql.cnpg.io/v1` Cluster objects in the fake API and does, with real
 * PostgreSQL processes, what the operator does for the fields this project's construct sets.
 * Facts from cloudnative-pg/cloudnative-pg at a95a534 (the CRD's commit):
 *
 * - Secrets (internal/controller/cluster_create.go reconcileAppUserSecret /
 *   reconcileSuperuserSecret, pkg/specs/secrets.go CreateSecret): `<cluster>-app`, type
 *   kubernetes.io/basic-auth, keys username, user, password, dbname, host (`<cluster>-rw`), port,
 *   pgpass, uri, jdbc-uri, fqdn-uri, fqdn-jdbc-uri; `<cluster>-superuser` (user `postgres`, dbname
 *   `*`) only with enableSuperuserAccess. A Secret that already exists and is not owned by the
 *   Cluster is left as it is (createOrPatchClusterCredentialSecret) and its password is used;
 *   `bootstrap.initdb.secret` names the owner's Secret instead.
 * - Services (pkg/specs/services.go): `-rw` selects `cnpg.io/cluster` + `cnpg.io/instanceRole:
 *   primary`, `-ro` the same with `replica`, `-r` `cnpg.io/podRole: instance` (every instance).
 * - Instances: Pods and PVCs `<cluster>-<serial>` from 1, labels `cnpg.io/cluster`,
 *   `cnpg.io/instanceName`, `cnpg.io/podRole: instance`, `cnpg.io/instanceRole` and the legacy
 *   `role` (pkg/utils/labels_annotations.go); PVC label `cnpg.io/pvcRole: PG_DATA`. Serial 1 runs
 *   initdb with the owner and database of `bootstrap.initdb`; the others are cloned with
 *   pg_basebackup and stream from the primary.
 * - Status (api/v1/cluster_types.go ClusterStatus): instances, readyInstances, currentPrimary,
 *   targetPrimary, instanceNames, latestGeneratedNode, phase (the operator's phase strings, which
 *   Argo CD's health.lua maps), phaseReason and the `Ready` condition.
 * - Switchover (`kubectl cnpg promote`: status.targetPrimary set to another instance): phase
 *   "Switchover in progress"; the primary is shut down (fast: its WAL reaches the standbys), the
 *   target promoted and labelled primary, so `-rw` follows; the old primary rejoins as a standby.
 *
 * Differences from the operator, on purpose: servers are host processes of the `imageName`'s
 * major (11, 13, 15, 16 or 17); without an `imageName` PostgreSQL 17, the nearest this machine has to
 * the operator's default image (18.1 since 1.28, pkg/versions/versions.go). Standbys of a major
 * whose package has no pg_basebackup (the embedded 11/13/16/17) are cloned with the low-level base
 * backup API instead (clone-standby.ts), streaming from the primary all the same; replication authenticates
 * `streaming_replica` with a password rather than TLS certificates; nothing runs in the pods'
 * containers (no instance manager), and there is no automated failover, only the switchover above.
 */
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import pg from 'pg';

import type { FakeKubeApiServer, KubeObject as StoredObject } from '../test/support/fake-kube/index.js';
import { isPostgresMajorHere, POSTGRES_MAJORS_HERE, postgresBinDir, type PostgresMajor } from '../test/support/postgres.js';

import { cloneStandby, hasPgBasebackup } from './clone-standby.js';
import { ident, literal, PostgresNode } from './postgres-node.js';
import { ensurePostgresDir, freePort, postgresUser, runAsPostgres, waitFor, writePostgresFile } from './postgres-processes.js';
import type { PodEndpoints } from './service-proxy.js';
import type { Volumes } from './volumes.js';

export const CNPG_API_VERSION = 'postgresql.cnpg.io/v1';

/** The operator's phase strings (api/v1/cluster_types.go) this stand-in goes through. */
export const CnpgPhase = {
  firstPrimary: 'Setting up primary',
  creatingReplica: 'Creating a new replica',
  healthy: 'Cluster in healthy state',
  switchover: 'Switchover in progress',
} as const;

/** Labels (pkg/utils/labels_annotations.go). */
const LABEL = {
  cluster: 'cnpg.io/cluster',
  instanceName: 'cnpg.io/instanceName',
  podRole: 'cnpg.io/podRole',
  instanceRole: 'cnpg.io/instanceRole',
  legacyRole: 'role',
  pvcRole: 'cnpg.io/pvcRole',
} as const;

const POSTGRES_PORT = 5432;
const REPLICATION_USER = 'streaming_replica';

interface ClusterSpec {
  instances?: number;
  imageName?: string;
  enableSuperuserAccess?: boolean;
  storage?: { size?: string; storageClass?: string };
  bootstrap?: { initdb?: { database?: string; owner?: string; secret?: { name: string } } };
}

/** One instance (serial from 1) of a Cluster. */
export interface CnpgInstance {
  readonly name: string;
  readonly serial: number;
  readonly node: PostgresNode;
  role: 'primary' | 'replica';
}

export interface CnpgOperatorOptions {
  readonly server: FakeKubeApiServer;
  readonly namespace: string;
  readonly root: string;
  readonly volumes: Volumes;
  readonly endpoints: PodEndpoints;
}

/** The state the stand-in keeps for one Cluster. */
class ManagedCluster {
  readonly instances = new Map<number, CnpgInstance>();
  replicationPassword = randomBytes(18).toString('base64url');
  /** Resolves when the last reconciliation finished; reconciliations of one Cluster run in turn. */
  work: Promise<void> = Promise.resolve();
  deleted = false;

  constructor(readonly name: string) {}

  primary(): CnpgInstance | undefined {
    return [...this.instances.values()].find((instance) => instance.role === 'primary');
  }
}

export class CnpgOperator {
  private readonly clusters = new Map<string, ManagedCluster>();
  private readonly unsubscribe: () => void;
  /** Errors of reconciliations (a Cluster that could not be brought up is a rehearsal failure). */
  readonly errors: Error[] = [];

  constructor(private readonly options: CnpgOperatorOptions) {
    this.unsubscribe = options.server.onChange((event, object, info) => {
      if (object.apiVersion !== CNPG_API_VERSION || object.kind !== 'Cluster' || object.metadata.namespace !== options.namespace) return;
      if (event === 'DELETED') return void this.enqueue(object.metadata.name, (cluster) => this.teardown(cluster));
      // Status writes are the stand-in's own (or a `cnpg promote`): only a new target primary acts.
      if (info.subresource === 'status') {
        const status = (object.status ?? {}) as { targetPrimary?: string; currentPrimary?: string };
        if (status.targetPrimary && status.currentPrimary && status.targetPrimary !== status.currentPrimary) {
          const target = status.targetPrimary;
          this.enqueue(object.metadata.name, (cluster) => this.switchover(cluster, target));
        }
        return;
      }
      this.enqueue(object.metadata.name, (cluster) => this.reconcile(cluster));
    });
  }

  /** The instances of a Cluster (for checks: primary and standbys). */
  instances(clusterName: string): CnpgInstance[] {
    return [...(this.clusters.get(clusterName)?.instances.values() ?? [])].sort((a, b) => a.serial - b.serial);
  }

  /** Waits until every reconciliation queued so far has finished. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.clusters.values()].map((cluster) => cluster.work));
  }

  /**
   * What `kubectl cnpg promote <cluster> <instance>` does: sets status.targetPrimary; the
   * switchover itself follows from the status change. Resolves when `-rw` selects the new primary.
   */
  async promote(clusterName: string, instanceName: string): Promise<void> {
    const reference = this.clusterRef(clusterName);
    const status = (this.options.server.get(reference)?.status ?? {}) as Record<string, unknown>;
    this.options.server.setStatus(reference, { ...status, targetPrimary: instanceName, phase: CnpgPhase.switchover, phaseReason: `Switching over to ${instanceName}` });
    await waitFor(`switchover of ${clusterName} to ${instanceName}`, async () => {
      const live = (this.options.server.get(reference)?.status ?? {}) as { currentPrimary?: string; phase?: string };
      return live.currentPrimary === instanceName && live.phase === CnpgPhase.healthy;
    }, 120_000, 50);
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await this.settled();
    for (const cluster of this.clusters.values()) {
      cluster.deleted = true;
      // The rehearsal's directory goes next: no instance needs its shutdown checkpoint.
      for (const instance of [...cluster.instances.values()].sort((a, b) => b.serial - a.serial)) await instance.node.stop('immediate').catch(() => undefined);
    }
  }

  private enqueue(name: string, work: (cluster: ManagedCluster) => Promise<void>): Promise<void> {
    let cluster = this.clusters.get(name);
    if (!cluster) {
      cluster = new ManagedCluster(name);
      this.clusters.set(name, cluster);
    }
    const managed = cluster;
    managed.work = managed.work.then(() => (managed.deleted ? undefined : work(managed))).catch((error: unknown) => {
      this.errors.push(new Error(`CloudNativePG stand-in, Cluster ${name}: ${(error as Error).message}`, { cause: error }));
    });
    return managed.work;
  }

  private clusterRef(name: string) {
    return { apiVersion: CNPG_API_VERSION, kind: 'Cluster', name, namespace: this.options.namespace };
  }

  private setStatus(cluster: ManagedCluster, fields: Record<string, unknown>): void {
    const reference = this.clusterRef(cluster.name);
    const live = this.options.server.get(reference);
    if (!live) return;
    const ready = [...cluster.instances.values()].filter((instance) => this.options.endpoints.get(instance.name) !== undefined).length;
    const spec = live.spec as ClusterSpec;
    const phase = (fields.phase as string | undefined) ?? (live.status as { phase?: string } | undefined)?.phase;
    this.options.server.setStatus(reference, {
      ...((live.status ?? {}) as Record<string, unknown>),
      instances: cluster.instances.size,
      readyInstances: ready,
      instanceNames: [...cluster.instances.values()].map((instance) => instance.name).sort(),
      latestGeneratedNode: Math.max(0, ...cluster.instances.keys()),
      ...fields,
      conditions: [
        {
          type: 'Ready',
          status: phase === CnpgPhase.healthy && ready === (spec.instances ?? 1) ? 'True' : 'False',
          reason: phase === CnpgPhase.healthy ? 'ClusterIsReady' : 'ClusterIsNotReady',
          message: phase === CnpgPhase.healthy ? 'Cluster is Ready' : 'Cluster Is Not Ready',
          lastTransitionTime: new Date().toISOString(),
        },
      ],
    });
  }

  /** Creates what is missing: Secrets, Services, the primary, then each standby in turn. */
  private async reconcile(cluster: ManagedCluster): Promise<void> {
    const { server } = this.options;
    const live = server.get(this.clusterRef(cluster.name));
    if (!live) return;
    const spec = (live.spec ?? {}) as ClusterSpec;
    const desired = spec.instances ?? 1;
    const major = instanceMajor(spec.imageName);
    const initdb = spec.bootstrap?.initdb ?? {};
    const database = initdb.database ?? 'app';
    const owner = initdb.owner ?? database;
    const owned = ownerReference(live);

    this.ensureServices(cluster.name, owned);
    const appSecretName = initdb.secret?.name ?? `${cluster.name}-app`;
    const superuserPassword = spec.enableSuperuserAccess ? this.ensureCredentialSecret(`${cluster.name}-superuser`, cluster.name, '*', 'postgres', owned) : undefined;

    if (!cluster.primary()) {
      this.setStatus(cluster, { phase: CnpgPhase.firstPrimary, phaseReason: 'Creating primary instance', currentPrimary: undefined, targetPrimary: `${cluster.name}-1` });
      // The owner's password: from initdb.secret (which must exist first, as the operator waits for
      // it), else from `<cluster>-app`, generated unless someone created it before.
      const ownerPassword = initdb.secret
        ? await this.waitForSecretPassword(cluster, initdb.secret.name, owner)
        : this.ensureCredentialSecret(appSecretName, cluster.name, database, owner, owned);
      const instance = await this.createInstance(cluster, 1, 'primary', major, spec, owned);
      await instance.node.initialise();
      await instance.node.start();
      await instance.node.superuserSql([
        `CREATE USER ${ident(REPLICATION_USER)} REPLICATION PASSWORD ${literal(cluster.replicationPassword)}`,
        `CREATE USER ${ident(owner)} PASSWORD ${literal(ownerPassword)}`,
        `CREATE DATABASE ${ident(database)} OWNER ${ident(owner)}`,
        ...(superuserPassword ? [`ALTER USER postgres PASSWORD ${literal(superuserPassword)}`] : []),
      ]);
      this.instanceUp(cluster, instance);
      this.setStatus(cluster, { currentPrimary: instance.name, targetPrimary: instance.name });
    }
    for (let serial = 1; serial <= desired; serial++) {
      if (cluster.deleted || cluster.instances.has(serial)) continue;
      this.setStatus(cluster, { phase: CnpgPhase.creatingReplica, phaseReason: `Creating replica ${cluster.name}-${serial}` });
      const instance = await this.createInstance(cluster, serial, 'replica', major, spec, owned);
      await this.cloneFromPrimary(cluster, instance);
      this.instanceUp(cluster, instance);
    }
    this.setStatus(cluster, { phase: CnpgPhase.healthy, phaseReason: '' });
  }

  /** PVC and Pod of one instance, and its (not yet started) server on the PVC's directory. */
  private async createInstance(cluster: ManagedCluster, serial: number, role: CnpgInstance['role'], major: PostgresMajor, spec: ClusterSpec, owned: OwnerReference): Promise<CnpgInstance> {
    const { server, namespace } = this.options;
    const name = `${cluster.name}-${serial}`;
    if (!server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name, namespace })) {
      server.seed({
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name, namespace, labels: { [LABEL.cluster]: cluster.name, [LABEL.instanceName]: name, [LABEL.pvcRole]: 'PG_DATA' }, ownerReferences: [owned] },
        spec: {
          accessModes: ['ReadWriteOnce'],
          resources: { requests: { storage: spec.storage?.size ?? '1Gi' } },
          ...(spec.storage?.storageClass ? { storageClassName: spec.storage.storageClass } : {}),
        },
      });
    }
    server.seed({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace, labels: this.podLabels(cluster.name, name, role), ownerReferences: [owned] },
      spec: {
        containers: [{ name: 'postgres', image: spec.imageName ?? MODELLED_DEFAULT_IMAGE, ports: [{ name: 'postgresql', containerPort: POSTGRES_PORT }] }],
        volumes: [{ name: 'pgdata', persistentVolumeClaim: { claimName: name } }],
      },
      status: { phase: 'Pending' },
    });
    let directory: string | undefined;
    await waitFor(`the PVC ${name} to be bound`, async () => (directory = this.options.volumes.directoryOfClaim(name)), 30_000, 50);
    const { uid, gid } = await postgresUser();
    chownSync(directory!, uid, gid);
    const socketDir = await ensurePostgresDir(join(this.options.root, 'run'));
    const node = new PostgresNode({
      dataDir: join(directory!, 'pgdata'),
      port: await freePort(),
      socketDir,
      binDir: postgresBinDir(major),
      settings: ['wal_level = replica', 'max_wal_senders = 10', 'wal_keep_size = 128MB', 'hot_standby = on', 'wal_log_hints = on'],
    });
    const instance: CnpgInstance = { name, serial, node, role };
    cluster.instances.set(serial, instance);
    return instance;
  }

  private podLabels(clusterName: string, instanceName: string, role: CnpgInstance['role']): Record<string, string> {
    return { [LABEL.cluster]: clusterName, [LABEL.instanceName]: instanceName, [LABEL.podRole]: 'instance', [LABEL.instanceRole]: role, [LABEL.legacyRole]: role };
  }

  private instanceUp(cluster: ManagedCluster, instance: CnpgInstance): void {
    this.options.endpoints.set(instance.name, instance.node.port);
    this.setPod(cluster, instance, true);
    this.setStatus(cluster, {});
  }

  private setPod(cluster: ManagedCluster, instance: CnpgInstance, ready: boolean): void {
    const { server, namespace } = this.options;
    const reference = { apiVersion: 'v1', kind: 'Pod', name: instance.name, namespace };
    const pod = server.get(reference);
    if (!pod) return;
    const labels = { ...(pod.metadata.labels ?? {}), ...this.podLabels(cluster.name, instance.name, instance.role) };
    if (JSON.stringify(labels) !== JSON.stringify(pod.metadata.labels)) server.upsert({ ...pod, metadata: { ...pod.metadata, labels } });
    server.setStatus(reference, {
      phase: 'Running',
      conditions: [
        { type: 'ContainersReady', status: ready ? 'True' : 'False' },
        { type: 'Ready', status: ready ? 'True' : 'False' },
      ],
    });
  }

  /** pg_basebackup from the primary, writing the standby settings (-R), then start streaming. */
  private async cloneFromPrimary(cluster: ManagedCluster, instance: CnpgInstance): Promise<void> {
    const primary = cluster.primary();
    if (!primary) throw new Error(`no primary to clone ${instance.name} from`);
    if (!instance.node.isInitialised()) {
      if (hasPgBasebackup(instance.node.binDir)) {
        await runAsPostgres(
          join(instance.node.binDir, 'pg_basebackup'),
          ['-h', '127.0.0.1', '-p', String(primary.node.port), '-U', REPLICATION_USER, '-D', instance.node.dataDir, '-R', '-X', 'stream', '--checkpoint=fast', '--no-sync'],
          { env: { PGPASSWORD: cluster.replicationPassword } },
        );
      } else {
        await cloneStandby(primary.node.options, instance.node.dataDir, this.replicationConninfo(cluster, instance, primary));
      }
    }
    await instance.node.start();
  }

  /**
   * Switchover: the old primary is shut down (fast: PostgreSQL sends the remaining WAL to the
   * standbys before it exits), the target replays it and is promoted, the labels move (so `-rw`
   * follows), and the old primary rejoins as a standby of the new one.
   */
  private async switchover(cluster: ManagedCluster, targetName: string): Promise<void> {
    const target = [...cluster.instances.values()].find((instance) => instance.name === targetName);
    const old = cluster.primary();
    if (!target || !old) throw new Error(`switchover to ${targetName}: no such instance, or no primary`);
    if (target === old) return;
    this.setStatus(cluster, { phase: CnpgPhase.switchover, phaseReason: `Switching over to ${targetName}` });
    // Demote: no longer the primary, so `-rw` selects nothing until the promotion.
    old.role = 'replica';
    this.options.endpoints.delete(old.name);
    this.setPod(cluster, old, false);
    await old.node.stop('fast');
    const shutdownLsn = await controlCheckpointLsn(old.node);
    await waitFor(`${targetName} to replay the old primary's last WAL (${shutdownLsn})`, async () => {
      const replayed = await querySocket(target.node, "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::pg_lsn) > 0 AS done", [shutdownLsn]);
      return replayed.rows[0]?.done === true;
    }, 60_000, 50);
    await runAsPostgres(join(target.node.binDir, 'pg_ctl'), ['-D', target.node.dataDir, '-w', 'promote']);
    target.role = 'primary';
    this.setPod(cluster, target, true);
    this.setStatus(cluster, { currentPrimary: target.name, targetPrimary: target.name });
    // Other standbys and the old primary follow the new primary (the timeline switch travels with
    // the WAL; recovery_target_timeline defaults to latest).
    for (const instance of cluster.instances.values()) {
      if (instance === target) continue;
      await writePostgresFile(join(instance.node.dataDir, 'standby.signal'), '');
      await this.followPrimary(cluster, instance, target);
    }
    this.setStatus(cluster, { phase: CnpgPhase.healthy, phaseReason: '' });
  }

  private async followPrimary(cluster: ManagedCluster, instance: CnpgInstance, primary: CnpgInstance): Promise<void> {
    await instance.node.stop('fast');
    const conninfo = this.replicationConninfo(cluster, instance, primary);
    await writePostgresFile(join(instance.node.dataDir, 'postgresql.auto.conf'), await this.autoConfWith(instance, `primary_conninfo = '${conninfo.replace(/'/g, "''")}'`));
    await instance.node.start();
    instance.role = 'replica';
    this.options.endpoints.set(instance.name, instance.node.port);
    this.setPod(cluster, instance, true);
  }

  private replicationConninfo(cluster: ManagedCluster, instance: CnpgInstance, primary: CnpgInstance): string {
    return `host=127.0.0.1 port=${primary.node.port} user=${REPLICATION_USER} password=${cluster.replicationPassword} application_name=${instance.name}`;
  }

  private async autoConfWith(instance: CnpgInstance, line: string): Promise<string> {
    const current = readFileSync(join(instance.node.dataDir, 'postgresql.auto.conf'), 'utf8')
      .split('\n')
      .filter((entry) => entry.trim() !== '' && !entry.startsWith('primary_conninfo'));
    return [...current, line, ''].join('\n');
  }

  /** The Services the operator makes for every Cluster (pkg/specs/services.go). */
  private ensureServices(name: string, owned: OwnerReference): void {
    const { server, namespace } = this.options;
    const services: [string, Record<string, string>][] = [
      [`${name}-rw`, { [LABEL.cluster]: name, [LABEL.instanceRole]: 'primary' }],
      [`${name}-ro`, { [LABEL.cluster]: name, [LABEL.instanceRole]: 'replica' }],
      [`${name}-r`, { [LABEL.cluster]: name, [LABEL.podRole]: 'instance' }],
    ];
    for (const [serviceName, selector] of services) {
      if (server.get({ apiVersion: 'v1', kind: 'Service', name: serviceName, namespace })) continue;
      server.seed({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: serviceName, namespace, labels: { [LABEL.cluster]: name, 'app.kubernetes.io/managed-by': 'cloudnative-pg' }, ownerReferences: [owned] },
        spec: { type: 'ClusterIP', selector, ports: [{ name: 'postgres', port: POSTGRES_PORT, targetPort: POSTGRES_PORT, protocol: 'TCP' }] },
      });
    }
  }

  /**
   * A credential Secret as CreateSecret builds it; returns its password. An existing Secret is
   * kept (the operator only patches Secrets it owns, and never their data) and its password used.
   */
  private ensureCredentialSecret(secretName: string, clusterName: string, dbname: string, username: string, owned: OwnerReference): string {
    const { server, namespace } = this.options;
    const existing = server.get({ apiVersion: 'v1', kind: 'Secret', name: secretName, namespace });
    if (existing) {
      const password = decodedKey(existing, 'password');
      if (!password) throw new Error(`Secret ${secretName} exists but has no 'password' key: the instances cannot be bootstrapped with it`);
      return password;
    }
    const password = randomBytes(32).toString('base64url');
    const host = `${clusterName}-rw`;
    const hostWithNamespace = `${host}.${namespace}:${POSTGRES_PORT}`;
    const fqdn = `${host}.${namespace}.svc.cluster.local:${POSTGRES_PORT}`;
    const user = encodeURIComponent(username);
    const secret = encodeURIComponent(password);
    const jdbc = (hostPort: string) => `jdbc:postgresql://${hostPort}/${dbname}?password=${secret}&user=${user}`;
    server.seed({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: secretName,
        namespace,
        labels: { 'cnpg.io/userType': dbname === '*' ? 'superuser' : 'app', 'cnpg.io/reload': 'true', 'app.kubernetes.io/managed-by': 'cloudnative-pg' },
        ownerReferences: [owned],
      },
      type: 'kubernetes.io/basic-auth',
      stringData: {
        username,
        user: username,
        password,
        dbname,
        host,
        port: String(POSTGRES_PORT),
        pgpass: `${host}:${POSTGRES_PORT}:${dbname}:${username}:${password}\n`,
        uri: `postgresql://${user}:${secret}@${hostWithNamespace}/${dbname}`,
        'jdbc-uri': jdbc(hostWithNamespace),
        'fqdn-uri': `postgresql://${user}:${secret}@${fqdn}/${dbname}`,
        'fqdn-jdbc-uri': jdbc(fqdn),
      },
    });
    return password;
  }

  private async waitForSecretPassword(cluster: ManagedCluster, secretName: string, owner: string): Promise<string> {
    const { server, namespace } = this.options;
    return waitFor(`Secret ${secretName} (bootstrap.initdb.secret of Cluster ${cluster.name})`, async () => {
      const secret = server.get({ apiVersion: 'v1', kind: 'Secret', name: secretName, namespace });
      if (!secret) return undefined;
      const username = decodedKey(secret, 'username');
      if (username !== owner) throw new Error(`Secret ${secretName} has username ${JSON.stringify(username)}, but bootstrap.initdb.owner is ${owner}`);
      return decodedKey(secret, 'password');
    }, 120_000);
  }

  /** The Cluster is gone: its instances stop; the API server's garbage collector removes what it owned. */
  private async teardown(cluster: ManagedCluster): Promise<void> {
    cluster.deleted = true;
    for (const instance of [...cluster.instances.values()].sort((a, b) => b.serial - a.serial)) {
      this.options.endpoints.delete(instance.name);
      await instance.node.stop();
    }
    this.clusters.delete(cluster.name);
  }
}

interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller: boolean;
  blockOwnerDeletion: boolean;
}

function ownerReference(cluster: StoredObject): OwnerReference {
  return { apiVersion: CNPG_API_VERSION, kind: 'Cluster', name: cluster.metadata.name, uid: String(cluster.metadata.uid), controller: true, blockOwnerDeletion: true };
}

/**
 * The last checkpoint of a stopped server (pg_controldata): a clean shutdown's checkpoint. Where
 * the server package has no pg_controldata (the embedded majors), read from `global/pg_control`:
 * `checkPoint` is the XLogRecPtr at byte 32 of ControlFileData in every major from 11 to 17
 * (system_identifier, pg_control_version, catalog_version_no, state, time precede it).
 */
async function controlCheckpointLsn(node: PostgresNode): Promise<string> {
  if (!existsSync(join(node.binDir, 'pg_controldata'))) {
    const control = readFileSync(join(node.dataDir, 'global', 'pg_control'));
    const lsn = control.readBigUInt64LE(32);
    return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
  }
  const output = await runAsPostgres(join(node.binDir, 'pg_controldata'), ['-D', node.dataDir]);
  const lsn = /Latest checkpoint location:\s+(\S+)/.exec(output)?.[1];
  if (!lsn) throw new Error(`pg_controldata of ${node.dataDir} names no latest checkpoint location`);
  return lsn;
}

/** A query as the superuser over the instance's local socket (trust), for the stand-in's own checks. */
async function querySocket(node: PostgresNode, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ host: node.options.socketDir, port: node.port, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

function decodedKey(secret: StoredObject, key: string): string | undefined {
  const data = (secret.data ?? {}) as Record<string, string>;
  if (data[key] !== undefined) return Buffer.from(data[key], 'base64').toString('utf8');
  return ((secret.stringData ?? {}) as Record<string, string>)[key];
}

/**
 * The operand image of a Cluster without `imageName`, as the stand-in runs it: the operator's own
 * default is `ghcr.io/cloudnative-pg/postgresql:18.1-system-trixie` (1.28), a major this machine
 * has no server for; 17 is the nearest (and what the runner image's client tools are).
 */
export const MODELLED_DEFAULT_IMAGE = 'ghcr.io/cloudnative-pg/postgresql:17.6-system-trixie';

/** The PostgreSQL major of an operand image (`ghcr.io/cloudnative-pg/postgresql:17.5` → 17); 17 when unset (see MODELLED_DEFAULT_IMAGE). */
export function instanceMajor(imageName: string | undefined): PostgresMajor {
  if (imageName === undefined) return instanceMajor(MODELLED_DEFAULT_IMAGE);
  const tag = /:(\d+)(?:[.-]|$)/.exec(imageName)?.[1];
  const major = Number(tag);
  if (isPostgresMajorHere(major)) return major;
  throw new Error(`Cluster imageName ${imageName} names PostgreSQL ${tag ?? '(no tag)'}; the rehearsal has servers for ${POSTGRES_MAJORS_HERE.join(', ')}`);
}
