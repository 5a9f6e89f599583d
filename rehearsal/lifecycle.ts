/**
 * The order in which Helm and Argo CD apply synthesized manifests, executed against a cluster.
 *
 * Facts from shared/reference/hooks-and-sync-waves.md, checked against the tools' source:
 * - Helm (pkg/action/hooks.go, install.go, upgrade.go, pkg/releaseutil/kind_sorter.go): the
 *   hooks of an event are sorted by kind (InstallOrder) and then, stably, by weight and name;
 *   each is created (after a `before-hook-creation` delete) and, for a Job, waited on until it
 *   completes; the first failure fails the release, applies `hook-failed`, and nothing after it
 *   runs (no --atomic). `hook-succeeded` deletions happen only once every hook of the event
 *   succeeded. Between pre-* and post-* the release's resources are created (install) or merged
 *   (upgrade: the chart's fields, e.g. `replicas`, are re-applied; resources gone from the chart
 *   are deleted; PVCs from volumeClaimTemplates are not release resources and survive).
 * - Argo CD (gitops-engine pkg/sync/sync_context.go, sync_tasks.go): tasks sorted by phase
 *   (PreSync, Sync, PostSync), wave, kind order, name; a wave starts when the previous one is
 *   synced and healthy; Sync hooks run inside the Sync phase at their wave; PostSync only after
 *   everything is healthy; when any task fails, the SyncFail hooks run and the sync is failed.
 *   Resources no longer in git are pruned; hooks never are.
 *
 * The ordering functions are pure (tested on their own against `helm template` output and Argo
 * CD's rules). {@link ArgoApplication} executes Argo CD's through a {@link ClusterOps};
 * {@link HelmRelease} runs the real helm binary, whose own code orders and waits (the Helm facts
 * above are what it does; `helmHookOrder` only tells a scenario which hook comes first).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

import type {
  ArgoDeletePolicy,
  ArgoHook,
  ArgoHookType,
  ArgoManifests,
  HelmChartManifests,
  HelmHook,
  HelmHookEvent,
  KubeObject,
} from './manifests.js';
import { objectKey } from './manifests.js';
import { KEEP_ANNOTATIONS, parseArgoSyncOptions } from '../lib/contract.js';
import { writeTlsKubeconfig, type FakeKubeApiServer, type KubeObject as StoredObject, type RequestRecord } from '../test/support/fake-kube/index.js';
import { runHelmAsync, type HelmMajor } from '../test/support/helm.js';

/**
 * Helm's InstallOrder (pkg/releaseutil/kind_sorter.go); gitops-engine's kind order is the same
 * list for the kinds this project uses. Unknown kinds go last, alphabetically.
 */
export const KIND_INSTALL_ORDER: readonly string[] = [
  'PriorityClass',
  'Namespace',
  'NetworkPolicy',
  'ResourceQuota',
  'LimitRange',
  'PodSecurityPolicy',
  'PodDisruptionBudget',
  'ServiceAccount',
  'Secret',
  'SecretList',
  'ConfigMap',
  'StorageClass',
  'PersistentVolume',
  'PersistentVolumeClaim',
  'CustomResourceDefinition',
  'ClusterRole',
  'ClusterRoleList',
  'ClusterRoleBinding',
  'ClusterRoleBindingList',
  'Role',
  'RoleList',
  'RoleBinding',
  'RoleBindingList',
  'Service',
  'DaemonSet',
  'Pod',
  'ReplicationController',
  'ReplicaSet',
  'Deployment',
  'HorizontalPodAutoscaler',
  'StatefulSet',
  'Job',
  'CronJob',
  'IngressClass',
  'Ingress',
  'APIService',
];

/** Compares two kinds by install order (unknown kinds last, by name). */
export function compareKinds(a: string, b: string): number {
  const ia = KIND_INSTALL_ORDER.indexOf(a);
  const ib = KIND_INSTALL_ORDER.indexOf(b);
  if (ia === -1 && ib === -1) return a.localeCompare(b);
  if (ia === -1) return 1;
  if (ib === -1) return -1;
  return ia - ib;
}

