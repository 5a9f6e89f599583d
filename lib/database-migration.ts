/**
 * DatabaseMigration: the hook Jobs and RBAC that move one PostgreSQL database into another during
 * a Helm upgrade or an Argo CD sync, by running the migration runner (`runner/`).
 *
 * Generic over the source, the target and the workloads to quiesce, so it serves any application
 * that keeps its state in one PostgreSQL database, not only Keycloak.
 *
 * The choreography (see `shared/reference/upgrade-choreography-sketch.md`):
 *
 * | Job             | Helm                         | Argo CD                 | backup PVC | runner command |
 * |-----------------|------------------------------|-------------------------|------------|----------------|
 * | RBAC            | pre+post install/upgrade, -10| PreSync, wave -10       | –          | –              |
 * | prepare         | pre-install,pre-upgrade, 0   | PreSync, wave 0         | no         | prepare        |
 * | backup          | pre-install,pre-upgrade, 10  | Sync, `backupSyncWave`  | yes        | backup-phase   |
 * | restore         | post-install,post-upgrade, 0 | Sync, `restoreSyncWave` (1) | yes    | restore-phase  |
 * | record-failure  | –                            | SyncFail                | no         | record-failure |
 *
 * (1) Only with `restoreInBackupJob: false`; by default under Argo CD the backup Job runs
 * restore-phase after backup-phase.
 *
 * Under Argo CD the backup is a Sync hook at a wave after the target database's: the new database
 * starts while the workloads still run, so its start-up (tens of seconds for a CloudNativePG or
 * repmgr cluster) is not part of the downtime that begins when backup-phase stops them. Its wave
 * is below 0, where Argo CD prunes what the previous revision had and this one drops (objects
 * without a wave, such as another chart's release being taken over): the legacy database is still
 * there when the backup reads it. Helm applies a release's new objects only after its pre-upgrade
 * hooks, so there the backup stays a pre-upgrade hook and the new database starts inside the
 * downtime. Under Argo CD the backup Job also restores (`restoreInBackupJob`, the default): there
 * is no restore Job then, and no wave between the backup's and the workloads'.
 *
 * What is deliberately NOT synthesized: the backup PVC and the state ConfigMap (and the Lease and
 * the ensured Secrets). Hooks are deleted and recreated by their delete policy and `keep` does not
 * protect them, and Argo CD would recreate a hook PVC on every sync; so the runner creates these at
 * run time, and `prepare` makes sure the backup PVC exists before any Job that mounts it starts.
 */
import { ApiObject, Chart, JsonPatch } from 'cdk8s';
import { k8s } from 'cdk8s-plus-27';
import { Construct, type IConstruct } from 'constructs';
import { caFile, caVolume, validateDatabaseTls } from './database-tls.js';
import { customizePod, type PodCustomization } from './pod-customization.js';
import {
  BACKUP_MOUNT_PATH,
  DeleteLegacy,
  type DeleteLegacyValue,
  Env,
  type EnvName,
  NON_RETRIABLE_EXIT_CODES,
  RunnerCommand,
  type RunnerCommandName,
  type RequiredSecret,
  SslMode,
  type SslModeValue,
  type WorkloadDiscoverySpec,
  type WorkloadImmutableSpec,
} from './contract.js';
import type { DatabaseConnection, DatabaseCredentials } from './database-connection.js';
import { type GitOpsFlavor, assertGitOpsFlavor, markAsHook, setSyncWave } from './gitops.js';
import {
  type ContainerResources,
  type PodSecurityOptions,
  resolvePodSecurity,
  resourceRequirements,
  restrictedContainerSecurityContext,
  restrictedPodSecurityContext,
} from './pod-security.js';
import {
  type KubeObjectName,
  parseQuantity,
  validateBoolean,
  validateDnsLabel,
  validateDnsSubdomain,
  validateImage,
  validateIntegerRange,
  validateLabelValue,
  validatePort,
  validateSecretKey,
  validateMigrationId,
  validateSize,
  validateStatefulSetName,
} from './validation.js';

/**
 * A workload the runner scales to zero before the backup and back afterwards. `Keycloak.workload`
 * is one.
 */
export interface QuiescedWorkload {
  /** Kubernetes kind. */
  readonly kind: 'StatefulSet' | 'Deployment';
  /** metadata.name of the workload. */
  readonly name: string;
  /**
   * The immutable fields of this StatefulSet's new manifest. When the live one (made by another
   * chart, e.g. Bitnami's) differs, prepare deletes it once its pods are gone so that the upgrade
   * can create it (`MIGRATION_WORKLOAD_SPECS`); the Role then allows `delete` on it.
   *
   * @default - none: the live StatefulSet is never replaced
   */
  readonly immutableSpec?: WorkloadImmutableSpec;
  /**
   * Finds the workload by its labels when none of this name exists: another chart's release
   * under a name override (Bitnami's `fullnameOverride` / `nameOverride` rename the Keycloak
   * StatefulSet; `app.kubernetes.io/instance` and `component` stay). Exactly one workload of this
   * kind must match, else the backup Job stops (exit 78, before anything is scaled) naming the candidates
   * (`MIGRATION_WORKLOAD_DISCOVERY`).
   *
   * @default - none: found by name only
   */
  readonly discovery?: WorkloadDiscovery;
}

/** How a renamed workload is found, and what of it is kept when its release goes away. */
export interface WorkloadDiscovery {
  /** Labels every match carries (equality requirements). */
  readonly labels: Readonly<Record<string, string>>;
  /**
   * Secrets of the found workload to copy before the upgrade deletes them with the old release:
   * the Secret its pod spec reads `key` from (a `secretKeyRef`, or a mounted Secret holding the
   * key) is copied whole to `to`, unless `to` exists. E.g. Bitnami's admin Secret `<fullname>`
   * (`admin-password`): the migrated master realm still holds that admin.
   *
   * @default []
   */
  readonly secretCopies?: readonly { readonly key: string; readonly to: string }[];
}

/** The legacy database's Kubernetes objects (not its connection), protected and optionally deleted. */
export interface LegacyDatabaseObjects {
  /**
   * Name of the legacy StatefulSet.
   *
   * @default - none known: nothing is deleted and only `pvcNames` are protected
   */
  readonly statefulSetName?: string;
  /**
   * Names of the legacy PVCs whose PersistentVolumes are set to `Retain`.
   *
   * @default []
   */
  readonly pvcNames?: readonly string[];
  /**
   * Every object (kind and name) the legacy database owns, to detect a target that would reuse
   * one of these names.
   *
   * @default - the StatefulSet and the PVCs above
   */
  readonly objectNames?: readonly KubeObjectName[];
  /**
   * Labels of the legacy database's StatefulSets and PVCs, whatever their names
   * (`MIGRATION_LEGACY_SELECTOR`). prepare decides "nothing to migrate" only when nothing carries
   * them; the Role then allows `list` of statefulsets and persistentvolumeclaims (never Secrets).
   *
   * @default - none: only the names above are looked at
   */
  readonly labels?: Readonly<Record<string, string>>;
}

/** Sizing of the backup PVC that the runner creates at run time. */
export interface BackupVolumeOptions {
  /**
   * Name of the backup PVC.
   *
   * @default `<name>-backup`
   */
  readonly pvcName?: string;
  /**
   * Fixed size of the backup PVC.
   *
   * @default - chosen by the runner from `pg_database_size` with headroom, never below `minSize`
   */
  readonly size?: string;
  /**
   * Smallest size the runner will create; a fixed `size` below it is rejected at synth.
   *
   * @default '1Gi'
   */
  readonly minSize?: string;
  /**
   * Storage class of the backup PVC.
   *
   * @default - the cluster's default storage class
   */
  readonly storageClassName?: string;
}

