/**
 * The first decision of a migration, taken by `prepare` when no state exists yet: is there
 * anything to migrate? Read-only probes of the legacy StatefulSet, the target's ready marker and
 * the source database, and a pure function over what they found (also used by `plan`).
 *
 * | found                                                   | decision                          |
 * |---------------------------------------------------------|-----------------------------------|
 * | target carries the ready marker                         | NotNeeded: the data is in place   |
 * | source reachable                                        | migrate                           |
 * | source answers with an error (password, version, …)     | fail with that error              |
 * | a database adopted from labels / pod spec (adopt-legacy) | migrate from it (its own probe)   |
 * | adoption ambiguous (two primaries, no Secret, no key)   | fail (78), naming what was found  |
 * | legacy StatefulSet exists, its password Secret does not, | fail (78), naming the Secret its  |
 * |   and its pods read another one (`auth.existingSecret`)  |   pods read and the config field  |
 * | legacy StatefulSet exists, source unreachable           | fail, retriable (69)              |
 * | the target carries a `restoring` marker                 | fail (78), naming the migration   |
 * | any other trace of a legacy database (below)            | fail (78), naming what was found  |
 * | no trace at all                                         | NotNeeded: fresh install          |
 *
 * "Fresh install" needs positive evidence, because deciding it wrongly starts Keycloak on an
 * empty database while the old data sits next to it. Traces: a StatefulSet or PVC carrying the
 * legacy database's labels (MIGRATION_LEGACY_SELECTOR: Bitnami keeps them through every name
 * override and `architecture: replication`), a configured legacy PVC, and the legacy password
 * Secret (SOURCE_PGPASSWORD set from its optional secretKeyRef). Secrets are never listed (a list
 * returns every Secret's data): the one the configuration names, and the one a legacy pod spec
 * references (adopt-legacy.ts, read by name), are the only ones looked at.
 */
import type { V1PodSpec, V1StatefulSet } from '@kubernetes/client-node';

import { Env, ExitCode, ReadyMarker } from '../../../lib/contract.js';
import type { EndpointConfig, HookConfig } from '../config.js';
import { RunnerError } from '../errors.js';
import { callApi, isNotFound, type KubeContext } from '../kube/client.js';
import { preflightBackup, type BackupPreflight } from '../pg/backup.js';
import { readMarker, type ReadyMarkerRow } from '../pg/marker.js';
import { probeAdoption, type AdoptedLegacy, type AdoptionEvidence, type AdoptionProbe } from './adopt-legacy.js';

export interface LegacyProbe {
  /** Undefined when no legacy StatefulSet is configured. */
  readonly name?: string;
  readonly exists: boolean;
  /**
   * Other evidence of a legacy database, one readable line each (see the module comment);
   * undefined when not probed.
   */
  readonly traces?: readonly string[];
  /** Secrets the legacy StatefulSet's pods read (env secretKeyRef, Secret volumes), when it exists. */
  readonly podSecrets?: readonly string[];
  /** The StatefulSet's `spec.replicas` (1 when unset, as the API defaults it), when it exists. */
  readonly replicas?: number;
  /** The configured StatefulSet's pod spec, when it exists (adoption reads its password reference). */
  readonly podSpec?: V1PodSpec;
  /** Other StatefulSets with the legacy labels (adoption's candidates); absent when none. */
  readonly labelled?: readonly V1StatefulSet[];
  /** PVCs with the legacy labels; absent when none. */
  readonly labelledClaims?: readonly string[];
}

/** What adoption (adopt-legacy.ts) works from, out of a probe. */
export function adoptionEvidence(legacy: LegacyProbe): AdoptionEvidence {
  return {
    configuredExists: legacy.exists,
    ...(legacy.podSpec ? { configuredPodSpec: legacy.podSpec } : {}),
    labelled: legacy.labelled ?? [],
    labelledClaims: legacy.labelledClaims ?? [],
  };
}

export type SourceProbe =
  | { readonly status: 'reachable'; readonly preflight: BackupPreflight }
  | { readonly status: 'absent'; readonly reason: string }
  | { readonly status: 'error'; readonly error: RunnerError };

