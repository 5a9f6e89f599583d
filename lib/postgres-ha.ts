import { ApiObject } from 'cdk8s';
import { k8s } from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { cloudNativePgPodSpec, customizePod, type PodCustomization } from './pod-customization.js';
import {
  bitnamiPostgresqlDataDirEnv,
  bitnamiPostgresqlVolumeMounts,
  bitnamiPostgresqlVolumes,
  dataVolumeClaimTemplate,
} from './bitnami-postgresql-pod.js';
import { KEEP_ANNOTATIONS, type RequiredSecret } from './contract.js';
import type { DatabaseConnection } from './database-connection.js';
import {
  BITNAMI_USER_ID,
  type ContainerResources,
  type PodSecurityOptions,
  resolvePodSecurity,
  resourceRequirements,
  restrictedContainerSecurityContext,
  restrictedPodSecurityContext,
} from './pod-security.js';
import { bitnamiFullname } from './postgres-standalone.js';
import {
  type KubeObjectName,
  validateDnsSubdomain,
  validateImage,
  validateIntegerRange,
  validateLabelValue,
  validatePostgresIdentifier,
  validateServiceName,
  validateSize,
  validateStatefulSetName,
} from './validation.js';

/** The two layouts of a highly available PostgreSQL. */
export const PostgresHaFlavor = {
  /** Bitnami `postgresql-ha`: repmgr-managed streaming replication behind Pgpool-II. */
  repmgr: 'repmgr',
  /** A CloudNativePG `Cluster` (the operator must be installed). */
  cloudNativePg: 'cloudnative-pg',
} as const;
export type PostgresHaFlavorName = (typeof PostgresHaFlavor)[keyof typeof PostgresHaFlavor];

/** Default images; Bitnami's free versioned images moved to `bitnamilegacy` in August 2025. */
export const DEFAULT_REPMGR_IMAGE = 'docker.io/bitnamilegacy/postgresql-repmgr:17.6.0-debian-12-r2';
export const DEFAULT_PGPOOL_IMAGE = 'docker.io/bitnamilegacy/pgpool:4.6.3-debian-12-r0';

/** API version and kind of the CloudNativePG Cluster. */
export const CNPG_CLUSTER_API_VERSION = 'postgresql.cnpg.io/v1';
export const CNPG_CLUSTER_KIND = 'Cluster';

/**
 * Something that must be ready before the database accepts writes: a workload with all replicas
 * ready, or a custom resource with a status condition True. The runner also waits until the
 * connection's primary accepts writes (MIGRATION_TARGET_WAIT_SECONDS).
 */
export interface ReadinessTarget {
  /** apiVersion, e.g. `apps/v1` or `postgresql.cnpg.io/v1`. */
  readonly apiVersion: string;
  /** kind, e.g. `StatefulSet`, `Deployment`, `Cluster`. */
  readonly kind: string;
  /** metadata.name. */
  readonly name: string;
  /** For workloads: ready replicas to wait for. */
  readonly replicas?: number;
  /** For custom resources: the status condition type that must be True. */
  readonly condition?: string;
}