/** Release resources in the order Helm creates them. */
export function helmResourceOrder(resources: readonly KubeObject[]): KubeObject[] {
  // Array.prototype.sort is stable: objects of one kind keep their template order, as in Helm.
  return [...resources].sort((a, b) => compareKinds(a.kind, b.kind));
}

/** The hooks of one event in the order Helm runs them: by weight, then name (kind only breaks ties). */
export function helmHookOrder(hooks: readonly HelmHook[], event: HelmHookEvent): HelmHook[] {
  const byKind = hooks.filter((hook) => hook.events.includes(event)).sort((a, b) => compareKinds(a.object.kind, b.object.kind));
  return byKind.sort((a, b) =>
    a.weight !== b.weight ? a.weight - b.weight : compareStrings(a.object.metadata.name, b.object.metadata.name),
  );
}

/** One unit of an Argo CD sync: a resource to apply or a hook to create and wait for. */
export interface ArgoTask {
  readonly object: KubeObject;
  readonly phase: 'PreSync' | 'Sync' | 'PostSync' | 'SyncFail';
  readonly wave: number;
  /** Present for hooks. */
  readonly hook?: ArgoHook;
}

/** The waves of one phase, each a list of tasks applied together. */
export interface ArgoPhasePlan {
  readonly phase: ArgoTask['phase'];
  readonly waves: readonly { readonly wave: number; readonly tasks: readonly ArgoTask[] }[];
}

/** Argo CD's task order: PreSync, Sync (resources and Sync hooks), PostSync; SyncFail separately. */
export function argoSyncPlan(manifests: ArgoManifests): { phases: ArgoPhasePlan[]; syncFail: ArgoPhasePlan } {
  const tasks: ArgoTask[] = [];
  for (const resource of manifests.resources) tasks.push({ object: resource.object, phase: 'Sync', wave: resource.wave });
  for (const hook of manifests.hooks) {
    for (const type of hook.types) {
      tasks.push({ object: hook.object, phase: type as ArgoTask['phase'], wave: hook.wave, hook });
    }
  }
  const phaseOf = (phase: ArgoTask['phase']): ArgoPhasePlan => {
    const inPhase = tasks.filter((task) => task.phase === phase);
    const waves = [...new Set(inPhase.map((task) => task.wave))].sort((a, b) => a - b);
    return {
      phase,
      waves: waves.map((wave) => ({
        wave,
        tasks: inPhase
          .filter((task) => task.wave === wave)
          .sort((a, b) => compareKinds(a.object.kind, b.object.kind) || compareStrings(a.object.metadata.name, b.object.metadata.name)),
      })),
    };
  };
  return { phases: [phaseOf('PreSync'), phaseOf('Sync'), phaseOf('PostSync')], syncFail: phaseOf('SyncFail') };
}

// ---------------------------------------------------------------------------------------------
// Execution

/** What the lifecycle needs from a cluster. Implemented over the fake API server in cluster.ts. */
export interface ClusterOps {
  /** The live object, or undefined when absent (the tools read live annotations before deleting). */
  get(object: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): { metadata: { annotations?: Record<string, string> } } | undefined;
  /** Creates the object; rejects with an "already exists" error when it exists (Helm hooks rely on it). */
  create(object: KubeObject): Promise<void>;
  /**
   * Applies the object as `kubectl apply` / Helm's merge would: creates it when absent, otherwise
   * sets every field the manifest carries (spec, labels, annotations, data) and leaves fields
   * written by controllers (status) alone. Writes nothing when nothing differs.
   */
  apply(object: KubeObject): Promise<'created' | 'configured' | 'unchanged'>;
  /** Server-side apply as `fieldManager` (force: take over conflicting fields). */
  serverSideApply(object: KubeObject, fieldManager: string, force: boolean): Promise<'created' | 'configured' | 'unchanged'>;
  /**
   * Deletes and waits until the object is gone (with `Foreground`, its dependents first, as
   * Argo CD prunes); false when it did not exist. @default propagation Background
   */
  delete(object: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>, propagation?: 'Foreground' | 'Background'): Promise<boolean>;
  /** Resolves when the object is ready in the tool's sense, rejects on failure or after `timeoutMs`. */
  waitReady(object: KubeObject, timeoutMs: number): Promise<void>;
  /** The objects whose kind the API server does not serve (a custom resource without its CRD). */
  unserved(objects: readonly KubeObject[]): KubeObject[];
}

