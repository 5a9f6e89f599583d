import { k8s } from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { customizePod, type PodCustomization } from './pod-customization.js';
import {
  BITNAMI_POSTGRESQL_VOLUME_DIR,
  bitnamiPostgresqlDataDirEnv,
  bitnamiPostgresqlVolumeMounts,
  bitnamiPostgresqlVolumes,
  dataVolumeClaimTemplate,
} from './bitnami-postgresql-pod.js';
import type { RequiredSecret } from './contract.js';
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
import {
  type KubeObjectName,
  validateDnsSubdomain,
  validateImage,
  validateIntegerRange,
  validateLabelValue,
  validatePort,
  validatePostgresIdentifier,
  validateSecretKey,
  validateServiceName,
  validateSize,
  validateStatefulSetName,
} from './validation.js';

/**
 * A legacy single PostgreSQL, described by names only: what the migration reads from and
 * protects. Both {@link PostgresStandalone} and {@link PostgresStandalone.describeExisting}
 * produce it.
 */
export interface LegacyDatabase {
  /** How to reach the database (application user, and the superuser when known). */
  readonly connection: DatabaseConnection;
  /** Name of the StatefulSet running it (the migration protects and may delete it). */
  readonly statefulSetName: string;
  /** Names of its data PVCs, `data-<statefulSetName>-<ordinal>` (their PVs are set to Retain). */
  readonly pvcNames: readonly string[];
  /** Every object it consists of, for name-collision checks against the new database. */
  readonly objectNames: readonly KubeObjectName[];
  /**
   * Labels that Bitnami's `postgresql` chart puts on its StatefulSets and PVCs whatever their
   * names (`fullnameOverride`, `nameOverride`, `architecture: replication` change names only):
   * the evidence the migration looks for before deciding that there is nothing to migrate.
   */
  readonly labels: Readonly<Record<string, string>>;
}

/** Default image: Bitnami's free versioned images moved to `bitnamilegacy` in August 2025. */
export const DEFAULT_BITNAMI_POSTGRESQL_IMAGE = 'docker.io/bitnamilegacy/postgresql:17.6.0-debian-12-r4';

// Defined beside the rest of the Bitnami pod layout; re-exported here, where it has always been public.
export { BITNAMI_POSTGRESQL_VOLUME_DIR } from './bitnami-postgresql-pod.js';

/**
 * Bitnami's `common.names.fullname`: the release name when it already contains the chart name,
 * else `<release>-<chart>`. Keycloak's bundled database in release `keycloak` is therefore
 * `keycloak-postgresql`, and a release called `postgresql` is just `postgresql`.
 */
export function bitnamiFullname(release: string, chart: string): string {
  return release.includes(chart) ? release : `${release}-${chart}`;
}

/** Names (only) of a Bitnami `postgresql` installation; see {@link PostgresStandalone.describeExisting}. */
export interface ExistingPostgresStandaloneOptions {
  /**
   * Helm release name of the Bitnami chart (Keycloak's chart: the Keycloak release name).
   *
   * @default 'keycloak'
   */
  readonly release?: string;
  /**
   * Fullname of the installation: the StatefulSet, Service and Secret names.
   *
   * @default - `<release>-postgresql` (or `release` when it contains "postgresql")
   */
  readonly name?: string;
  /**
   * Service clients connect to.
   *
   * @default - `name`
   */
  readonly serviceName?: string;
  /**
   * Port of that Service.
   *
   * @default 5432
   */
  readonly port?: number;
  /**
   * Database Keycloak uses.
   *
   * @default 'bitnami_keycloak'
   */
  readonly database?: string;
  /**
   * Application user.
   *
   * @default 'bn_keycloak'
   */
  readonly username?: string;
  /**
   * Secret with the passwords.
   *
   * @default - `name`
   */
  readonly secretName?: string;
  /**
   * Key of the application user's password.
   *
   * @default 'password'
   */
  readonly passwordKey?: string;
  /**
   * Key of the `postgres` superuser's password; `null` when the superuser password is not known
   * (then the migration uses the application user, which owns Keycloak's objects anyway).
   *
   * @default 'postgres-password'
   */
  readonly adminPasswordKey?: string | null;
  /**
   * Replicas of the StatefulSet (the chart's standalone architecture has exactly one).
   *
   * @default 1
   */
  readonly replicas?: number;
}

