import { k8s } from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { Env, type RequiredSecret, RunnerCommand, SslMode, type SslModeValue, type WorkloadImmutableSpec } from './contract.js';
import type { DatabaseConnection } from './database-connection.js';
import { caFile, caVolume, jdbcTlsProperties, validateDatabaseTls } from './database-tls.js';
import { customizePod, type PodCustomization } from './pod-customization.js';
import {
  type ContainerResources,
  KEYCLOAK_USER_ID,
  type PodSecurityOptions,
  resolvePodSecurity,
  resourceRequirements,
  restrictedContainerSecurityContext,
  restrictedPodSecurityContext,
  SMALL_CONTAINER_RESOURCES,
} from './pod-security.js';
import {
  type KubeObjectName,
  validateDatabaseConnection,
  validateDnsSubdomain,
  validateImage,
  validateIntegerRange,
  validateLabelValue,
  validateSecretKey,
  validateServiceName,
  validateStatefulSetName,
} from './validation.js';

/** Default Keycloak image. */
export const DEFAULT_KEYCLOAK_IMAGE = 'quay.io/keycloak/keycloak:26.3.3';

/** Keycloak's HTTP port (TLS is expected to end at the ingress or a mesh). */
export const KEYCLOAK_HTTP_PORT = 8080;
/** The Service's HTTP port, as Bitnami's Keycloak chart serves it (`service.ports.http`). */
export const KEYCLOAK_SERVICE_PORT = 80;
/** Keycloak's management port: health and metrics endpoints. */
export const KEYCLOAK_MANAGEMENT_PORT = 9000;
/** JGroups port of the embedded Infinispan cluster. */
export const KEYCLOAK_JGROUPS_PORT = 7800;

/** A workload the migration scales to zero and back (`MIGRATION_WORKLOADS`). */
export interface WorkloadReference {
  /** Kind of the workload. */
  readonly kind: 'StatefulSet' | 'Deployment';
  /** metadata.name. */
  readonly name: string;
  /** Replicas the manifests declare (what the workload is scaled back to). */
  readonly replicas: number;
  /**
   * The StatefulSet's immutable fields, so that a migration taking over another chart's Keycloak
   * (Bitnami's selector adds `part-of` from chart 25, its serviceName is `<name>-headless`) can
   * replace it instead of failing the upgrade on them.
   */
  readonly immutableSpec: WorkloadImmutableSpec;
}

/** Where the initial admin's password lives; Keycloak creates that admin on its first start only. */
export interface KeycloakBootstrapAdmin {
  /**
   * Admin user name (a literal: it is not a secret).
   *
   * @default 'admin'
   */
  readonly username?: string;
  /** Secret holding the password. */
  readonly secretName: string;
  /**
   * Key of the password in that Secret.
   *
   * @default 'password'
   */
  readonly passwordKey?: string;
}

/**
 * An init container that holds Keycloak until the migration has put the data in place: the
 * runner's `gate` command waits until the database carries the ready marker, using Keycloak's own
 * database credentials (no Kubernetes API access).
 */
export interface KeycloakDatabaseGate {
  /** The migration runner image (must carry a tag or digest). */
  readonly image: string;
  /**
   * Command that starts the runner, when the image's entrypoint is not the runner itself; the
   * gate's arguments are always `[gate]`.
   *
   * @default - the image's entrypoint
   */
  readonly command?: readonly string[];
  /**
   * Seconds the gate waits before exiting non-zero (the kubelet then restarts it with back-off,
   * which shows up as a visible restart count instead of a silent hang).
   *
   * @default 600
   */
  readonly timeoutSeconds?: number;
  /**
   * Requests and limits of the gate container.
   *
   * @default SMALL_CONTAINER_RESOURCES
   */
  readonly resources?: ContainerResources;
  /**
   * libpq sslmode of the gate's connection (`TARGET_PGSSLMODE`). Set it to the same mode as the
   * migration's `sslMode.target` when the database requires TLS or a verified certificate.
   *
   * @default - the database connection's `tls.sslMode`; without one, unset: plain first, TLS if the server requires it
   */
  readonly sslMode?: SslModeValue;
}

