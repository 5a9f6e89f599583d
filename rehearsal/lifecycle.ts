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
 * The ordering functions are pure (tested on their own); {@link HelmRelease} and
 * {@link ArgoApplication} execute them through a {@link ClusterOps}.
 */
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
import { KEEP_ANNOTATIONS } from '../lib/contract.js';

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
  /** Deletes and waits until the object is gone; false when it did not exist. */
  delete(object: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): Promise<boolean>;
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
}

/**
 * A Helm release: `helm upgrade --install` without `--atomic` and without `--wait` (a migrating
 * upgrade must not wait for a Keycloak that waits for the post-upgrade restore).
 */
export class HelmRelease {
  private deployed: KubeObject[] | undefined;
  private revision = 0;
  /** Whether any release exists (an upgrade after a failed install is still an upgrade). */
  private released = false;
  status: 'none' | 'deployed' | 'failed' = 'none';
  /**
   * Awaited before the hooks of each event run. Scenarios use it to pin an interleaving that a
   * real cluster leaves to chance: e.g. hold the post-upgrade restore Job (its image pull is slow)
   * until Keycloak's re-scaled pods have reached the new database.
   */
  beforeHooks?: (event: HelmHookEvent) => Promise<void>;

  constructor(
    private readonly cluster: ClusterOps,
    private readonly options: HelmOptions = {},
  ) {}

  /** `helm upgrade --install`: install when there is no release yet, upgrade otherwise. */
  async upgradeInstall(chart: HelmChartManifests): Promise<LifecycleResult> {
    // Helm maps every object of the new manifest to an API resource before anything else
    // (pkg/action/upgrade.go, install.go: KubeClient.Build); a kind without its CRD fails there.
    const [unmapped] = this.cluster.unserved([...chart.resources, ...chart.hooks.map((hook) => hook.object)]);
    if (unmapped) {
      const error = new Error(
        `unable to build kubernetes objects from new release manifest: resource mapping not found for name: "${unmapped.metadata.name}" ` +
          `namespace: "${unmapped.metadata.namespace ?? ''}" from "": no matches for kind "${unmapped.kind}" in version "${unmapped.apiVersion}"\n` +
          'ensure CRDs are installed first',
      );
      return { ok: false, error, events: [], writes: 0 };
    }
    const isUpgrade = this.released;
    this.released = true;
    const events: LifecycleEvent[] = [];
    const log = (action: LifecycleEvent['action'], target: string, detail?: string) =>
      events.push({ tool: 'helm', action, target, detail, at: Date.now() });
    const counter = { writes: 0 };
    const pre: HelmHookEvent = isUpgrade ? 'pre-upgrade' : 'pre-install';
    const post: HelmHookEvent = isUpgrade ? 'post-upgrade' : 'post-install';
    this.revision++;
    try {
      await this.runHooks(chart, pre, log, counter);
      const applied = await this.applyRelease(chart, isUpgrade, log, counter);
      await this.runHooks(chart, post, log, counter);
      // Only a release that succeeded becomes the "deployed" one the next upgrade diffs against
      // (pkg/action/upgrade.go: after a failed release, Helm uses the last deployed release).
      this.deployed = applied;
      this.status = 'deployed';
      return { ok: true, events, writes: counter.writes };
    } catch (error) {
      this.status = 'failed';
      return { ok: false, error: error as Error, events, writes: counter.writes };
    }
  }

  private async runHooks(
    chart: HelmChartManifests,
    event: HelmHookEvent,
    log: (action: LifecycleEvent['action'], target: string, detail?: string) => void,
    counter: { writes: number },
  ): Promise<void> {
    await this.beforeHooks?.(event);
    const ordered = helmHookOrder(chart.hooks, event);
    for (const hook of ordered) {
      const key = objectKey(hook.object);
      if (hook.deletePolicies.includes('before-hook-creation')) {
        if (await this.cluster.delete(hook.object)) {
          counter.writes++;
          log('hook-delete', key, 'before-hook-creation');
        }
      }
      try {
        await this.cluster.create(hook.object);
      } catch (cause) {
        throw new Error(`${event} hook ${key} could not be created: ${(cause as Error).message}`, { cause });
      }
      counter.writes++;
      log('hook-create', key, `${event} weight ${hook.weight}`);
      try {
        await this.cluster.waitReady(hook.object, this.options.timeoutMs ?? 300_000);
        log('hook-ready', key);
      } catch (cause) {
        log('hook-failed', key, (cause as Error).message);
        if (hook.deletePolicies.includes('hook-failed')) await this.cluster.delete(hook.object);
        throw new Error(`${event} hooks failed: ${key}: ${(cause as Error).message}`, { cause });
      }
    }
    for (const hook of ordered) {
      if (hook.deletePolicies.includes('hook-succeeded') && (await this.cluster.delete(hook.object))) {
        counter.writes++;
        log('hook-delete', objectKey(hook.object), 'hook-succeeded');
      }
    }
  }