/** Properties of {@link PostgresStandalone}. */
export interface PostgresStandaloneProps extends ExistingPostgresStandaloneOptions {
  /**
   * Image; must carry a tag or digest. PostgreSQL's major version decides which pg_dump the
   * migration needs (at least this major).
   *
   * @default DEFAULT_BITNAMI_POSTGRESQL_IMAGE
   */
  readonly image?: string;
  /**
   * Size of the data volume.
   *
   * @default '8Gi'
   */
  readonly storageSize?: string;
  /**
   * Storage class of the data volume.
   *
   * @default - the cluster's default storage class
   */
  readonly storageClass?: string;
  /**
   * Requests and limits of the PostgreSQL container.
   *
   * @default - requests 250m CPU / 256Mi, limit 1Gi memory
   */
  readonly resources?: ContainerResources;
  /**
   * User and group ids.
   *
   * @default - 1001 (the Bitnami image's user) for all three
   */
  readonly podSecurity?: PodSecurityOptions;
  /**
   * Additions to the PostgreSQL pod: tolerations, node selector, affinity, topology spread, priority
   * class, pod annotations and labels, extra env, volumes and mounts, sidecars, pull secrets. The
   * result must still meet the Pod Security "restricted" profile.
   *
   * @default - none
   */
  readonly pod?: PodCustomization;
  /**
   * FOR TESTS AND DEVELOPMENT ONLY: synthesize the Secret with these passwords. They end up in
   * the manifests (and a GitOps repository) in clear text. Without it the Secret is only
   * referenced and listed in {@link PostgresStandalone.requiredSecrets}, for the migration
   * runner to create with random passwords.
   *
   * @default - the Secret is referenced, not synthesized
   */
  readonly insecureSecretValues?: { readonly password: string; readonly postgresPassword: string };
}

const DEFAULT_RESOURCES: ContainerResources = {
  requests: { cpu: '250m', memory: '256Mi' },
  limits: { memory: '1Gi' },
};

interface ResolvedNames {
  readonly release: string;
  readonly name: string;
  readonly serviceName: string;
  readonly headlessServiceName: string;
  readonly port: number;
  readonly database: string;
  readonly username: string;
  readonly secretName: string;
  readonly passwordKey: string;
  readonly adminPasswordKey: string | null;
  readonly replicas: number;
}

function resolveNames(field: string, options: ExistingPostgresStandaloneOptions, maxReplicas: number): ResolvedNames {
  const release = validateLabelValue(`${field} 'release'`, options.release ?? 'keycloak');
  const name = options.name ?? bitnamiFullname(release, 'postgresql');
  validateStatefulSetName(options.name === undefined ? `${field} StatefulSet name '${name}' (from 'release')` : `${field} 'name'`, name);
  const serviceName = validateServiceName(`${field} 'serviceName'`, options.serviceName ?? name);
  const headlessServiceName = validateServiceName(`${field} headless Service name`, `${name}-hl`);
  const adminPasswordKey =
    options.adminPasswordKey === null
      ? null
      : validateSecretKey(`${field} 'adminPasswordKey'`, options.adminPasswordKey ?? 'postgres-password');
  return {
    release,
    name,
    serviceName,
    headlessServiceName,
    port: validatePort(`${field} 'port'`, options.port ?? 5432),
    database: validatePostgresIdentifier(`${field} 'database'`, options.database ?? 'bitnami_keycloak'),
    username: validatePostgresIdentifier(`${field} 'username'`, options.username ?? 'bn_keycloak'),
    secretName: validateDnsSubdomain(`${field} 'secretName'`, options.secretName ?? name),
    passwordKey: validateSecretKey(`${field} 'passwordKey'`, options.passwordKey ?? 'password'),
    adminPasswordKey,
    replicas: validateIntegerRange(`${field} 'replicas'`, options.replicas ?? 1, 1, maxReplicas),
  };
}

function describe(names: ResolvedNames): LegacyDatabase {
  const pvcNames = Array.from({ length: names.replicas }, (_, ordinal) => `data-${names.name}-${ordinal}`);
  return {
    connection: {
      host: names.serviceName,
      port: names.port,
      database: names.database,
      credentials: { username: names.username, secretName: names.secretName, passwordKey: names.passwordKey },
      ...(names.adminPasswordKey !== null
        ? { adminCredentials: { username: 'postgres', secretName: names.secretName, passwordKey: names.adminPasswordKey } }
        : {}),
    },
    statefulSetName: names.name,
    pvcNames,
    labels: { 'app.kubernetes.io/name': 'postgresql', 'app.kubernetes.io/instance': names.release },
    objectNames: [
      { kind: 'StatefulSet', name: names.name },
      { kind: 'Service', name: names.serviceName },
      { kind: 'Service', name: names.headlessServiceName },
      { kind: 'Secret', name: names.secretName },
      ...pvcNames.map((name) => ({ kind: 'PersistentVolumeClaim', name })),
    ],
  };
}

/**
 * The legacy shape users migrate FROM: a single PostgreSQL laid out exactly like Bitnami's
 * `postgresql` chart (the database Keycloak's Bitnami chart bundles), so that the names, the
 * Secret keys, the PVC and the StatefulSet selector match a real installation.
 *
 * By default it synthesizes no Secret: it references `<name>` and lists it in
 * {@link requiredSecrets}.
 */
