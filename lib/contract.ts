/**
 * The contract between the constructs (`lib/`) and the migration runner (`runner/`).
 *
 * The constructs write these environment variables, commands, labels and exit codes into the
 * hook Jobs; the runner reads exactly these. Neither side imports anything else from the other,
 * so a change here is the only way the two can drift, and the tests check both sides against it.
 */

/** Subcommands of the runner CLI (`node runner.mjs <command>`). */
export const RunnerCommand = {
  /** Hook, pre phase, first Job: decide, ensure Secrets, create state + backup PVC, quiesce. */
  prepare: 'prepare',
  /** Hook, pre phase, second Job (mounts the backup PVC): dump, manifest, verify, protect. */
  backupPhase: 'backup-phase',
  /** Hook, restore phase (Helm post-*, Argo Sync hook): wait, restore, verify, hygiene, unquiesce. */
  restorePhase: 'restore-phase',
  /** Argo CD SyncFail hook: record the failure in the state ConfigMap and emit an Event. */
  recordFailure: 'record-failure',
  /** Keycloak init container: exit 0 once the target database carries the ready marker. */
  gate: 'gate',
  /** Human-readable table of the state ConfigMap. */
  status: 'status',
  /** What the next run would do, changing nothing. */
  plan: 'plan',
  /** Stand-alone: checksum SOURCE_* before the downtime into --dir, for a later backup to reuse. */
  checksumSource: 'checksum-source',
  /** Stand-alone: dump SOURCE_* into --dir with a manifest. */
  backup: 'backup',
  /** Stand-alone: restore --dir into TARGET_* and verify against the manifest. */
  restore: 'restore',
  /** Stand-alone: backup then restore in one process (the restore trusts the digests the backup just took). */
  copy: 'copy',
  /** Stand-alone: verify --dir (digests, pg_restore --list) and, with TARGET_*, the target's data. */
  verify: 'verify',
} as const;
export type RunnerCommandName = (typeof RunnerCommand)[keyof typeof RunnerCommand];

/**
 * Exit codes. The Jobs' podFailurePolicy fails the Job at once on the non-retriable ones
 * (retrying cannot help: a wrong password stays wrong); retriable ones use the Job's backoffLimit.
 * Values follow sysexits.h so that shells and operators recognise them.
 */
