/**
 * KeycloakPlatform: the whole deployable unit, as one cdk8s Chart, in one of two lifecycle shapes
 * and for one of two GitOps tools.
 *
 * - `v1`: Keycloak on {@link PostgresStandalone} (the Bitnami-compatible single PostgreSQL).
 * - `v2`: Keycloak, held by its database gate, on {@link PostgresHa}, plus a
 *   {@link DatabaseMigration} from the v1 database. That database is *described* by name only: the
 *   v1 objects are no longer in the chart, so Helm deletes (Argo CD prunes) the legacy StatefulSet
 *   after the backup, while its PVC, created from a volumeClaimTemplate, stays.
 *
 * Argo CD waves (all Sync phase, all below 0): database (-40) < backup Sync hook (-30, stops
 * Keycloak, then restores) < Keycloak and NetworkPolicies (-10); with `migration.restoreInBackupJob:
 * false` a restore Sync hook and the NetworkPolicies at -20 in between; what v2 drops without
 * a wave of its own (a Bitnami release) is pruned at 0, after Keycloak is healthy. Keycloak and the
 * v1 database keep the same names in both shapes, so `v1 → v2` upgrades the same objects in place.
 */
import { Chart } from 'cdk8s';
import type { Construct } from 'constructs';
import type { RequiredSecret } from './contract.js';
import type { DatabaseConnection } from './database-connection.js';
import { DatabaseMigration } from './database-migration.js';
import { type GitOpsFlavor, assertGitOpsFlavor, setPruneLast, setSyncWave } from './gitops.js';
import { Keycloak } from './keycloak.js';
import { KeycloakIngress } from './keycloak-ingress.js';
import { KeycloakMonitor } from './keycloak-monitor.js';
import { type DatabasePods, KeycloakNetworkPolicies } from './keycloak-network-policies.js';
import { type PlatformConfig, type ResolvedPlatformConfig, resolvePlatformConfig } from './platform-config.js';
import { PostgresHa } from './postgres-ha.js';
import { type LegacyDatabase, PostgresStandalone } from './postgres-standalone.js';
import { type KubeObjectName, assertNoNameCollisions } from './validation.js';

/** Props of {@link KeycloakPlatform}: the platform configuration plus the GitOps tool. */
export interface KeycloakPlatformProps extends PlatformConfig {
  /** `helm` for helm.sh/hook annotations, `argocd` for Argo CD hooks and sync waves. */
  readonly flavor: GitOpsFlavor;
}

/** Key of the bootstrap admin's password in Secret `<keycloak>-admin`. */
export const KEYCLOAK_ADMIN_PASSWORD_KEY = 'password';

/** Key of the admin password in a Bitnami keycloak release's Secret `<fullname>` (every chart line). */
const BITNAMI_ADMIN_PASSWORD_KEY = 'admin-password';

/** Keycloak plus its database(s) and, in v2, the migration hooks. See the module comment. */
export class KeycloakPlatform extends Chart {
  /** The configuration after defaults and validation. */
  public readonly config: ResolvedPlatformConfig;
  /** The GitOps tool the annotations are written for. */
  public readonly flavor: GitOpsFlavor;
  public readonly keycloak: Keycloak;
  /** v1: the synthesized single PostgreSQL; v2: the described legacy database (nothing synthesized). */
  public readonly legacyDatabase: LegacyDatabase;
  /** v2 only: the highly available database Keycloak uses. */
  public readonly haDatabase?: PostgresHa;
  /** v2 only: the migration hooks. */
  public readonly migration?: DatabaseMigration;
  /**
   * Secrets the manifests reference but do not contain (GitOps repositories hold no passwords).
   * In v2 the migration's prepare Job creates them with random passwords when absent; in v1 they
   * must exist before the install (`kubectl create secret generic ...`).
   */
  public readonly requiredSecrets: readonly RequiredSecret[];
  /** The database Keycloak uses in this shape (v1: the single PostgreSQL; v2: the HA one), for its NetworkPolicies. */
  private readonly keycloakDatabase: DatabasePods;