/** Properties of {@link Keycloak}. */
export interface KeycloakProps {
  /** The database Keycloak uses (from PostgresStandalone, PostgresHa, or described by hand). */
  readonly database: DatabaseConnection;
  /**
   * Name of the StatefulSet (and label `app.kubernetes.io/instance`).
   *
   * @default 'keycloak'
   */
  readonly name?: string;
  /**
   * Name of the Service for HTTP (80 and 8080) and management (9000).
   *
   * @default - `name`
   */
  readonly serviceName?: string;
  /**
   * Keycloak image; must carry a tag or digest.
   *
   * @default DEFAULT_KEYCLOAK_IMAGE
   */
  readonly image?: string;
  /**
   * The image was built with `kc.sh build` for exactly these build options (postgres, health,
   * metrics, ispn/jdbc-ping cache). Then Keycloak starts with `start --optimized` and the root
   * filesystem is read-only. With the stock image, `start` re-augments Keycloak at every start
   * and writes into /opt/keycloak/lib, which a read-only root filesystem forbids
   * (keycloak/keycloak#44632).
   *
   * @default false
   */
  readonly optimized?: boolean;
  /**
   * Number of Keycloak pods. Two or more form one Infinispan cluster via jdbc-ping.
   *
   * @default 2
   */
  readonly replicas?: number;
  /**
   * Public host name (KC_HOSTNAME), e.g. `sso.example.com` or `https://sso.example.com`.
   *
   * @default - none: KC_HOSTNAME_STRICT=false, Keycloak derives URLs from each request
   */
  readonly hostname?: string;
  /**
   * Which proxy headers to trust (KC_PROXY_HEADERS): `xforwarded` for most ingress controllers,
   * `forwarded` for RFC 7239 proxies.
   *
   * @default 'xforwarded'
   */
  readonly proxyHeaders?: 'xforwarded' | 'forwarded';
  /**
   * Serve Prometheus metrics on the management port (KC_METRICS_ENABLED).
   *
   * @default true
   */
  readonly metricsEnabled?: boolean;
  /**
   * Temporary admin created on the first start (KC_BOOTSTRAP_ADMIN_USERNAME/PASSWORD). Its Secret
   * is referenced, not synthesized, and listed in {@link Keycloak.requiredSecrets}.
   *
   * @default - no bootstrap admin
   */
  readonly bootstrapAdmin?: KeycloakBootstrapAdmin;
  /**
   * Hold Keycloak in an init container until the migrated data is in place.
   *
   * @default - no gate
   */
  readonly databaseGate?: KeycloakDatabaseGate;
  /**
   * Requests and limits of the Keycloak container.
   *
   * @default - requests 500m CPU / 1Gi, limit 2Gi memory
   */
  readonly resources?: ContainerResources;
  /**
   * User and group ids.
   *
   * @default - 1000 (the Keycloak image's user) for all three
   */
  readonly podSecurity?: PodSecurityOptions;
  /**
   * Extra environment variables for the Keycloak container (plain values). They may not
   * override the ones this construct sets.
   *
   * @default - none
   */
  readonly extraEnv?: Readonly<Record<string, string>>;
  /**
   * Additions to the Keycloak pods: tolerations, node selector, affinity, topology spread, priority
   * class, pod annotations and labels, extra env, volumes and mounts, sidecars, pull secrets. The
   * result must still meet the Pod Security "restricted" profile.
   *
   * @default - none
   */
  readonly pod?: PodCustomization;
}

const DEFAULT_RESOURCES: ContainerResources = {
  requests: { cpu: '500m', memory: '1Gi' },
  limits: { memory: '2Gi' },
};

/**
 * Keycloak 26 as a StatefulSet behind a Service, clustered with jdbc-ping (the members meet in
 * the database, so no Kubernetes API access is needed), hardened to the "restricted" profile.
 */
