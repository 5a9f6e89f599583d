/**
 * The one typed configuration of the platform that `main.ts` synthesizes into `dist/`.
 *
 * Edit {@link platformConfig} (below) to change what `npm run synth` writes; every field is
 * optional and documented with its default, and {@link resolvePlatformConfig} fills the defaults
 * and rejects bad values with an error naming the field, the value and the fix. Tests import this
 * module without synthesizing anything.
 */
import { DeleteLegacy, type DeleteLegacyValue, SslMode, type SslModeValue } from './contract.js';
import { DEFAULT_KEYCLOAK_IMAGE } from './keycloak.js';
import type { NetworkPeer } from './keycloak-network-policies.js';
import type { ContainerResources } from './pod-security.js';
import { DEFAULT_PGPOOL_IMAGE, PostgresHaFlavor, type PostgresHaFlavorName } from './postgres-ha.js';
import { DEFAULT_BITNAMI_POSTGRESQL_IMAGE, bitnamiFullname } from './postgres-standalone.js';
import {
  parseQuantity,
  validateBoolean,
  validateDnsLabel,
  validateDnsSubdomain,
  validateImage,
  validateIntegerRange,
  validateLabelValue,
  validateMigrationId,
  validateSecretKey,
  validateServiceName,
  validateSize,
} from './validation.js';

/**
 * The two lifecycle shapes of the platform:
 * - `v1`: Keycloak on a single PostgreSQL (the Bitnami-compatible legacy layout).
 * - `v2`: Keycloak, gated on the migration, on a highly available PostgreSQL, plus the migration
 *   hooks that move the data out of the v1 database during the upgrade.
 */
export type LifecycleShape = 'v1' | 'v2';
export const LIFECYCLE_SHAPES: readonly LifecycleShape[] = ['v1', 'v2'];

/** Container images; each must carry a tag or digest. */
export interface PlatformImages {
  /** @default DEFAULT_KEYCLOAK_IMAGE */
  readonly keycloak?: string;
  /**
   * The migration runner (built from `runner/`), used by the hook Jobs and Keycloak's gate.
   *
   * @default DEFAULT_RUNNER_IMAGE
   */
  readonly runner?: string;
  /** Legacy single PostgreSQL (v1 only). @default DEFAULT_BITNAMI_POSTGRESQL_IMAGE */
  readonly postgresql?: string;
  /**
   * PostgreSQL of the HA database: the repmgr image, or the CloudNativePG operand image.
   *
   * @default - repmgr: DEFAULT_REPMGR_IMAGE; cloudnative-pg: the operator's default
   */
  readonly postgresqlHa?: string;
  /** Pgpool-II (repmgr flavor only). @default DEFAULT_PGPOOL_IMAGE */
  readonly pgpool?: string;
}

/** Keycloak settings. */
export interface PlatformKeycloakConfig {
  /**
   * Keycloak's fullname: its StatefulSet, Services and Secrets. Taking over a Bitnami release
   * installed with `fullnameOverride` (or `nameOverride`), set it to that release's Keycloak name
   * (`sso`, `<release>-<nameOverride>`) to keep its Service name and address; left at the default
   * the upgrade still finds and migrates the renamed one, but Keycloak's Service becomes the
   * default name.
   *
   * @default - Bitnami's fullname: `<releaseName>` when it contains `keycloak`, else `<releaseName>-keycloak`
   */
  readonly name?: string;
  /** @default 2 */
  readonly replicas?: number;
  /** Public host name (KC_HOSTNAME). @default - none: Keycloak derives URLs from each request */
  readonly hostname?: string;
  /** @default 'xforwarded' */
  readonly proxyHeaders?: 'xforwarded' | 'forwarded';
  /** Initial admin user name; its password is generated into Secret `<keycloak>-admin`. @default 'admin' */
  readonly adminUsername?: string;
  /** @default - the Keycloak construct's defaults */
  readonly resources?: ContainerResources;
}

