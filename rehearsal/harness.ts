/**
 * One rehearsal "cluster": the fake API server (H4), storage (volumes.ts), Service proxies, the
 * Job controller running the runner bundle (jobs.ts), real processes behind the workloads
 * (workloads.ts), and a Helm release and an Argo CD application that apply synthesized
 * manifests in each tool's order (lifecycle.ts). Everything lives in one temporary directory
 * and is stopped by {@link Rehearsal.close}.
 *
 * What the operator does by hand before the first install — create the Secrets the manifests
 * reference but (deliberately) do not contain — is {@link Rehearsal.createMissingSecrets}.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { synthesizePlatform } from '../main.js';
import { resolvePlatformConfig, type PlatformConfig } from '../lib/platform-config.js';
import type { PostgresHaFlavorName } from '../lib/postgres-ha.js';
import { startFakeKubeApiServer, type FakeKubeApiServer } from '../test/support/fake-kube/index.js';
import type { HelmMajor } from '../test/support/helm.js';
import type { PostgresMajor } from '../test/support/postgres.js';

import { FakeCluster } from './cluster.js';
import { CnpgOperator, instanceMajor } from './cnpg-operator.js';
import { HOST_CLIENT_TOOLS } from './container-runtime.js';
import { JobController, type RunningPod } from './jobs.js';
import { ArgoApplication, HelmRelease, type ArgoOptions, type HelmOptions } from './lifecycle.js';
import { readArgoManifests, readHelmChart, type ArgoManifests, type HelmChartManifests, type KubeObject } from './manifests.js';
import { PodEndpoints, ServiceProxies } from './service-proxy.js';
import { Volumes } from './volumes.js';
import { WorkloadBacking, type WorkloadBackingOptions } from './workloads.js';

/**
 * The platform configuration every rehearsal starts from: two postgresql-ha nodes (a primary
 * and a standby: enough to prove replication, cheap on two cores) and a legacy image of
 * PostgreSQL 15 (the client tools here are 15; a newer legacy server is refused by design).
 */
export const REHEARSAL_CONFIG: PlatformConfig = {
  releaseName: 'keycloak',
  namespace: 'keycloak',
  images: { postgresql: 'docker.io/bitnamilegacy/postgresql:15.4.0-debian-11-r45' },
  database: { instances: 2 },
};

export interface SynthesizedShape {
  readonly helm: HelmChartManifests;
  readonly argocd: ArgoManifests;
}

export interface RehearsalOptions {
  /** Overrides merged over {@link REHEARSAL_CONFIG} for every synthesis of this rehearsal. */
  readonly config?: PlatformConfig;
  readonly seedLegacy?: WorkloadBackingOptions['seedLegacy'];
  /** How workloads are backed beyond the defaults (legacy server major, Keycloak's steady writes). */
  readonly workloads?: Pick<WorkloadBackingOptions, 'legacyMajorOf' | 'keycloakWriteIntervalMs'>;
  readonly helm?: HelmOptions;
  readonly argo?: ArgoOptions;
  /** Fault rules attach here: called for every hook pod the Job controller starts. */
  readonly onJobPodStarted?: (pod: RunningPod) => void;
  /**
   * Whether the CloudNativePG operator (its CRD and the stand-in in cnpg-operator.ts) is
   * installed: without it, a Cluster in the manifests fails the tools as on a real cluster.
   * @default true
   */
  readonly cloudNativePgOperator?: boolean;
}

export class Rehearsal {
  readonly root: string;
  readonly namespace: string;
  readonly cluster: FakeCluster;
  readonly volumes: Volumes;
  readonly endpoints = new PodEndpoints();
  readonly proxies: ServiceProxies;
  readonly jobs: JobController;
  readonly workloads: WorkloadBacking;
  /** The CloudNativePG operator stand-in, when installed. */
  readonly cnpg?: CnpgOperator;
  readonly helm: HelmRelease;
  readonly argo: ArgoApplication;
  private readonly jobPodListeners: ((pod: RunningPod) => void)[] = [];