/** Sync waves of the target database, the backup and restore Sync hooks and the workloads (Argo CD only). */
export interface MigrationSyncWaves {
  /**
   * Wave of the target database's ordinary resources; Argo CD waits until they are healthy.
   *
   * @default -40
   */
  readonly target?: number;
  /**
   * Wave of the backup Sync hook, which stops the workloads and backs the source up: strictly
   * after `target` (the new database has started before the downtime begins) and below 0. Argo CD
   * prunes what this revision drops at the start of that object's own wave, and objects without
   * one (the release being taken over) are at 0: the source must still exist when the backup runs.
   * A source synthesized with its own negative wave must carry `argocd.argoproj.io/sync-options:
   * PruneLast=true` (KeycloakPlatform's legacy PostgresStandalone does) or sit at a wave above this one.
   *
   * @default -30
   */
  readonly backup?: number;
  /**
   * Wave of the restore Sync hook, when there is one (`restoreInBackupJob: false`; by default under
   * Argo CD the backup Job restores and this wave is not used): strictly after `backup`, strictly
   * before `workloads`. Not with
   * them, even when they wait for the ready marker (a database gate): gitops-engine waits for every
   * running task of a wave before it looks at a failed one (pkg/sync/sync_context.go), and such a
   * workload never becomes healthy without the restore, so a failed restore would leave the sync
   * running with no end, its SyncFail hook never started.
   *
   * @default -20
   */
  readonly restore?: number;
  /**
   * Wave of the workloads that use the data (Keycloak). A PostSync restore would deadlock: PostSync
   * waits for healthy workloads, and the workloads wait for the data. Below 0, the objects pruned
   * at wave 0 (the release being taken over) go only once the workloads are healthy on the new
   * database, after the downtime.
   *
   * @default -10
   */
  readonly workloads?: number;
}

/** Props of {@link DatabaseMigration}. */
export interface DatabaseMigrationProps {
  /**
   * Prefix of every object name (ServiceAccount, Role, Jobs, state ConfigMap, Lease, backup PVC).
   * At most 48 characters, so that `<name>-record-failure` is still a valid Job name.
   */
  readonly name: string;
  /** Whether to annotate for Helm hooks or Argo CD hooks and waves. */
  readonly flavor: GitOpsFlavor;
  /** The migration runner image; a tag or digest is required. */
  readonly runnerImage: string;
  /** The database to migrate from (the legacy single PostgreSQL). */
  readonly source: DatabaseConnection;
  /** The database to migrate into (postgresql-ha or CloudNativePG). */
  readonly target: DatabaseConnection;
  /**
   * Workloads that use the source: scaled to zero before the backup, restored after the restore.
   */
  readonly workloads: readonly QuiescedWorkload[];
  /**
   * Whether the restore hook scales the workloads back to their recorded replicas
   * (`MIGRATION_RESTORE_REPLICAS`). With `false` they stay at 0 until the GitOps tool applies
   * their manifests' `replicas`.
   *
   * Under Argo CD the restore runs in a Sync hook (the backup Job's, see `restoreInBackupJob`, or
   * the restore Job at `syncWaves.restore`) BEFORE the workloads' wave applies their new template:
   * scaling up from the hook would start pods of the OLD template
   * (pointing at the legacy database, without the gate), which write to the quiesced legacy
   * database; Argo CD's apply at the workloads' wave re-applies Git's `replicas` anyway. Under
   * Helm the new template is applied before the post-upgrade hook, so scaling back is harmless and
   * also covers workloads whose manifests set no `replicas` (HPA-managed, or outside the chart).
   * Set `true` with Argo CD only for such workloads, accepting the old template's pods.
   *
   * @default - true with flavor `helm`, false with flavor `argocd`
   */
  readonly restoreReplicas?: boolean;
  /**
   * Whether the plain (non-unique) indexes are built after the ready marker, while Keycloak boots,
   * instead of inside the downtime (`MIGRATION_INDEXES_AFTER_READY`). On Keycloak's tables their
   * builds are about 40 % of pg_restore's time; keys, unique indexes and foreign keys (and indexes
   * on expressions or with a predicate) are restored and verified before the marker either way,
   * and a plain index over columns decides no write but for btree's ~2.7 kB entry limit. While one
   * builds, writes to its table wait (reads do not) for as long as it takes. Applies only where the
   * runner scales the workloads back itself (`restoreReplicas`): otherwise the GitOps tool starts
   * Keycloak after the Job, and every index is built in the restore. Set `false` when a Keycloak
   * upgrade in the same rollout runs Liquibase changes that drop or rebuild such an index: they
   * would fail on an index not yet built (Keycloak's pod restarts and retries them). `true` with
   * `restoreReplicas: false` is refused: it would do nothing.
   *
   * @default true
   */
  readonly indexesAfterReady?: boolean;
  /**
   * Whether the backup Job also restores, so that no restore Job is synthesized
   * (`MIGRATION_RESTORE_IN_BACKUP_JOB`; Argo CD only). Under Argo CD the new database is applied,
   * and healthy, at `syncWaves.target`, before the backup's wave, so one Job can back up and then
   * restore (`restore-phase` in the same process, with its checks, waits and exit codes; it takes
   * the dump files' digests from the backup just taken instead of reading every file again, unless
   * it waited for the target first): the downtime loses Argo CD's hand-over to the restore's wave,
   * the restore Job's pod start, a second start of the runner and a second read of the dump. The Job's retry after a failure or a kill in the restore runs
   * backup-phase again (which keeps the workloads at 0 and checks the backup is still current) and
   * resumes the restore. Its `activeDeadlineSeconds` covers the dump and the restore; should it
   * expire in the restore, the next sync reuses the backup and resumes the restore. `false` keeps
   * a restore Job at `syncWaves.restore`.
   * Not possible under Helm, which applies the new database only after the pre-upgrade hooks.
   *
   * @default - true with flavor `argocd`; with flavor `helm` it must be unset or false
   */
  readonly restoreInBackupJob?: boolean;
  /**
   * The id of a Completed migration (`m-YYYYMMDD-HHMMSS-xxxxxx`) whose legacy database changed
   * afterwards — a rollback ran the old release on it — when the new database is to be kept and
   * those legacy changes discarded (`MIGRATION_ACCEPT_LEGACY_CHANGES_OF`). Without it, the backup
   * Job refuses such an upgrade (exit 65) and names the id to put here.
   *
   * @default - unset: refuse
   */
  readonly acceptLegacyChangesOf?: string;
  /**
   * The legacy database's objects.
   *
   * @default - none: no volume is protected, nothing deleted
   */
  readonly legacy?: LegacyDatabaseObjects;
  /**
   * Kinds and names of every object the target synthesizes, checked against the legacy objects.
   *
   * @default []
   */
  readonly targetObjectNames?: readonly KubeObjectName[];
  /**
   * When the runner deletes the legacy StatefulSet and PVCs. Only `after-backup` allows a target
   * that reuses legacy object names (the legacy objects must be gone before the upgrade applies
   * the target; otherwise Helm would patch or replace them before the backup is verified).
   *
   * @default 'never'
   */
  readonly deleteLegacy?: DeleteLegacyValue;
  /**
   * Set the legacy PersistentVolumes to `Retain` before anything can delete their claims. Adds a
   * ClusterRole limited to get/patch of persistentvolumes.
   *
   * @default true
   */
  readonly protectVolumes?: boolean;
  /**
   * Secrets the target and the workloads reference but the chart does not contain (GitOps
   * repositories hold no passwords): the runner creates them with random passwords when absent.
   *
   * @default []
   */
  readonly ensureSecrets?: readonly RequiredSecret[];
  /**
   * Secrets of the release being taken over that the upgrade must not delete although the new
   * chart lacks them: the legacy database's passwords and the admin password of the realm being
   * migrated (Keycloak ignores a bootstrap admin once the master realm exists). prepare annotates
   * the live ones with `helm.sh/resource-policy: keep` and `argocd.argoproj.io/sync-options:
   * Prune=false` (`MIGRATION_KEEP_SECRETS`); absent ones are skipped. The Role allows `get` and
   * `patch` on exactly these names.
   *
   * @default []
   */
  readonly keepSecrets?: readonly string[];
  /**
   * The backup PVC.
   *
   * @default - `<name>-backup`, sized by the runner, at least 1Gi, default storage class
   */
  readonly backup?: BackupVolumeOptions;
  /**
   * Sync waves (Argo CD).
   *
   * @default { target: -40, backup: -30, restore: -20, workloads: -10 }
   */
  readonly syncWaves?: MigrationSyncWaves;
  /**
   * The constructs holding the target database's objects (e.g. the {@link PostgresHa}). With flavor
   * `argocd` each of their ordinary objects gets `syncWaves.target`: Argo CD applies the new
   * database, and waits until it is healthy, before the backup stops the workloads. Without a wave
   * it would come at wave 0, after the restore that waits for it (in the backup Job, or the
   * restore Job's wave), and the sync would hang until that Job's deadline. Helm: ignored (Helm
   * applies the release's objects between its pre- and post-upgrade hooks).
   *
   * @default - none; with flavor `argocd` required (`[]` when you put the waves on them yourself)
   */
  readonly targetConstructs?: readonly IConstruct[];
  /**
   * The constructs holding the workloads that use the data and what belongs with them (e.g. the
   * {@link Keycloak}, its Ingress). With flavor `argocd` each of their ordinary objects gets
   * `syncWaves.workloads`: after the restore, and before the objects this revision drops (wave 0)
   * are pruned. Helm: ignored.
   *
   * @default - none; with flavor `argocd` required (`[]` when you put the waves on them yourself)
   */
  readonly workloadConstructs?: readonly IConstruct[];
  /**
   * Namespace of the ServiceAccount, named by the (Cluster)RoleBindings (needed when
   * `protectVolumes` is true). Must equal the chart's namespace when the chart has one: the
   * objects are created in the chart's.
   *
   * @default - the chart's namespace
   */
  readonly namespace?: string;
  /**
   * Upper bound of each Job's run time, in seconds. Sized for a backup or a restore of a few
   * GiB; the Argo CD backup Job that also restores (`restoreInBackupJob`) gets twice this, a
   * budget for each. Each Helm hook is waited on for at most `helm --timeout` (default 5m): run the
   * migrating `helm upgrade` with `--timeout` of at least this value, or Helm gives up while the
   * Job runs.
   *
   * @default 3600
   */
  readonly activeDeadlineSeconds?: number;
  /**
   * Retries of a Job after a retriable failure (non-retriable exit codes fail it at once).
   *
   * @default 1
   */
  readonly backoffLimit?: number;
  /**
   * Minutes a finished Job (and its pod's logs) is kept before Kubernetes deletes it.
   * Succeeded hooks are deleted earlier by their delete policy; failed ones stay for this long.
   *
   * @default 1440 (one day)
   */
  readonly ttlMinutesAfterFinished?: number;
  /**
   * Parallel jobs of pg_dump and pg_restore.
   *
   * @default 2
   */
  readonly parallelJobs?: number;
  /**
   * pg_dump compression level (0-9). 0 is fastest when dumping to a volume.
   *
   * @default 0
   */
  readonly dumpCompression?: number;
  /**
   * Seconds to wait for the quiesced workloads' pods to disappear.
   *
   * @default 300
   */
  readonly quiesceTimeoutSeconds?: number;
  /**
   * Seconds the restore waits for the target primary to accept writes.
   *
   * @default 600
   */
  readonly targetWaitSeconds?: number;
  /**
   * Seconds after which a lock whose holder stopped renewing may be taken over.
   *
   * @default 60
   */
  readonly lockTtlSeconds?: number;
  /**
   * libpq sslmode of the runner's connections to each side (`SOURCE_PGSSLMODE` /
   * `TARGET_PGSSLMODE`), for pg_dump/pg_restore/psql and the runner's own connections alike.
   * Overrides the side's `DatabaseConnection.tls.sslMode`; a CA (needed by `verify-ca` and
   * `verify-full`) comes from the connection's `tls.caSecret`, mounted into every Job and named
   * by `SOURCE_PGSSLROOTCERT` / `TARGET_PGSSLROOTCERT`.
   *
   * @default - each connection's `tls.sslMode`; when that is unset too, the tools use libpq's
   * `prefer` and the runner's own connections try without TLS first and use TLS (certificate
   * unchecked) only when the server refuses an unencrypted one
   */
  readonly sslMode?: MigrationSslModes;
  /**
   * Requests and limits of the runner container.
   *
   * @default - requests 100m CPU / 256Mi, limit 1Gi memory
   */
  readonly resources?: ContainerResources;
  /**
   * User and group ids of the runner pods.
   *
   * @default - 1001 for user, group and fsGroup
   */
  readonly podSecurity?: PodSecurityOptions;
  /**
   * Additions to the pods of every migration Job: tolerations, node selector, affinity, topology spread, priority
   * class, pod annotations and labels, extra env, volumes and mounts, sidecars, pull secrets. The
   * result must still meet the Pod Security "restricted" profile.
   *
   * @default - none
   */
  readonly jobPod?: PodCustomization;
}