/** The highly available database of the v2 shape. */
export interface PlatformDatabaseConfig {
  /**
   * `cloudnative-pg` (a CloudNativePG Cluster: the operator, 1.30 or a release whose Cluster CRD
   * serves `postgresql.cnpg.io/v1`, must be installed first) or `repmgr` (Bitnami postgresql-ha:
   * repmgr + Pgpool-II, images frozen in `bitnamilegacy`).
   *
   * @default 'cloudnative-pg'
   */
  readonly flavor?: PostgresHaFlavorName;
  /** PostgreSQL instances: one primary, the rest standbys. At least 2. @default 3 */
  readonly instances?: number;
  /** Data volume size per instance. @default '8Gi' */
  readonly storageSize?: string;
  /** @default - the cluster's default storage class */
  readonly storageClass?: string;
  /** Database name. @default 'keycloak' */
  readonly database?: string;
  /** Application user (owner of every restored object). @default 'keycloak' */
  readonly username?: string;
  /**
   * sslmode towards this database, for every client: Keycloak's JDBC pool (`KC_DB_URL_PROPERTIES`),
   * its database gate and the migration Jobs (`TARGET_PGSSLMODE`). `verify-ca` / `verify-full`
   * need `caSecret`.
   *
   * @default - unset: libpq's and pgjdbc's default (TLS when offered, unverified)
   */
  readonly sslMode?: SslModeValue;
  /**
   * Secret holding the PEM CA that signed this database's server certificate, mounted read-only
   * into Keycloak, its gate and the migration Jobs (CloudNativePG: `<cluster>-ca`). Needs `sslMode`.
   *
   * @default - none
   */
  readonly caSecret?: string;
  /** Key of the CA in `caSecret`. @default 'ca.crt' */
  readonly caKey?: string;
}

/**
 * The legacy single PostgreSQL: in v1 it is synthesized; in v2 it is only described by name (the
 * v1 objects are gone from the chart, Helm deletes / Argo CD prunes the StatefulSet, never its PVC).
 * Defaults match the database Bitnami's Keycloak chart bundles.
 */
export interface PlatformLegacyDatabaseConfig {
  /** Fullname (StatefulSet, Service, Secret). @default `<releaseName>-postgresql` */
  readonly name?: string;
  /** @default 'bitnami_keycloak' */
  readonly database?: string;
  /** @default 'bn_keycloak' */
  readonly username?: string;
  /** Secret holding the passwords. @default - `name` */
  readonly secretName?: string;
  /** Key of the application user's password. @default 'password' */
  readonly passwordKey?: string;
  /** Key of the `postgres` superuser's password; null when unknown. @default 'postgres-password' */
  readonly adminPasswordKey?: string | null;
  /** Data volume size (v1 only). @default '8Gi' */
  readonly storageSize?: string;
  /**
   * libpq sslmode of the migration's connections to this database (`SOURCE_PGSSLMODE`; v2 only).
   * `verify-ca` / `verify-full` need `caSecret`.
   *
   * @default - unset: plain first, TLS if the server requires it
   */
  readonly sslMode?: SslModeValue;
  /** Secret holding the PEM CA of this database's server certificate (migration Jobs; v2 only). Needs `sslMode`. @default - none */
  readonly caSecret?: string;
  /** Key of the CA in `caSecret`. @default 'ca.crt' */
  readonly caKey?: string;
}