/** Properties of {@link PostgresHa}. */
export interface PostgresHaProps {
  /**
   * `repmgr` (Bitnami postgresql-ha: repmgr + Pgpool-II) or `cloudnative-pg` (a CloudNativePG
   * Cluster; the operator must be installed in the cluster).
   *
   * @default 'repmgr'
   */
  readonly flavor?: PostgresHaFlavorName;
  /**
   * Release name (label `app.kubernetes.io/instance`; with repmgr the prefix of every name).
   *
   * @default 'keycloak'
   */
  readonly release?: string;
  /**
   * repmgr: the fullname F that prefixes every object (`F-postgresql`, `F-pgpool`, ...).
   * cloudnative-pg: the Cluster's name (services `<name>-rw`, Secret `<name>-app`).
   *
   * @default - `<release>-postgresql-ha` (or `release` when it contains "postgresql-ha")
   */
  readonly name?: string;
  /**
   * Number of PostgreSQL instances: one primary, the rest hot standbys.
   *
   * @default 3
   */
  readonly instances?: number;
  /**
   * Database created for the application.
   *
   * @default 'keycloak'
   */
  readonly database?: string;
  /**
   * Application user, owner of the database.
   *
   * @default 'keycloak'
   */
  readonly username?: string;
  /**
   * Size of each instance's data volume.
   *
   * @default '8Gi'
   */
  readonly storageSize?: string;
  /**
   * Storage class of the data volumes.
   *
   * @default - the cluster's default storage class
   */
  readonly storageClass?: string;
  /**
   * Requests and limits of each PostgreSQL instance.
   *
   * @default - requests 250m CPU / 256Mi, limit 1Gi memory
   */
  readonly resources?: ContainerResources;
  /**
   * repmgr: PostgreSQL-with-repmgr image. cloudnative-pg: the Cluster's `imageName`.
   *
   * @default - repmgr: DEFAULT_REPMGR_IMAGE; cloudnative-pg: the operator's default image
   */
  readonly image?: string;
  /**
   * repmgr only: Pgpool-II image.
   *
   * @default DEFAULT_PGPOOL_IMAGE
   */
  readonly pgpoolImage?: string;
  /**
   * repmgr only: Pgpool-II replicas (Bitnami's default is 1).
   *
   * @default 1
   */
  readonly pgpoolReplicas?: number;
  /**
   * repmgr only: requests and limits of Pgpool-II.
   *
   * @default - requests 100m CPU / 128Mi, limit 512Mi memory
   */
  readonly pgpoolResources?: ContainerResources;
  /**
   * repmgr only: the cluster's DNS domain, used in the repmgr node names.
   *
   * @default 'cluster.local'
   */
  readonly clusterDomain?: string;
  /**
   * repmgr only: user and group ids.
   *
   * @default - 1001 (the Bitnami images' user) for all three
   */
  readonly podSecurity?: PodSecurityOptions;
  /**
   * Additions to the PostgreSQL pods (repmgr: the StatefulSet's pods; cloudnative-pg: mapped onto the Cluster's `affinity`, `topologySpreadConstraints`, `priorityClassName`, `inheritedMetadata`, `env` and `imagePullSecrets` — sidecars and volumes are refused there, the operator makes the pods): tolerations, node selector, affinity, topology spread, priority
   * class, pod annotations and labels, extra env, volumes and mounts, sidecars, pull secrets. The
   * result must still meet the Pod Security "restricted" profile.
   *
   * @default - none
   */
  readonly pod?: PodCustomization;
  /**
   * Additions to the Pgpool-II pods (repmgr only): tolerations, node selector, affinity, topology spread, priority
   * class, pod annotations and labels, extra env, volumes and mounts, sidecars, pull secrets. The
   * result must still meet the Pod Security "restricted" profile.
   *
   * @default - none
   */
  readonly pgpoolPod?: PodCustomization;
  /**
   * cloudnative-pg only: Secret (kubernetes.io/basic-auth, keys `username` = owner and `password`)
   * for the owner. It must exist before the Cluster: the runner's random Secrets have no `username`.
   *
   * @default - the operator generates `<name>-app`
   */
  readonly appSecretName?: string;
  /**
   * cloudnative-pg only: let the operator create `<name>-superuser` and allow superuser logins;
   * the connection then carries it as adminCredentials.
   *
   * @default false
   */
  readonly enableSuperuserAccess?: boolean;
  /**
   * repmgr only, FOR TESTS AND DEVELOPMENT ONLY: synthesize the Secrets with these passwords,
   * which then sit in the manifests in clear text. Without it the Secrets are referenced and
   * listed in {@link PostgresHa.requiredSecrets} for the migration runner to create.
   *
   * @default - Secrets referenced, not synthesized
   */
  readonly insecureSecretValues?: {
    readonly password: string;
    readonly repmgrPassword: string;
    readonly postgresPassword: string;
    readonly pgpoolAdminPassword: string;
  };
}

const DEFAULT_POSTGRES_RESOURCES: ContainerResources = {
  requests: { cpu: '250m', memory: '256Mi' },
  limits: { memory: '1Gi' },
};
const DEFAULT_PGPOOL_RESOURCES: ContainerResources = {
  requests: { cpu: '100m', memory: '128Mi' },
  limits: { memory: '512Mi' },
};

const REPMGR_ONLY_PROPS = [
  'pgpoolImage',
  'pgpoolReplicas',
  'pgpoolResources',
  'clusterDomain',
  'podSecurity',
  'insecureSecretValues',
  'pgpoolPod',
] as const;
const CNPG_ONLY_PROPS = ['appSecretName', 'enableSuperuserAccess'] as const;

/**
 * A highly available PostgreSQL for Keycloak, as Bitnami `postgresql-ha` (repmgr + Pgpool-II)
 * or as a CloudNativePG `Cluster`. Either way it exposes one {@link connection} for clients.
 */