export class Keycloak extends Construct {
  /** StatefulSet name. */
  public readonly statefulSetName: string;
  /** Service for HTTP (port 80 `http`, as Bitnami's; 8080 `http-direct`) and management (port 9000, `management`). */
  public readonly serviceName: string;
  /** Headless Service that governs the StatefulSet and carries JGroups (7800). */
  public readonly discoveryServiceName: string;
  /** PodDisruptionBudget name. */
  public readonly podDisruptionBudgetName: string;
  /** Replicas declared. */
  public readonly replicas: number;
  /** What the migration scales to zero while it moves the data. */
  public readonly workload: WorkloadReference;
  /** The database Keycloak connects to. */
  public readonly database: DatabaseConnection;
  /** Secrets referenced but not synthesized (the bootstrap admin's). */
  public readonly requiredSecrets: readonly RequiredSecret[];
  /** Every object this construct creates. */
  public readonly objectNames: readonly KubeObjectName[];
  /** Whether an init container gates the start on the migration's ready marker. */
  public readonly gated: boolean;
  /** The StatefulSet object, for escape hatches. */
  public readonly statefulSet: k8s.KubeStatefulSet;
  /** Whether Keycloak serves Prometheus metrics on the management port. */
  public readonly metricsEnabled: boolean;
  /** Labels that select Keycloak's pods (NetworkPolicies, monitors, spread constraints). */
  public readonly podSelectorLabels: Readonly<Record<string, string>>;