export const ExitCode = {
  ok: 0,
  /** Unexpected error (a bug, or something not yet classified): retried. */
  unexpected: 1,
  /** Wrong command line or configuration (names the variable and the fix). */
  usage: 64,
  /** Data problem: verification mismatch, corrupt backup, source newer than the dump tool. */
  dataError: 65,
  /** A dependency is unavailable for now: host unreachable, primary not yet writable. */
  unavailable: 69,
  /** Temporary failure: timeout, lock held by another runner, API conflict. */
  tempFail: 75,
  /** Permission: RBAC forbidden, database authentication failed. */
  noPermission: 77,
  /** Environment cannot hold the work: backup volume too small, missing tool. */
  config: 78,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** Exit codes that retrying the same pod cannot fix: podFailurePolicy FailJob on these. */
export const NON_RETRIABLE_EXIT_CODES: readonly number[] = [
  ExitCode.usage,
  ExitCode.dataError,
  ExitCode.noPermission,
  ExitCode.config,
];

/**
 * Environment variables the runner reads. Connection variables follow libpq's names with a
 * SOURCE_ or TARGET_ prefix so the stand-alone commands work against any two servers.
 */
export const Env = {
  sourceHost: 'SOURCE_PGHOST',
  sourcePort: 'SOURCE_PGPORT',
  sourceUser: 'SOURCE_PGUSER',
  sourcePassword: 'SOURCE_PGPASSWORD',
  sourceDatabase: 'SOURCE_PGDATABASE',
  targetHost: 'TARGET_PGHOST',
  targetPort: 'TARGET_PGPORT',
  targetUser: 'TARGET_PGUSER',
  targetPassword: 'TARGET_PGPASSWORD',
  targetDatabase: 'TARGET_PGDATABASE',
  /** Role that owns every restored object (pg_restore --role). @default TARGET_PGUSER */
  targetOwner: 'TARGET_OWNER',
  /**
   * libpq sslmode of the source connections ({@link SslMode}). @default - unset: pg_dump/psql use
   * libpq's `prefer`; the runner's own connections try without TLS first and use TLS (unverified)
   * only if the server refuses an unencrypted connection (libpq's `allow`)
   */
  sourceSslMode: 'SOURCE_PGSSLMODE',
  /** libpq sslmode of the target connections ({@link SslMode}). @default - as {@link Env.sourceSslMode} */
  targetSslMode: 'TARGET_PGSSLMODE',
  /**
   * PEM file of the CA(s) that sign the source server's certificate (libpq sslrootcert); required
   * by sslmode verify-ca and verify-full. @default - none
   */
  sourceSslRootCert: 'SOURCE_PGSSLROOTCERT',
  /** As {@link Env.sourceSslRootCert}, for the target. @default - none */
  targetSslRootCert: 'TARGET_PGSSLROOTCERT',

  /** Namespace of everything the runner touches (downward API metadata.namespace). */
  namespace: 'MIGRATION_NAMESPACE',
  /** Identity of this runner for the lock (downward API metadata.name). */
  podName: 'MIGRATION_POD_NAME',
  /** Name of the state ConfigMap the runner creates and updates. */
  stateConfigMap: 'MIGRATION_STATE_CONFIGMAP',
  /** Name of the coordination.k8s.io Lease that keeps two runners from acting at once. */
  lockLease: 'MIGRATION_LOCK_LEASE',
  /** Seconds after which a lock whose holder stopped renewing may be taken over. @default 60 */
  lockTtlSeconds: 'MIGRATION_LOCK_TTL_SECONDS',

  /** Name of the backup PVC the runner creates if absent. */
  backupPvc: 'MIGRATION_BACKUP_PVC',
  /** Fixed size for the backup PVC (Kubernetes quantity). @default - from pg_database_size with headroom */
  backupPvcSize: 'MIGRATION_BACKUP_PVC_SIZE',
  /** Smallest size the runner will create (Kubernetes quantity). @default 1Gi */
  backupPvcMinSize: 'MIGRATION_BACKUP_PVC_MIN_SIZE',
  /** Storage class for the backup PVC. @default - the cluster default */
  backupStorageClass: 'MIGRATION_BACKUP_STORAGE_CLASS',
  /** Where the backup PVC is mounted in the backup and restore Jobs. */
  backupDir: 'MIGRATION_BACKUP_DIR',

  /** Workloads to quiesce, comma separated `statefulset/<name>` or `deployment/<name>`. */
  workloads: 'MIGRATION_WORKLOADS',
  /**
   * Whether restore-phase scales the workloads back to their recorded replicas: `true` | `false`.
   * `false` leaves that to the GitOps tool. Under Argo CD the restore is a Sync hook that runs
   * BEFORE the workloads' wave applies their new (gated, new-database) template, so scaling them up
   * from the hook starts pods of the OLD template, which write to the quiesced legacy database;
   * Argo CD's apply at the workloads' wave re-applies Git's `replicas` anyway. Under Helm the new
   * template is already applied before the post-upgrade hook (and Helm's 3-way merge re-applied the
   * chart's replicas), so scaling back there is harmless and covers workloads whose manifests carry
   * no `replicas` (HPA-managed, or not deployed by the chart). @default true
   */
  restoreReplicas: 'MIGRATION_RESTORE_REPLICAS',
  /**
   * Whether the restore leaves the dump's plain (non-unique) indexes out and builds them once the
   * target is verified and ready, while Keycloak boots: `true` | `false`. Only where the runner
   * itself brings Keycloak back (restore-phase with {@link Env.restoreReplicas} `true`, and the
   * low-level `restore` and `copy`); with `false` every index is built in the restore, as before
   * Keycloak may start (e.g. when a Keycloak upgrade in the same rollout runs migrations that drop
   * or rebuild such an index and must not find it missing). @default true
   */
  indexesAfterReady: 'MIGRATION_INDEXES_AFTER_READY',
  /**
   * Whether backup-phase, once it succeeded, goes on with restore-phase in the same process: `true`
   * | `false` (only backup-phase acts on it; `plan` shows it). Set by DatabaseMigration with Argo CD,
   * which then synthesizes no restore Job: the new database is applied, and healthy, a wave before
   * the backup's, so one Job can back up and restore, and the downtime loses Argo CD's hand-over to
   * another wave, a second Job's pod start and a second start of the runner. restore-phase keeps
   * its semantics (waits for the target, exit codes, resumes where a killed run stopped); the Job's
   * retry runs backup-phase (a check that keeps the workloads at 0 and the backup current) and then
   * resumes the restore. Not under Helm: the new database does not exist before the pre-upgrade
   * hooks. @default false
   */
  restoreInBackupJob: 'MIGRATION_RESTORE_IN_BACKUP_JOB',
  /**
   * The id of a Completed migration (`m-YYYYMMDD-HHMMSS-xxxxxx`) whose legacy database may have
   * changed since — a rollback ran the old release on it — and whose new database is to be kept
   * anyway. Without it, backup-phase refuses (65) to let such an upgrade put Keycloak back on the
   * new database, where the rollback's writes are missing. @default - unset: refuse
   */
  acceptLegacyChangesOf: 'MIGRATION_ACCEPT_LEGACY_CHANGES_OF',
  /**
   * The immutable fields of each quiesced StatefulSet's NEW manifest, JSON
   * `{"statefulset/keycloak": {"selector": {...}, "serviceName": "...", "volumeClaimTemplates": []}}`
   * ({@link WorkloadImmutableSpec}). When the live StatefulSet (another chart's, e.g. Bitnami's)
   * differs in any of them, no apply can update it (the API server refuses), so prepare deletes it
   * once its pods are gone and the tool creates the new one. @default - unset: nothing replaced
   */
  workloadSpecs: 'MIGRATION_WORKLOAD_SPECS',
  /**
   * How each configured workload is found when none of its name exists, JSON
   * `{"statefulset/keycloak": {"selector": "app.kubernetes.io/instance=keycloak,app.kubernetes.io/component=keycloak",
   * "secretCopies": [{"key": "admin-password", "to": "keycloak"}]}}` ({@link WorkloadDiscoverySpec}).
   * backup-phase quiesces the ONE workload of that kind matching the selector (two: exit 78), records it
   * in the state (`adoptedWorkloads`), and copies the Secret its pod spec reads each key from to
   * `to` (unless `to` exists): the old release's Secrets go with it. @default - unset: by name only
   */
  workloadDiscovery: 'MIGRATION_WORKLOAD_DISCOVERY',
  /**
   * Secrets of the release being taken over that must outlive the upgrade, comma separated (the
   * legacy database's passwords, the admin password of the realm being migrated). prepare
   * annotates the live ones with {@link KEEP_ANNOTATIONS}, which Helm and Argo CD read on the live
   * object before deleting what the new chart no longer has. Absent ones are skipped.
   * @default - unset: none
   */
  keepSecrets: 'MIGRATION_KEEP_SECRETS',
  /** Legacy StatefulSet name (protected, optionally deleted). Empty: none known. */
  legacyStatefulSet: 'MIGRATION_LEGACY_STATEFULSET',
  /** Legacy PVC names, comma separated (their PVs are set to Retain). */
  legacyPvcs: 'MIGRATION_LEGACY_PVCS',
  /**
   * Label selector of the legacy database's StatefulSets and PVCs whatever their names (Bitnami
   * keeps `app.kubernetes.io/name=postgresql,app.kubernetes.io/instance=<release>` through every
   * name override and architecture). prepare decides "fresh install" only when nothing matches it.
   * @default - unset: only the configured names are looked at
   */
  legacySelector: 'MIGRATION_LEGACY_SELECTOR',
  /**
   * Where Services of the namespace are reached when the runner does not run in the cluster
   * (`kubectl port-forward`): `<service>[:<port>]=<host>:<port>`, comma separated. Used for the
   * legacy database the runner adopts from its labels (its Service is found at run time).
   * The Jobs never set it. @default - unset: cluster DNS, the Service's name
   */
  serviceAddresses: 'MIGRATION_SERVICE_ADDRESSES',
  /** When the runner deletes the legacy StatefulSet and PVCs: never | after-restore | after-backup. */
  deleteLegacy: 'MIGRATION_DELETE_LEGACY',
  /** "true" when the PV ClusterRole exists and PVs should be set to Retain. */
  protectVolumes: 'MIGRATION_PROTECT_VOLUMES',
  /**
   * Secrets to create with random passwords when absent, JSON: `[{"name": "...", "keys": ["..."]}]`.
   * Created at run time (never as hooks) so that GitOps repositories hold no passwords.
   */
  ensureSecrets: 'MIGRATION_ENSURE_SECRETS',

  /** Parallel jobs for pg_dump and pg_restore. @default 2 */
  parallelJobs: 'MIGRATION_PARALLEL_JOBS',
  /** pg_dump --compress level (0-9). @default 0: dumping to a volume is faster uncompressed */
  dumpCompression: 'MIGRATION_DUMP_COMPRESSION',
  /** Seconds to wait for quiesced pods to disappear. @default 300 */
  quiesceTimeoutSeconds: 'MIGRATION_QUIESCE_TIMEOUT_SECONDS',
  /** Seconds to wait for the target primary to accept writes. @default 600 */
  targetWaitSeconds: 'MIGRATION_TARGET_WAIT_SECONDS',
  /** Seconds the gate waits for the ready marker before exiting to be restarted. @default 600 */
  gateTimeoutSeconds: 'MIGRATION_GATE_TIMEOUT_SECONDS',
  /** Log format: json | text. @default - text on a TTY, json otherwise */
  logFormat: 'MIGRATION_LOG_FORMAT',
  /** Lowest log level written: debug | info | warn | error (debug shows pg tool output and stacks). @default info */
  logLevel: 'MIGRATION_LOG_LEVEL',
  /**
   * Directory holding pg_dump, pg_restore and psql. The runner image sets it to its client's bin
   * directory. @default - the newest /usr/lib/postgresql/NN/bin, else PATH
   */
  pgBinDir: 'PG_BINDIR',
} as const;
export type EnvName = (typeof Env)[keyof typeof Env];

/** The shape of a migration id (the runner's `newMigrationId`), e.g. `m-20261125-031500-a1b2c3`. */
export const MIGRATION_ID_PATTERN = /^m-\d{8}-\d{6}-[0-9a-f]{6}$/;

/**
 * Values of {@link Env.sourceSslMode} / {@link Env.targetSslMode}: libpq's sslmode. The runner
 * passes the value to pg_dump, pg_restore and psql as PGSSLMODE, and makes its own (node-postgres)
 * connections behave the same way: `disable` never uses TLS; `allow` tries without TLS first;
 * `prefer` tries TLS first; `require` insists on TLS without checking the certificate (checking
 * its chain, as libpq does, when a root certificate is configured); `verify-ca` checks the chain
 * against the configured root certificate; `verify-full` also checks the host name.
 */
export const SslMode = {
  disable: 'disable',
  allow: 'allow',
  prefer: 'prefer',
  require: 'require',
  verifyCa: 'verify-ca',
  verifyFull: 'verify-full',
} as const;
export type SslModeValue = (typeof SslMode)[keyof typeof SslMode];

/** Values of {@link Env.deleteLegacy}. */
export const DeleteLegacy = {
  never: 'never',
  afterRestore: 'after-restore',
  afterBackup: 'after-backup',
} as const;
export type DeleteLegacyValue = (typeof DeleteLegacy)[keyof typeof DeleteLegacy];

/** Phases recorded in the state ConfigMap, in order of a successful migration. */
export const Phase = {
  pending: 'Pending',
  quiesced: 'Quiesced',
  backedUp: 'BackedUp',
  backupVerified: 'BackupVerified',
  legacyProtected: 'LegacyProtected',
  restoring: 'Restoring',
  restored: 'Restored',
  verified: 'Verified',
  completed: 'Completed',
  notNeeded: 'NotNeeded',
  failed: 'Failed',
} as const;
export type PhaseName = (typeof Phase)[keyof typeof Phase];

/** Keys of the state ConfigMap's data. */
export const StateKey = {
  /** The current phase, for `kubectl get cm -o jsonpath`. */
  phase: 'phase',
  /** The whole state as JSON (see runner/src/state.ts). */
  state: 'state.json',
  /**
   * The source's checksum pass prepare took while the workloads still ran (runner/src/pg/early-pass.ts), for
   * the backup Job to reuse; removed once the backup is taken.
   */
  earlyPass: 'early-pass.json',
} as const;

/** Labels the runner puts on what it creates at run time (state ConfigMap, backup PVC, Secrets). */
export const Labels = {
  managedBy: 'app.kubernetes.io/managed-by',
  component: 'app.kubernetes.io/component',
  partOf: 'app.kubernetes.io/part-of',
} as const;
export const MANAGED_BY_RUNNER = 'keycloak-pg-migration-runner';

/** Where the backup PVC is mounted in the Jobs. */
export const BACKUP_MOUNT_PATH = '/backup';

/**
 * The marker the restore writes into the target database once the data is verified (or when
 * nothing is to migrate). Keycloak's gate reads it with Keycloak's own database credentials, so
 * Keycloak's pods need no Kubernetes API access at all.
 */
export const ReadyMarker = {
  schema: 'kc_migration',
  table: 'ready_marker',
  /** Status written once the data is in place. */
  ready: 'ready',
  /** Status written when the restore began and the database is not yet usable. */
  restoring: 'restoring',
} as const;

/**
 * One entry of {@link Env.ensureSecrets}: a Secret that a construct references but does not
 * synthesize (GitOps repositories must hold no passwords). The runner creates it when absent,
 * with a random value for each key, and never changes an existing one.
 */
export interface RequiredSecret {
  /** Name of the Secret (same namespace as the workload that reads it). */
  readonly name: string;
  /** Keys that must exist in it, each a password. */
  readonly keys: readonly string[];
}

/** The runner commands that run as DatabaseMigration hook Jobs. */
export type MigrationJobCommand =
  | typeof RunnerCommand.prepare
  | typeof RunnerCommand.backupPhase
  | typeof RunnerCommand.restorePhase
  | typeof RunnerCommand.recordFailure;

// What every migration Job receives: the whole migration configuration, so that each command
// (and `plan`/`status` run by hand in such a pod) sees the same settings.
const MIGRATION_JOB_COMMON_ENV: readonly EnvName[] = [
  Env.sourceHost,
  Env.sourcePort,
  Env.sourceUser,
  Env.sourcePassword,
  Env.sourceDatabase,
  Env.targetHost,
  Env.targetPort,
  Env.targetUser,
  Env.targetPassword,
  Env.targetDatabase,
  Env.targetOwner,
  Env.namespace,
  Env.podName,
  Env.stateConfigMap,
  Env.lockLease,
  Env.lockTtlSeconds,
  Env.backupPvc,
  Env.backupPvcMinSize,
  Env.workloads,
  Env.restoreReplicas,
  Env.legacyStatefulSet,
  Env.legacyPvcs,
  Env.deleteLegacy,
  Env.protectVolumes,
  Env.ensureSecrets,
  Env.parallelJobs,
  Env.dumpCompression,
  Env.quiesceTimeoutSeconds,
  Env.targetWaitSeconds,
  Env.logFormat,
];

// Set only when the user configured them, so that the runner's documented default applies otherwise.
const MIGRATION_JOB_OPTIONAL_ENV: readonly EnvName[] = [
  Env.backupPvcSize,
  Env.backupStorageClass,
  Env.sourceSslMode,
  Env.targetSslMode,
  Env.sourceSslRootCert,
  Env.targetSslRootCert,
  Env.acceptLegacyChangesOf,
  Env.workloadSpecs,
  Env.workloadDiscovery,
  Env.keepSecrets,
  Env.legacySelector,
  Env.restoreInBackupJob,
  Env.indexesAfterReady,
];

/** One workload's entry of {@link Env.workloadDiscovery}. */
export interface WorkloadDiscoverySpec {
  /** Label selector (comma-separated `key=value`). */
  readonly selector: string;
  /** The Secret the found workload's pod spec reads `key` from is copied to `to`. */
  readonly secretCopies?: readonly { readonly key: string; readonly to: string }[];
}

/**
 * The fields of a StatefulSet that no update may change (the API server answers 422 "updates to
 * statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy',
 * 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"), as the new
 * manifest will carry them.
 */
export interface WorkloadImmutableSpec {
  /** `spec.selector.matchLabels`. */
  readonly selector: Readonly<Record<string, string>>;
  /** `spec.serviceName`; undefined when the manifest has none. */
  readonly serviceName?: string;
  /** Names of `spec.volumeClaimTemplates`, in order. */
  readonly volumeClaimTemplates: readonly string[];
}

/**
 * What keeps a live object through an upgrade that drops it from the chart: Helm reads
 * `helm.sh/resource-policy: keep` from the LIVE object before deleting (pkg/kube/client.go,
 * pkg/action/resource_policy.go); Argo CD skips pruning an object whose live annotation
 * `argocd.argoproj.io/sync-options` holds `Prune=false` (gitops-engine pkg/sync/sync_context.go).
 */
export const KEEP_ANNOTATIONS = {
  helmResourcePolicy: { key: 'helm.sh/resource-policy', value: 'keep' },
  argoSyncOptions: { key: 'argocd.argoproj.io/sync-options', value: 'Prune=false' },
} as const;

/**
 * The options of an `argocd.argoproj.io/sync-options` annotation: comma-separated, blanks around
 * and between them dropped, as gitops-engine reads it (pkg/sync/resource/annotations.go
 * GetAnnotationCSVs, which also drops repeats: only membership is asked here). The synthesis adds
 * `PruneLast=true` to it, the runner `Prune=false`, each keeping what the other or the user put.
 */
export function parseArgoSyncOptions(annotation: string | undefined): string[] {
  return (annotation ?? '')
    .split(',')
    .map((option) => option.trim())
    .filter((option) => option.length > 0);
}

/**
 * The environment DatabaseMigration gives each hook Job. `always` is set in every Job of that
 * command (possibly to an empty string where {@link Env} says "Empty: none known"; the
 * `*_PGPASSWORD` variables come from secretKeyRefs that may be optional, so the runner must treat
 * an unset password as "Secret absent"); `whenConfigured` only when the user set a value, so the
 * runner's documented default applies otherwise. Nothing else is set.
 */
export const MIGRATION_JOB_ENV: Readonly<
  Record<MigrationJobCommand, { readonly always: readonly EnvName[]; readonly whenConfigured: readonly EnvName[] }>
> = {
  [RunnerCommand.prepare]: {
    always: MIGRATION_JOB_COMMON_ENV,
    whenConfigured: MIGRATION_JOB_OPTIONAL_ENV,
  },
  [RunnerCommand.backupPhase]: {
    always: [...MIGRATION_JOB_COMMON_ENV, Env.backupDir],
    whenConfigured: MIGRATION_JOB_OPTIONAL_ENV,
  },
  [RunnerCommand.restorePhase]: {
    always: [...MIGRATION_JOB_COMMON_ENV, Env.backupDir],
    whenConfigured: MIGRATION_JOB_OPTIONAL_ENV,
  },
  [RunnerCommand.recordFailure]: {
    always: MIGRATION_JOB_COMMON_ENV,
    whenConfigured: MIGRATION_JOB_OPTIONAL_ENV,
  },
};