  private constructor(
    readonly server: FakeKubeApiServer,
    private readonly options: RehearsalOptions,
    root: string,
  ) {
    this.root = root;
    this.namespace = options.config?.namespace ?? REHEARSAL_CONFIG.namespace!;
    this.cluster = new FakeCluster(server, this.namespace);
    this.volumes = new Volumes(server, this.namespace, root);
    this.proxies = new ServiceProxies(server, this.namespace, this.endpoints);
    // The runner containers use the image's own PostgreSQL 17 client tools, as in a cluster, unless
    // the new database is older than 17 (the repmgr flavor's 15): see HOST_CLIENT_TOOLS.
    const clientTools = rehearsalTargetMajor(options.config) < 17 ? HOST_CLIENT_TOOLS : undefined;
    this.jobs = new JobController({
      server,
      namespace: this.namespace,
      volumes: this.volumes,
      proxies: this.proxies,
      clientTools,
      root: join(root, 'jobs'),
      onPodStarted: (pod) => {
        options.onJobPodStarted?.(pod);
        for (const listener of this.jobPodListeners) listener(pod);
      },
    });
    this.workloads = new WorkloadBacking({
      server,
      namespace: this.namespace,
      root: join(root, 'workloads'),
      volumes: this.volumes,
      proxies: this.proxies,
      endpoints: this.endpoints,
      clientTools,
      seedLegacy: options.seedLegacy,
      ...options.workloads,
    });
    if (options.cloudNativePgOperator === false) {
      // No operator and no CRD: the API server does not serve the group at all.
      server.withdrawGroup('postgresql.cnpg.io');
    } else {
      this.cnpg = new CnpgOperator({ server, namespace: this.namespace, root: join(root, 'cnpg'), volumes: this.volumes, endpoints: this.endpoints });
    }
    this.helm = new HelmRelease(this.cluster, { ...options.helm, major: options.helm?.major ?? defaultHelmMajor() });
    this.argo = new ArgoApplication(this.cluster, options.argo);
  }

  static async start(options: RehearsalOptions = {}): Promise<Rehearsal> {
    const root = mkdtempSync(join(tmpdir(), 'rehearsal-'));
    // The postgres user (servers) and the pods' users (runAsUser) must traverse it.
    chmodSync(root, 0o755);
    const server = await startFakeKubeApiServer();
    return new Rehearsal(server, options, root);
  }

  /** The HA database flavor every v2 of this rehearsal synthesizes (its configuration, else the library's default). */
  get databaseFlavor(): PostgresHaFlavorName {
    return resolvePlatformConfig(mergeConfig(REHEARSAL_CONFIG, this.options.config ?? {})).database.flavor;
  }

  /** Adds a listener for hook pods (fault rules of one step of a scenario). */
  onJobPodStarted(listener: (pod: RunningPod) => void): () => void {
    this.jobPodListeners.push(listener);
    return () => this.jobPodListeners.splice(this.jobPodListeners.indexOf(listener), 1);
  }

  /**
   * Synthesizes a lifecycle shape with the library and reads it as Helm and Argo CD would. The
   * result is the caller's own copy: a transform may change its objects.
   */
  synthesize(shape: 'v1' | 'v2', overrides: PlatformConfig = {}): SynthesizedShape {
    const config = mergeConfig(mergeConfig(REHEARSAL_CONFIG, this.options.config ?? {}), { ...overrides, shape });
    return structuredClone(synthesizeOnce(config, this.namespace));
  }

  /**
   * Creates, with random passwords, every Secret a non-optional secretKeyRef of `objects` names
   * that neither exists nor is among `objects` — what an operator does once before installing.
   */
  createMissingSecrets(objects: readonly KubeObject[]): string[] {
    const wanted = new Map<string, Set<string>>();
    const shipped = new Set(objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name));
    const visit = (value: unknown): void => {
      if (Array.isArray(value)) return value.forEach(visit);
      if (typeof value !== 'object' || value === null) return;
      const record = value as Record<string, unknown>;
      const ref = record.secretKeyRef as { name?: string; key?: string; optional?: boolean } | undefined;
      if (ref?.name && ref.key && !ref.optional) {
        if (!wanted.has(ref.name)) wanted.set(ref.name, new Set());
        wanted.get(ref.name)!.add(ref.key);
      }
      Object.values(record).forEach(visit);
    };
    objects.forEach(visit);
    return [...wanted].filter(([name, keys]) => !shipped.has(name) && this.createSecretIfMissing(name, keys)).map(([name]) => name);
  }

  /** Creates Secret `name` with a random value for each key unless it exists; true when created. */
  createSecretIfMissing(name: string, keys: Iterable<string>): boolean {
    if (this.server.get({ apiVersion: 'v1', kind: 'Secret', name, namespace: this.namespace })) return false;
    this.server.seed({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: this.namespace },
      stringData: Object.fromEntries([...keys].map((key) => [key, randomBytes(12).toString('base64url')])),
    });
    return true;
  }

  /**
   * Waits until `object` is ready in the tools' sense; a timeout names the workload start errors
   * (the reason a pod never became Ready) as well.
   */
  async waitReady(object: KubeObject, timeoutMs = 60_000): Promise<void> {
    try {
      await this.cluster.waitReady(object, timeoutMs);
    } catch (error) {
      const startErrors = [...this.workloads.errors, ...(this.cnpg?.errors ?? [])].map((e) => e.message);
      throw new Error(`${(error as Error).message}${startErrors.length ? `; workload start errors: ${startErrors.join('; ')}` : ''}`, { cause: error });
    }
  }

  /** A Secret's value (decoded), for checks. */
  secretValue(name: string, key: string): string | undefined {
    const secret = this.server.get({ apiVersion: 'v1', kind: 'Secret', name, namespace: this.namespace });
    const encoded = (secret?.data as Record<string, string> | undefined)?.[key];
    return encoded === undefined ? undefined : Buffer.from(encoded, 'base64').toString('utf8');
  }

  async close(): Promise<void> {
    await this.jobs.close();
    await this.workloads.close();
    await this.cnpg?.close();
    await this.proxies.close();
    this.volumes.close();
    await this.server.close();
    if (!process.env.REHEARSAL_KEEP) rmSync(this.root, { recursive: true, force: true });
  }
}