/** The migration of the v2 shape. */
export interface PlatformMigrationConfig {
  /** When the runner deletes the legacy StatefulSet and PVCs. @default 'never' */
  readonly deleteLegacy?: DeleteLegacyValue;
  /** Set the legacy PVs to Retain (adds a PV-only ClusterRole). @default true */
  readonly protectVolumes?: boolean;
  /** Fixed backup PVC size. @default - sized by the runner from the database */
  readonly backupSize?: string;
  /** Smallest backup PVC. @default '1Gi' */
  readonly backupMinSize?: string;
  /** @default - the cluster's default storage class */
  readonly backupStorageClass?: string;
  /**
   * Upper bound of each hook Job in seconds (the Argo CD backup Job that also restores gets twice
   * this, a budget for each); run `helm upgrade --timeout` with at least this. Above 600: the Jobs
   * wait up to 600 s for the new database, and a deadline inside that wait would kill the Job
   * before the runner can say why it waited.
   *
   * @default 3600
   */
  readonly activeDeadlineSeconds?: number;
  /** pg_dump / pg_restore parallelism. @default 2 */
  readonly parallelJobs?: number;
  /**
   * Argo CD: the backup Job also restores, and there is no restore Job (DatabaseMigration
   * `restoreInBackupJob`): the outage loses a wave's hand-over, a pod start and a runner start.
   * `false` brings the restore Job back at `syncWaves.restore`. Helm cannot: its new database comes
   * after the pre-upgrade hooks.
   *
   * @default - true under Argo CD, false under Helm
   */
  readonly restoreInBackupJob?: boolean;
  /**
   * The plain (non-unique) indexes are built after the ready marker, while Keycloak boots, where
   * the runner scales Keycloak back itself (Helm); `false` builds them in the restore, before
   * Keycloak may start — for a rollout that also upgrades Keycloak to a version whose Liquibase
   * changes drop or rebuild such an index (DatabaseMigration `indexesAfterReady`).
   *
   * @default true
   */
  readonly indexesAfterReady?: boolean;
  /**
   * After a rollback to v1 wrote to the legacy database of a completed migration, upgrading again
   * is refused until you choose: put that migration's id here to keep the new database and discard
   * the legacy changes (the backup Job's error names the id). @default - unset: refuse
   */
  readonly acceptLegacyChangesOf?: string;
}

/**
 * Argo CD sync waves of the ordinary resources and of the backup and restore Sync hooks. The
 * defaults are below 0, where Argo CD prunes the objects this revision drops that carry no wave
 * (the Bitnami release being taken over): the new database starts before the backup stops
 * Keycloak, and the legacy database is pruned only once Keycloak is healthy on the new one.
 */
export interface PlatformSyncWaves {
  /** The new database (and a v1 shape's standalone). @default -40 */
  readonly database?: number;
  /** The backup Sync hook (stops Keycloak): strictly between `database` and `restore`, and below 0. @default -30 */
  readonly backup?: number;
  /**
   * The restore Sync hook and the NetworkPolicies, with `migration.restoreInBackupJob: false` (by
   * default the backup Job restores and the NetworkPolicies come with Keycloak): strictly between
   * `backup` and `keycloak`. @default -20
   */
  readonly restore?: number;
  /** Keycloak, its Ingress and monitor. @default -10 */
  readonly keycloak?: number;
}

/** Name and version of the generated Helm chart (`dist/helm/<name>/Chart.yaml`). */
export interface PlatformHelmChartConfig {
  /** @default 'keycloak-platform' */
  readonly name?: string;
  /** SemVer 2. @default '0.1.0' */
  readonly version?: string;
}

/** An Ingress for Keycloak, as Bitnami's `ingress.*` values give one. */
export interface PlatformIngressConfig {
  /** Public host name, e.g. `sso.example.com`. */
  readonly host: string;
  /** @default - the cluster's default IngressClass */
  readonly ingressClassName?: string;
  /** Secret with the host's certificate. @default - no TLS at the Ingress */
  readonly tlsSecretName?: string;
  /** @default - none */
  readonly annotations?: Readonly<Record<string, string>>;
}

/** NetworkPolicies for Keycloak and the migration Jobs (see KeycloakNetworkPolicies). */
export interface PlatformNetworkPoliciesConfig {
  /** Who may reach Keycloak's HTTP port. @default - anyone */
  readonly httpFrom?: readonly NetworkPeer[];
  /** Who may reach the management port (health, metrics). @default - anyone */
  readonly managementFrom?: readonly NetworkPeer[];
  /** The API server's endpoint CIDRs, for the Jobs. @default - any address (on `apiServerPorts`) */
  readonly apiServerCidrs?: readonly string[];
  /** The API server's endpoint ports, for the Jobs (with or without `apiServerCidrs`). @default [443, 6443] */
  readonly apiServerPorts?: readonly number[];
}