export class PostgresHa extends Construct {
  /** The flavor in use. */
  public readonly flavor: PostgresHaFlavorName;
  /** repmgr: the fullname prefix F. cloudnative-pg: the Cluster's name. */
  public readonly name: string;
  /** Number of PostgreSQL instances. */
  public readonly instances: number;
  /** How clients reach the primary: `F-pgpool` (repmgr) or `<name>-rw` (cloudnative-pg). */
  public readonly connection: DatabaseConnection;
  /** Secrets referenced but not synthesized, for the migration runner to create (repmgr only). */
  public readonly requiredSecrets: readonly RequiredSecret[];
  /** Every object this construct creates, or that its operator creates with a known name. */
  public readonly objectNames: readonly KubeObjectName[];
  /** What must be ready before the database serves clients. */
  public readonly readinessTargets: readonly ReadinessTarget[];
  /** repmgr: the PostgreSQL StatefulSet (`F-postgresql`); cloudnative-pg: undefined. */
  public readonly statefulSetName?: string;
  /** The main object synthesized: the StatefulSet (repmgr) or the Cluster (cloudnative-pg). */
  public readonly apiObject: ApiObject;
  /**
   * Labels of the pods that clients' connections reach ({@link connection}): Pgpool's (repmgr) or
   * the Cluster's instances (cloudnative-pg, `cnpg.io/cluster`), e.g. for NetworkPolicies.
   */
  public readonly clientPodSelectorLabels: Readonly<Record<string, string>>;

  public constructor(scope: Construct, id: string, props: PostgresHaProps = {}) {
    super(scope, id);
    const field = 'PostgresHa';
    const flavor = props.flavor ?? PostgresHaFlavor.repmgr;
    const flavors = Object.values(PostgresHaFlavor) as string[];
    if (!flavors.includes(flavor)) {
      throw new Error(`${field} 'flavor' must be one of ${flavors.map((f) => `'${f}'`).join(', ')}, got ${JSON.stringify(flavor)}`);
    }
    const misplaced = (flavor === 'repmgr' ? CNPG_ONLY_PROPS : REPMGR_ONLY_PROPS).filter(
      (prop) => (props as Record<string, unknown>)[prop] !== undefined,
    );
    if (misplaced.length > 0) {
      throw new Error(
        `${field} ${misplaced.map((p) => `'${p}'`).join(', ')} ${misplaced.length > 1 ? 'do' : 'does'} not apply to ` +
          `flavor '${flavor}': remove ${misplaced.length > 1 ? 'them' : 'it'} or choose the other flavor`,
      );
    }
    this.flavor = flavor;
    const release = validateLabelValue(`${field} 'release'`, props.release ?? 'keycloak');
    const name = props.name ?? bitnamiFullname(release, 'postgresql-ha');
    const nameField = props.name === undefined ? `${field} name '${name}' (from 'release')` : `${field} 'name'`;
    validateServiceName(nameField, name);
    const instances = props.instances ?? 3;
    if (typeof instances !== 'number' || !Number.isInteger(instances) || instances < 2) {
      throw new Error(
        `${field} 'instances' must be an integer of at least 2 (a primary and a standby to fail over to), ` +
          `got ${JSON.stringify(instances)}: use PostgresStandalone for a single server`,
      );
    }
    validateIntegerRange(`${field} 'instances'`, instances, 2, 9);
    const common: CommonSettings = {
      field,
      release,
      name,
      nameField,
      instances,
      database: validatePostgresIdentifier(`${field} 'database'`, props.database ?? 'keycloak'),
      username: validatePostgresIdentifier(`${field} 'username'`, props.username ?? 'keycloak'),
      storageSize: validateSize(`${field} 'storageSize'`, props.storageSize ?? '8Gi', 2 ** 20),
      storageClass:
        props.storageClass === undefined ? undefined : validateDnsSubdomain(`${field} 'storageClass'`, props.storageClass),
    };
    if (common.username === 'postgres') {
      throw new Error(
        `${field} 'username' must not be 'postgres': Keycloak should own its database without being the superuser; ` +
          `choose e.g. 'keycloak'`,
      );
    }
    this.name = name;
    this.instances = instances;
    const built = flavor === 'repmgr' ? buildRepmgr(this, common, props) : buildCloudNativePg(this, common, props);
    this.connection = built.connection;
    this.requiredSecrets = built.requiredSecrets;
    this.objectNames = built.objectNames;
    this.readinessTargets = built.readinessTargets;
    this.statefulSetName = built.statefulSetName;
    this.apiObject = built.apiObject;
    this.clientPodSelectorLabels = built.clientPodSelectorLabels;
  }
}

interface CommonSettings {
  readonly field: string;
  readonly release: string;
  readonly name: string;
  readonly nameField: string;
  readonly instances: number;
  readonly database: string;
  readonly username: string;
  readonly storageSize: string;
  readonly storageClass: string | undefined;
}

