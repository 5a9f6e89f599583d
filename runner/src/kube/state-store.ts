/**
 * The state ConfigMap: created at run time (labelled as the runner's, owned by no release object,
 * so that neither `helm uninstall` nor Argo CD pruning erases the record of a migration), read, and
 * updated by compare-and-swap on its resourceVersion. A 409 means another runner wrote in between:
 * `update` re-reads and re-runs the caller's mutator on the fresh state, so decisions are always
 * taken on the latest state and no update is lost.
 *
 * Every phase change (and every recorded failure) also becomes a core/v1 Event on the ConfigMap,
 * visible with `kubectl describe configmap <name>` and `kubectl get events`.
 */
import { randomBytes } from 'node:crypto';
import type { CoreV1Event, V1ConfigMap } from '@kubernetes/client-node';
import { Env, ExitCode, Labels, MANAGED_BY_RUNNER, Phase } from '../../../lib/contract.js';
import { RunnerError } from '../errors.js';
import { parseState, serializeState, type MigrationState } from '../state.js';
import { callApi, isAlreadyExists, isConflict, isNotFound, type KubeContext } from './client.js';

/** A state as read, with the resourceVersion that a compare-and-swap write must match. */
export interface StoredState {
  readonly state: MigrationState;
  readonly resourceVersion: string;
  /** uid of the ConfigMap (the Events' involvedObject). */
  readonly uid: string;
}

export interface StateStoreOptions {
  /** Name of the state ConfigMap (MIGRATION_STATE_CONFIGMAP). */
  readonly name: string;
  /** `app.kubernetes.io/part-of` label value. @default "keycloak" */
  readonly partOf?: string;
  /** Reported as the Events' reportingInstance (the pod name). @default - MIGRATION_POD_NAME or "runner" */
  readonly instance?: string;
  /** How many times `update` re-reads after a 409 before giving up. @default 8 */
  readonly maxConflictRetries?: number;
}

/** The labels the runner puts on everything it creates at run time. */
export function runnerLabels(component: string, partOf = 'keycloak'): Record<string, string> {
  return { [Labels.managedBy]: MANAGED_BY_RUNNER, [Labels.component]: component, [Labels.partOf]: partOf };
}

export const STATE_COMPONENT = 'migration-state';
const EVENT_SOURCE = MANAGED_BY_RUNNER;

export class StateStore {
  readonly name: string;
  private readonly partOf: string;
  private readonly instance: string;
  private readonly maxConflictRetries: number;

  constructor(
    private readonly kube: KubeContext,
    options: StateStoreOptions,
  ) {
    this.name = options.name;
    this.partOf = options.partOf ?? 'keycloak';
    this.instance = options.instance ?? process.env[Env.podName] ?? 'runner';
    this.maxConflictRetries = options.maxConflictRetries ?? 8;
  }

  private action(verb: string) {
    return { verb, resource: 'configmaps', name: verb === 'create' ? undefined : this.name, namespace: this.kube.namespace };
  }

  private toStored(configMap: V1ConfigMap): StoredState {
    return {
      state: parseState(configMap.data, this.name),
      resourceVersion: configMap.metadata?.resourceVersion ?? '',
      uid: configMap.metadata?.uid ?? '',
    };
  }