/** libpq sslmode per side of a migration. */
export interface MigrationSslModes {
  /**
   * sslmode of the connections to the source (legacy) database.
   *
   * @default - unset (see DatabaseMigrationProps.sslMode)
   */
  readonly source?: SslModeValue;
  /**
   * sslmode of the connections to the target database.
   *
   * @default - unset (see DatabaseMigrationProps.sslMode)
   */
  readonly target?: SslModeValue;
}

/** Defaults of the Argo CD sync waves. */
export const DEFAULT_MIGRATION_SYNC_WAVES: Required<MigrationSyncWaves> = { target: -40, backup: -30, restore: -20, workloads: -10 };

/** Helm hook-weight / Argo CD wave of each hook within its phase (RBAC strictly first). */
export const MIGRATION_HOOK_ORDER = {
  rbac: -10,
  prepare: 0,
  /** Helm pre-install/pre-upgrade weight of the backup (Argo CD uses the backup sync wave). */
  backup: 10,
  /** Helm post-install/post-upgrade weight of the restore (Argo CD uses the restore sync wave). */
  helmRestore: 0,
  recordFailure: 0,
} as const;

/** Default requests and limits of the runner container. */
export const RUNNER_RESOURCES: ContainerResources = {
  requests: { cpu: '100m', memory: '256Mi' },
  limits: { memory: '1Gi' },
};

/** UID of the runner image's non-root user. */
export const RUNNER_USER_ID = 1001;

/** Name of the runner container in every migration Job (podFailurePolicy refers to it). */
export const RUNNER_CONTAINER_NAME = 'runner';

/** The derived names of everything the migration uses. */
export interface DatabaseMigrationNames {
  readonly serviceAccount: string;
  readonly role: string;
  readonly roleBinding: string;
  /** Cluster-scoped, so it carries the namespace: two releases in two namespaces must not collide. */
  readonly volumeClusterRole: string;
  readonly stateConfigMap: string;
  readonly lockLease: string;
  readonly backupPvc: string;
  readonly jobs: Readonly<Record<'prepare' | 'backup' | 'restore' | 'recordFailure', string>>;
}

// Secrets the runner reads through secretKeyRef: whether the pod may start without them.
// The prepare Job runs before anything exists on a fresh install (no legacy database, target
// Secrets not yet ensured), so its references are optional; the restore Job must wait for the
// target's Secret (kubelet retries until it exists), which is how it waits for CloudNativePG's
// generated `-app` Secret after a `helm install`; so must the Argo CD backup Job that restores.
interface SecretOptionality {
  readonly source: boolean;
  readonly target: boolean;
}

interface JobSpecOfCommand {
  readonly key: keyof DatabaseMigrationNames['jobs'];
  readonly command: RunnerCommandName;
  readonly mountsBackup: boolean;
  readonly optionalSecrets: SecretOptionality;
}

const JOBS: readonly JobSpecOfCommand[] = [
  { key: 'prepare', command: RunnerCommand.prepare, mountsBackup: false, optionalSecrets: { source: true, target: true } },
  { key: 'backup', command: RunnerCommand.backupPhase, mountsBackup: true, optionalSecrets: { source: true, target: true } },
  { key: 'restore', command: RunnerCommand.restorePhase, mountsBackup: true, optionalSecrets: { source: true, target: false } },
  { key: 'recordFailure', command: RunnerCommand.recordFailure, mountsBackup: false, optionalSecrets: { source: true, target: true } },
];

/** The hook Jobs and least-privilege RBAC of a database migration. See the module comment. */
export class DatabaseMigration extends Construct {
  /** Names of every object the migration uses, synthesized or created at run time. */
  public readonly names: DatabaseMigrationNames;
  /** The migration's name (label `app.kubernetes.io/instance` of its Jobs' pods). */
  public readonly name: string;
  /** Labels every migration Job's pod carries (NetworkPolicies, mesh exclusions). */
  public readonly jobPodSelectorLabels: Readonly<Record<string, string>>;
  /** The Jobs, by runner command (record-failure only with flavor `argocd`; restore-phase not with `restoreInBackupJob`). */
  public readonly jobs: Readonly<Partial<Record<RunnerCommandName, ApiObject>>>;
  /** The backup hook's sync wave (Argo CD). */
  public readonly backupSyncWave: number;
  /** The restore hook's sync wave (Argo CD), when there is a restore Job (not with `restoreInBackupJob`). */
  public readonly restoreSyncWave?: number;
  /** Whether the backup Job restores too, and there is no restore Job (`restoreInBackupJob`). */
  public readonly restoreInBackupJob: boolean;
  /** The ClusterRole for PersistentVolumes, when `protectVolumes` is on. */
  public readonly volumeClusterRole?: ApiObject;
  /** The ports the Jobs connect to PostgreSQL on: the source's and the target's. */
  public readonly databasePorts: readonly number[];