interface BuiltDatabase {
  readonly connection: DatabaseConnection;
  readonly requiredSecrets: readonly RequiredSecret[];
  readonly objectNames: readonly KubeObjectName[];
  readonly readinessTargets: readonly ReadinessTarget[];
  readonly statefulSetName?: string;
  readonly apiObject: ApiObject;
  readonly clientPodSelectorLabels: Readonly<Record<string, string>>;
}

const POSTGRES_PORT = 5432;

/** Bitnami postgresql-ha's layout: StatefulSet `F-postgresql` with repmgr, Deployment `F-pgpool`. */
function buildRepmgr(scope: Construct, common: CommonSettings, props: PostgresHaProps): BuiltDatabase {
  const { field, name: fullname } = common;
  const statefulSetName = validateStatefulSetName(`${common.nameField} + '-postgresql' (StatefulSet name)`, `${fullname}-postgresql`);
  const headlessServiceName = validateServiceName(`${field} headless Service name`, `${statefulSetName}-headless`);
  const pgpoolName = validateServiceName(`${field} Pgpool name`, `${fullname}-pgpool`);
  const postgresSecretName = statefulSetName;
  const pgpoolSecretName = pgpoolName;
  const image = props.image ?? DEFAULT_REPMGR_IMAGE;
  validateImage(`${field} 'image'`, image);
  const pgpoolImage = props.pgpoolImage ?? DEFAULT_PGPOOL_IMAGE;
  validateImage(`${field} 'pgpoolImage'`, pgpoolImage);
  const pgpoolReplicas = validateIntegerRange(`${field} 'pgpoolReplicas'`, props.pgpoolReplicas ?? 1, 1, 10);
  const clusterDomain = validateDnsSubdomain(`${field} 'clusterDomain'`, props.clusterDomain ?? 'cluster.local');
  const ids = resolvePodSecurity(`${field} 'podSecurity'`, props.podSecurity, BITNAMI_USER_ID);
  const postgresResources = resourceRequirements(`${field} 'resources'`, props.resources, DEFAULT_POSTGRES_RESOURCES);
  const pgpoolResources = resourceRequirements(`${field} 'pgpoolResources'`, props.pgpoolResources, DEFAULT_PGPOOL_RESOURCES);

  const key = { password: 'password', repmgrPassword: 'repmgr-password', postgresPassword: 'postgres-password', pgpoolAdmin: 'admin-password' };
  const commonLabels = { 'app.kubernetes.io/name': 'postgresql-ha', 'app.kubernetes.io/instance': common.release };
  const postgresSelector = { ...commonLabels, 'app.kubernetes.io/component': 'postgresql', role: 'data' };
  const pgpoolSelector = { ...commonLabels, 'app.kubernetes.io/component': 'pgpool' };

  let requiredSecrets: RequiredSecret[];
  if (props.insecureSecretValues) {
    const values = props.insecureSecretValues;
    for (const prop of ['password', 'repmgrPassword', 'postgresPassword', 'pgpoolAdminPassword'] as const) {
      if (typeof values[prop] !== 'string' || values[prop].length === 0) {
        throw new Error(`${field} 'insecureSecretValues.${prop}' must be a non-empty string, got ${JSON.stringify(values[prop])}`);
      }
    }
    new k8s.KubeSecret(scope, 'postgresql-secret', {
      metadata: { name: postgresSecretName, labels: { ...commonLabels, 'app.kubernetes.io/component': 'postgresql' } },
      type: 'Opaque',
      stringData: {
        [key.password]: values.password,
        [key.repmgrPassword]: values.repmgrPassword,
        [key.postgresPassword]: values.postgresPassword,
      },
    });
    new k8s.KubeSecret(scope, 'pgpool-secret', {
      metadata: { name: pgpoolSecretName, labels: pgpoolSelector },
      type: 'Opaque',
      stringData: { [key.pgpoolAdmin]: values.pgpoolAdminPassword },
    });
    requiredSecrets = [];
  } else {
    requiredSecrets = [
      { name: postgresSecretName, keys: [key.password, key.repmgrPassword, key.postgresPassword] },
      { name: pgpoolSecretName, keys: [key.pgpoolAdmin] },
    ];
  }
  const fromPostgresSecret = (envName: string, secretKey: string): k8s.EnvVar => ({
    name: envName,
    valueFrom: { secretKeyRef: { name: postgresSecretName, key: secretKey } },
  });

  const postgresPort = {
    name: 'postgresql',
    port: POSTGRES_PORT,
    targetPort: k8s.IntOrString.fromString('postgresql'),
    protocol: 'TCP',
  };
  new k8s.KubeService(scope, 'postgresql-headless', {
    metadata: { name: headlessServiceName, labels: postgresSelector },
    spec: {
      type: 'ClusterIP',
      clusterIp: 'None',
      // repmgr resolves its partners' pod names before any of them is ready.
      publishNotReadyAddresses: true,
      ports: [postgresPort],
      selector: postgresSelector,
    },
  });
  new k8s.KubeService(scope, 'postgresql-service', {
    metadata: { name: statefulSetName, labels: postgresSelector },
    spec: { type: 'ClusterIP', ports: [postgresPort], selector: postgresSelector },
  });
  new k8s.KubeService(scope, 'pgpool-service', {
    metadata: { name: pgpoolName, labels: pgpoolSelector },
    spec: { type: 'ClusterIP', ports: [postgresPort], selector: pgpoolSelector },
  });

  const podFqdn = (ordinal: number | string): string =>
    `${statefulSetName}-${ordinal}.${headlessServiceName}.$(REPMGR_NAMESPACE).svc.${clusterDomain}`;
  const partnerNodes = Array.from({ length: common.instances }, (_, i) => podFqdn(i)).join(',');
  const psqlCheck =
    `PGPASSWORD=$POSTGRES_PASSWORD psql -w -U "${common.username}" -d "${common.database}" ` +
    `-h 127.0.0.1 -p ${POSTGRES_PORT} -c "SELECT 1"`;
  const execProbe = (initialDelaySeconds: number, failureThreshold: number): k8s.Probe => ({
    exec: { command: ['bash', '-ec', psqlCheck] },
    initialDelaySeconds,
    periodSeconds: 10,
    timeoutSeconds: 5,
    successThreshold: 1,
    failureThreshold,
  });

  const statefulSet = new k8s.KubeStatefulSet(scope, 'postgresql', {
    metadata: { name: statefulSetName, labels: postgresSelector },
    spec: {
      replicas: common.instances,
      podManagementPolicy: 'Parallel',
      serviceName: headlessServiceName,
      updateStrategy: { type: 'RollingUpdate' },
      selector: { matchLabels: postgresSelector },
      template: {
        metadata: { labels: postgresSelector },
        spec: {
          automountServiceAccountToken: false,
          securityContext: restrictedPodSecurityContext(ids),
          affinity: softAntiAffinity(postgresSelector),
          containers: [
            {
              name: 'postgresql',
              image,
              imagePullPolicy: 'IfNotPresent',
              securityContext: restrictedContainerSecurityContext(ids),
              // Order matters: $(MY_POD_NAME) and $(REPMGR_NAMESPACE) expand only from earlier entries.
              env: [
                { name: 'BITNAMI_DEBUG', value: 'false' },
                ...bitnamiPostgresqlDataDirEnv(),
                fromPostgresSecret('POSTGRES_POSTGRES_PASSWORD', key.postgresPassword),
                { name: 'POSTGRES_USER', value: common.username },
                fromPostgresSecret('POSTGRES_PASSWORD', key.password),
                { name: 'POSTGRES_DB', value: common.database },
                { name: 'POSTGRESQL_LOG_HOSTNAME', value: 'false' },
                { name: 'POSTGRESQL_LOG_CONNECTIONS', value: 'false' },
                { name: 'POSTGRESQL_LOG_DISCONNECTIONS', value: 'false' },
                { name: 'POSTGRESQL_PGAUDIT_LOG_CATALOG', value: 'off' },
                { name: 'POSTGRESQL_CLIENT_MIN_MESSAGES', value: 'error' },
                { name: 'POSTGRESQL_SHARED_PRELOAD_LIBRARIES', value: 'pgaudit, repmgr' },
                { name: 'POSTGRESQL_ENABLE_TLS', value: 'no' },
                { name: 'POSTGRESQL_PORT_NUMBER', value: String(POSTGRES_PORT) },
                { name: 'REPMGR_PORT_NUMBER', value: String(POSTGRES_PORT) },
                { name: 'REPMGR_PRIMARY_PORT', value: String(POSTGRES_PORT) },
                { name: 'MY_POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                { name: 'REPMGR_UPGRADE_EXTENSION', value: 'no' },
                { name: 'REPMGR_PGHBA_TRUST_ALL', value: 'no' },
                { name: 'REPMGR_MOUNTED_CONF_DIR', value: '/bitnami/repmgr/conf' },
                { name: 'REPMGR_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                { name: 'REPMGR_PARTNER_NODES', value: partnerNodes },
                { name: 'REPMGR_PRIMARY_HOST', value: podFqdn(0) },
                { name: 'REPMGR_NODE_NAME', value: '$(MY_POD_NAME)' },
                {
                  name: 'REPMGR_NODE_NETWORK_NAME',
                  value: `$(MY_POD_NAME).${headlessServiceName}.$(REPMGR_NAMESPACE).svc.${clusterDomain}`,
                },
                { name: 'REPMGR_NODE_TYPE', value: 'data' },
                { name: 'REPMGR_LOG_LEVEL', value: 'NOTICE' },
                { name: 'REPMGR_CONNECT_TIMEOUT', value: '5' },
                { name: 'REPMGR_RECONNECT_ATTEMPTS', value: '2' },
                { name: 'REPMGR_RECONNECT_INTERVAL', value: '3' },
                { name: 'REPMGR_USERNAME', value: 'repmgr' },
                fromPostgresSecret('REPMGR_PASSWORD', key.repmgrPassword),
                { name: 'REPMGR_DATABASE', value: 'repmgr' },
                { name: 'REPMGR_FENCE_OLD_PRIMARY', value: 'no' },
              ],
              ports: [{ name: 'postgresql', containerPort: POSTGRES_PORT, protocol: 'TCP' }],
              startupProbe: execProbe(5, 30),
              livenessProbe: execProbe(30, 6),
              readinessProbe: execProbe(5, 6),
              resources: postgresResources,
              volumeMounts: bitnamiPostgresqlVolumeMounts([
                { name: 'empty-dir', mountPath: '/opt/bitnami/postgresql/logs', subPath: 'app-logs-dir' },
                { name: 'empty-dir', mountPath: '/opt/bitnami/repmgr/conf', subPath: 'repmgr-conf-dir' },
                { name: 'empty-dir', mountPath: '/opt/bitnami/repmgr/tmp', subPath: 'repmgr-tmp-dir' },
                { name: 'empty-dir', mountPath: '/opt/bitnami/repmgr/logs', subPath: 'repmgr-logs-dir' },
              ]),
            },
          ],
          volumes: bitnamiPostgresqlVolumes(),
        },
      },
      volumeClaimTemplates: [dataVolumeClaimTemplate(common.storageSize, common.storageClass)],
    },
  });
  customizePod(statefulSet, `${field} 'pod'`, props.pod, ['postgresql']);

  const backendNodes = Array.from(
    { length: common.instances },
    (_, i) => `${i}:${statefulSetName}-${i}.${headlessServiceName}:${POSTGRES_PORT}`,
  ).join(',');
  const pgpool = new k8s.KubeDeployment(scope, 'pgpool', {
    metadata: { name: pgpoolName, labels: pgpoolSelector },
    spec: {
      replicas: pgpoolReplicas,
      selector: { matchLabels: pgpoolSelector },
      template: {
        metadata: { labels: pgpoolSelector },
        spec: {
          automountServiceAccountToken: false,
          securityContext: restrictedPodSecurityContext(ids),
          affinity: softAntiAffinity(pgpoolSelector),
          containers: [
            {
              name: 'pgpool',
              image: pgpoolImage,
              imagePullPolicy: 'IfNotPresent',
              securityContext: restrictedContainerSecurityContext(ids),
              env: [
                { name: 'BITNAMI_DEBUG', value: 'false' },
                { name: 'PGPOOL_BACKEND_NODES', value: backendNodes },
                // The repmgr user exists on every node from the start: no extra check user to create.
                { name: 'PGPOOL_SR_CHECK_USER', value: 'repmgr' },
                fromPostgresSecret('PGPOOL_SR_CHECK_PASSWORD', key.repmgrPassword),
                { name: 'PGPOOL_SR_CHECK_DATABASE', value: 'postgres' },
                { name: 'PGPOOL_ENABLE_LDAP', value: 'no' },
                { name: 'PGPOOL_POSTGRES_USERNAME', value: 'postgres' },
                fromPostgresSecret('PGPOOL_POSTGRES_PASSWORD', key.postgresPassword),
                // Pgpool authenticates clients itself: the application user must be in its pool_passwd.
                { name: 'PGPOOL_POSTGRES_CUSTOM_USERS', value: common.username },
                fromPostgresSecret('PGPOOL_POSTGRES_CUSTOM_PASSWORDS', key.password),
                { name: 'PGPOOL_ADMIN_USERNAME', value: 'admin' },
                {
                  name: 'PGPOOL_ADMIN_PASSWORD',
                  valueFrom: { secretKeyRef: { name: pgpoolSecretName, key: key.pgpoolAdmin } },
                },
                // Keycloak's Liquibase writes must reach the primary: with load balancing a
                // statement may land on a standby ("cannot execute CREATE TABLE in a read-only
                // transaction", bitnami/charts#15702, #23219).
                { name: 'PGPOOL_ENABLE_LOAD_BALANCING', value: 'no' },
                { name: 'PGPOOL_ENABLE_LOG_CONNECTIONS', value: 'no' },
                { name: 'PGPOOL_ENABLE_LOG_HOSTNAME', value: 'yes' },
                { name: 'PGPOOL_ENABLE_LOG_PER_NODE_STATEMENT', value: 'no' },
                { name: 'PGPOOL_ENABLE_TLS', value: 'no' },
              ],
              ports: [{ name: 'postgresql', containerPort: POSTGRES_PORT, protocol: 'TCP' }],
              livenessProbe: {
                exec: { command: ['/opt/bitnami/scripts/pgpool/healthcheck.sh'] },
                initialDelaySeconds: 30,
                periodSeconds: 10,
                timeoutSeconds: 5,
                failureThreshold: 5,
              },
              readinessProbe: {
                exec: {
                  command: [
                    'bash',
                    '-ec',
                    'PGPASSWORD=${PGPOOL_POSTGRES_PASSWORD} psql -U "postgres" -d "postgres" -h /opt/bitnami/pgpool/tmp -tA -c "SELECT 1" >/dev/null',
                  ],
                },
                initialDelaySeconds: 5,
                periodSeconds: 5,
                timeoutSeconds: 5,
                failureThreshold: 5,
              },
              resources: pgpoolResources,
              volumeMounts: [
                { name: 'empty-dir', mountPath: '/tmp', subPath: 'tmp-dir' },
                { name: 'empty-dir', mountPath: '/opt/bitnami/pgpool/etc', subPath: 'app-etc-dir' },
                { name: 'empty-dir', mountPath: '/opt/bitnami/pgpool/conf', subPath: 'app-conf-dir' },
                { name: 'empty-dir', mountPath: '/opt/bitnami/pgpool/tmp', subPath: 'app-tmp-dir' },
                { name: 'empty-dir', mountPath: '/opt/bitnami/pgpool/logs', subPath: 'app-logs-dir' },
              ],
            },
          ],
          volumes: [{ name: 'empty-dir', emptyDir: {} }],
        },
      },
    },
  });
  customizePod(pgpool, `${field} 'pgpoolPod'`, props.pgpoolPod, ['pgpool']);
  new k8s.KubePodDisruptionBudget(scope, 'postgresql-pdb', {
    metadata: { name: statefulSetName, labels: postgresSelector },
    spec: { maxUnavailable: k8s.IntOrString.fromNumber(1), selector: { matchLabels: postgresSelector } },
  });
  new k8s.KubePodDisruptionBudget(scope, 'pgpool-pdb', {
    metadata: { name: pgpoolName, labels: pgpoolSelector },
    spec: { maxUnavailable: k8s.IntOrString.fromNumber(1), selector: { matchLabels: pgpoolSelector } },
  });

  const pvcNames = Array.from({ length: common.instances }, (_, i) => `data-${statefulSetName}-${i}`);
  return {
    connection: {
      host: pgpoolName,
      port: POSTGRES_PORT,
      database: common.database,
      credentials: { username: common.username, secretName: postgresSecretName, passwordKey: key.password },
      adminCredentials: { username: 'postgres', secretName: postgresSecretName, passwordKey: key.postgresPassword },
    },
    requiredSecrets,
    objectNames: [
      { kind: 'StatefulSet', name: statefulSetName },
      { kind: 'Service', name: statefulSetName },
      { kind: 'Service', name: headlessServiceName },
      { kind: 'Service', name: pgpoolName },
      { kind: 'Deployment', name: pgpoolName },
      { kind: 'PodDisruptionBudget', name: statefulSetName },
      { kind: 'PodDisruptionBudget', name: pgpoolName },
      { kind: 'Secret', name: postgresSecretName },
      { kind: 'Secret', name: pgpoolSecretName },
      ...pvcNames.map((pvc) => ({ kind: 'PersistentVolumeClaim', name: pvc })),
    ],
    readinessTargets: [
      { apiVersion: 'apps/v1', kind: 'StatefulSet', name: statefulSetName, replicas: common.instances },
      { apiVersion: 'apps/v1', kind: 'Deployment', name: pgpoolName, replicas: pgpoolReplicas },
    ],
    statefulSetName,
    apiObject: statefulSet,
    clientPodSelectorLabels: pgpoolSelector,
  };
}

/** Prefer spreading instances over nodes, without blocking scheduling on small clusters. */
function softAntiAffinity(selector: Record<string, string>): k8s.Affinity {
  return {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        { weight: 1, podAffinityTerm: { labelSelector: { matchLabels: selector }, topologyKey: 'kubernetes.io/hostname' } },
      ],
    },
  };
}