/** A Prometheus Operator monitor for Keycloak's metrics (see KeycloakMonitor). */
export interface PlatformMonitoringConfig {
  /** @default 'ServiceMonitor' */
  readonly kind?: 'ServiceMonitor' | 'PodMonitor';
  /** @default '30s' */
  readonly interval?: string;
  /** Labels for the Prometheus' monitor selector. @default - none */
  readonly labels?: Readonly<Record<string, string>>;
}

/** Everything `main.ts` needs; all optional. */
export interface PlatformConfig {
  /** Prefix of object names, as a Helm release name would be. @default 'keycloak' */
  readonly releaseName?: string;
  /** Namespace of every object (the ClusterRoleBinding names it). @default 'keycloak' */
  readonly namespace?: string;
  /** @default 'v2' */
  readonly shape?: LifecycleShape;
  /** @default - see PlatformImages */
  readonly images?: PlatformImages;
  /** @default - see PlatformKeycloakConfig */
  readonly keycloak?: PlatformKeycloakConfig;
  /** @default - see PlatformDatabaseConfig */
  readonly database?: PlatformDatabaseConfig;
  /** @default - see PlatformLegacyDatabaseConfig */
  readonly legacyDatabase?: PlatformLegacyDatabaseConfig;
  /** @default - see PlatformMigrationConfig */
  readonly migration?: PlatformMigrationConfig;
  /** @default { database: -40, backup: -30, restore: -20, keycloak: -10 } */
  readonly syncWaves?: PlatformSyncWaves;
  /** @default { name: 'keycloak-platform', version: '0.1.0' } */
  readonly helmChart?: PlatformHelmChartConfig;
  /** @default - no Ingress */
  readonly ingress?: PlatformIngressConfig;
  /** @default - no NetworkPolicies */
  readonly networkPolicies?: PlatformNetworkPoliciesConfig;
  /** @default - no ServiceMonitor */
  readonly monitoring?: PlatformMonitoringConfig;
}

/** Default runner image: what .github/workflows/runner-image.yml pushes for tag v0.1.0 (override with your registry's copy). */
export const DEFAULT_RUNNER_IMAGE = 'ghcr.io/keycloak-pg-migration/keycloak-pg-migration-runner:0.1.0';

/** A {@link PlatformConfig} with every default filled in and every value validated. */
export interface ResolvedPlatformConfig {
  readonly releaseName: string;
  readonly namespace: string;
  readonly shape: LifecycleShape;
  readonly images: Required<Omit<PlatformImages, 'postgresqlHa'>> & { readonly postgresqlHa?: string };
  readonly keycloak: {
    readonly name: string;
    readonly replicas: number;
    readonly hostname?: string;
    readonly proxyHeaders: 'xforwarded' | 'forwarded';
    readonly adminUsername: string;
    readonly resources?: ContainerResources;
  };
  readonly database: {
    readonly flavor: PostgresHaFlavorName;
    readonly instances: number;
    readonly storageSize: string;
    readonly storageClass?: string;
    readonly database: string;
    readonly username: string;
    readonly sslMode?: SslModeValue;
    readonly caSecret?: { readonly secretName: string; readonly key: string };
  };
  readonly legacyDatabase: {
    readonly name?: string;
    readonly database: string;
    readonly username: string;
    readonly secretName?: string;
    readonly passwordKey: string;
    readonly adminPasswordKey: string | null;
    readonly storageSize: string;
    readonly sslMode?: SslModeValue;
    readonly caSecret?: { readonly secretName: string; readonly key: string };
  };
  readonly migration: {
    readonly deleteLegacy: DeleteLegacyValue;
    readonly protectVolumes: boolean;
    readonly backupSize?: string;
    readonly backupMinSize: string;
    readonly backupStorageClass?: string;
    readonly activeDeadlineSeconds: number;
    readonly parallelJobs: number;
    readonly restoreInBackupJob?: boolean;
    readonly indexesAfterReady?: boolean;
    readonly acceptLegacyChangesOf?: string;
  };
  readonly syncWaves: Required<PlatformSyncWaves>;
  readonly helmChart: Required<PlatformHelmChartConfig>;
  /** Validated by the constructs they configure (KeycloakIngress, KeycloakNetworkPolicies, KeycloakMonitor). */
  readonly ingress?: PlatformIngressConfig;
  readonly networkPolicies?: PlatformNetworkPoliciesConfig;
  readonly monitoring?: PlatformMonitoringConfig;
}

