// The public API of the construct library. Each construct can be used on its own in another cdk8s app.
export * from './contract.js';
export * from './database-connection.js';
export * from './database-tls.js';
export * from './validation.js';
export * from './pod-security.js';
export * from './keycloak.js';
export * from './postgres-standalone.js';
export * from './postgres-ha.js';
export * from './gitops.js';
export * from './database-migration.js';
export * from './keycloak-platform.js';
