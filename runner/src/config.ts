/**
 * The hook commands' configuration, read once from the environment the DatabaseMigration Jobs set
 * (lib/contract.ts `MIGRATION_JOB_ENV`). Every malformed value fails here, before anything changes,
 * with a usage error naming the variable, the value received and the fix.
 *
 * Two things are deliberately lenient:
 * - an unset `*_PGPASSWORD` is not an error: the Jobs reference the Secrets as optional, so an unset
 *   password means "that Secret does not exist (yet)", which is how `prepare` recognises a fresh
 *   install;
 * - optional settings fall back to the defaults documented in the contract, so `plan` and `status`
 *   run by hand need only the names of the state ConfigMap and the Lease.
 */
import { BACKUP_MOUNT_PATH, DeleteLegacy, Env, MIGRATION_ID_PATTERN, type DeleteLegacyValue, type WorkloadImmutableSpec } from '../../lib/contract.js';
import { isObjectName, optionalName, requiredName, text } from './env-names.js';
import { usageError } from './errors.js';
import { lockOptionsFromEnv, type LockOptions } from './kube/lock.js';
import { parseEnsureSecrets, type SecretSpec } from './kube/secrets.js';
import { quantityToBytes } from './kube/volumes.js';
import { LABEL_REQUIREMENT, parseWorkloadDiscovery, type WorkloadDiscoverySpec } from './kube/workload-discovery.js';
import { parseWorkloads, type WorkloadRef } from './kube/workloads.js';
import { parseWorkloadSpecs } from './kube/takeover.js';
import { parseServiceAddresses, type ServiceAddressMap } from './kube/service-address.js';
import { hasEndpointInEnv, settingsFromEnv, type ConnectionSettings } from './pg/connection.js';

/** Smallest backup PVC the runner creates when MIGRATION_BACKUP_PVC_MIN_SIZE is unset. */
export const DEFAULT_BACKUP_PVC_MIN_SIZE = '1Gi';
export const DEFAULT_QUIESCE_TIMEOUT_SECONDS = 300;
export const DEFAULT_TARGET_WAIT_SECONDS = 600;
export const DEFAULT_PARALLEL_JOBS = 2;
export const DEFAULT_DUMP_COMPRESSION = 0;

/** One database endpoint as the hook sees it. */
export interface EndpointConfig {
  /** Undefined when `<PREFIX>_PGHOST` is unset (nothing configured on that side). */
  readonly settings?: ConnectionSettings;
  /** False when `<PREFIX>_PGPASSWORD` is unset: the Secret it comes from is absent. */
  readonly passwordSet: boolean;
}

export interface HookConfig {
  readonly stateConfigMap: string;
  readonly lock: LockOptions;
  readonly podName: string;
  readonly backupPvc: string;
  /** Fixed size of the backup PVC (MIGRATION_BACKUP_PVC_SIZE); undefined: sized from the source. */
  readonly backupPvcSize?: string;
  readonly backupPvcMinSize: string;
  readonly backupPvcMinBytes: number;
  readonly backupStorageClass?: string;
  /** Where the backup PVC is mounted; only the backup and restore Jobs have it. */
  readonly backupDir?: string;
  readonly workloads: readonly WorkloadRef[];
  /** Whether restore-phase scales the workloads back (MIGRATION_RESTORE_REPLICAS; see the contract). */
  readonly restoreReplicas: boolean;
  /** Whether the plain indexes wait until the target is ready (MIGRATION_INDEXES_AFTER_READY; see the contract). */
  readonly indexesAfterReady: boolean;
  /** Whether backup-phase is followed by restore-phase in the same process (MIGRATION_RESTORE_IN_BACKUP_JOB; see the contract). */
  readonly restoreInBackupJob: boolean;
  /** A Completed migration whose legacy database's later changes are accepted (MIGRATION_ACCEPT_LEGACY_CHANGES_OF). */
  readonly acceptLegacyChangesOf?: string;
  /** New manifests' immutable fields per `statefulset/<name>` (MIGRATION_WORKLOAD_SPECS); empty: none. */
  readonly workloadSpecs: Readonly<Record<string, WorkloadImmutableSpec>>;
  /** How each configured workload is found when its name does not exist (MIGRATION_WORKLOAD_DISCOVERY); empty: by name only. */
  readonly workloadDiscovery: Readonly<Record<string, WorkloadDiscoverySpec>>;
  /** Secrets of the taken-over release to keep through the upgrade (MIGRATION_KEEP_SECRETS). */
  readonly keepSecrets: readonly string[];
  /** Undefined: no legacy StatefulSet is known. */
  readonly legacyStatefulSet?: string;
  /** Label selector of the legacy database's objects (MIGRATION_LEGACY_SELECTOR); undefined: names only. */
  readonly legacySelector?: string;
  readonly legacyPvcs: readonly string[];
  readonly deleteLegacy: DeleteLegacyValue;
  readonly protectVolumes: boolean;
  readonly ensureSecrets: readonly SecretSpec[];
  readonly parallelJobs: number;
  readonly dumpCompression: number;
  readonly quiesceTimeoutSeconds: number;
  readonly targetWaitSeconds: number;
  readonly source: EndpointConfig;
  readonly target: EndpointConfig;
  /** Role owning every restored object (TARGET_OWNER, else TARGET_PGUSER). */
  readonly targetOwner?: string;
  /** Services reached through other addresses (MIGRATION_SERVICE_ADDRESSES); empty: cluster DNS. */
  readonly serviceAddresses: ServiceAddressMap;
}