// SemVer 2.0.0's official regular expression (semver.org), as Helm requires for chart versions.
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

const KNOWN_KEYS: Record<string, readonly string[]> = {
  '': ['releaseName', 'namespace', 'shape', 'images', 'keycloak', 'database', 'legacyDatabase', 'migration', 'syncWaves', 'helmChart', 'ingress', 'networkPolicies', 'monitoring'],
  ingress: ['host', 'ingressClassName', 'tlsSecretName', 'annotations'],
  networkPolicies: ['httpFrom', 'managementFrom', 'apiServerCidrs', 'apiServerPorts'],
  monitoring: ['kind', 'interval', 'labels'],
  images: ['keycloak', 'runner', 'postgresql', 'postgresqlHa', 'pgpool'],
  keycloak: ['name', 'replicas', 'hostname', 'proxyHeaders', 'adminUsername', 'resources'],
  database: ['flavor', 'instances', 'storageSize', 'storageClass', 'database', 'username', 'sslMode', 'caSecret', 'caKey'],
  legacyDatabase: ['name', 'database', 'username', 'secretName', 'passwordKey', 'adminPasswordKey', 'storageSize', 'sslMode', 'caSecret', 'caKey'],
  migration: ['deleteLegacy', 'protectVolumes', 'backupSize', 'backupMinSize', 'backupStorageClass', 'activeDeadlineSeconds', 'parallelJobs', 'restoreInBackupJob', 'indexesAfterReady', 'acceptLegacyChangesOf'],
  syncWaves: ['database', 'backup', 'restore', 'keycloak'],
  helmChart: ['name', 'version'],
};

/**
 * Fills the defaults of `config` and validates what only the platform knows (shape, waves, chart
 * name and version, unknown keys, sizes). The constructs validate their own props again when the
 * chart is built, with the same kind of message.
 */