  public constructor(scope: Construct, id: string, props: KeycloakProps) {
    super(scope, id);
    const field = 'Keycloak';
    if (!props || props.database === undefined) {
      throw new Error(`${field} 'database' is required: pass the 'connection' of a PostgresStandalone or PostgresHa`);
    }
    const database = validateDatabaseConnection(`${field} 'database'`, props.database);
    const name = validateStatefulSetName(`${field} 'name'`, props.name ?? 'keycloak');
    validateLabelValue(`${field} 'name'`, name);
    const serviceName = validateServiceName(`${field} 'serviceName'`, props.serviceName ?? name);
    const discoveryServiceName = validateServiceName(`${field} discovery Service name (from 'name')`, `${name}-discovery`);
    if (serviceName === discoveryServiceName) {
      throw new Error(`${field} 'serviceName' must differ from the discovery Service '${discoveryServiceName}'`);
    }
    const image = props.image ?? DEFAULT_KEYCLOAK_IMAGE;
    validateImage(`${field} 'image'`, image);
    const replicas = validateIntegerRange(`${field} 'replicas'`, props.replicas ?? 2, 1, 100);
    const proxyHeaders = props.proxyHeaders ?? 'xforwarded';
    if (proxyHeaders !== 'xforwarded' && proxyHeaders !== 'forwarded') {
      throw new Error(`${field} 'proxyHeaders' must be 'xforwarded' or 'forwarded', got ${JSON.stringify(proxyHeaders)}`);
    }
    if (props.hostname !== undefined) validateHostname(`${field} 'hostname'`, props.hostname);
    const optimized = props.optimized ?? false;
    const ids = resolvePodSecurity(`${field} 'podSecurity'`, props.podSecurity, KEYCLOAK_USER_ID);
    const resources = resourceRequirements(`${field} 'resources'`, props.resources, DEFAULT_RESOURCES);

    this.statefulSetName = name;
    this.serviceName = serviceName;
    this.discoveryServiceName = discoveryServiceName;
    this.podDisruptionBudgetName = name;
    this.replicas = replicas;

    this.database = database;
    this.gated = props.databaseGate !== undefined;

    // The Bitnami Keycloak chart's selector labels, so this StatefulSet can replace one it made.
    const selector = {
      'app.kubernetes.io/name': 'keycloak',
      'app.kubernetes.io/instance': name,
      'app.kubernetes.io/component': 'keycloak',
    };
    const labels = { ...selector };
    this.podSelectorLabels = selector;
    this.metricsEnabled = props.metricsEnabled ?? true;
    this.workload = { kind: 'StatefulSet', name, replicas, immutableSpec: { selector, serviceName: discoveryServiceName, volumeClaimTemplates: [] } };

    const tls = database.tls === undefined ? undefined : validateDatabaseTls(`${field} 'database.tls'`, database.tls);
    const caMounts: k8s.VolumeMount[] = tls?.caSecret ? [{ name: DATABASE_CA_VOLUME, mountPath: DATABASE_CA_MOUNT, readOnly: true }] : [];
    const dbPassword = (envName: string): k8s.EnvVar => ({
      name: envName,
      valueFrom: { secretKeyRef: { name: database.credentials.secretName, key: database.credentials.passwordKey } },
    });
    const env: k8s.EnvVar[] = [
      { name: 'KC_DB', value: 'postgres' },
      { name: 'KC_DB_URL_HOST', value: database.host },
      { name: 'KC_DB_URL_PORT', value: String(database.port) },
      { name: 'KC_DB_URL_DATABASE', value: database.database },
      { name: 'KC_DB_SCHEMA', value: 'public' },
      { name: 'KC_DB_USERNAME', value: database.credentials.username },
      dbPassword('KC_DB_PASSWORD'),
      ...(tls !== undefined ? [{ name: 'KC_DB_URL_PROPERTIES', value: jdbcTlsProperties(tls.sslMode, tls.caSecret ? caFile(DATABASE_CA_MOUNT) : undefined) }] : []),
      { name: 'KC_HTTP_ENABLED', value: 'true' },
      { name: 'KC_HTTP_PORT', value: String(KEYCLOAK_HTTP_PORT) },
      { name: 'KC_HTTP_MANAGEMENT_PORT', value: String(KEYCLOAK_MANAGEMENT_PORT) },
      { name: 'KC_HEALTH_ENABLED', value: 'true' },
      { name: 'KC_METRICS_ENABLED', value: String(this.metricsEnabled) },
      { name: 'KC_PROXY_HEADERS', value: proxyHeaders },
      ...(props.hostname !== undefined
        ? [{ name: 'KC_HOSTNAME', value: props.hostname }]
        : [{ name: 'KC_HOSTNAME_STRICT', value: 'false' }]),
      { name: 'KC_CACHE', value: 'ispn' },
      // Members register in the jgroups_ping table of the shared database: no DNS or API discovery.
      { name: 'KC_CACHE_STACK', value: 'jdbc-ping' },
    ];
    const requiredSecrets: RequiredSecret[] = [];
    if (props.bootstrapAdmin !== undefined) {
      const admin = props.bootstrapAdmin;
      const username = admin.username ?? 'admin';
      if (typeof username !== 'string' || !/^[A-Za-z0-9._@-]{1,255}$/.test(username)) {
        throw new Error(`${field} 'bootstrapAdmin.username' must be 1-255 letters, digits, '.', '_', '@' or '-', got ${JSON.stringify(username)}`);
      }
      const secretName = validateDnsSubdomain(`${field} 'bootstrapAdmin.secretName'`, admin.secretName);
      const passwordKey = validateSecretKey(`${field} 'bootstrapAdmin.passwordKey'`, admin.passwordKey ?? 'password');
      env.push(
        { name: 'KC_BOOTSTRAP_ADMIN_USERNAME', value: username },
        { name: 'KC_BOOTSTRAP_ADMIN_PASSWORD', valueFrom: { secretKeyRef: { name: secretName, key: passwordKey } } },
      );
      requiredSecrets.push({ name: secretName, keys: [passwordKey] });
    }
    for (const [key, value] of Object.entries(props.extraEnv ?? {})) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
        throw new Error(`${field} 'extraEnv' key ${JSON.stringify(key)} is not a valid environment variable name`);
      }
      if (env.some((variable) => variable.name === key)) {
        throw new Error(
          `${field} 'extraEnv' must not set ${key}: this construct sets it from its props; use the matching prop instead`,
        );
      }
      if (typeof value !== 'string') {
        throw new Error(`${field} 'extraEnv.${key}' must be a string, got ${JSON.stringify(value)}`);
      }
      env.push({ name: key, value });
    }
    this.requiredSecrets = requiredSecrets;

    const initContainers: k8s.Container[] = [];
    if (props.databaseGate !== undefined) {
      initContainers.push(gateContainer(`${field} 'databaseGate'`, props.databaseGate, database, ids, tls, caMounts));
    }

    const httpProbe = (path: string): Pick<k8s.Probe, 'httpGet'> => ({
      httpGet: { path, port: k8s.IntOrString.fromString('management'), scheme: 'HTTP' },
    });
    new k8s.KubeService(this, 'discovery', {
      metadata: { name: discoveryServiceName, labels },
      spec: {
        type: 'ClusterIP',
        clusterIp: 'None',
        // JGroups members must find each other before any of them is ready.
        publishNotReadyAddresses: true,
        ports: [{ name: 'jgroups', port: KEYCLOAK_JGROUPS_PORT, targetPort: k8s.IntOrString.fromString('jgroups'), protocol: 'TCP' }],
        selector,
      },
    });
    new k8s.KubeService(this, 'service', {
      metadata: { name: serviceName, labels },
      spec: {
        type: 'ClusterIP',
        ports: [
          // Port 80 as Bitnami's Keycloak Service has it: in-cluster clients keep http://<service>.
          { name: 'http', port: KEYCLOAK_SERVICE_PORT, targetPort: k8s.IntOrString.fromString('http'), protocol: 'TCP' },
          { name: 'http-direct', port: KEYCLOAK_HTTP_PORT, targetPort: k8s.IntOrString.fromString('http'), protocol: 'TCP' },
          {
            name: 'management',
            port: KEYCLOAK_MANAGEMENT_PORT,
            targetPort: k8s.IntOrString.fromString('management'),
            protocol: 'TCP',
          },
        ],
        selector,
      },
    });
    this.statefulSet = new k8s.KubeStatefulSet(this, 'statefulset', {
      metadata: { name, labels },
      spec: {
        replicas,
        serviceName: discoveryServiceName,
        // Members join one by one anyway through jdbc-ping; starting them together halves the rollout.
        podManagementPolicy: 'Parallel',
        updateStrategy: { type: 'RollingUpdate' },
        selector: { matchLabels: selector },
        template: {
          metadata: { labels },
          spec: {
            // Keycloak needs no Kubernetes API access: least privilege.
            automountServiceAccountToken: false,
            securityContext: restrictedPodSecurityContext(ids),
            terminationGracePeriodSeconds: 60,
            ...(initContainers.length > 0 ? { initContainers } : {}),
            containers: [
              {
                name: 'keycloak',
                image,
                imagePullPolicy: 'IfNotPresent',
                args: optimized ? ['start', '--optimized'] : ['start'],
                env,
                ports: [
                  { name: 'http', containerPort: KEYCLOAK_HTTP_PORT, protocol: 'TCP' },
                  { name: 'management', containerPort: KEYCLOAK_MANAGEMENT_PORT, protocol: 'TCP' },
                  { name: 'jgroups', containerPort: KEYCLOAK_JGROUPS_PORT, protocol: 'TCP' },
                ],
                // The first start runs Liquibase over the whole schema: allow it 10 minutes.
                startupProbe: { ...httpProbe('/health/started'), periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 120 },
                livenessProbe: { ...httpProbe('/health/live'), periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 },
                readinessProbe: { ...httpProbe('/health/ready'), periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 },
                resources,
                securityContext: restrictedContainerSecurityContext(ids, { readOnlyRootFilesystem: optimized }),
                volumeMounts: [
                  { name: 'tmp', mountPath: '/tmp' },
                  { name: 'data', mountPath: '/opt/keycloak/data' },
                  ...caMounts,
                ],
              },
            ],
            volumes: [
              { name: 'tmp', emptyDir: {} },
              { name: 'data', emptyDir: {} },
              ...(tls?.caSecret ? [caVolume(DATABASE_CA_VOLUME, tls.caSecret)] : []),
            ],
          },
        },
      },
    });
    new k8s.KubePodDisruptionBudget(this, 'pdb', {
      metadata: { name, labels },
      spec: { maxUnavailable: k8s.IntOrString.fromNumber(1), selector: { matchLabels: selector } },
    });
    customizePod(this.statefulSet, `${field} 'pod'`, props.pod, ['keycloak']);
    this.objectNames = [
      { kind: 'StatefulSet', name },
      { kind: 'Service', name: serviceName },
      { kind: 'Service', name: discoveryServiceName },
      { kind: 'PodDisruptionBudget', name },
    ];
  }
}

