// The public API of the construct library: its constructs, their props and the types those props
// reference. Helpers (validation, the runner's environment contract, pod-security functions) stay
// internal: the constructs call them, consumers should not.
export type { RequiredSecret, SslModeValue, DeleteLegacyValue, RunnerCommandName, WorkloadImmutableSpec } from './contract.js';
export type { KubeObjectName } from './validation.js';
export type { DatabaseConnection, DatabaseCredentials } from './database-connection.js';
export type { DatabaseTls, DatabaseCaSecret } from './database-tls.js';
export type { ContainerResources, PodSecurityOptions } from './pod-security.js';
export type { GitOpsFlavor } from './gitops.js';
export {
  Keycloak,
  DEFAULT_KEYCLOAK_IMAGE,
  type KeycloakProps,
  type KeycloakBootstrapAdmin,
  type KeycloakDatabaseGate,
  type WorkloadReference,
} from './keycloak.js';
export {
  PostgresStandalone,
  DEFAULT_BITNAMI_POSTGRESQL_IMAGE,
  type PostgresStandaloneProps,
  type ExistingPostgresStandaloneOptions,
  type LegacyDatabase,
} from './postgres-standalone.js';
export {
  PostgresHa,
  PostgresHaFlavor,
  DEFAULT_REPMGR_IMAGE,
  DEFAULT_PGPOOL_IMAGE,
  type PostgresHaFlavorName,
  type PostgresHaProps,
  type ReadinessTarget,
} from './postgres-ha.js';
export { KeycloakIngress, type KeycloakIngressProps, type KeycloakIngressTls } from './keycloak-ingress.js';
export {
  KeycloakNetworkPolicies,
  type KeycloakNetworkPoliciesProps,
  type NetworkPeer,
  type ApiServerEndpoint,
  type DatabasePods,
} from './keycloak-network-policies.js';
export { KeycloakMonitor, type KeycloakMonitorProps } from './keycloak-monitor.js';
export type { PodCustomization } from './pod-customization.js';
export {
  DatabaseMigration,
  type DatabaseMigrationProps,
  type DatabaseMigrationNames,
  type QuiescedWorkload,
  type WorkloadDiscovery,
  type LegacyDatabaseObjects,
  type BackupVolumeOptions,
  type MigrationSyncWaves,
  type MigrationSslModes,
} from './database-migration.js';
export { KeycloakPlatform, type KeycloakPlatformProps } from './keycloak-platform.js';
export {
  DEFAULT_RUNNER_IMAGE,
  type LifecycleShape,
  type PlatformConfig,
  type PlatformDatabaseConfig,
  type PlatformHelmChartConfig,
  type PlatformImages,
  type PlatformIngressConfig,
  type PlatformMonitoringConfig,
  type PlatformNetworkPoliciesConfig,
  type PlatformKeycloakConfig,
  type PlatformLegacyDatabaseConfig,
  type PlatformMigrationConfig,
  type PlatformSyncWaves,
  type ResolvedPlatformConfig,
} from './platform-config.js';