  public constructor(scope: Construct, id: string, props: DatabaseMigrationProps) {
    super(scope, id);
    const flavor = assertGitOpsFlavor(props.flavor, 'DatabaseMigration flavor');
    validateImage('DatabaseMigration runnerImage', props.runnerImage);
    const chartNamespace = Chart.of(this).namespace;
    if (props.namespace !== undefined && chartNamespace !== undefined && props.namespace !== chartNamespace) {
      throw new Error(
        `DatabaseMigration namespace is ${JSON.stringify(props.namespace)} but its chart's namespace is ${JSON.stringify(chartNamespace)}: ` +
          `the ServiceAccount and Jobs are created in the chart's namespace, so bindings naming the other one would leave the Jobs ` +
          `without permissions; leave 'namespace' unset, or set it to ${JSON.stringify(chartNamespace)}`,
      );
    }
    const namespace = props.namespace ?? chartNamespace;
    if (namespace !== undefined) validateDnsLabel('DatabaseMigration namespace', namespace);
    this.names = deriveNames(props.name, namespace, props.backup?.pvcName);
    this.name = props.name;
    const { 'app.kubernetes.io/component': _command, ...jobPodSelector } = jobLabels(props.name, RunnerCommand.prepare);
    this.jobPodSelectorLabels = jobPodSelector;

    const deleteLegacy = props.deleteLegacy ?? DeleteLegacy.never;
    if (!(Object.values(DeleteLegacy) as string[]).includes(deleteLegacy)) {
      throw new Error(
        `DatabaseMigration deleteLegacy must be one of ${Object.values(DeleteLegacy).join(', ')}, got ${JSON.stringify(deleteLegacy)}`,
      );
    }
    const protectVolumes = props.protectVolumes ?? true;
    const restoreReplicas = validateBoolean('DatabaseMigration restoreReplicas', props.restoreReplicas ?? flavor === 'helm');
    const restoreInBackupJob = validateBoolean('DatabaseMigration restoreInBackupJob', props.restoreInBackupJob ?? flavor === 'argocd');
    const indexesAfterReady = validateBoolean('DatabaseMigration indexesAfterReady', props.indexesAfterReady ?? true);
    if (props.indexesAfterReady === true && !restoreReplicas) {
      throw new Error(
        'DatabaseMigration indexesAfterReady is true with restoreReplicas false: the GitOps tool starts Keycloak only after the ' +
          'restore Job, so every index is built in the restore and the setting would do nothing; leave indexesAfterReady unset, or set restoreReplicas: true',
      );
    }
    if (restoreInBackupJob && flavor === 'helm') {
      throw new Error(
        'DatabaseMigration restoreInBackupJob is true with flavor helm: Helm applies the new database only after the ' +
          'pre-upgrade hooks, so the backup Job cannot restore into it; leave restoreInBackupJob unset (or false) with flavor helm',
      );
    }
    const acceptLegacyChangesOf =
      props.acceptLegacyChangesOf === undefined ? undefined : validateMigrationId('DatabaseMigration acceptLegacyChangesOf', props.acceptLegacyChangesOf);
    if (protectVolumes && namespace === undefined) {
      throw new Error(
        `DatabaseMigration namespace is required when protectVolumes is true: the ClusterRoleBinding must name the ` +
          `ServiceAccount's namespace; set 'namespace' (or the chart's namespace), or set protectVolumes: false`,
      );
    }

    validateConnection('DatabaseMigration source', props.source);
    validateConnection('DatabaseMigration target', props.target);
    this.databasePorts = [...new Set([props.source.port, props.target.port])];
    const workloads = validateWorkloads(props.workloads);
    const legacy = validateLegacy(props.legacy);
    assertNoCollisionWithLegacy(props.targetObjectNames ?? [], legacy, deleteLegacy);
    const ensureSecrets = validateEnsureSecrets(props.ensureSecrets ?? []);
    const keepSecrets = unique((props.keepSecrets ?? []).map((name, index) => validateDnsSubdomain(`DatabaseMigration keepSecrets[${index}]`, name)));

    const waves = { ...DEFAULT_MIGRATION_SYNC_WAVES, ...props.syncWaves };
    for (const [key, wave] of Object.entries(waves)) {
      validateIntegerRange(`DatabaseMigration syncWaves.${key}`, wave, -1000, 1000);
    }
    if (!(waves.target < waves.backup && waves.backup < 0)) {
      throw new Error(
        `DatabaseMigration syncWaves.backup must be above the target database's wave and below 0 (target ${waves.target} ` +
          `< backup < 0), got ${waves.backup}: the backup stops the workloads once the new database is healthy, and Argo CD ` +
          `prunes the objects without a wave (the source being taken over) at the start of wave 0; lower syncWaves.target ` +
          `or set syncWaves.backup between them`,
      );
    }
    if (restoreInBackupJob && !(waves.backup < waves.workloads)) {
      throw new Error(
        `DatabaseMigration syncWaves.workloads must be above the backup's wave (backup ${waves.backup} < workloads), ` +
          `got ${waves.workloads}: the backup Job restores, and the workloads start on the restored data`,
      );
    }
    if (!restoreInBackupJob && !(waves.backup < waves.restore && waves.restore < waves.workloads)) {
      throw new Error(
        `DatabaseMigration syncWaves.restore must be strictly between the backup's wave and the workloads' ` +
          `wave (backup ${waves.backup} < restore < workloads ${waves.workloads}), got ${waves.restore}: the restore ` +
          `needs the verified backup and must finish before the workloads start`,
      );
    }
    this.backupSyncWave = waves.backup;
    if (!restoreInBackupJob) this.restoreSyncWave = waves.restore;
    this.restoreInBackupJob = restoreInBackupJob;
    if (flavor === 'argocd') {
      for (const [key, prop, wave] of [
        ['target', 'targetConstructs', waves.target],
        ['workloads', 'workloadConstructs', waves.workloads],
      ] as const) {
        const constructs = props[prop];
        if (constructs === undefined) {
          throw new Error(
            `DatabaseMigration ${prop} is not set (flavor 'argocd'): without syncWaves.${key} (${wave}) on their objects, ` +
              `Argo CD applies them at wave 0, after the ${restoreInBackupJob ? `backup hook that restores (wave ${waves.backup})` : `restore hook (wave ${waves.restore})`}` +
              (key === 'target' ? ', which would wait for a database that never comes' : ', and prunes the old release beside them') +
              `; pass the constructs (e.g. ${key === 'target' ? '[db]' : '[keycloak, ingress]'}), or [] if you set ` +
              `argocd.argoproj.io/sync-wave on them yourself`,
          );
        }
        constructs.forEach((construct) => setSyncWave(construct, flavor, wave));
      }
    }

    const connectionTls = {
      source: props.source.tls === undefined ? undefined : validateDatabaseTls('DatabaseMigration source.tls', props.source.tls),
      target: props.target.tls === undefined ? undefined : validateDatabaseTls('DatabaseMigration target.tls', props.target.tls),
    };
    const explicitSslModes = validateSslModes(props.sslMode);
    const sslMode: MigrationSslModes = {
      ...((explicitSslModes.source ?? connectionTls.source?.sslMode) !== undefined ? { source: explicitSslModes.source ?? connectionTls.source!.sslMode } : {}),
      ...((explicitSslModes.target ?? connectionTls.target?.sslMode) !== undefined ? { target: explicitSslModes.target ?? connectionTls.target!.sslMode } : {}),
    };
    const caSecrets = { source: connectionTls.source?.caSecret, target: connectionTls.target?.caSecret };
    const backup = validateBackup(props.backup);
    const quiesceTimeoutSeconds = validateIntegerRange('DatabaseMigration quiesceTimeoutSeconds', props.quiesceTimeoutSeconds ?? 300, 1, 86_400);
    const targetWaitSeconds = validateIntegerRange('DatabaseMigration targetWaitSeconds', props.targetWaitSeconds ?? 600, 1, 86_400);
    const lockTtlSeconds = validateIntegerRange('DatabaseMigration lockTtlSeconds', props.lockTtlSeconds ?? 60, 10, 3600);
    const activeDeadlineSeconds = validateIntegerRange('DatabaseMigration activeDeadlineSeconds', props.activeDeadlineSeconds ?? 3600, 60, 7 * 86_400);
    const longestWait = Math.max(quiesceTimeoutSeconds, targetWaitSeconds);
    if (activeDeadlineSeconds <= longestWait) {
      throw new Error(
        `DatabaseMigration activeDeadlineSeconds (${activeDeadlineSeconds}) must exceed the longest wait inside a Job ` +
          `(quiesceTimeoutSeconds ${quiesceTimeoutSeconds}, targetWaitSeconds ${targetWaitSeconds}), or Kubernetes kills ` +
          `the Job before the runner can report why it waited: raise activeDeadlineSeconds or lower the waits`,
      );
    }
    const backoffLimit = validateIntegerRange('DatabaseMigration backoffLimit', props.backoffLimit ?? 1, 0, 5);
    const ttlMinutes = validateIntegerRange('DatabaseMigration ttlMinutesAfterFinished', props.ttlMinutesAfterFinished ?? 1440, 1, 7 * 1440);
    const parallelJobs = validateIntegerRange('DatabaseMigration parallelJobs', props.parallelJobs ?? 2, 1, 64);
    const dumpCompression = validateIntegerRange('DatabaseMigration dumpCompression', props.dumpCompression ?? 0, 0, 9);
    const ids = resolvePodSecurity('DatabaseMigration podSecurity', props.podSecurity, RUNNER_USER_ID);
    const resources = resourceRequirements('DatabaseMigration resources', props.resources, RUNNER_RESOURCES);

    // ---- RBAC ------------------------------------------------------------------------------
    const rbac = new Construct(this, 'rbac');
    new k8s.KubeServiceAccount(rbac, 'service-account', {
      metadata: { name: this.names.serviceAccount },
      // The token is mounted into the Job pods explicitly; nothing else uses this account.
      automountServiceAccountToken: false,
    });
    new k8s.KubeRole(rbac, 'role', {
      metadata: { name: this.names.role },
      rules: roleRules({
        names: this.names,
        workloads,
        legacy,
        deleteLegacy,
        ensureSecrets,
        keepSecrets,
      }),
    });
    new k8s.KubeRoleBinding(rbac, 'role-binding', {
      metadata: { name: this.names.roleBinding },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: this.names.role },
      subjects: [{ kind: 'ServiceAccount', name: this.names.serviceAccount, namespace }],
    });
    if (protectVolumes) {
      this.volumeClusterRole = new k8s.KubeClusterRole(rbac, 'volume-cluster-role', {
        metadata: { name: this.names.volumeClusterRole },
        // PV names are chosen by the provisioner at bind time: resourceNames cannot be known here.
        rules: [{ apiGroups: [''], resources: ['persistentvolumes'], verbs: ['get', 'patch'] }],
      });
      const binding = new k8s.KubeClusterRoleBinding(rbac, 'volume-cluster-role-binding', {
        metadata: { name: this.names.volumeClusterRole },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: this.names.volumeClusterRole },
        subjects: [{ kind: 'ServiceAccount', name: this.names.serviceAccount, namespace }],
      });
      // Cluster-scoped objects take no namespace; the chart's default would add one.
      for (const clusterScoped of [this.volumeClusterRole, binding]) {
        if (clusterScoped.metadata.namespace !== undefined) clusterScoped.addJsonPatch(JsonPatch.remove('/metadata/namespace'));
      }
    }
    markAsHook(rbac, flavor, { phase: 'rbac', order: MIGRATION_HOOK_ORDER.rbac, role: 'support' });

    // ---- Jobs ------------------------------------------------------------------------------
    const common: CommonEnvInputs = {
      source: props.source,
      target: props.target,
      names: this.names,
      backup,
      workloads,
      restoreReplicas,
      restoreInBackupJob,
      indexesAfterReady,
      ...(acceptLegacyChangesOf !== undefined ? { acceptLegacyChangesOf } : {}),
      legacy,
      deleteLegacy,
      protectVolumes,
      ensureSecrets,
      keepSecrets,
      parallelJobs,
      dumpCompression,
      quiesceTimeoutSeconds,
      targetWaitSeconds,
      lockTtlSeconds,
      sslMode,
      caFiles: {
        ...(caSecrets.source ? { source: caFile(MIGRATION_CA_MOUNTS.source) } : {}),
        ...(caSecrets.target ? { target: caFile(MIGRATION_CA_MOUNTS.target) } : {}),
      },
    };
    const caMounts: k8s.VolumeMount[] = (['source', 'target'] as const)
      .filter((side) => caSecrets[side] !== undefined)
      .map((side) => ({ name: `${side}-ca`, mountPath: MIGRATION_CA_MOUNTS[side], readOnly: true }));
    const caVolumes: k8s.Volume[] = (['source', 'target'] as const).flatMap((side) => {
      const secret = caSecrets[side];
      return secret ? [caVolume(`${side}-ca`, secret)] : [];
    });
    const jobs: Partial<Record<RunnerCommandName, ApiObject>> = {};
    for (const spec of JOBS) {
      if (spec.command === RunnerCommand.recordFailure && flavor !== 'argocd') continue;
      // The backup Job runs restore-phase after backup-phase.
      if (spec.command === RunnerCommand.restorePhase && restoreInBackupJob) continue;
      // The backup Job that also restores needs what the restore Job needs: the target's Secret
      // (its pod, and so the quiesce, waits for it) and time for both phases.
      const alsoRestores = spec.command === RunnerCommand.backupPhase && restoreInBackupJob;
      const job = new k8s.KubeJob(this, spec.key, {
        metadata: {
          name: this.names.jobs[spec.key],
          labels: jobLabels(props.name, spec.command),
        },
        spec: {
          backoffLimit,
          activeDeadlineSeconds: alsoRestores ? 2 * activeDeadlineSeconds : activeDeadlineSeconds,
          ttlSecondsAfterFinished: ttlMinutes * 60,
          podFailurePolicy: {
            rules: [
              {
                // Retrying cannot fix a wrong password or a corrupt backup: fail the Job at once.
                action: 'FailJob',
                onExitCodes: {
                  containerName: RUNNER_CONTAINER_NAME,
                  operator: 'In',
                  values: [...NON_RETRIABLE_EXIT_CODES].sort((a, b) => a - b),
                },
                // Required by the 1.27 schema; an empty list means "no condition pattern".
                onPodConditions: [],
              },
              {
                // A drained node or a preemption is not the runner's failure: do not count it.
                action: 'Ignore',
                onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }],
              },
            ],
          },
          template: {
            metadata: { labels: jobLabels(props.name, spec.command) },
            spec: {
              restartPolicy: 'Never',
              serviceAccountName: this.names.serviceAccount,
              // The runner talks to the Kubernetes API (state, lock, scale, PVCs).
              automountServiceAccountToken: true,
              securityContext: restrictedPodSecurityContext(ids),
              containers: [
                {
                  name: RUNNER_CONTAINER_NAME,
                  image: props.runnerImage,
                  imagePullPolicy: 'IfNotPresent',
                  args: [spec.command],
                  env: migrationJobEnv(common, alsoRestores ? { ...spec.optionalSecrets, target: false } : spec.optionalSecrets, spec.mountsBackup),
                  resources,
                  securityContext: restrictedContainerSecurityContext(ids),
                  volumeMounts: [
                    { name: 'tmp', mountPath: '/tmp' },
                    ...(spec.mountsBackup ? [{ name: 'backup', mountPath: BACKUP_MOUNT_PATH }] : []),
                    ...caMounts,
                  ],
                },
              ],
              volumes: [
                // pg_dump, pg_restore and node write temporary files; the root filesystem is read-only.
                { name: 'tmp', emptyDir: { sizeLimit: k8s.Quantity.fromString('256Mi') } },
                ...(spec.mountsBackup
                  ? [{ name: 'backup', persistentVolumeClaim: { claimName: this.names.backupPvc } }]
                  : []),
                ...caVolumes,
              ],
            },
          },
        },
      });
      const placement =
        spec.command === RunnerCommand.prepare
          ? ({ phase: 'pre', order: MIGRATION_HOOK_ORDER.prepare } as const)
          : spec.command === RunnerCommand.backupPhase
            ? flavor === 'helm'
              ? ({ phase: 'pre', order: MIGRATION_HOOK_ORDER.backup } as const)
              : ({ phase: 'sync', order: waves.backup } as const)
            : spec.command === RunnerCommand.restorePhase
              ? ({ phase: 'sync', order: flavor === 'helm' ? MIGRATION_HOOK_ORDER.helmRestore : waves.restore } as const)
              : ({ phase: 'sync-failed', order: MIGRATION_HOOK_ORDER.recordFailure } as const);
      customizePod(job, `DatabaseMigration 'jobPod'`, props.jobPod, [RUNNER_CONTAINER_NAME]);
      markAsHook(job, flavor, { ...placement, role: 'job' });
      jobs[spec.command] = job;
    }
    this.jobs = jobs;
  }
}