export type TargetProbe =
  | { readonly status: 'reachable'; readonly marker?: ReadyMarkerRow }
  | { readonly status: 'absent'; readonly reason: string };

export async function probeLegacyStatefulSet(kube: KubeContext, config: HookConfig): Promise<LegacyProbe> {
  const name = config.legacyStatefulSet;
  if (!name) return { exists: false };
  try {
    const live = await callApi(kube, { verb: 'get', resource: 'statefulsets', group: 'apps', name, namespace: kube.namespace }, () =>
      kube.apps.readNamespacedStatefulSet({ name, namespace: kube.namespace }),
    );
    const podSpec = live.spec?.template?.spec;
    return { name, exists: true, podSecrets: secretsReadByPods(podSpec), replicas: live.spec?.replicas ?? 1, ...(podSpec ? { podSpec } : {}) };
  } catch (error) {
    if (isNotFound(error)) return { name, exists: false };
    throw error;
  }
}

/**
 * The Secrets a pod template reads: env `secretKeyRef`s and Secret volumes (plain or projected),
 * by name, in order. Bitnami's `postgresql` mounts its passwords (`POSTGRES_PASSWORD_FILE`) or
 * references them in env, from `<fullname>` or from `auth.existingSecret`.
 */
export function secretsReadByPods(pod: V1PodSpec | undefined): string[] {
  const names: string[] = [];
  for (const container of [...(pod?.initContainers ?? []), ...(pod?.containers ?? [])]) {
    for (const variable of container.env ?? []) if (variable.valueFrom?.secretKeyRef?.name) names.push(variable.valueFrom.secretKeyRef.name);
  }
  for (const volume of pod?.volumes ?? []) {
    if (volume.secret?.secretName) names.push(volume.secret.secretName);
    for (const source of volume.projected?.sources ?? []) if (source.secret?.name) names.push(source.secret.name);
  }
  return [...new Set(names)];
}

/**
 * The configured StatefulSet plus every other trace of a legacy database in the namespace: by
 * label (StatefulSets and PVCs), the configured PVCs by name, the password Secret by its variable.
 */