export class PostgresStandalone extends Construct implements LegacyDatabase {
  /**
   * Describes an existing Bitnami `postgresql` installation by its names; synthesizes nothing.
   * Use it for the database the migration reads from when another tool deployed it.
   */
  public static describeExisting(options: ExistingPostgresStandaloneOptions = {}): LegacyDatabase {
    return describe(resolveNames('PostgresStandalone.describeExisting', options, 1000));
  }

  /** Helm release name this installation imitates (label `app.kubernetes.io/instance`). */
  public readonly release: string;
  /** StatefulSet name (`<release>-postgresql`). */
  public readonly statefulSetName: string;
  /** Service clients use (`<release>-postgresql`). */
  public readonly serviceName: string;
  /** Headless Service governing the StatefulSet (`<release>-postgresql-hl`). */
  public readonly headlessServiceName: string;
  /** Secret with keys `password` and `postgres-password`. */
  public readonly secretName: string;
  /** Connection for the application user, with the superuser as admin. */
  public readonly connection: DatabaseConnection;
  /** `data-<statefulSetName>-0`. */
  public readonly pvcNames: readonly string[];
  /** Everything this construct creates (and the PVC its StatefulSet creates). */
  public readonly objectNames: readonly KubeObjectName[];
  /** Bitnami's name and instance labels, on the StatefulSet and its PVC. */
  public readonly labels: Readonly<Record<string, string>>;
  /** Secrets referenced but not synthesized: create them before (or let the runner create them). */
  public readonly requiredSecrets: readonly RequiredSecret[];
  /** The image in use. */
  public readonly image: string;
  /** Replicas (always 1: Bitnami's standalone architecture). */
  public readonly replicas: number;
  /** The StatefulSet object, for escape hatches. */
  public readonly statefulSet: k8s.KubeStatefulSet;
  /** Labels of the PostgreSQL pod (Bitnami's selector), e.g. for NetworkPolicies. */
  public readonly clientPodSelectorLabels: Readonly<Record<string, string>>;