function jobLabels(name: string, command: RunnerCommandName): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'database-migration',
    'app.kubernetes.io/instance': name,
    'app.kubernetes.io/component': command,
  };
}

const LONGEST_JOB_SUFFIX = '-record-failure';

function deriveNames(name: string, namespace: string | undefined, backupPvcName: string | undefined): DatabaseMigrationNames {
  validateDnsLabel('DatabaseMigration name', name);
  const maxLength = 63 - LONGEST_JOB_SUFFIX.length;
  if (name.length > maxLength) {
    throw new Error(
      `DatabaseMigration name must be at most ${maxLength} characters, got ${JSON.stringify(name)} (${name.length}): ` +
        `Job names such as "${name}${LONGEST_JOB_SUFFIX}" become a label value limited to 63 characters; choose a shorter name`,
    );
  }
  const backupPvc = validateDnsSubdomain('DatabaseMigration backup.pvcName', backupPvcName ?? `${name}-backup`);
  const volumeClusterRole = `${namespace ?? 'default'}-${name}-protect-volumes`;
  validateDnsSubdomain('DatabaseMigration ClusterRole name (<namespace>-<name>-protect-volumes)', volumeClusterRole);
  return {
    serviceAccount: name,
    role: name,
    roleBinding: name,
    volumeClusterRole,
    stateConfigMap: `${name}-state`,
    lockLease: `${name}-lock`,
    backupPvc,
    jobs: {
      prepare: `${name}-prepare`,
      backup: `${name}-backup`,
      restore: `${name}-restore`,
      recordFailure: `${name}${LONGEST_JOB_SUFFIX}`,
    },
  };
}