export function resolvePlatformConfig(config: PlatformConfig = {}): ResolvedPlatformConfig {
  rejectUnknownKeys(config);
  const field = (path: string) => `platform config '${path}'`;

  const releaseName = validateDnsLabel(field('releaseName'), config.releaseName ?? 'keycloak');
  validateLabelValue(field('releaseName'), releaseName);
  const namespace = validateDnsLabel(field('namespace'), config.namespace ?? 'keycloak');
  const shape = config.shape ?? 'v2';
  if (!LIFECYCLE_SHAPES.includes(shape)) {
    throw new Error(
      `${field('shape')} must be 'v1' (Keycloak on a single PostgreSQL) or 'v2' (Keycloak on postgresql-ha with the ` +
        `migration), got ${JSON.stringify(shape)}`,
    );
  }

  const images = {
    keycloak: config.images?.keycloak ?? DEFAULT_KEYCLOAK_IMAGE,
    runner: config.images?.runner ?? DEFAULT_RUNNER_IMAGE,
    postgresql: config.images?.postgresql ?? DEFAULT_BITNAMI_POSTGRESQL_IMAGE,
    pgpool: config.images?.pgpool ?? DEFAULT_PGPOOL_IMAGE,
    ...(config.images?.postgresqlHa !== undefined ? { postgresqlHa: config.images.postgresqlHa } : {}),
  };
  for (const [key, image] of Object.entries(images)) validateImage(field(`images.${key}`), image);

  const proxyHeaders = config.keycloak?.proxyHeaders ?? 'xforwarded';
  if (proxyHeaders !== 'xforwarded' && proxyHeaders !== 'forwarded') {
    throw new Error(`${field('keycloak.proxyHeaders')} must be 'xforwarded' or 'forwarded', got ${JSON.stringify(proxyHeaders)}`);
  }
  const keycloak = {
    name: validateServiceName(field('keycloak.name'), config.keycloak?.name ?? bitnamiFullname(releaseName, 'keycloak')),
    replicas: validateIntegerRange(field('keycloak.replicas'), config.keycloak?.replicas ?? 2, 1, 100),
    proxyHeaders,
    adminUsername: config.keycloak?.adminUsername ?? 'admin',
    ...(config.keycloak?.hostname !== undefined ? { hostname: config.keycloak.hostname } : {}),
    ...(config.keycloak?.resources !== undefined ? { resources: config.keycloak.resources } : {}),
  };

  const flavors = Object.values(PostgresHaFlavor) as string[];
  const flavor = config.database?.flavor ?? PostgresHaFlavor.cloudNativePg;
  if (!flavors.includes(flavor)) {
    throw new Error(
      `${field('database.flavor')} must be one of ${flavors.map((f) => `'${f}'`).join(', ')}, got ${JSON.stringify(flavor)}: ` +
        `'repmgr' for Bitnami postgresql-ha (repmgr + Pgpool-II), 'cloudnative-pg' for a CloudNativePG Cluster`,
    );
  }
  const instances = config.database?.instances ?? 3;
  if (typeof instances !== 'number' || !Number.isInteger(instances) || instances < 2) {
    throw new Error(
      `${field('database.instances')} must be an integer of at least 2 (a primary and a standby to fail over to), ` +
        `got ${JSON.stringify(instances)}: use shape 'v1' for a single server`,
    );
  }
  validateIntegerRange(field('database.instances'), instances, 2, 9);
  const database = {
    flavor,
    instances,
    storageSize: validateSize(field('database.storageSize'), config.database?.storageSize ?? '8Gi', 2 ** 20),
    database: config.database?.database ?? 'keycloak',
    username: config.database?.username ?? 'keycloak',
    ...(config.database?.storageClass !== undefined
      ? { storageClass: validateDnsSubdomain(field('database.storageClass'), config.database.storageClass) }
      : {}),
    ...(config.database?.sslMode !== undefined
      ? { sslMode: validateSslMode(field('database.sslMode'), config.database.sslMode) }
      : {}),
    ...resolveCaSecret(field, 'database', config.database),
  };

  const legacy = config.legacyDatabase;
  const legacyDatabase = {
    database: legacy?.database ?? 'bitnami_keycloak',
    username: legacy?.username ?? 'bn_keycloak',
    passwordKey: legacy?.passwordKey ?? 'password',
    adminPasswordKey: legacy?.adminPasswordKey === undefined ? 'postgres-password' : legacy.adminPasswordKey,
    storageSize: validateSize(field('legacyDatabase.storageSize'), legacy?.storageSize ?? '8Gi', 2 ** 20),
    ...(legacy?.name !== undefined ? { name: legacy.name } : {}),
    ...(legacy?.secretName !== undefined ? { secretName: legacy.secretName } : {}),
    ...(legacy?.sslMode !== undefined ? { sslMode: validateSslMode(field('legacyDatabase.sslMode'), legacy.sslMode) } : {}),
    ...resolveCaSecret(field, 'legacyDatabase', legacy),
  };

  const deleteLegacy = config.migration?.deleteLegacy ?? DeleteLegacy.never;
  const deleteModes = Object.values(DeleteLegacy) as string[];
  if (!deleteModes.includes(deleteLegacy)) {
    throw new Error(
      `${field('migration.deleteLegacy')} must be one of ${deleteModes.map((m) => `'${m}'`).join(', ')}, ` +
        `got ${JSON.stringify(deleteLegacy)}: 'never' keeps the legacy StatefulSet's volume for a manual clean-up`,
    );
  }
  const backupMinSize = validateSize(field('migration.backupMinSize'), config.migration?.backupMinSize ?? '1Gi', 2 ** 20);
  const backupSize = config.migration?.backupSize;
  if (backupSize !== undefined) {
    validateSize(field('migration.backupSize'), backupSize);
    if (parseQuantity(field('migration.backupSize'), backupSize) < parseQuantity(field('migration.backupMinSize'), backupMinSize)) {
      throw new Error(
        `${field('migration.backupSize')} ${JSON.stringify(backupSize)} is smaller than migration.backupMinSize ` +
          `${JSON.stringify(backupMinSize)}: raise backupSize, or leave it unset so the runner sizes the volume`,
      );
    }
  }
  const migration = {
    deleteLegacy,
    protectVolumes: config.migration?.protectVolumes ?? true,
    backupMinSize,
    // Above the Jobs' longest wait (DatabaseMigration's targetWaitSeconds, 600 by default, which
    // the platform config does not change): the construct would refuse it without naming this field.
    activeDeadlineSeconds: validateIntegerRange(
      field('migration.activeDeadlineSeconds'),
      config.migration?.activeDeadlineSeconds ?? 3600,
      601,
      7 * 86_400,
    ),
    parallelJobs: validateIntegerRange(field('migration.parallelJobs'), config.migration?.parallelJobs ?? 2, 1, 64),
    ...(config.migration?.restoreInBackupJob !== undefined
      ? { restoreInBackupJob: validateBoolean(field('migration.restoreInBackupJob'), config.migration.restoreInBackupJob) }
      : {}),
    ...(config.migration?.indexesAfterReady !== undefined
      ? { indexesAfterReady: validateBoolean(field('migration.indexesAfterReady'), config.migration.indexesAfterReady) }
      : {}),
    ...(backupSize !== undefined ? { backupSize } : {}),
    ...(config.migration?.backupStorageClass !== undefined
      ? { backupStorageClass: validateDnsSubdomain(field('migration.backupStorageClass'), config.migration.backupStorageClass) }
      : {}),
    ...(config.migration?.acceptLegacyChangesOf !== undefined
      ? { acceptLegacyChangesOf: validateMigrationId(field('migration.acceptLegacyChangesOf'), config.migration.acceptLegacyChangesOf) }
      : {}),
  };

  const syncWaves = {
    database: config.syncWaves?.database ?? -40,
    backup: config.syncWaves?.backup ?? -30,
    restore: config.syncWaves?.restore ?? -20,
    keycloak: config.syncWaves?.keycloak ?? -10,
  };
  for (const [key, wave] of Object.entries(syncWaves)) validateIntegerRange(field(`syncWaves.${key}`), wave, -1000, 1000);
  if (!(syncWaves.database < syncWaves.backup && syncWaves.backup < 0)) {
    throw new Error(
      `${field('syncWaves.backup')} must be above syncWaves.database (${syncWaves.database}) and below 0, got ` +
        `${syncWaves.backup}: the backup stops Keycloak once the new database is healthy, and Argo CD prunes the legacy ` +
        `database of the release being taken over (it has no sync wave) at the start of wave 0; lower syncWaves.database ` +
        `or set syncWaves.backup between them (defaults: database -40, backup -30, restore -20, keycloak -10)`,
    );
  }
  if (!(syncWaves.backup < syncWaves.restore && syncWaves.restore < syncWaves.keycloak)) {
    throw new Error(
      `${field('syncWaves.restore')} must be strictly between syncWaves.backup (${syncWaves.backup}) and ` +
        `syncWaves.keycloak (${syncWaves.keycloak}), got ${syncWaves.restore}: the restore needs the verified backup ` +
        `and Keycloak must not start before the data is in place`,
    );
  }

  const helmChart = {
    name: config.helmChart?.name ?? 'keycloak-platform',
    version: config.helmChart?.version ?? '0.1.0',
  };
  // Helm chart names: lower case letters, digits and '-' (helm lint rejects upper case and '_').
  validateDnsLabel(field('helmChart.name'), helmChart.name);
  if (!SEMVER.test(helmChart.version)) {
    throw new Error(
      `${field('helmChart.version')} must be a SemVer 2 version such as "1.2.3" (Helm refuses anything else), ` +
        `got ${JSON.stringify(helmChart.version)}`,
    );
  }

  if (config.ingress !== undefined && (typeof config.ingress.host !== 'string' || config.ingress.host === '')) {
    throw new Error(`${field('ingress.host')} is required when 'ingress' is set: the public host name, e.g. "sso.example.com"`);
  }
  return {
    releaseName, namespace, shape, images, keycloak, database, legacyDatabase, migration, syncWaves, helmChart,
    ...(config.ingress !== undefined ? { ingress: config.ingress } : {}),
    ...(config.networkPolicies !== undefined ? { networkPolicies: config.networkPolicies } : {}),
    ...(config.monitoring !== undefined ? { monitoring: config.monitoring } : {}),
  };
}