  public constructor(scope: Construct, id: string, props: KeycloakPlatformProps) {
    const { flavor: rawFlavor, ...platformConfig } = props;
    const config = resolvePlatformConfig(platformConfig);
    // Explicit names everywhere (the runner and the other chart version look objects up by name);
    // no hashes, so the output is stable and reviewable.
    super(scope, id, { namespace: config.namespace, disableResourceNameHashes: true });
    this.config = config;
    this.flavor = assertGitOpsFlavor(rawFlavor, 'KeycloakPlatform flavor');
    const release = config.releaseName;
    const keycloakName = config.keycloak.name;
    const legacyNames = {
      release,
      database: config.legacyDatabase.database,
      username: config.legacyDatabase.username,
      passwordKey: config.legacyDatabase.passwordKey,
      adminPasswordKey: config.legacyDatabase.adminPasswordKey,
      ...(config.legacyDatabase.name !== undefined ? { name: config.legacyDatabase.name } : {}),
      ...(config.legacyDatabase.secretName !== undefined ? { secretName: config.legacyDatabase.secretName } : {}),
    };
    const keycloakProps = {
      name: keycloakName,
      image: config.images.keycloak,
      replicas: config.keycloak.replicas,
      proxyHeaders: config.keycloak.proxyHeaders,
      bootstrapAdmin: {
        username: config.keycloak.adminUsername,
        secretName: `${keycloakName}-admin`,
        passwordKey: KEYCLOAK_ADMIN_PASSWORD_KEY,
      },
      ...(config.keycloak.hostname !== undefined ? { hostname: config.keycloak.hostname } : {}),
      ...(config.keycloak.resources !== undefined ? { resources: config.keycloak.resources } : {}),
    };

    const objectNames: KubeObjectName[] = [];
    if (config.shape === 'v1') {
      const standalone = new PostgresStandalone(this, 'postgresql', {
        ...legacyNames,
        image: config.images.postgresql,
        storageSize: config.legacyDatabase.storageSize,
      });
      this.legacyDatabase = standalone;
      this.keycloakDatabase = standalone;
      this.keycloak = new Keycloak(this, 'keycloak', { ...keycloakProps, database: standalone.connection });
      setSyncWave(standalone, this.flavor, config.syncWaves.database);
      // v2 drops it from Git once the migration moved its data; Argo CD would prune it at the start
      // of its own (negative) wave, before v2's backup reads it: prune it after the last wave.
      setPruneLast(standalone, this.flavor);
      setSyncWave(this.keycloak, this.flavor, config.syncWaves.keycloak);
      this.requiredSecrets = mergeSecrets([...standalone.requiredSecrets, ...this.keycloak.requiredSecrets]);
      objectNames.push(...standalone.objectNames, ...this.keycloak.objectNames);
    } else {
      this.legacyDatabase = PostgresStandalone.describeExisting(legacyNames);
      const repmgr = config.database.flavor === 'repmgr';
      this.haDatabase = new PostgresHa(this, 'postgresql-ha', {
        flavor: config.database.flavor,
        release,
        instances: config.database.instances,
        database: config.database.database,
        username: config.database.username,
        storageSize: config.database.storageSize,
        ...(config.database.storageClass !== undefined ? { storageClass: config.database.storageClass } : {}),
        ...(config.images.postgresqlHa !== undefined ? { image: config.images.postgresqlHa } : {}),
        ...(repmgr ? { pgpoolImage: config.images.pgpool } : {}),
      });
      this.keycloakDatabase = this.haDatabase;
      // TLS travels with each connection: Keycloak, its gate and the Jobs all connect alike.
      const target = withTls(this.haDatabase.connection, config.database);
      const source = withTls(this.legacyDatabase.connection, config.legacyDatabase);
      this.keycloak = new Keycloak(this, 'keycloak', {
        ...keycloakProps,
        database: target,
        // Helm re-applies Keycloak's replicas before the post-upgrade restore runs, and a
        // selective Argo CD sync may start it early: hold it until the data is in place.
        databaseGate: { image: config.images.runner },
      });
      this.requiredSecrets = mergeSecrets([...this.haDatabase.requiredSecrets, ...this.keycloak.requiredSecrets]);
      this.migration = new DatabaseMigration(this, 'migration', {
        name: `${release}-migration`,
        flavor: this.flavor,
        namespace: config.namespace,
        runnerImage: config.images.runner,
        source,
        target,
        targetConstructs: [this.haDatabase],
        workloadConstructs: [this.keycloak],
        workloads: [
          {
            ...this.keycloak.workload,
            // A Bitnami release under fullnameOverride / nameOverride names its StatefulSet
            // otherwise; these two labels stay (nameOverride changes app.kubernetes.io/name). Its
            // admin Secret `<that name>` goes with the old release: copied to the default name.
            discovery: {
              labels: { 'app.kubernetes.io/instance': release, 'app.kubernetes.io/component': 'keycloak' },
              secretCopies: [{ key: BITNAMI_ADMIN_PASSWORD_KEY, to: keycloakName }],
            },
          },
        ],
        legacy: {
          statefulSetName: this.legacyDatabase.statefulSetName,
          pvcNames: this.legacyDatabase.pvcNames,
          objectNames: this.legacyDatabase.objectNames,
          labels: this.legacyDatabase.labels,
        },
        targetObjectNames: [...this.haDatabase.objectNames, ...this.keycloak.objectNames],
        deleteLegacy: config.migration.deleteLegacy,
        protectVolumes: config.migration.protectVolumes,
        ensureSecrets: this.requiredSecrets,
        // Taking over a Bitnami release: its chart shipped the legacy database's Secret and the
        // admin Secret `<keycloak fullname>` (key admin-password, user `user`); the migrated master
        // realm still authenticates that admin, and a rollback needs the database passwords.
        keepSecrets: [...new Set([source.credentials.secretName, keycloakName])],
        backup: {
          minSize: config.migration.backupMinSize,
          ...(config.migration.backupSize !== undefined ? { size: config.migration.backupSize } : {}),
          ...(config.migration.backupStorageClass !== undefined
            ? { storageClassName: config.migration.backupStorageClass }
            : {}),
        },
        syncWaves: {
          target: config.syncWaves.database,
          backup: config.syncWaves.backup,
          restore: config.syncWaves.restore,
          workloads: config.syncWaves.keycloak,
        },
        activeDeadlineSeconds: config.migration.activeDeadlineSeconds,
        parallelJobs: config.migration.parallelJobs,
        ...(config.migration.restoreInBackupJob !== undefined ? { restoreInBackupJob: config.migration.restoreInBackupJob } : {}),
        ...(config.migration.indexesAfterReady !== undefined ? { indexesAfterReady: config.migration.indexesAfterReady } : {}),
        ...(config.migration.acceptLegacyChangesOf !== undefined ? { acceptLegacyChangesOf: config.migration.acceptLegacyChangesOf } : {}),
      });
      const migrationNames = this.migration.names;
      objectNames.push(
        ...this.haDatabase.objectNames,
        ...this.keycloak.objectNames,
        // Created by the runner at run time, but in the same namespace: they must not collide either.
        { kind: 'ConfigMap', name: migrationNames.stateConfigMap },
        { kind: 'Lease', name: migrationNames.lockLease },
        { kind: 'PersistentVolumeClaim', name: migrationNames.backupPvc },
        ...Object.values(migrationNames.jobs).map((name) => ({ kind: 'Job', name })),
      );
    }
    this.addOptionalObjects(config, objectNames);
    assertNoNameCollisions(`KeycloakPlatform (release '${release}')`, objectNames);
  }