/** A CloudNativePG Cluster; the operator creates the pods, services and the app Secret. */
function buildCloudNativePg(scope: Construct, common: CommonSettings, props: PostgresHaProps): BuiltDatabase {
  const { field, name } = common;
  // The operator names pods and PVCs `<name>-<serial>` and Jobs `<name>-<serial>-initdb`.
  validateStatefulSetName(common.nameField, name);
  if (props.image !== undefined) validateImage(`${field} 'image'`, props.image);
  const appSecretName =
    props.appSecretName === undefined ? `${name}-app` : validateDnsSubdomain(`${field} 'appSecretName'`, props.appSecretName);
  const enableSuperuserAccess = props.enableSuperuserAccess ?? false;
  const resources = resourceRequirements(`${field} 'resources'`, props.resources, DEFAULT_POSTGRES_RESOURCES);
  const labels = { 'app.kubernetes.io/name': 'postgresql-ha', 'app.kubernetes.io/instance': common.release };

  const cluster = new ApiObject(scope, 'cluster', {
    apiVersion: CNPG_CLUSTER_API_VERSION,
    kind: CNPG_CLUSTER_KIND,
    metadata: {
      name,
      labels,
      // The Cluster owns its PVCs: deleting it (a `helm rollback` to v1, an Argo CD prune, an
      // uninstall) would delete the migrated database with it, where a StatefulSet's PVCs survive.
      annotations: {
        [KEEP_ANNOTATIONS.helmResourcePolicy.key]: KEEP_ANNOTATIONS.helmResourcePolicy.value,
        [KEEP_ANNOTATIONS.argoSyncOptions.key]: KEEP_ANNOTATIONS.argoSyncOptions.value,
      },
    },
    spec: {
      instances: common.instances,
      ...(props.image !== undefined ? { imageName: props.image } : {}),
      enableSuperuserAccess,
      storage: {
        size: common.storageSize,
        ...(common.storageClass !== undefined ? { storageClass: common.storageClass } : {}),
      },
      bootstrap: {
        initdb: {
          database: common.database,
          owner: common.username,
          ...(props.appSecretName !== undefined ? { secret: { name: appSecretName } } : {}),
        },
      },
      resources: {
        ...(resources.requests ? { requests: quantitiesToStrings(resources.requests) } : {}),
        ...(resources.limits ? { limits: quantitiesToStrings(resources.limits) } : {}),
      },
      ...cloudNativePgPodSpec(`${field} 'pod'`, props.pod),
    },
  });
  const serial = Array.from({ length: common.instances }, (_, i) => `${name}-${i + 1}`);
  return {
    connection: {
      host: `${name}-rw`,
      port: POSTGRES_PORT,
      database: common.database,
      credentials: { username: common.username, secretName: appSecretName, passwordKey: 'password' },
      ...(enableSuperuserAccess
        ? { adminCredentials: { username: 'postgres', secretName: `${name}-superuser`, passwordKey: 'password' } }
        : {}),
    },
    // The operator generates `<name>-app`; a user-provided one must be basic-auth with a
    // username, which the runner's random Secrets are not: nothing for the runner to create.
    requiredSecrets: [],
    objectNames: [
      { kind: CNPG_CLUSTER_KIND, name },
      { kind: 'Service', name: `${name}-rw` },
      { kind: 'Service', name: `${name}-ro` },
      { kind: 'Service', name: `${name}-r` },
      { kind: 'Secret', name: appSecretName },
      ...(enableSuperuserAccess ? [{ kind: 'Secret', name: `${name}-superuser` }] : []),
      ...serial.map((pvc) => ({ kind: 'PersistentVolumeClaim', name: pvc })),
    ],
    readinessTargets: [{ apiVersion: CNPG_CLUSTER_API_VERSION, kind: CNPG_CLUSTER_KIND, name, condition: 'Ready' }],
    apiObject: cluster,
    // The label CloudNativePG puts on every instance pod of a Cluster.
    clientPodSelectorLabels: { 'cnpg.io/cluster': name },
  };
}

function quantitiesToStrings(quantities: Record<string, k8s.Quantity>): Record<string, string> {
  return Object.fromEntries(Object.entries(quantities).map(([resource, quantity]) => [resource, String(quantity.value)]));
}