function validateSslMode(field: string, mode: unknown): SslModeValue {
  const modes = Object.values(SslMode) as string[];
  if (typeof mode !== 'string' || !modes.includes(mode)) {
    throw new Error(
      `${field} must be one of ${modes.map((m) => `'${m}'`).join(', ')} (libpq sslmode), got ${JSON.stringify(mode)}: ` +
        `leave it unset to connect without TLS first and with TLS when the server requires it`,
    );
  }
  return mode as SslModeValue;
}

function rejectUnknownKeys(config: PlatformConfig): void {
  // A misspelt key ("instance", "deleteLegacyDatabase") would otherwise be ignored silently and
  // the default used instead, which for a data migration is worse than failing.
  const check = (path: string, value: unknown) => {
    if (value === undefined) return;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error(`platform config '${path || '(root)'}' must be an object, got ${JSON.stringify(value)}`);
    }
    const known = KNOWN_KEYS[path]!;
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) {
        throw new Error(
          `platform config '${path ? `${path}.` : ''}${key}' is not a known setting (got ${JSON.stringify((value as Record<string, unknown>)[key])}); ` +
            `known settings${path ? ` of '${path}'` : ''}: ${known.join(', ')}`,
        );
      }
    }
  };
  check('', config);
  for (const section of Object.keys(KNOWN_KEYS).filter((key) => key !== '')) {
    check(section, (config as Record<string, unknown>)[section]);
  }
}