function validateConnection(field: string, connection: DatabaseConnection): void {
  if (!connection) throw new Error(`${field} is required: pass the DatabaseConnection a database construct exposes`);
  validateDnsSubdomain(`${field}.host`, connection.host);
  validatePort(`${field}.port`, connection.port);
  if (typeof connection.database !== 'string' || connection.database.length === 0) {
    throw new Error(`${field}.database must be a non-empty database name, got ${JSON.stringify(connection.database)}`);
  }
  validateCredentials(`${field}.credentials`, connection.credentials);
  if (connection.adminCredentials) validateCredentials(`${field}.adminCredentials`, connection.adminCredentials);
}

function validateCredentials(field: string, credentials: DatabaseCredentials): void {
  if (typeof credentials?.username !== 'string' || credentials.username.length === 0) {
    throw new Error(`${field}.username must be a non-empty user name, got ${JSON.stringify(credentials?.username)}`);
  }
  validateDnsSubdomain(`${field}.secretName`, credentials.secretName);
  validateSecretKey(`${field}.passwordKey`, credentials.passwordKey);
}

function validateWorkloads(workloads: readonly QuiescedWorkload[]): readonly QuiescedWorkload[] {
  if (!Array.isArray(workloads)) {
    throw new Error(`DatabaseMigration workloads must be a list of { kind, name }, got ${JSON.stringify(workloads)}`);
  }
  const seen = new Set<string>();
  workloads.forEach((workload, index) => {
    const field = `DatabaseMigration workloads[${index}]`;
    if (workload.kind !== 'StatefulSet' && workload.kind !== 'Deployment') {
      throw new Error(`${field}.kind must be 'StatefulSet' or 'Deployment', got ${JSON.stringify(workload.kind)}`);
    }
    validateDnsLabel(`${field}.name`, workload.name);
    if (workload.immutableSpec !== undefined) {
      if (workload.kind !== 'StatefulSet') {
        throw new Error(`${field}.immutableSpec applies to StatefulSets only, got kind ${workload.kind}: remove it`);
      }
      const { selector, serviceName, volumeClaimTemplates } = workload.immutableSpec;
      if (typeof selector !== 'object' || selector === null || Object.keys(selector).length === 0) {
        throw new Error(`${field}.immutableSpec.selector must hold the StatefulSet's matchLabels, got ${JSON.stringify(selector)}`);
      }
      for (const [key, value] of Object.entries(selector)) validateLabelValue(`${field}.immutableSpec.selector['${key}']`, value as string);
      if (serviceName !== undefined) validateDnsLabel(`${field}.immutableSpec.serviceName`, serviceName);
      if (!Array.isArray(volumeClaimTemplates)) {
        throw new Error(`${field}.immutableSpec.volumeClaimTemplates must be a list of names, got ${JSON.stringify(volumeClaimTemplates)}`);
      }
    }
    if (workload.discovery !== undefined) validateDiscovery(`${field}.discovery`, workload.discovery);
    const key = `${workload.kind}/${workload.name}`;
    if (seen.has(key)) throw new Error(`${field} repeats ${key}: list each workload once`);
    seen.add(key);
  });
  return workloads;
}

function validateDiscovery(field: string, discovery: WorkloadDiscovery): void {
  const labels = discovery.labels;
  if (typeof labels !== 'object' || labels === null || Object.keys(labels).length === 0) {
    throw new Error(`${field}.labels must name at least one label (e.g. app.kubernetes.io/instance), got ${JSON.stringify(labels)}: omit discovery to find the workload by name only`);
  }
  for (const [key, value] of Object.entries(labels)) validateLabelValue(`${field}.labels['${key}']`, value);
  (discovery.secretCopies ?? []).forEach((copy, index) => {
    validateSecretKey(`${field}.secretCopies[${index}].key`, copy.key);
    validateDnsSubdomain(`${field}.secretCopies[${index}].to`, copy.to);
  });
}

interface ValidatedLegacy {
  readonly statefulSetName?: string;
  readonly pvcNames: readonly string[];
  readonly objectNames: readonly KubeObjectName[];
  readonly labels?: Readonly<Record<string, string>>;
}

function validateLegacy(legacy: LegacyDatabaseObjects | undefined): ValidatedLegacy {
  const statefulSetName = legacy?.statefulSetName;
  if (statefulSetName !== undefined) validateStatefulSetName('DatabaseMigration legacy.statefulSetName', statefulSetName);
  const pvcNames = legacy?.pvcNames ?? [];
  pvcNames.forEach((pvc, index) => validateDnsSubdomain(`DatabaseMigration legacy.pvcNames[${index}]`, pvc));
  const objectNames = legacy?.objectNames ?? [
    ...(statefulSetName !== undefined ? [{ kind: 'StatefulSet', name: statefulSetName }] : []),
    ...pvcNames.map((name) => ({ kind: 'PersistentVolumeClaim', name })),
  ];
  const labels = legacy?.labels;
  if (labels !== undefined) {
    if (typeof labels !== 'object' || labels === null || Object.keys(labels).length === 0) {
      throw new Error(`DatabaseMigration legacy.labels must name at least one label (e.g. app.kubernetes.io/instance), got ${JSON.stringify(labels)}: omit it to look at names only`);
    }
    for (const [key, value] of Object.entries(labels)) validateLabelValue(`DatabaseMigration legacy.labels['${key}']`, value);
  }
  return { ...(statefulSetName !== undefined ? { statefulSetName } : {}), pvcNames, objectNames, ...(labels !== undefined ? { labels } : {}) };
}

function assertNoCollisionWithLegacy(
  targetObjectNames: readonly KubeObjectName[],
  legacy: ValidatedLegacy,
  deleteLegacy: DeleteLegacyValue,
): void {
  const legacyKeys = new Set(legacy.objectNames.map((object) => `${object.kind}/${object.name}`));
  const collisions = targetObjectNames.map((object) => `${object.kind}/${object.name}`).filter((key) => legacyKeys.has(key));
  if (collisions.length > 0 && deleteLegacy !== DeleteLegacy.afterBackup) {
    throw new Error(
      `DatabaseMigration target objects have the legacy database's names (${[...new Set(collisions)].join(', ')}) while ` +
        `deleteLegacy is '${deleteLegacy}': the upgrade would patch or replace the legacy objects (or reuse their volumes) ` +
        `before the backup is verified; give the target another name, or set deleteLegacy: 'after-backup'`,
    );
  }
}