/** One line of what a tool did, in order; the tests assert on it. */
export interface LifecycleEvent {
  readonly tool: 'helm' | 'argocd';
  readonly action:
    | 'hook-delete'
    | 'hook-create'
    | 'hook-ready'
    | 'hook-failed'
    | 'apply'
    | 'ready'
    | 'prune'
    | 'phase'
    | 'wave';
  readonly target: string;
  readonly detail?: string;
  readonly at: number;
}

export interface LifecycleResult {
  readonly ok: boolean;
  readonly error?: Error;
  readonly events: readonly LifecycleEvent[];
  /** Number of objects the tool created, changed or deleted (0 for a no-op). */
  readonly writes: number;
}

export interface HelmOptions {
  /** `--timeout`: each hook gets all of it. @default 300_000 (Helm's 5m) */
  readonly timeoutMs?: number;
  /** Which real helm binary runs: 4 (what users install today) or 3. @default 4 */
  readonly major?: HelmMajor;
  /** The release name. @default - the objects' `app.kubernetes.io/instance` label, else `keycloak` */
  readonly releaseName?: string;
}

/** The identity helm's requests carry in the fake API server's request log. */
export const HELM_USER = 'helm-operator';

/**
 * A Helm release driven by the real helm binary (3.17 or 4.1, test/support/helm.ts) against the
 * fake API server through its HTTPS front: `helm upgrade --install` without `--atomic` and without
 * `--wait` (a migrating upgrade must not wait for a Keycloak that waits for the post-upgrade
 * restore), `helm rollback`, `helm uninstall`. Helm's own code orders the hooks, waits for them
 * (helm 3 with a watch, helm 4 with its kstatus watcher), merges (helm 3: 3-way strategic merge;
 * helm 4: server-side apply without force), deletes what the chart dropped and keeps its release
 * Secrets.
 *
 * The chart helm installs holds exactly the given manifests (a scenario may have transformed
 * them): `templates/manifest.yaml` includes `files/manifest.yaml` verbatim, so nothing in them is
 * read as a template. The {@link LifecycleResult} events are read from the API server's request
 * log (helm's requests, by its user): creations, changes and deletions of release objects and hooks.
 */
export class HelmRelease {
  /**
   * Awaited before the hooks of each event run: the creation of the event's first hook (in helm's
   * order) is held at the API server until it resolves. Scenarios use it to pin an interleaving
   * that a real cluster leaves to chance: e.g. hold the post-upgrade restore Job (its image pull is
   * slow) until Keycloak's re-scaled pods have reached the new database.
   */
  beforeHooks?: (event: HelmHookEvent) => Promise<void>;
  /** The helm major that runs. */
  readonly major: HelmMajor;
  private readonly server: FakeKubeApiServer;
  private readonly namespace: string;
  private readonly token = `helm-${randomBytes(12).toString('hex')}`;
  private workDir: string | undefined;
  private kubeconfig: string | undefined;
  private releaseName: string | undefined;

  constructor(
    cluster: { readonly server: FakeKubeApiServer; readonly namespace: string },
    private readonly options: HelmOptions = {},
  ) {
    this.server = cluster.server;
    this.namespace = cluster.namespace;
    this.major = options.major ?? 4;
    this.server.addToken(this.token, { name: HELM_USER, groups: ['system:masters', 'system:authenticated'], admin: true });
  }

  /** The status of the release's latest revision (`deployed`, `failed`, `superseded`, …; `none` before any). */
  get status(): string {
    const latest = this.releaseSecrets().at(-1);
    return latest?.metadata.labels?.status ?? 'none';
  }