  public constructor(scope: Construct, id: string, props: PostgresStandaloneProps = {}) {
    super(scope, id);
    const field = 'PostgresStandalone';
    if (props.replicas !== undefined && props.replicas !== 1) {
      throw new Error(
        `${field} 'replicas' must be 1, got ${props.replicas}: a standalone PostgreSQL has exactly one server; ` +
          `use PostgresHa for replicas`,
      );
    }
    const names = resolveNames(field, props, 1);
    if (names.adminPasswordKey === null) {
      throw new Error(
        `${field} 'adminPasswordKey' must be a Secret key here, got null: the Bitnami image needs the superuser ` +
          `password (POSTGRES_POSTGRES_PASSWORD); null is only for describeExisting`,
      );
    }
    const image = props.image ?? DEFAULT_BITNAMI_POSTGRESQL_IMAGE;
    validateImage(`${field} 'image'`, image);
    const storageSize = validateSize(`${field} 'storageSize'`, props.storageSize ?? '8Gi', 2 ** 20);
    if (props.storageClass !== undefined) validateDnsSubdomain(`${field} 'storageClass'`, props.storageClass);
    const ids = resolvePodSecurity(`${field} 'podSecurity'`, props.podSecurity, BITNAMI_USER_ID);
    const resources = resourceRequirements(`${field} 'resources'`, props.resources, DEFAULT_RESOURCES);

    const description = describe(names);
    this.release = names.release;
    this.statefulSetName = names.name;
    this.serviceName = names.serviceName;
    this.headlessServiceName = names.headlessServiceName;
    this.secretName = names.secretName;
    this.connection = description.connection;
    this.pvcNames = description.pvcNames;
    this.objectNames = description.objectNames;
    this.labels = description.labels;
    this.image = image;
    this.replicas = 1;

    // Bitnami's selector labels: matching them lets this StatefulSet take over one a Helm
    // release created (a StatefulSet's selector is immutable).
    const selector = {
      'app.kubernetes.io/name': 'postgresql',
      'app.kubernetes.io/instance': names.release,
      'app.kubernetes.io/component': 'primary',
    };
    const labels = { ...selector };
    this.clientPodSelectorLabels = selector;

    if (props.insecureSecretValues) {
      const values = props.insecureSecretValues;
      for (const [key, value] of Object.entries(values)) {
        if (typeof value !== 'string' || value.length === 0) {
          throw new Error(`${field} 'insecureSecretValues.${key}' must be a non-empty string, got ${JSON.stringify(value)}`);
        }
      }
      new k8s.KubeSecret(this, 'secret', {
        metadata: { name: names.secretName, labels },
        type: 'Opaque',
        stringData: { [names.passwordKey]: values.password, [names.adminPasswordKey]: values.postgresPassword },
      });
      this.requiredSecrets = [];
    } else {
      this.requiredSecrets = [{ name: names.secretName, keys: [names.passwordKey, names.adminPasswordKey] }];
    }

    const servicePort = {
      name: 'tcp-postgresql',
      port: names.port,
      targetPort: k8s.IntOrString.fromString('tcp-postgresql'),
      protocol: 'TCP',
    };
    new k8s.KubeService(this, 'headless-service', {
      metadata: { name: names.headlessServiceName, labels },
      spec: {
        type: 'ClusterIP',
        clusterIp: 'None',
        // The StatefulSet's pod must resolve before it is ready (Bitnami does the same).
        publishNotReadyAddresses: true,
        ports: [servicePort],
        selector,
      },
    });
    new k8s.KubeService(this, 'service', {
      metadata: { name: names.serviceName, labels },
      spec: { type: 'ClusterIP', ports: [servicePort], selector },
    });

    const secretEnv = (name: string, key: string): k8s.EnvVar => ({
      name,
      valueFrom: { secretKeyRef: { name: names.secretName, key } },
    });
    const pgIsReady = `exec pg_isready -U "${names.username}" -d "dbname=${names.database}" -h 127.0.0.1 -p ${names.port}`;
    this.statefulSet = new k8s.KubeStatefulSet(this, 'statefulset', {
      metadata: { name: names.name, labels },
      spec: {
        replicas: 1,
        serviceName: names.headlessServiceName,
        podManagementPolicy: 'OrderedReady',
        updateStrategy: { type: 'RollingUpdate' },
        selector: { matchLabels: selector },
        template: {
          metadata: { labels },
          spec: {
            automountServiceAccountToken: false,
            securityContext: restrictedPodSecurityContext(ids),
            containers: [
              {
                name: 'postgresql',
                image,
                imagePullPolicy: 'IfNotPresent',
                securityContext: restrictedContainerSecurityContext(ids),
                env: [
                  { name: 'BITNAMI_DEBUG', value: 'false' },
                  { name: 'POSTGRESQL_PORT_NUMBER', value: String(names.port) },
                  ...bitnamiPostgresqlDataDirEnv(),
                  { name: 'POSTGRES_USER', value: names.username },
                  secretEnv('POSTGRES_PASSWORD', names.passwordKey),
                  secretEnv('POSTGRES_POSTGRES_PASSWORD', names.adminPasswordKey),
                  { name: 'POSTGRES_DATABASE', value: names.database },
                  { name: 'POSTGRESQL_ENABLE_LDAP', value: 'no' },
                  { name: 'POSTGRESQL_ENABLE_TLS', value: 'no' },
                  { name: 'POSTGRESQL_LOG_HOSTNAME', value: 'false' },
                  { name: 'POSTGRESQL_LOG_CONNECTIONS', value: 'false' },
                  { name: 'POSTGRESQL_LOG_DISCONNECTIONS', value: 'false' },
                  { name: 'POSTGRESQL_PGAUDIT_LOG_CATALOG', value: 'off' },
                  { name: 'POSTGRESQL_CLIENT_MIN_MESSAGES', value: 'error' },
                  { name: 'POSTGRESQL_SHARED_PRELOAD_LIBRARIES', value: 'pgaudit' },
                ],
                ports: [{ name: 'tcp-postgresql', containerPort: names.port, protocol: 'TCP' }],
                livenessProbe: {
                  exec: { command: ['/bin/sh', '-c', pgIsReady] },
                  initialDelaySeconds: 30,
                  periodSeconds: 10,
                  timeoutSeconds: 5,
                  failureThreshold: 6,
                },
                readinessProbe: {
                  // Ready only after the image's first-boot initialisation finished, not just
                  // when the server accepts connections during it.
                  exec: {
                    command: [
                      '/bin/sh',
                      '-c',
                      '-e',
                      `${pgIsReady}\n[ -f /opt/bitnami/postgresql/tmp/.initialized ] || [ -f ${BITNAMI_POSTGRESQL_VOLUME_DIR}/.initialized ]\n`,
                    ],
                  },
                  initialDelaySeconds: 5,
                  periodSeconds: 10,
                  timeoutSeconds: 5,
                  failureThreshold: 6,
                },
                resources,
                volumeMounts: bitnamiPostgresqlVolumeMounts(),
              },
            ],
            volumes: bitnamiPostgresqlVolumes(),
          },
        },
        volumeClaimTemplates: [dataVolumeClaimTemplate(storageSize, props.storageClass)],
      },
    });
    customizePod(this.statefulSet, `${field} 'pod'`, props.pod, ['postgresql']);
  }
}