function validateEnsureSecrets(secrets: readonly RequiredSecret[]): readonly RequiredSecret[] {
  const byName = new Map<string, Set<string>>();
  secrets.forEach((secret, index) => {
    validateDnsSubdomain(`DatabaseMigration ensureSecrets[${index}].name`, secret.name);
    if (!Array.isArray(secret.keys) || secret.keys.length === 0) {
      throw new Error(`DatabaseMigration ensureSecrets[${index}].keys must list at least one key, got ${JSON.stringify(secret.keys)}`);
    }
    const keys = byName.get(secret.name) ?? new Set<string>();
    secret.keys.forEach((key, keyIndex) => keys.add(validateSecretKey(`DatabaseMigration ensureSecrets[${index}].keys[${keyIndex}]`, key)));
    byName.set(secret.name, keys);
  });
  // One entry per Secret, keys sorted: the JSON is part of the committed manifests and must not
  // change when constructs list the same Secret twice or in another order.
  return [...byName.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, keys]) => ({ name, keys: [...keys].sort() }));
}

interface ValidatedBackup {
  readonly size?: string;
  readonly minSize: string;
  readonly storageClassName?: string;
}

function validateBackup(backup: BackupVolumeOptions | undefined): ValidatedBackup {
  const minSize = validateSize('DatabaseMigration backup.minSize', backup?.minSize ?? '1Gi', 2 ** 20);
  const size = backup?.size;
  if (size !== undefined) {
    validateSize('DatabaseMigration backup.size', size);
    if (parseQuantity('DatabaseMigration backup.size', size) < parseQuantity('DatabaseMigration backup.minSize', minSize)) {
      throw new Error(
        `DatabaseMigration backup.size ${JSON.stringify(size)} is smaller than backup.minSize ${JSON.stringify(minSize)}: ` +
          `raise backup.size, or leave it unset so the runner sizes the volume from the database`,
      );
    }
  }
  const storageClassName = backup?.storageClassName;
  if (storageClassName !== undefined) validateDnsSubdomain('DatabaseMigration backup.storageClassName', storageClassName);
  return {
    minSize,
    ...(size !== undefined ? { size } : {}),
    ...(storageClassName !== undefined ? { storageClassName } : {}),
  };
}

interface RoleInputs {
  readonly names: DatabaseMigrationNames;
  readonly workloads: readonly QuiescedWorkload[];
  readonly legacy: ValidatedLegacy;
  readonly deleteLegacy: DeleteLegacyValue;
  readonly ensureSecrets: readonly RequiredSecret[];
  readonly keepSecrets: readonly string[];
}

/**
 * Least privilege: every verb that can be limited to names is (`create` and `list` cannot: the
 * name is not known to the authorizer then).
 */