  /** The release's revisions, oldest first, as helm stores them (Secrets labelled owner=helm). */
  releaseSecrets(): StoredObject[] {
    const name = this.releaseName ?? this.options.releaseName ?? 'keycloak';
    return this.server
      .list('v1', 'Secret', this.namespace)
      .filter((secret) => secret.metadata.labels?.owner === 'helm' && secret.metadata.labels?.name === name)
      .sort((a, b) => Number(a.metadata.labels?.version) - Number(b.metadata.labels?.version));
  }

  /** `helm upgrade --install`: install when there is no release yet, upgrade otherwise. */
  async upgradeInstall(chart: HelmChartManifests, extraArgs: readonly string[] = []): Promise<LifecycleResult> {
    this.releaseName ??= this.options.releaseName ?? releaseNameOf(chart) ?? 'keycloak';
    const isUpgrade = this.releaseSecrets().length > 0;
    const chartDir = this.writeChart(chart);
    const releaseHolds = this.holdHooks(chart, isUpgrade ? ['pre-upgrade', 'post-upgrade'] : ['pre-install', 'post-install']);
    try {
      return await this.run(['upgrade', '--install', this.releaseName, chartDir, ...extraArgs], chart);
    } finally {
      releaseHolds();
    }
  }

  /** `helm rollback <release> [revision]`: runs only pre/post-rollback hooks, compares against the latest revision. */
  async rollback(revision?: number, chart?: HelmChartManifests): Promise<LifecycleResult> {
    const name = this.releaseName ?? this.options.releaseName ?? 'keycloak';
    return this.run(['rollback', name, ...(revision === undefined ? [] : [String(revision)])], chart);
  }

  /** `helm uninstall <release>`: deletes the release objects (not hooks, not `keep` ones) and its Secrets. */
  async uninstall(): Promise<LifecycleResult> {
    const name = this.releaseName ?? this.options.releaseName ?? 'keycloak';
    return this.run(['uninstall', name]);
  }

  private async run(args: readonly string[], chart?: HelmChartManifests): Promise<LifecycleResult> {
    const kubeconfig = await this.kubeconfigFile();
    const logStart = this.server.requests.length;
    const timeout = `${Math.ceil((this.options.timeoutMs ?? 300_000) / 1000)}s`;
    const result = await runHelmAsync([...args, '--namespace', this.namespace, '--timeout', timeout], this.major, { KUBECONFIG: kubeconfig });
    const requests = this.server.requests.length >= logStart ? this.server.requests.slice(logStart) : this.server.requests;
    const events = this.eventsOf(requests, chart);
    const writes = events.length;
    if (result.status === 0) return { ok: true, events, writes };
    const message = result.stderr.trim() || `helm ${args[0]} exited ${result.status}`;
    return { ok: false, error: new Error(`helm ${this.major} ${args[0]}: ${message}`), events, writes };
  }

  /** What helm did, from its requests: hook creations and deletions, release object changes. */
  private eventsOf(requests: readonly RequestRecord[], chart: HelmChartManifests | undefined): LifecycleEvent[] {
    const hookKeys = new Set((chart?.hooks ?? []).map((hook) => objectKey(hook.object)));
    const events: LifecycleEvent[] = [];
    for (const record of requests) {
      if (record.user !== HELM_USER || record.code >= 300 || !record.name) continue;
      if (!['create', 'update', 'patch', 'delete'].includes(record.verb)) continue;
      if (record.resource === 'secrets' && record.name.startsWith('sh.helm.release.')) continue;
      if (record.verb !== 'delete' && record.changed === false) continue;
      const kind = this.server.types.all().find((type) => type.group === record.group && type.plural === record.resource)?.kind ?? record.resource;
      const key = `${kind}/${record.name}`;
      const isHook = hookKeys.has(key);
      const at = Date.now();
      if (record.verb === 'delete') events.push({ tool: 'helm', action: isHook ? 'hook-delete' : 'prune', target: key, at });
      // Helm 4 creates hooks with a server-side apply (a PATCH answered 201), helm 3 with a POST.
      else if (isHook && (record.verb === 'create' || record.code === 201)) events.push({ tool: 'helm', action: 'hook-create', target: key, at });
      else if (!isHook) events.push({ tool: 'helm', action: 'apply', target: key, detail: record.verb === 'create' || record.code === 201 ? 'created' : 'configured', at });
    }
    return events;
  }