/** Where Keycloak's containers find the database CA (`database.tls.caSecret`). */
const DATABASE_CA_VOLUME = 'database-ca';
const DATABASE_CA_MOUNT = '/etc/keycloak-database-tls';

/**
 * The init container that runs the runner's `gate` against the same database, user and Secret
 * as Keycloak.
 */
function gateContainer(
  field: string,
  gate: KeycloakDatabaseGate,
  database: DatabaseConnection,
  ids: ReturnType<typeof resolvePodSecurity>,
  tls: ReturnType<typeof validateDatabaseTls> | undefined,
  caMounts: readonly k8s.VolumeMount[],
): k8s.Container {
  validateImage(`${field}.image`, gate.image);
  const timeoutSeconds = validateIntegerRange(`${field}.timeoutSeconds`, gate.timeoutSeconds ?? 600, 1, 86_400);
  if (gate.command !== undefined && (!Array.isArray(gate.command) || gate.command.length === 0)) {
    throw new Error(`${field}.command must be a non-empty list, got ${JSON.stringify(gate.command)}`);
  }
  const sslModes = Object.values(SslMode) as string[];
  if (gate.sslMode !== undefined && !sslModes.includes(gate.sslMode)) {
    throw new Error(
      `${field}.sslMode must be one of ${sslModes.join(', ')} (libpq sslmode), got ${JSON.stringify(gate.sslMode)}: ` +
        `leave it unset to use the connection's tls.sslMode (without one: plain first, TLS when the server requires it)`,
    );
  }
  const sslMode = gate.sslMode ?? tls?.sslMode;
  return {
    name: 'database-gate',
    image: gate.image,
    imagePullPolicy: 'IfNotPresent',
    ...(gate.command !== undefined ? { command: [...gate.command] } : {}),
    args: [RunnerCommand.gate],
    env: [
      { name: Env.targetHost, value: database.host },
      { name: Env.targetPort, value: String(database.port) },
      { name: Env.targetUser, value: database.credentials.username },
      { name: Env.targetDatabase, value: database.database },
      {
        name: Env.targetPassword,
        valueFrom: { secretKeyRef: { name: database.credentials.secretName, key: database.credentials.passwordKey } },
      },
      { name: Env.gateTimeoutSeconds, value: String(timeoutSeconds) },
      // Only when configured, so an unconfigured gate keeps the runner's own default; the gate's
      // own sslMode wins over the connection's.
      ...(sslMode !== undefined ? [{ name: Env.targetSslMode, value: sslMode }] : []),
      ...(tls?.caSecret ? [{ name: Env.targetSslRootCert, value: caFile(DATABASE_CA_MOUNT) }] : []),
    ],
    resources: resourceRequirements(`${field}.resources`, gate.resources, SMALL_CONTAINER_RESOURCES),
    securityContext: restrictedContainerSecurityContext(ids),
    volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }, ...caMounts],
  };
}

/** KC_HOSTNAME: a host name, optionally as an http(s) URL with a path. */
function validateHostname(field: string, value: string): void {
  if (typeof value !== 'string' || value.length === 0) {
    throw new Error(`${field} must be a host name such as "sso.example.com", got ${JSON.stringify(value)}`);
  }
  if (/^https?:\/\//.test(value)) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new Error(`${field} must be a host name or an http(s) URL, got ${JSON.stringify(value)}`);
    }
    validateDnsSubdomain(`${field} (host part)`, url.hostname);
    return;
  }
  validateDnsSubdomain(field, value);
}