function roleRules(inputs: RoleInputs): k8s.PolicyRule[] {
  const { names, workloads, legacy, deleteLegacy, ensureSecrets, keepSecrets } = inputs;
  const deletes = deleteLegacy !== DeleteLegacy.never;
  const statefulSets = workloads.filter((w) => w.kind === 'StatefulSet').map((w) => w.name);
  const deployments = workloads.filter((w) => w.kind === 'Deployment').map((w) => w.name);
  const rules: k8s.PolicyRule[] = [
    { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
    { apiGroups: [''], resources: ['configmaps'], resourceNames: [names.stateConfigMap], verbs: ['get', 'update', 'patch'] },
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [names.lockLease], verbs: ['get', 'update', 'patch', 'delete'] },
    { apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['create'] },
    {
      apiGroups: [''],
      resources: ['persistentvolumeclaims'],
      resourceNames: unique([names.backupPvc, ...legacy.pvcNames]),
      verbs: ['get'],
    },
  ];
  if (deletes && legacy.pvcNames.length > 0) {
    rules.push({ apiGroups: [''], resources: ['persistentvolumeclaims'], resourceNames: [...legacy.pvcNames], verbs: ['delete'] });
  }
  const readableStatefulSets = unique([...(legacy.statefulSetName ? [legacy.statefulSetName] : []), ...statefulSets]);
  if (readableStatefulSets.length > 0) {
    rules.push({ apiGroups: ['apps'], resources: ['statefulsets'], resourceNames: readableStatefulSets, verbs: ['get'] });
  }
  if (deletes && legacy.statefulSetName) {
    rules.push({ apiGroups: ['apps'], resources: ['statefulsets'], resourceNames: [legacy.statefulSetName], verbs: ['delete'] });
  }
  const replaceable = workloads.filter((w) => w.kind === 'StatefulSet' && w.immutableSpec !== undefined).map((w) => w.name);
  if (replaceable.length > 0) {
    // Taking over another chart's StatefulSet whose immutable fields differ (phases/take-over.ts).
    rules.push({ apiGroups: ['apps'], resources: ['statefulsets'], resourceNames: replaceable, verbs: ['delete'] });
  }
  if (keepSecrets.length > 0) {
    // Read and annotated by name only: listing Secrets would return every Secret's data.
    rules.push({ apiGroups: [''], resources: ['secrets'], resourceNames: [...keepSecrets], verbs: ['get', 'patch'] });
  }
  if (statefulSets.length > 0) {
    // get/patch on the workload itself: after each scale the runner removes the managedFields entry
    // the scale recorded, so that Helm 4's or Argo CD's server-side apply of the replicas does not
    // conflict with it (runner/src/kube/workloads.ts).
    rules.push({ apiGroups: ['apps'], resources: ['statefulsets'], resourceNames: statefulSets, verbs: ['patch'] });
    rules.push({ apiGroups: ['apps'], resources: ['statefulsets/scale'], resourceNames: statefulSets, verbs: ['get', 'update', 'patch'] });
  }
  if (deployments.length > 0) {
    rules.push({ apiGroups: ['apps'], resources: ['deployments'], resourceNames: deployments, verbs: ['get', 'patch'] });
    rules.push({ apiGroups: ['apps'], resources: ['deployments/scale'], resourceNames: deployments, verbs: ['get', 'update', 'patch'] });
  }
  for (const kind of ['StatefulSet', 'Deployment'] as const) {
    if (!workloads.some((w) => w.kind === kind && w.discovery !== undefined)) continue;
    // A workload found by its labels (another release's, renamed by a name override): its name is
    // known only at run time, and RBAC cannot limit a verb by label. The runner lists this kind by
    // the configured labels and scales only the one match, only when the configured name does not
    // exist (runner/src/phases/discover-workloads.ts).
    const plural = kind === 'StatefulSet' ? 'statefulsets' : 'deployments';
    rules.push({ apiGroups: ['apps'], resources: [plural], verbs: ['list', 'get', 'patch'] });
    rules.push({ apiGroups: ['apps'], resources: [`${plural}/scale`], verbs: ['get', 'update', 'patch'] });
  }
  if (workloads.some((w) => (w.discovery?.secretCopies ?? []).length > 0)) {
    // Copying the found workload's Secret (the old release deletes it): read by the name its pod
    // spec gives, never listed; the copy is created (no update or patch of any existing Secret).
    rules.push({ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create'] });
  }
  if (ensureSecrets.length > 0) {
    rules.push({ apiGroups: [''], resources: ['secrets'], verbs: ['create'] });
    rules.push({ apiGroups: [''], resources: ['secrets'], resourceNames: ensureSecrets.map((s) => s.name), verbs: ['get'] });
  }
  if (legacy.labels !== undefined) {
    // Evidence of a legacy database under other names: lists by label, of these two kinds only.
    rules.push({ apiGroups: ['apps'], resources: ['statefulsets'], verbs: ['list'] });
    rules.push({ apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['list'] });
    // Adopting the database found by those labels (runner/src/phases/adopt-legacy.ts): its
    // StatefulSet, PVCs and Service, and the password Secret its pod spec references, are read
    // by name, but the names are only known at run time, so resourceNames cannot list them. `get`
    // on the two listed kinds grants nothing `list` does not already; Services hold no secrets;
    // `get` on Secrets is the least that reads one password: never `list` (which returns every
    // Secret's data), and the runner asks only for the name the database's own pods reference.
    rules.push({ apiGroups: ['apps'], resources: ['statefulsets'], verbs: ['get'] });
    rules.push({ apiGroups: [''], resources: ['persistentvolumeclaims', 'services', 'secrets'], verbs: ['get'] });
  }
  // Waiting until the quiesced pods are gone needs a list by label selector.
  rules.push({ apiGroups: [''], resources: ['pods'], verbs: ['list'] });
  rules.push({ apiGroups: [''], resources: ['events'], verbs: ['create'] });
  return rules;
}

/** MIGRATION_WORKLOAD_DISCOVERY, when any workload is also found by its labels. */
function workloadDiscoveryEnv(workloads: readonly QuiescedWorkload[]): k8s.EnvVar[] {
  const discovery: Record<string, WorkloadDiscoverySpec> = {};
  for (const workload of workloads) {
    if (!workload.discovery) continue;
    const copies = workload.discovery.secretCopies ?? [];
    discovery[`${workload.kind.toLowerCase()}/${workload.name}`] = {
      selector: Object.entries(workload.discovery.labels).map(([key, labelValue]) => `${key}=${labelValue}`).join(','),
      ...(copies.length > 0 ? { secretCopies: copies.map(({ key, to }) => ({ key, to })) } : {}),
    };
  }
  return Object.keys(discovery).length > 0 ? [{ name: Env.workloadDiscovery, value: JSON.stringify(discovery) }] : [];
}

/** MIGRATION_WORKLOAD_SPECS, when any workload declares its immutable fields. */
function workloadSpecsEnv(workloads: readonly QuiescedWorkload[]): k8s.EnvVar[] {
  const specs = Object.fromEntries(
    workloads.filter((w) => w.immutableSpec !== undefined).map((w) => [`${w.kind.toLowerCase()}/${w.name}`, w.immutableSpec]),
  );
  return Object.keys(specs).length > 0 ? [{ name: Env.workloadSpecs, value: JSON.stringify(specs) }] : [];
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

interface CommonEnvInputs {
  readonly source: DatabaseConnection;
  readonly target: DatabaseConnection;
  readonly names: DatabaseMigrationNames;
  readonly backup: ValidatedBackup;
  readonly workloads: readonly QuiescedWorkload[];
  readonly restoreReplicas: boolean;
  readonly restoreInBackupJob: boolean;
  readonly indexesAfterReady: boolean;
  readonly acceptLegacyChangesOf?: string;
  readonly legacy: ValidatedLegacy;
  readonly deleteLegacy: DeleteLegacyValue;
  readonly protectVolumes: boolean;
  readonly ensureSecrets: readonly RequiredSecret[];
  readonly keepSecrets: readonly string[];
  readonly parallelJobs: number;
  readonly dumpCompression: number;
  readonly quiesceTimeoutSeconds: number;
  readonly targetWaitSeconds: number;
  readonly lockTtlSeconds: number;
  readonly sslMode: MigrationSslModes;
  /** Mounted CA files per side (from the connections' `tls.caSecret`). */
  readonly caFiles: { readonly source?: string; readonly target?: string };
}

/** Where each Job finds the CA of each side (`DatabaseConnection.tls.caSecret`). */
const MIGRATION_CA_MOUNTS = { source: '/etc/migration-tls/source', target: '/etc/migration-tls/target' } as const;

function validateSslModes(modes: MigrationSslModes | undefined): MigrationSslModes {
  const allowed = Object.values(SslMode) as string[];
  for (const side of ['source', 'target'] as const) {
    const mode = modes?.[side];
    if (mode !== undefined && !allowed.includes(mode)) {
      throw new Error(`DatabaseMigration sslMode.${side} must be one of ${allowed.join(', ')} (libpq sslmode), got ${JSON.stringify(mode)}`);
    }
  }
  return { ...(modes?.source !== undefined ? { source: modes.source } : {}), ...(modes?.target !== undefined ? { target: modes.target } : {}) };
}

/**
 * The environment of one migration Job. Every Job gets the same configuration (one parser on the
 * runner side, and `plan`/`status` see what the Jobs see); only `MIGRATION_BACKUP_DIR` is limited to
 * the Jobs that mount the backup PVC, and the secret references' optionality differs per command.
 * Optional settings left unset are omitted so that the runner's documented default applies.
 */
function migrationJobEnv(
  inputs: CommonEnvInputs,
  optionalSecrets: SecretOptionality,
  mountsBackup: boolean,
): k8s.EnvVar[] {
  const value = (name: EnvName, v: string): k8s.EnvVar => ({ name, value: v });
  const secret = (name: EnvName, credentials: DatabaseCredentials, optional: boolean): k8s.EnvVar => ({
    name,
    valueFrom: { secretKeyRef: { name: credentials.secretName, key: credentials.passwordKey, optional } },
  });
  const field = (name: EnvName, fieldPath: string): k8s.EnvVar => ({ name, valueFrom: { fieldRef: { fieldPath } } });
  // Dump with the superuser where there is one: the application user may not be able to read
  // every object (extensions, other owners' tables).
  const sourceLogin = inputs.source.adminCredentials ?? inputs.source.credentials;
  const targetLogin = inputs.target.adminCredentials ?? inputs.target.credentials;
  const { names, backup, legacy } = inputs;
  return [
    value(Env.sourceHost, inputs.source.host),
    value(Env.sourcePort, String(inputs.source.port)),
    value(Env.sourceDatabase, inputs.source.database),
    value(Env.sourceUser, sourceLogin.username),
    secret(Env.sourcePassword, sourceLogin, optionalSecrets.source),
    ...(inputs.sslMode.source !== undefined ? [value(Env.sourceSslMode, inputs.sslMode.source)] : []),
    ...(inputs.caFiles.source !== undefined ? [value(Env.sourceSslRootCert, inputs.caFiles.source)] : []),
    value(Env.targetHost, inputs.target.host),
    value(Env.targetPort, String(inputs.target.port)),
    value(Env.targetDatabase, inputs.target.database),
    value(Env.targetUser, targetLogin.username),
    secret(Env.targetPassword, targetLogin, optionalSecrets.target),
    ...(inputs.sslMode.target !== undefined ? [value(Env.targetSslMode, inputs.sslMode.target)] : []),
    ...(inputs.caFiles.target !== undefined ? [value(Env.targetSslRootCert, inputs.caFiles.target)] : []),
    // Restored objects belong to the application user, whoever runs pg_restore.
    value(Env.targetOwner, inputs.target.credentials.username),
    field(Env.namespace, 'metadata.namespace'),
    field(Env.podName, 'metadata.name'),
    value(Env.stateConfigMap, names.stateConfigMap),
    value(Env.lockLease, names.lockLease),
    value(Env.lockTtlSeconds, String(inputs.lockTtlSeconds)),
    value(Env.backupPvc, names.backupPvc),
    ...(backup.size !== undefined ? [value(Env.backupPvcSize, backup.size)] : []),
    value(Env.backupPvcMinSize, backup.minSize),
    ...(backup.storageClassName !== undefined ? [value(Env.backupStorageClass, backup.storageClassName)] : []),
    ...(mountsBackup ? [value(Env.backupDir, BACKUP_MOUNT_PATH)] : []),
    // The runner's format: lower-case kind, as kubectl spells resources (`statefulset/<name>`).
    value(Env.workloads, inputs.workloads.map((w) => `${w.kind.toLowerCase()}/${w.name}`).join(',')),
    value(Env.restoreReplicas, String(inputs.restoreReplicas)),
    ...(inputs.restoreInBackupJob ? [value(Env.restoreInBackupJob, 'true')] : []),
    ...(inputs.indexesAfterReady ? [] : [value(Env.indexesAfterReady, 'false')]),
    ...workloadSpecsEnv(inputs.workloads),
    ...workloadDiscoveryEnv(inputs.workloads),
    ...(inputs.keepSecrets.length > 0 ? [value(Env.keepSecrets, inputs.keepSecrets.join(','))] : []),
    ...(inputs.acceptLegacyChangesOf !== undefined ? [value(Env.acceptLegacyChangesOf, inputs.acceptLegacyChangesOf)] : []),
    value(Env.legacyStatefulSet, legacy.statefulSetName ?? ''),
    value(Env.legacyPvcs, legacy.pvcNames.join(',')),
    ...(legacy.labels !== undefined
      ? [value(Env.legacySelector, Object.entries(legacy.labels).map(([key, labelValue]) => `${key}=${labelValue}`).join(','))]
      : []),
    value(Env.deleteLegacy, inputs.deleteLegacy),
    value(Env.protectVolumes, String(inputs.protectVolumes)),
    value(Env.ensureSecrets, JSON.stringify(inputs.ensureSecrets)),
    value(Env.parallelJobs, String(inputs.parallelJobs)),
    value(Env.dumpCompression, String(inputs.dumpCompression)),
    value(Env.quiesceTimeoutSeconds, String(inputs.quiesceTimeoutSeconds)),
    value(Env.targetWaitSeconds, String(inputs.targetWaitSeconds)),
    // Jobs have no TTY: structured logs are what `kubectl logs` and log collectors want.
    value(Env.logFormat, 'json'),
  ];
}