  /**
   * Holds the creation of each event's first hook until {@link beforeHooks} resolves for that
   * event; returns a function that drops the holds not used.
   */
  private holdHooks(chart: HelmChartManifests, events: readonly HelmHookEvent[]): () => void {
    const before = this.beforeHooks;
    if (!before) return () => {};
    const releases: (() => void)[] = [];
    for (const event of events) {
      const first = helmHookOrder(chart.hooks, event)[0];
      if (!first) continue;
      const resourceType = this.server.types.forObject(first.object.apiVersion, first.object.kind);
      const where = { resource: resourceType.plural, name: first.object.metadata.name, ...(resourceType.namespaced ? { namespace: this.namespace } : {}) };
      // Helm 3 creates a hook with a POST, helm 4 with a server-side apply (PATCH): hold whichever comes.
      let waited: Promise<void> | undefined;
      const once = () => (waited ??= before(event));
      releases.push(this.server.holdRequest({ verb: 'create', ...where }, once), this.server.holdRequest({ verb: 'patch', ...where }, once));
    }
    return () => releases.forEach((release) => release());
  }

  private async kubeconfigFile(): Promise<string> {
    this.kubeconfig ??= await writeTlsKubeconfig(this.server, join(this.directory(), 'kubeconfig'), this.token, this.namespace);
    return this.kubeconfig;
  }

  private directory(): string {
    if (!this.workDir) {
      this.workDir = mkdtempSync(join(tmpdir(), 'helm-release-'));
      removeAtExit(this.workDir);
    }
    return this.workDir;
  }

  /** A chart holding exactly the manifests (resources and hooks), named as the source chart. */
  private writeChart(chart: HelmChartManifests): string {
    const dir = mkdtempSync(join(this.directory(), 'chart-'));
    mkdirSync(join(dir, 'templates'));
    mkdirSync(join(dir, 'files'));
    let name = 'keycloak-platform';
    let version = '1.0.0';
    try {
      const source = parseYaml(readFileSync(join(chart.chartDir, 'Chart.yaml'), 'utf8')) as { name?: string; version?: string };
      name = source.name ?? name;
      version = source.version ?? version;
    } catch {
      // Objects not from a chart directory (a Bitnami release's manifest): the defaults name it.
    }
    writeFileSync(join(dir, 'Chart.yaml'), stringifyYaml({ apiVersion: 'v2', name, version }));
    const objects = [...chart.resources, ...chart.hooks.map((hook) => hook.object)];
    // As JSON documents: helm's YAML 1.1 parser would read an unquoted `no` or `on` as a boolean.
    writeFileSync(join(dir, 'files', 'manifest.yaml'), objects.map((object) => JSON.stringify(object, null, 1)).join('\n---\n'));
    writeFileSync(join(dir, 'templates', 'manifest.yaml'), '{{ .Files.Get "files/manifest.yaml" }}\n');
    return dir;
  }
}

const directoriesToRemove = new Set<string>();