  private async readConfigMap(): Promise<V1ConfigMap | undefined> {
    try {
      return await callApi(this.kube, this.action('get'), () =>
        this.kube.core.readNamespacedConfigMap({ name: this.name, namespace: this.kube.namespace }),
      );
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** The ConfigMap a migration in progress relies on: its absence is an error. */
  private async readExistingConfigMap(): Promise<V1ConfigMap> {
    const configMap = await this.readConfigMap();
    if (!configMap) {
      throw new RunnerError(`state ConfigMap ${this.name} disappeared during the migration`, {
        exitCode: ExitCode.tempFail,
        hint: 'something deleted it; run again and the runner will recreate it and re-decide',
      });
    }
    return configMap;
  }

  /** The current state, or undefined when no migration has started (the ConfigMap is absent). */
  async read(): Promise<StoredState | undefined> {
    const configMap = await this.readConfigMap();
    return configMap ? this.toStored(configMap) : undefined;
  }

  /**
   * Creates the ConfigMap with `initial()` when absent; returns what is stored either way. Two
   * runners creating at once: one wins, the other reads the winner's state.
   */
  async ensure(initial: () => MigrationState): Promise<StoredState> {
    const existing = await this.read();
    if (existing) return existing;
    const state = initial();
    try {
      const created = await callApi(this.kube, this.action('create'), () =>
        this.kube.core.createNamespacedConfigMap({
          namespace: this.kube.namespace,
          body: {
            metadata: { name: this.name, labels: runnerLabels(STATE_COMPONENT, this.partOf) },
            data: serializeState(state),
          },
        }),
      );
      const stored = this.toStored(created);
      await this.emitEvent(stored, undefined, state);
      return stored;
    } catch (error) {
      if (!isAlreadyExists(error)) throw error;
      const winner = await this.read();
      if (!winner) throw error;
      return winner;
    }
  }

  /**
   * Compare-and-swap update: reads the state, applies `mutator`, writes with the read
   * resourceVersion; on 409 re-reads and re-runs the mutator on the fresh state (so it must be a
   * pure function of the state it is given). A mutator returning the same object (or undefined)
   * writes nothing. Fails when the ConfigMap does not exist (use `ensure` first).
   */
  async update(mutator: (state: MigrationState) => MigrationState | undefined): Promise<StoredState> {
    for (let attempt = 1; ; attempt += 1) {
      const configMap = await this.readExistingConfigMap();
      const current = this.toStored(configMap);
      const next = mutator(current.state);
      if (next === undefined || next === current.state) return current;
      try {
        const written = await callApi(this.kube, this.action('update'), () =>
          this.kube.core.replaceNamespacedConfigMap({
            name: this.name,
            namespace: this.kube.namespace,
            // Everything else on the ConfigMap (annotations someone added) is kept as read.
            body: { ...configMap, data: { ...configMap.data, ...serializeState(next) } },
          }),
        );
        const stored = this.toStored(written);
        await this.emitEvent(stored, current.state, next);
        return stored;
      } catch (error) {
        if (!isConflict(error) || attempt > this.maxConflictRetries) throw error;
        this.kube.log.debug('state ConfigMap changed concurrently, re-reading', { configMap: this.name, attempt });
      }
    }
  }

  /** Another key of the ConfigMap's data (not the state), or undefined when it or the ConfigMap is absent. */
  async readData(key: string): Promise<string | undefined> {
    return (await this.readConfigMap())?.data?.[key];
  }

  /**
   * Sets (or, with undefined, removes) another key of the ConfigMap's data by compare-and-swap,
   * leaving the state as it is. Fails when the ConfigMap does not exist.
   */
  async writeData(key: string, value: string | undefined): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      const configMap = await this.readExistingConfigMap();
      const data = { ...configMap.data };
      if (data[key] === value) return;
      if (value === undefined) delete data[key];
      else data[key] = value;
      try {
        await callApi(this.kube, this.action('update'), () =>
          this.kube.core.replaceNamespacedConfigMap({ name: this.name, namespace: this.kube.namespace, body: { ...configMap, data } }),
        );
        return;
      } catch (error) {
        if (!isConflict(error) || attempt > this.maxConflictRetries) throw error;
        this.kube.log.debug('state ConfigMap changed concurrently, re-reading', { configMap: this.name, attempt });
      }
    }
  }

  /**
   * An Event for a phase change or a newly recorded failure. Events are for people watching; a
   * failure to write one (e.g. RBAC without `create events`) is logged, not fatal.
   */
  private async emitEvent(stored: StoredState, before: MigrationState | undefined, after: MigrationState): Promise<void> {
    const phaseChanged = before === undefined || before.phase !== after.phase;
    const newError = after.lastError !== undefined && after.lastError.at !== before?.lastError?.at;
    const superseded = (after.supersededBackups?.length ?? 0) > (before?.supersededBackups?.length ?? 0);
    if (!phaseChanged && !newError && !superseded) return;
    const failed = after.phase === Phase.failed || (newError && !phaseChanged) || superseded;
    const last = after.history[after.history.length - 1];
    let message: string;
    let reason: string;
    if (superseded) {
      // Going back to Quiesced is unusual enough to be a Warning: someone wrote to the legacy database.
      reason = 'MigrationBackupSuperseded';
      message = `migration ${after.migrationId}: ${before?.phase ?? '?'} → ${after.phase}: ${last?.detail ?? 'the backup was superseded'}; taking a new backup`;
    } else if (newError && after.lastError) {
      reason = after.phase === Phase.failed ? 'MigrationFailed' : 'MigrationStepFailed';
      message = `migration ${after.migrationId}: step ${after.lastError.step} failed (exit ${after.lastError.exitCode}): ${after.lastError.message}`;
    } else if (before === undefined) {
      reason = `Migration${after.phase}`;
      message = `migration ${after.migrationId}: state created in phase ${after.phase}`;
    } else {
      reason = `Migration${after.phase}`;
      const detail = last?.phase === after.phase && last.detail ? ` (${last.detail})` : '';
      const took = last?.phase === after.phase ? ` in ${Math.round(last.durationMs / 100) / 10}s` : '';
      message = `migration ${after.migrationId}: ${before.phase} → ${after.phase}${took}${detail}`;
    }
    const now = new Date();
    const event: CoreV1Event = {
      metadata: { name: `${this.name}.${randomBytes(8).toString('hex')}`, namespace: this.kube.namespace },
      involvedObject: {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        name: this.name,
        namespace: this.kube.namespace,
        uid: stored.uid,
        resourceVersion: stored.resourceVersion,
      },
      reason,
      message: message.slice(0, 1024),
      type: failed ? 'Warning' : 'Normal',
      source: { component: EVENT_SOURCE },
      reportingComponent: EVENT_SOURCE,
      reportingInstance: this.instance,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      action: 'UpdateMigrationState',
    };
    try {
      await callApi(this.kube, { verb: 'create', resource: 'events', namespace: this.kube.namespace }, () =>
        this.kube.core.createNamespacedEvent({ namespace: this.kube.namespace, body: event }),
      );
    } catch (error) {
      this.kube.log.warn('could not record a Kubernetes Event for the state change', {
        reason,
        error: error instanceof RunnerError ? error.oneLine() : String(error),
      });
    }
  }
}