/**
 * Synthesis is deterministic, and a test process synthesizes the same few configurations for case
 * after case (0.25-0.85 s each, `helm template` included): each configuration is synthesized once
 * per process, into a directory that lives as long as the process (HelmRelease reads the chart's
 * Chart.yaml). A configuration holding anything but plain data (a function, a construct) is
 * synthesized every time: its JSON would not tell two of them apart.
 */
const synthesized = new Map<string, SynthesizedShape>();
let synthesisRoot: string | undefined;

function synthesizeOnce(config: PlatformConfig, namespace: string): SynthesizedShape {
  const key = isPlainData(config) ? JSON.stringify({ config, namespace }) : undefined;
  const cached = key === undefined ? undefined : synthesized.get(key);
  if (cached) return cached;
  if (!synthesisRoot) {
    synthesisRoot = mkdtempSync(join(tmpdir(), 'rehearsal-synth-'));
    const root = synthesisRoot;
    process.once('exit', () => rmSync(root, { recursive: true, force: true }));
  }
  const layout = synthesizePlatform(join(synthesisRoot, `${config.shape}-${randomBytes(3).toString('hex')}`), config);
  const shape: SynthesizedShape = {
    helm: readHelmChart(layout.helmChartDir, { releaseName: config.releaseName!, namespace }),
    argocd: readArgoManifests(layout.argocdDir),
  };
  if (key !== undefined) synthesized.set(key, shape);
  return shape;
}

function isPlainData(value: unknown): boolean {
  if (value === null || ['string', 'number', 'boolean', 'undefined'].includes(typeof value)) return true;
  if (Array.isArray(value)) return value.every(isPlainData);
  if (typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) return false;
  return Object.values(value as Record<string, unknown>).every(isPlainData);
}

/**
 * The helm binary a rehearsal runs unless its options name one: `REHEARSAL_HELM` (3 or 4), else 4,
 * what users install today.
 */
export function defaultHelmMajor(): HelmMajor {
  const value = process.env.REHEARSAL_HELM ?? '4';
  if (value !== '3' && value !== '4') throw new Error(`REHEARSAL_HELM=${value}: must be 3 or 4 (the helm major the rehearsal runs); unset it for 4`);
  return Number(value) as HelmMajor;
}

function mergeConfig(base: PlatformConfig, override: PlatformConfig): PlatformConfig {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) {
    const current = merged[key];
    merged[key] =
      typeof value === 'object' && value !== null && !Array.isArray(value) && typeof current === 'object' && current !== null
        ? { ...(current as object), ...value }
        : value;
  }
  return merged as PlatformConfig;
}

/**
 * The PostgreSQL major of the rehearsal's new database for a configuration (over
 * {@link REHEARSAL_CONFIG}): a CloudNativePG Cluster runs its image's major (17 without one:
 * cnpg-operator.ts MODELLED_DEFAULT_IMAGE); the repmgr flavor's postgresql-ha runs 15 (Debian
 * bookworm packages repmgr for 15 only).
 */
export function rehearsalTargetMajor(config: PlatformConfig = {}): PostgresMajor {
  const resolved = resolvePlatformConfig(mergeConfig(REHEARSAL_CONFIG, config));
  return resolved.database.flavor === 'repmgr' ? 15 : instanceMajor(resolved.images.postgresqlHa);
}