  private async applyRelease(
    chart: HelmChartManifests,
    isUpgrade: boolean,
    log: (action: LifecycleEvent['action'], target: string, detail?: string) => void,
    counter: { writes: number },
  ): Promise<KubeObject[]> {
    const ordered = helmResourceOrder(chart.resources);
    for (const object of ordered) {
      if (!isUpgrade) {
        await this.cluster.create(object).catch((cause: unknown) => {
          throw new Error(`installation failed: ${(cause as Error).message}`, { cause });
        });
        counter.writes++;
        log('apply', objectKey(object), 'created');
        continue;
      }
      const outcome = await this.cluster.apply(object);
      if (outcome !== 'unchanged') {
        counter.writes++;
        log('apply', objectKey(object), outcome);
      }
    }
    if (isUpgrade && this.deployed) {
      const keep = new Set(ordered.map(objectKey));
      // Deleted in reverse install order, as Helm's UninstallOrder does.
      const dropped = helmResourceOrder(this.deployed.filter((object) => !keep.has(objectKey(object)))).reverse();
      for (const object of dropped) {
        // Helm reads the policy from the LIVE object (pkg/kube/client.go Update →
        // pkg/action/resource_policy.go), so an annotation added after the install protects it too.
        const live = this.cluster.get(object);
        if (live?.metadata.annotations?.[KEEP_ANNOTATIONS.helmResourcePolicy.key] === KEEP_ANNOTATIONS.helmResourcePolicy.value) continue;
        if (await this.cluster.delete(object)) {
          counter.writes++;
          log('prune', objectKey(object));
        }
      }
    }
    return ordered;
  }
}

export interface ArgoOptions {
  /** Time allowed for one wave (or hook) to become healthy: Argo CD itself has none by default. @default 300_000 */
  readonly waveTimeoutMs?: number;
  /** Pause between waves (Argo CD's ARGOCD_SYNC_WAVE_DELAY, 2 s by default). @default 0 */
  readonly waveDelayMs?: number;
  /** Automated sync with prune. @default true */
  readonly prune?: boolean;
}

/** An Argo CD Application with automated sync (prune on): `sync()` runs one sync operation. */
export class ArgoApplication {
  /** Resources the application manages (for pruning): what the last sync applied. */
  private managed = new Map<string, { object: KubeObject; wave: number }>();

  constructor(
    private readonly cluster: ClusterOps,
    private readonly options: ArgoOptions = {},
  ) {}

  async sync(manifests: ArgoManifests): Promise<LifecycleResult> {
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
    const { phases, syncFail } = argoSyncPlan(manifests);
    const events: LifecycleEvent[] = [];
    const log = (action: LifecycleEvent['action'], target: string, detail?: string) =>
      events.push({ tool: 'argocd', action, target, detail, at: Date.now() });
    const counter = { writes: 0 };
    const succeededHooks: ArgoHook[] = [];
    const failedHooks: ArgoHook[] = [];
    const desired = new Set(manifests.resources.map((resource) => objectKey(resource.object)));
    const toPrune = [...this.managed.values()].filter((entry) => !desired.has(objectKey(entry.object)));
    try {
      for (const phase of phases) {
        log('phase', phase.phase);
        const pruneWaves = phase.phase === 'Sync' && this.options.prune !== false ? toPrune : [];
        const waves = [...new Set([...phase.waves.map((w) => w.wave), ...pruneWaves.map((p) => p.wave)])].sort((a, b) => a - b);
        for (const wave of waves) {
          const tasks = phase.waves.find((w) => w.wave === wave)?.tasks ?? [];
          log('wave', `${phase.phase} ${wave}`);
          await this.runWave(tasks, log, counter, succeededHooks, failedHooks);
          for (const entry of pruneWaves.filter((p) => p.wave === wave)) {
            // gitops-engine skips pruning a live object whose sync-options hold Prune=false.
            const options = this.cluster.get(entry.object)?.metadata.annotations?.[KEEP_ANNOTATIONS.argoSyncOptions.key] ?? '';
            if (options.split(',').map((o) => o.trim()).includes(KEEP_ANNOTATIONS.argoSyncOptions.value)) {
              this.managed.delete(objectKey(entry.object));
              continue;
            }
            if (await this.cluster.delete(entry.object)) {
              counter.writes++;
              log('prune', objectKey(entry.object));
            }
            this.managed.delete(objectKey(entry.object));
          }
          if (this.options.waveDelayMs) await new Promise((resolve) => setTimeout(resolve, this.options.waveDelayMs));
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
        const outcome = await this.cluster.apply(task.object);
        this.managed.set(key, { object: task.object, wave: task.wave });
        if (outcome !== 'unchanged') {
          counter.writes++;
          log('apply', key, outcome);
        }
      }
    }
    const timeout = this.options.waveTimeoutMs ?? 300_000;
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