/**
 * The configuration `npm run synth` writes into `dist/`. Everything left out takes its default:
 * a v2 platform (Keycloak on a three-instance CloudNativePG Cluster, migrating from the Bitnami
 * `keycloak-postgresql` database) in namespace `keycloak`.
 */
export const platformConfig: PlatformConfig = {
  releaseName: 'keycloak',
  namespace: 'keycloak',
  shape: 'v2',
  database: { flavor: 'cloudnative-pg', instances: 3 },
  migration: { deleteLegacy: 'never', protectVolumes: true },
  helmChart: { name: 'keycloak-platform', version: '0.1.0' },
};

/**
 * `caSecret` / `caKey` of a database section: both only with an sslMode (a CA alone changes
 * nothing), and an sslMode that verifies only with a CA (libpq would look for a root.crt that no
 * container has).
 */
function resolveCaSecret(
  field: (path: string) => string,
  section: 'database' | 'legacyDatabase',
  config: { readonly sslMode?: SslModeValue; readonly caSecret?: string; readonly caKey?: string } | undefined,
): { caSecret?: { secretName: string; key: string } } {
  const verifies = config?.sslMode === SslMode.verifyCa || config?.sslMode === SslMode.verifyFull;
  if (config?.caSecret === undefined) {
    if (config?.caKey !== undefined) throw new Error(`${field(`${section}.caKey`)} is set but ${section}.caSecret is not: name the Secret too, or remove caKey`);
    if (verifies) {
      throw new Error(
        `${field(`${section}.sslMode`)} ${JSON.stringify(config!.sslMode)} verifies the server's certificate, but ${section}.caSecret is not set: ` +
          `name the Secret holding the CA (CloudNativePG: '<cluster>-ca'), or use 'require' for encryption without verification`,
      );
    }
    return {};
  }
  if (config.sslMode === undefined || config.sslMode === SslMode.disable) {
    throw new Error(
      `${field(`${section}.caSecret`)} is set but ${section}.sslMode is ${config.sslMode === undefined ? 'unset' : "'disable'"}: set ${section}.sslMode to 'verify-full' (or 'verify-ca') to use the CA`,
    );
  }
  return {
    caSecret: {
      secretName: validateDnsSubdomain(field(`${section}.caSecret`), config.caSecret),
      key: validateSecretKey(field(`${section}.caKey`), config.caKey ?? 'ca.crt'),
    },
  };
}