export async function probeLegacyDatabase(kube: KubeContext, config: HookConfig): Promise<LegacyProbe> {
  const statefulSet = await probeLegacyStatefulSet(kube, config);
  const traces: string[] = [];
  const labelled: V1StatefulSet[] = [];
  const labelledClaims: string[] = [];
  const { namespace } = kube;
  if (config.legacySelector) {
    const labelSelector = config.legacySelector;
    const statefulSets = await callApi(kube, { verb: 'list', resource: 'statefulsets', group: 'apps', namespace }, () =>
      kube.apps.listNamespacedStatefulSet({ namespace, labelSelector }),
    );
    for (const item of statefulSets.items) {
      const name = item.metadata?.name ?? '';
      if (name === statefulSet.name) continue;
      traces.push(`StatefulSet ${name} (labels ${labelSelector})`);
      labelled.push(item);
    }
    const claims = await callApi(kube, { verb: 'list', resource: 'persistentvolumeclaims', namespace }, () =>
      kube.core.listNamespacedPersistentVolumeClaim({ namespace, labelSelector }),
    );
    for (const item of claims.items) {
      traces.push(`PersistentVolumeClaim ${item.metadata?.name ?? ''} (labels ${labelSelector})`);
      labelledClaims.push(item.metadata?.name ?? '');
    }
  }
  for (const name of config.legacyPvcs) {
    if (traces.some((trace) => trace.startsWith(`PersistentVolumeClaim ${name} `))) continue;
    try {
      await callApi(kube, { verb: 'get', resource: 'persistentvolumeclaims', name, namespace }, () =>
        kube.core.readNamespacedPersistentVolumeClaim({ name, namespace }),
      );
      traces.push(`PersistentVolumeClaim ${name} (${Env.legacyPvcs})`);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
  if (config.source.passwordSet) traces.push(`the legacy password Secret (${Env.sourcePassword} is set from it)`);
  return { ...statefulSet, traces, ...(labelled.length > 0 ? { labelled } : {}), ...(labelledClaims.length > 0 ? { labelledClaims } : {}) };
}

function missingEndpoint(endpoint: EndpointConfig, prefix: 'SOURCE' | 'TARGET'): string | undefined {
  if (!endpoint.settings) return `${prefix}_PGHOST is not set`;
  if (!endpoint.passwordSet) return `${prefix}_PGPASSWORD is unset (its Secret does not exist)`;
  return undefined;
}

/**
 * Connects to the source read-only: server version (refusing one newer than pg_dump) and sizes.
 * Unreachable means absent; any other failure (wrong password, pg_dump too old) is kept as an
 * error: the source exists and the migration cannot proceed until it is fixed.
 */
export async function probeSource(config: Pick<HookConfig, 'source'>): Promise<SourceProbe> {
  const missing = missingEndpoint(config.source, 'SOURCE');
  if (missing || !config.source.settings) return { status: 'absent', reason: missing ?? 'not configured' };
  try {
    return { status: 'reachable', preflight: await preflightBackup(config.source.settings) };
  } catch (error) {
    if (error instanceof RunnerError && error.exitCode === ExitCode.unavailable) return { status: 'absent', reason: error.message };
    if (error instanceof RunnerError) return { status: 'error', error };
    throw error;
  }
}

/** Reads the target's ready marker; any failure means the target is not (yet) usable. */
export async function probeTarget(config: HookConfig): Promise<TargetProbe> {
  const missing = missingEndpoint(config.target, 'TARGET');
  if (missing || !config.target.settings) return { status: 'absent', reason: missing ?? 'not configured' };
  try {
    const marker = await readMarker(config.target.settings);
    return marker ? { status: 'reachable', marker } : { status: 'reachable' };
  } catch (error) {
    if (error instanceof RunnerError) return { status: 'absent', reason: error.message };
    throw error;
  }
}

/**
 * Adoption, probed only when the configured source neither answers nor errs: what would be
 * adopted, and its source probed with the adopted host and password.
 */
export async function probeAdoptedSource(kube: KubeContext, config: HookConfig, legacy: LegacyProbe, source: SourceProbe): Promise<AdoptionOutcome | undefined> {
  if (source.status !== 'absent') return undefined;
  const adoption = await probeAdoption(kube, config, adoptionEvidence(legacy));
  if (adoption.status !== 'adopted') return adoption;
  return { status: 'adopted', adopted: adoption.adopted, source: await probeSource(adoption.config) };
}

export type PrepareDecision =
  | { readonly kind: 'not-needed'; readonly reason: string; readonly targetReady: boolean }
  | { readonly kind: 'migrate'; readonly reason: string; readonly preflight: BackupPreflight; readonly adopted?: AdoptedLegacy };

/** An adopted database with the probe of its source (adopt-legacy.ts, then {@link probeSource}). */
export type AdoptionOutcome =
  | Exclude<AdoptionProbe, { status: 'adopted' }>
  | { readonly status: 'adopted'; readonly adopted: AdoptedLegacy; readonly source: SourceProbe };

/**
 * The decision over what the probes found (pure); throws when it cannot be taken safely.
 * `adoption` is consulted only when the configured source neither answers nor errs.
 */
export function decidePrepare(legacy: LegacyProbe, target: TargetProbe, source: SourceProbe, adoption?: AdoptionOutcome): PrepareDecision {
  if (target.status === 'reachable' && target.marker?.status === ReadyMarker.ready) {
    return {
      kind: 'not-needed',
      reason: `the target already carries the ready marker of migration ${target.marker.migrationId} (since ${target.marker.updatedAt.toISOString()}): its data is in place`,
      targetReady: true,
    };
  }
  if (source.status === 'reachable') {
    const { preflight } = source;
    return {
      kind: 'migrate',
      reason: `the source database is reachable (PostgreSQL ${preflight.server.version}, ${preflight.databaseBytes} bytes)${legacy.exists ? ` and the legacy StatefulSet ${legacy.name} exists` : ''}`,
      preflight,
    };
  }
  if (source.status === 'error') throw source.error;
  if (adoption?.status === 'refused') throw adoption.error;
  if (adoption?.status === 'adopted') return decideAdopted(adoption.adopted, adoption.source);
  if (legacy.exists && source.reason.startsWith(`${Env.sourcePassword} is unset`) && legacy.podSecrets && legacy.podSecrets.length > 0) {
    // The Secret the configuration names is gone or never existed, while the database's own pods
    // read another one: waiting (69) would wait forever.
    throw new RunnerError(
      `the legacy StatefulSet ${legacy.name} exists but the configured password Secret does not (${source.reason}); its pods read their passwords from Secret ${legacy.podSecrets.join(', ')}`,
      {
        exitCode: ExitCode.config,
        hint:
          `set the platform config's legacyDatabase.secretName to ${legacy.podSecrets.length === 1 ? legacy.podSecrets[0] : 'the one holding the postgres password'} (Bitnami's auth.existingSecret); ` +
          `if that is already the configured Secret, its keys differ: postgresql chart 10.x (keycloak chart ≤ 6) names them postgresql-password / postgresql-postgres-password ` +
          `(legacyDatabase.passwordKey / adminPasswordKey); then upgrade again. Nothing was changed`,
      },
    );
  }
  if (legacy.exists) {
    throw new RunnerError(`the legacy StatefulSet ${legacy.name} exists but its database is not reachable: ${source.reason}`, {
      exitCode: ExitCode.unavailable,
      hint: `start the legacy database (kubectl get statefulset ${legacy.name}), or check ${Env.sourceHost}/${Env.sourcePort}; the Job retries`,
    });
  }
  if (target.status === 'reachable' && target.marker?.status === ReadyMarker.restoring) {
    // A restore began there and never finished, and no state records it (the ConfigMap was deleted,
    // or restored from an older copy): "fresh install" would mark a half-restored database ready.
    const { marker } = target;
    throw new RunnerError(
      `the target database carries the ${ReadyMarker.restoring} marker of migration ${marker.migrationId} (since ${marker.updatedAt.toISOString()}): a restore into it began and did not finish, ` +
        `and no legacy database answers (${source.reason}) to migrate from. Deciding "fresh install" would start Keycloak on a partly restored database`,
      {
        exitCode: ExitCode.config,
        hint:
          `if the legacy database still exists, start it or point the platform config's legacyDatabase at it and upgrade again: a new migration restores over the partial one. ` +
          `If nothing of value is in the target, drop and recreate it empty and upgrade again. Nothing was changed`,
      },
    );
  }
  if (legacy.traces && legacy.traces.length > 0) {
    throw new RunnerError(
      `no legacy database answers at the configured names (${source.reason}), yet the namespace holds traces of one: ${legacy.traces.join('; ')}. ` +
        `Deciding "fresh install" would start Keycloak on an empty database next to that data`,
      {
        exitCode: ExitCode.config,
        hint:
          `point the platform config's legacyDatabase.name (and secretName, passwordKey) at that database ` +
          `(${Env.legacyStatefulSet}, ${Env.sourceHost}, the ${Env.sourcePassword} Secret) and start it if it is stopped; ` +
          `if nothing of value is in it, delete those objects and upgrade again`,
      },
    );
  }
  const legacyPart = legacy.name ? `no legacy StatefulSet ${legacy.name}` : `no legacy StatefulSet configured (${Env.legacyStatefulSet})`;
  const tracesPart = legacy.traces ? '; no other trace of a legacy database (StatefulSet, PVC or password Secret by name or labels)' : '';
  return { kind: 'not-needed', reason: `fresh install: ${legacyPart} and no source database (${source.reason})${tracesPart}`, targetReady: false };
}

/** Migrate from the adopted database when it answers; a refusal or a retriable wait otherwise. */
function decideAdopted(adopted: AdoptedLegacy, source: SourceProbe): PrepareDecision {
  if (source.status === 'error') throw source.error;
  if (source.status === 'absent') {
    throw new RunnerError(`the legacy database adopted as StatefulSet ${adopted.statefulSet} is not reachable: ${source.reason}`, {
      exitCode: ExitCode.unavailable,
      hint: `start it (kubectl get statefulset ${adopted.statefulSet}); found: ${adopted.evidence}; the Job retries`,
    });
  }
  const { preflight } = source;
  return {
    kind: 'migrate',
    reason: `adopted the legacy database: ${adopted.evidence}; reachable (PostgreSQL ${preflight.server.version}, ${preflight.databaseBytes} bytes)`,
    preflight,
    adopted,
  };
}