  /** The Ingress, NetworkPolicies and monitor, when configured; Argo CD applies them with Keycloak. */
  private addOptionalObjects(config: ResolvedPlatformConfig, objectNames: KubeObjectName[]): void {
    if (config.ingress !== undefined) {
      const ingress = new KeycloakIngress(this, 'ingress', {
        keycloak: this.keycloak,
        host: config.ingress.host,
        ...(config.ingress.ingressClassName !== undefined ? { ingressClassName: config.ingress.ingressClassName } : {}),
        ...(config.ingress.tlsSecretName !== undefined ? { tls: { secretName: config.ingress.tlsSecretName } } : {}),
        ...(config.ingress.annotations !== undefined ? { annotations: config.ingress.annotations } : {}),
      });
      setSyncWave(ingress, this.flavor, config.syncWaves.keycloak);
      objectNames.push({ kind: 'Ingress', name: ingress.name });
    }
    if (config.networkPolicies !== undefined) {
      const policies = config.networkPolicies;
      const networkPolicies = new KeycloakNetworkPolicies(this, 'network-policies', {
        keycloak: this.keycloak,
        database: this.keycloakDatabase,
        ...(this.migration !== undefined ? { migration: this.migration } : {}),
        ...(policies.httpFrom !== undefined ? { httpFrom: policies.httpFrom } : {}),
        ...(policies.managementFrom !== undefined ? { managementFrom: policies.managementFrom } : {}),
        ...(policies.apiServerCidrs !== undefined || policies.apiServerPorts !== undefined
          ? {
              apiServer: {
                ...(policies.apiServerCidrs !== undefined ? { cidrs: policies.apiServerCidrs } : {}),
                ...(policies.apiServerPorts !== undefined ? { ports: policies.apiServerPorts } : {}),
              },
            }
          : {}),
      });
      // After the backup, not with the database: at the database's wave the v1 Keycloak still runs
      // (the backup stops it later), and Keycloak's default-deny egress would cut it off its
      // database. With a restore Job, at its wave; when the backup Job restores (Argo CD's default),
      // with Keycloak, so that no wave of their own stands between the restore and Keycloak (Argo CD
      // pauses 2 s after applying each wave but the last).
      const migrationRestoreJob = this.migration !== undefined && !this.migration.restoreInBackupJob;
      setSyncWave(networkPolicies, this.flavor, migrationRestoreJob ? config.syncWaves.restore : config.syncWaves.keycloak);
      objectNames.push(...networkPolicies.policyNames.map((name) => ({ kind: 'NetworkPolicy', name })));
    }
    if (config.monitoring !== undefined) {
      const monitor = new KeycloakMonitor(this, 'monitoring', {
        keycloak: this.keycloak,
        ...(config.monitoring.kind !== undefined ? { kind: config.monitoring.kind } : {}),
        ...(config.monitoring.interval !== undefined ? { interval: config.monitoring.interval } : {}),
        ...(config.monitoring.labels !== undefined ? { labels: config.monitoring.labels } : {}),
      });
      setSyncWave(monitor, this.flavor, config.syncWaves.keycloak);
    }
  }
}

/** The connection with the section's sslMode and CA, when configured. */
function withTls(connection: DatabaseConnection, section: ResolvedPlatformConfig['database'] | ResolvedPlatformConfig['legacyDatabase']): DatabaseConnection {
  if (section.sslMode === undefined) return connection;
  return { ...connection, tls: { sslMode: section.sslMode, ...(section.caSecret ? { caSecret: section.caSecret } : {}) } };
}

/** One entry per Secret with the union of keys, in a stable order. */
function mergeSecrets(secrets: readonly RequiredSecret[]): RequiredSecret[] {
  const byName = new Map<string, Set<string>>();
  for (const secret of secrets) {
    const keys = byName.get(secret.name) ?? new Set<string>();
    for (const key of secret.keys) keys.add(key);
    byName.set(secret.name, keys);
  }
  return [...byName.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, keys]) => ({ name, keys: [...keys].sort() }));
}