/** MIGRATION_LEGACY_SELECTOR: `key=value` requirements, comma separated. */
function legacySelectorFromEnv(env: NodeJS.ProcessEnv): { legacySelector?: string } {
  const value = text(env, Env.legacySelector);
  if (value === undefined) return {};
  const requirements = value.split(',').map((part) => part.trim());
  if (requirements.some((requirement) => !LABEL_REQUIREMENT.test(requirement))) {
    throw usageError(
      `${Env.legacySelector} must be comma-separated key=value label requirements, got "${value}"`,
      `set it like app.kubernetes.io/name=postgresql,app.kubernetes.io/instance=keycloak, or unset it`,
    );
  }
  return { legacySelector: requirements.join(',') };
}

function nameList(env: NodeJS.ProcessEnv, name: string): string[] {
  const value = text(env, name);
  if (!value) return [];
  const names = value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
  for (const entry of names) {
    if (!isObjectName(entry)) {
      throw usageError(`${name} has an invalid name "${entry}" (in "${value}")`, `set ${name} to comma-separated object names such as data-keycloak-postgresql-0`);
    }
  }
  return [...new Set(names)];
}

/** A whole number from `name` within [min, max], or `fallback` when unset. */
export function integerFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = text(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw usageError(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`, `fix ${name}, or unset it for the default of ${fallback}`);
  }
  return value;
}

export function booleanFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = text(env, name);
  if (raw === undefined) return fallback;
  if (/^(true|1|yes)$/i.test(raw)) return true;
  if (/^(false|0|no)$/i.test(raw)) return false;
  throw usageError(`${name} must be true or false, got "${raw}"`, `fix ${name}`);
}

function deleteLegacyFromEnv(env: NodeJS.ProcessEnv): DeleteLegacyValue {
  const raw = text(env, Env.deleteLegacy);
  if (raw === undefined) return DeleteLegacy.never;
  const allowed = Object.values(DeleteLegacy) as string[];
  if (!allowed.includes(raw)) {
    throw usageError(`${Env.deleteLegacy} must be one of ${allowed.join(', ')}, got "${raw}"`, `fix ${Env.deleteLegacy}, or unset it to never delete the legacy database`);
  }
  return raw as DeleteLegacyValue;
}

function quantity(env: NodeJS.ProcessEnv, name: string): { value: string; bytes: number } | undefined {
  const value = text(env, name);
  if (value === undefined) return undefined;
  const bytes = quantityToBytes(name, value);
  if (!(bytes > 0)) throw usageError(`${name} must be a positive size such as 8Gi, got "${value}"`, `fix ${name}`);
  return { value, bytes };
}

function endpoint(env: NodeJS.ProcessEnv, prefix: 'SOURCE' | 'TARGET'): EndpointConfig {
  const passwordSet = (env[`${prefix}_PGPASSWORD`] ?? '') !== '';
  if (!hasEndpointInEnv(prefix, env)) return { passwordSet };
  return { settings: settingsFromEnv(prefix, env), passwordSet };
}

/** Reads and checks the configuration of the hook commands (and of `plan` / `status`). */
export function hookConfigFromEnv(env: NodeJS.ProcessEnv = process.env): HookConfig {
  const stateConfigMap = requiredName(env, Env.stateConfigMap, 'the state ConfigMap');
  const lock = lockOptionsFromEnv(env);
  const backupPvc = requiredName(env, Env.backupPvc, 'the backup PVC');
  const minSize = quantity(env, Env.backupPvcMinSize) ?? { value: DEFAULT_BACKUP_PVC_MIN_SIZE, bytes: quantityToBytes(Env.backupPvcMinSize, DEFAULT_BACKUP_PVC_MIN_SIZE) };
  const fixedSize = quantity(env, Env.backupPvcSize);
  if (fixedSize && fixedSize.bytes < minSize.bytes) {
    throw usageError(
      `${Env.backupPvcSize} (${fixedSize.value}) is smaller than ${Env.backupPvcMinSize} (${minSize.value})`,
      `raise ${Env.backupPvcSize} to at least ${minSize.value}, or unset it to let the runner size the volume`,
    );
  }
  const backupDir = text(env, Env.backupDir);
  if (backupDir !== undefined && !backupDir.startsWith('/')) {
    throw usageError(`${Env.backupDir} must be an absolute path, got "${backupDir}"`, `set it to where the backup PVC is mounted (${BACKUP_MOUNT_PATH})`);
  }
  const target = endpoint(env, 'TARGET');
  const storageClass = optionalName(env, Env.backupStorageClass);
  const legacyStatefulSet = optionalName(env, Env.legacyStatefulSet);
  const owner = text(env, Env.targetOwner) ?? target.settings?.user;
  const acceptLegacyChangesOf = text(env, Env.acceptLegacyChangesOf);
  if (acceptLegacyChangesOf !== undefined && !MIGRATION_ID_PATTERN.test(acceptLegacyChangesOf)) {
    throw usageError(
      `${Env.acceptLegacyChangesOf} must be a migration id like m-20261125-031500-a1b2c3, got "${acceptLegacyChangesOf}"`,
      `copy the id from the error that asked for it (or from kubectl describe configmap ${stateConfigMap}), or unset ${Env.acceptLegacyChangesOf}`,
    );
  }
  return {
    stateConfigMap,
    lock,
    podName: lock.holder,
    backupPvc,
    ...(fixedSize ? { backupPvcSize: fixedSize.value } : {}),
    backupPvcMinSize: minSize.value,
    backupPvcMinBytes: minSize.bytes,
    ...(storageClass ? { backupStorageClass: storageClass } : {}),
    ...(backupDir ? { backupDir } : {}),
    workloads: parseWorkloads(env[Env.workloads]),
    workloadSpecs: parseWorkloadSpecs(env[Env.workloadSpecs], Env.workloadSpecs),
    workloadDiscovery: parseWorkloadDiscovery(env[Env.workloadDiscovery]),
    keepSecrets: nameList(env, Env.keepSecrets),
    restoreReplicas: booleanFromEnv(env, Env.restoreReplicas, true),
    indexesAfterReady: booleanFromEnv(env, Env.indexesAfterReady, true),
    restoreInBackupJob: booleanFromEnv(env, Env.restoreInBackupJob, false),
    ...(acceptLegacyChangesOf ? { acceptLegacyChangesOf } : {}),
    ...(legacyStatefulSet ? { legacyStatefulSet } : {}),
    legacyPvcs: nameList(env, Env.legacyPvcs),
    ...legacySelectorFromEnv(env),
    deleteLegacy: deleteLegacyFromEnv(env),
    protectVolumes: booleanFromEnv(env, Env.protectVolumes, false),
    ensureSecrets: parseEnsureSecrets(env[Env.ensureSecrets]),
    parallelJobs: integerFromEnv(env, Env.parallelJobs, DEFAULT_PARALLEL_JOBS, 1, 64),
    dumpCompression: integerFromEnv(env, Env.dumpCompression, DEFAULT_DUMP_COMPRESSION, 0, 9),
    quiesceTimeoutSeconds: integerFromEnv(env, Env.quiesceTimeoutSeconds, DEFAULT_QUIESCE_TIMEOUT_SECONDS, 1, 86_400),
    targetWaitSeconds: integerFromEnv(env, Env.targetWaitSeconds, DEFAULT_TARGET_WAIT_SECONDS, 1, 86_400),
    source: endpoint(env, 'SOURCE'),
    target,
    ...(owner ? { targetOwner: owner } : {}),
    serviceAddresses: parseServiceAddresses(env[Env.serviceAddresses]),
  };
}

/** The backup directory, for the commands that mount the backup PVC. */
export function requireBackupDir(config: HookConfig, command: string): string {
  if (!config.backupDir) {
    throw usageError(`${Env.backupDir} is not set, but ${command} needs the backup volume`, `mount the backup PVC and set ${Env.backupDir} to its path (${BACKUP_MOUNT_PATH})`);
  }
  return config.backupDir;
}

/** The settings of one side, or a usage error naming the variable when it is not configured. */
export function requireEndpoint(config: HookConfig, side: 'source' | 'target'): ConnectionSettings {
  const settings = config[side].settings;
  if (!settings) {
    const variable = side === 'source' ? Env.sourceHost : Env.targetHost;
    throw usageError(`${variable} is not set`, `set ${variable} to the ${side === 'source' ? 'legacy' : 'new'} database's host name`);
  }
  return settings;
}