/** Charts and kubeconfigs are small; they go when the test process ends. */
function removeAtExit(directory: string): void {
  if (directoriesToRemove.size === 0) {
    process.once('exit', () => directoriesToRemove.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  }
  directoriesToRemove.add(directory);
}

/** The release a chart's objects belong to (Helm's standard label). */
function releaseNameOf(chart: HelmChartManifests): string | undefined {
  for (const object of [...chart.resources, ...chart.hooks.map((hook) => hook.object)]) {
    const instance = object.metadata.labels?.['app.kubernetes.io/instance'];
    if (instance) return instance;
  }
  return undefined;
}

export interface ArgoOptions {
  /** Time allowed for one wave (or hook) to become healthy: Argo CD itself has none by default. @default 300_000 */
  readonly waveTimeoutMs?: number;
  /**
   * Argo CD's pause between waves (the application controller's ARGOCD_SYNC_WAVE_DELAY, 2 s by
   * default). It starts once a wave's tasks are applied, alongside the wait for their health, and
   * the final wave has none: gitops-engine calls Argo CD's `delayBetweenSyncWaves` right after
   * `runTasks` (pkg/sync/sync_context.go), which sleeps unless `finalWave` (controller/sync.go).
   * So a wave whose Job or workload needs longer than the pause adds nothing.
   * @default 0
   */
  readonly waveDelayMs?: number;
  /** Automated sync with prune. @default true */
  readonly prune?: boolean;
  /**
   * The Application's `PruneLast=true` sync option: pruning waits until every other task of the
   * Sync phase is done (gitops-engine moves prune tasks to the phase's last wave + 1). A live
   * object's own `argocd.argoproj.io/sync-options: PruneLast=true` does the same for it.
   * @default false
   */
  readonly pruneLast?: boolean;
  /**
   * The `ServerSideApply=true` sync option: resources are applied server-side as field manager
   * `argocd-controller`, with force — gitops-engine's kubectl apply options set ForceConflicts for
   * server-side apply (pkg/sync/resource_ops.go) — so conflicting fields are taken over.
   * @default false (client-side apply)
   */
  readonly serverSideApply?: boolean;
}

/** The field manager Argo CD's server-side apply writes as (gitops-engine's default). */
export const ARGOCD_FIELD_MANAGER = 'argocd-controller';

/** How one sync operation runs. */
export interface ArgoSyncOptions {
  /**
   * false: a selective sync — what automated self-heal runs — which applies (and prunes) the
   * resources but runs no hook of any phase (controller/sync.go). @default true
   */
  readonly hooks?: boolean;
  /** This sync's wave timeout, e.g. the operator terminating a sync that waits forever. @default ArgoOptions.waveTimeoutMs */
  readonly waveTimeoutMs?: number;
}

/** An Argo CD Application with automated sync (prune on): `sync()` runs one sync operation. */
export class ArgoApplication {
  /** Resources the application manages (for pruning): what the last sync applied. */
  private managed = new Map<string, { object: KubeObject; wave: number }>();
  /** The running sync's time for one wave to become healthy. */
  private waveTimeoutMs = 300_000;

  constructor(
    private readonly cluster: ClusterOps,
    private readonly options: ArgoOptions = {},
  ) {}

  async sync(manifests: ArgoManifests, syncOptions: ArgoSyncOptions = {}): Promise<LifecycleResult> {
    this.waveTimeoutMs = syncOptions.waveTimeoutMs ?? this.options.waveTimeoutMs ?? 300_000;
    // Argo CD's dry run of every task fails the sync before any hook runs when a kind is not
    // served (controller/sync.go; the message as the Application's sync status shows it).
    const [unmapped] = this.cluster.unserved([...manifests.resources.map((resource) => resource.object), ...manifests.hooks.map((hook) => hook.object)]);
    if (unmapped) {
      const [group] = unmapped.apiVersion.split('/');
      const error = new Error(
        `The Kubernetes API could not find ${group}/${unmapped.kind} for requested resource ${unmapped.metadata.namespace ?? ''}/${unmapped.metadata.name}. ` +
          `Make sure the "${unmapped.kind}" CRD is installed on the destination cluster.`,
      );
      return { ok: false, error, events: [], writes: 0 };
    }
    const plan = argoSyncPlan(manifests);
    // A selective sync keeps the Sync phase's resources only: no hook of any phase runs.
    const phases = syncOptions.hooks === false
      ? plan.phases
          .filter((phase) => phase.phase === 'Sync')
          .map((phase) => ({ ...phase, waves: phase.waves.map((wave) => ({ ...wave, tasks: wave.tasks.filter((task) => !task.hook) })).filter((wave) => wave.tasks.length > 0) }))
      : plan.phases;
    const syncFail = syncOptions.hooks === false ? { ...plan.syncFail, waves: [] } : plan.syncFail;
    const events: LifecycleEvent[] = [];
    const log = (action: LifecycleEvent['action'], target: string, detail?: string) =>
      events.push({ tool: 'argocd', action, target, detail, at: Date.now() });
    const counter = { writes: 0 };
    const succeededHooks: ArgoHook[] = [];
    const failedHooks: ArgoHook[] = [];
    const desired = new Set(manifests.resources.map((resource) => objectKey(resource.object)));
    const toPrune = this.options.prune === false ? [] : this.pruneWaves([...this.managed.values()].filter((entry) => !desired.has(objectKey(entry.object))), phases);
    try {
      // Pruning happens in the Sync phase only.
      const prunesOf = (phase: (typeof phases)[number]) => (phase.phase === 'Sync' ? toPrune : []);
      const wavesOf = (phase: (typeof phases)[number]) =>
        [...new Set([...phase.waves.map((w) => w.wave), ...prunesOf(phase).map((p) => p.wave)])].sort((a, b) => a - b);
      // gitops-engine's finalWave: the last wave of the last phase that has tasks left.
      const lastPhaseWithWaves = phases.filter((phase) => wavesOf(phase).length > 0).at(-1);
      for (const phase of phases) {
        log('phase', phase.phase);
        const pruneWaves = prunesOf(phase);
        const waves = wavesOf(phase);
        for (const wave of waves) {
          const tasks = phase.waves.find((w) => w.wave === wave)?.tasks ?? [];
          log('wave', `${phase.phase} ${wave}`);
          // The pause runs from the wave's apply, alongside the wait below (see waveDelayMs).
          const finalWave = phase === lastPhaseWithWaves && wave === waves.at(-1);
          const pause = this.options.waveDelayMs && !finalWave ? new Promise((resolve) => setTimeout(resolve, this.options.waveDelayMs)) : undefined;
          // gitops-engine runs a wave's prune tasks first (sync_context.go runTasks: "prune
          // first"), deleting in the foreground, and the wave is not done until they are gone.
          await this.prune(pruneWaves.filter((p) => p.wave === wave).map((p) => p.entry), log, counter);
          await this.runWave(tasks, log, counter, succeededHooks, failedHooks);
          await pause;
        }
      }
      for (const hook of succeededHooks) {
        if (hook.deletePolicies.includes('HookSucceeded') && (await this.cluster.delete(hook.object))) {
          counter.writes++;
          log('hook-delete', objectKey(hook.object), 'HookSucceeded');
        }
      }
      return { ok: true, events, writes: counter.writes };
    } catch (error) {
      log('phase', 'SyncFail');
      const syncFailErrors: string[] = [];
      for (const wave of syncFail.waves) {
        try {
          await this.runWave(wave.tasks, log, counter, succeededHooks, failedHooks);
        } catch (syncFailError) {
          syncFailErrors.push((syncFailError as Error).message);
        }
      }
      for (const hook of failedHooks) {
        if (hook.deletePolicies.includes('HookFailed') && (await this.cluster.delete(hook.object))) {
          counter.writes++;
          log('hook-delete', objectKey(hook.object), 'HookFailed');
        }
      }
      const message = (error as Error).message + (syncFailErrors.length ? `; SyncFail hooks failed too: ${syncFailErrors.join('; ')}` : '');
      return { ok: false, error: new Error(message, { cause: error }), events, writes: counter.writes };
    }
  }

  /**
   * The wave each pruned object is deleted in, as gitops-engine computes it (sync_context.go):
   * its own sync-wave, the prune waves then mirrored (the object created last is deleted first),
   * and with PruneLast (the Application's option or the live object's) the Sync phase's last
   * wave + 1.
   */
  private pruneWaves(entries: readonly { object: KubeObject; wave: number }[], phases: readonly { phase: string; waves: readonly { wave: number }[] }[]) {
    const distinct = [...new Set(entries.map((entry) => entry.wave))].sort((a, b) => a - b);
    const mirrored = new Map(distinct.map((wave, index) => [wave, distinct[distinct.length - 1 - index]!]));
    const syncWaves = phases.find((phase) => phase.phase === 'Sync')?.waves.map((w) => w.wave) ?? [];
    const lastSyncWave = Math.max(0, ...syncWaves, ...distinct);
    return entries.map((entry) => {
      const liveOptions = this.cluster.get(entry.object)?.metadata.annotations?.[KEEP_ANNOTATIONS.argoSyncOptions.key] ?? '';
      const pruneLast = this.options.pruneLast === true || parseArgoSyncOptions(liveOptions).includes('PruneLast=true');
      return { entry, wave: pruneLast ? lastSyncWave + 1 : mirrored.get(entry.wave)! };
    });
  }

  /** Deletes pruned objects in the foreground and waits until they are gone. */
  private async prune(
    entries: readonly { object: KubeObject; wave: number }[],
    log: (action: LifecycleEvent['action'], target: string, detail?: string) => void,
    counter: { writes: number },
  ): Promise<void> {
    for (const entry of entries) {
      this.managed.delete(objectKey(entry.object));
      // gitops-engine skips pruning a live object whose sync-options hold Prune=false.
      const options = this.cluster.get(entry.object)?.metadata.annotations?.[KEEP_ANNOTATIONS.argoSyncOptions.key] ?? '';
      if (parseArgoSyncOptions(options).includes(KEEP_ANNOTATIONS.argoSyncOptions.value)) continue;
      if (await this.cluster.delete(entry.object, 'Foreground')) {
        counter.writes++;
        log('prune', objectKey(entry.object));
      }
    }
  }

  private async runWave(
    tasks: readonly ArgoTask[],
    log: (action: LifecycleEvent['action'], target: string, detail?: string) => void,
    counter: { writes: number },
    succeededHooks: ArgoHook[],
    failedHooks: ArgoHook[],
  ): Promise<void> {
    // Argo CD applies every task of a wave, then waits for all of them to be healthy.
    for (const task of tasks) {
      const key = objectKey(task.object);
      if (task.hook) {
        if (task.hook.deletePolicies.includes('BeforeHookCreation' satisfies ArgoDeletePolicy)) {
          if (await this.cluster.delete(task.object)) {
            counter.writes++;
            log('hook-delete', key, 'BeforeHookCreation');
          }
        }
        await this.cluster.create(task.object);
        counter.writes++;
        log('hook-create', key, `${task.phase} wave ${task.wave}`);
      } else {
        const outcome = this.options.serverSideApply
          ? await this.cluster.serverSideApply(task.object, ARGOCD_FIELD_MANAGER, true)
          : await this.cluster.apply(task.object);
        this.managed.set(key, { object: task.object, wave: task.wave });
        if (outcome !== 'unchanged') {
          counter.writes++;
          log('apply', key, outcome);
        }
      }
    }
    const timeout = this.waveTimeoutMs;
    const results = await Promise.allSettled(tasks.map((task) => this.cluster.waitReady(task.object, timeout)));
    const failures: string[] = [];
    results.forEach((result, index) => {
      const task = tasks[index]!;
      const key = objectKey(task.object);
      if (result.status === 'fulfilled') {
        log(task.hook ? 'hook-ready' : 'ready', key);
        if (task.hook) succeededHooks.push(task.hook);
      } else {
        const message = (result.reason as Error).message;
        log(task.hook ? 'hook-failed' : 'ready', key, message);
        if (task.hook) failedHooks.push(task.hook);
        failures.push(`${task.phase} ${key}: ${message}`);
      }
    });
    if (failures.length > 0) throw new Error(`sync failed: ${failures.join('; ')}`);
  }
}

/** Which Argo CD hook types a phase name stands for (for readers of {@link ArgoTask}). */
export function isSyncHookType(type: ArgoHookType): type is ArgoTask['phase'] {
  return type === 'PreSync' || type === 'Sync' || type === 'PostSync' || type === 'SyncFail';
}

function compareStrings(a: string, b: string): number {
  // Go compares strings byte-wise, not by locale.
  return a < b ? -1 : a > b ? 1 : 0;
}
