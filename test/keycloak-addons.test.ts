// The optional objects around Keycloak that Bitnami chart users expect: an Ingress,
// NetworkPolicies (Keycloak → database, migration Jobs → databases and the API server) and a
// ServiceMonitor/PodMonitor for the metrics on port 9000.
import { Chart, Testing } from 'cdk8s';
import { describe, expect, it } from 'vitest';
import { DatabaseMigration } from '../lib/database-migration.js';
import { Keycloak } from '../lib/keycloak.js';
import { KeycloakIngress, type KeycloakIngressProps } from '../lib/keycloak-ingress.js';
import { KeycloakMonitor } from '../lib/keycloak-monitor.js';
import { KeycloakNetworkPolicies, type KeycloakNetworkPoliciesProps } from '../lib/keycloak-network-policies.js';
import { PostgresHa, type PostgresHaFlavorName } from '../lib/postgres-ha.js';
import { PostgresStandalone } from '../lib/postgres-standalone.js';
import { validateObjects } from './support/kube-schema.js';

function stack(flavor: PostgresHaFlavorName = 'repmgr', sourcePort?: number) {
  const chart = new Chart(Testing.app(), 'c', { namespace: 'keycloak' });
  const database = new PostgresHa(chart, 'db', { flavor });
  const keycloak = new Keycloak(chart, 'kc', { database: database.connection });
  const legacy = PostgresStandalone.describeExisting({ release: 'keycloak' });
  const migration = new DatabaseMigration(chart, 'migration', {
    name: 'keycloak-migration',
    flavor: 'argocd',
    runnerImage: 'ghcr.io/example/runner:1.2.3',
    source: sourcePort === undefined ? legacy.connection : { ...legacy.connection, port: sourcePort },
    target: database.connection,
    legacy,
    workloads: [keycloak.workload],
    targetConstructs: [database],
    workloadConstructs: [keycloak],
  });
  return { chart, database, keycloak, migration };
}

const byKind = (objects: any[], kind: string) => objects.filter((o) => o.kind === kind);

describe('KeycloakIngress', () => {
  const ingressOf = (props: Partial<KeycloakIngressProps>) => {
    const { chart, keycloak } = stack();
    new KeycloakIngress(chart, 'ingress', { keycloak, host: 'sso.example.com', ...props });
    const objects = Testing.synth(chart);
    validateObjects(objects);
    return byKind(objects, 'Ingress')[0];
  };

  it('routes the host to Keycloak\'s http port, with class, TLS and annotations', () => {
    const ingress = ingressOf({ ingressClassName: 'nginx', tls: { secretName: 'sso-tls' }, annotations: { 'cert-manager.io/cluster-issuer': 'letsencrypt' } });
    expect(ingress.metadata.name).toBe('keycloak');
    expect(ingress.metadata.annotations).toEqual({ 'cert-manager.io/cluster-issuer': 'letsencrypt' });
    expect(ingress.spec).toEqual({
      ingressClassName: 'nginx',
      tls: [{ hosts: ['sso.example.com'], secretName: 'sso-tls' }],
      rules: [{ host: 'sso.example.com', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'keycloak', port: { name: 'http' } } } }] } }],
    });
  });

  it('fails when the host is missing or not a host name', () => {
    expect(() => ingressOf({ host: undefined as unknown as string })).toThrow(`KeycloakIngress 'host' is required: the public host name users reach Keycloak at, e.g. "sso.example.com"`);
    expect(() => ingressOf({ host: 'https://sso.example.com' })).toThrow(/KeycloakIngress 'host' must be a DNS-1123 subdomain/);
  });

  it('fails on a TLS block without a Secret, a bad class, a bad annotation and a relative path', () => {
    expect(() => ingressOf({ tls: {} as { secretName: string } })).toThrow(`KeycloakIngress 'tls' must be { secretName: "<tls Secret>" }, got {}`);
    expect(() => ingressOf({ ingressClassName: 'Nginx' })).toThrow(/KeycloakIngress 'ingressClassName' must be a DNS-1123 subdomain/);
    expect(() => ingressOf({ annotations: { 'bad key!': 'x' } })).toThrow(/KeycloakIngress 'annotations' must map annotation keys/);
    expect(() => ingressOf({ path: 'auth' })).toThrow(`KeycloakIngress 'path' must start with "/", got "auth"`);
  });
});

describe('KeycloakNetworkPolicies', () => {
  const policiesOf = (props: Partial<KeycloakNetworkPoliciesProps> = {}, flavor: PostgresHaFlavorName = 'repmgr', sourcePort?: number) => {
    const { chart, keycloak, database, migration } = stack(flavor, sourcePort);
    new KeycloakNetworkPolicies(chart, 'netpol', { keycloak, database, migration, ...props });
    const objects = Testing.synth(chart);
    validateObjects(objects);
    return byKind(objects, 'NetworkPolicy');
  };

  it('lets Keycloak reach only its database\'s client pods, its peers and DNS, and be reached on 8080/9000/7800', () => {
    const [keycloak] = policiesOf({ httpFrom: [{ namespaceLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } }] });
    expect(keycloak.spec.podSelector.matchLabels['app.kubernetes.io/component']).toBe('keycloak');
    expect(keycloak.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(keycloak.spec.ingress[0]).toEqual({
      ports: [{ protocol: 'TCP', port: 8080 }],
      from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } }],
    });
    expect(keycloak.spec.ingress[1]).toEqual({ ports: [{ protocol: 'TCP', port: 9000 }] });
    expect(keycloak.spec.egress[0]).toEqual({
      ports: [{ protocol: 'TCP', port: 5432 }],
      to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'postgresql-ha', 'app.kubernetes.io/instance': 'keycloak', 'app.kubernetes.io/component': 'pgpool' } } }],
    });
  });

  it('points Keycloak at the CloudNativePG instances with that flavor', () => {
    const [keycloak] = policiesOf({}, 'cloudnative-pg');
    expect(keycloak.spec.egress[0].to).toEqual([{ podSelector: { matchLabels: { 'cnpg.io/cluster': 'keycloak-postgresql-ha' } } }]);
  });

  it('lets the migration Jobs reach PostgreSQL, the API server and DNS, and nothing else', () => {
    const [, jobs] = policiesOf({ apiServer: { cidrs: ['172.18.0.2/32'] } });
    expect(jobs.metadata.name).toBe('keycloak-migration-jobs');
    expect(jobs.spec.podSelector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'database-migration', 'app.kubernetes.io/instance': 'keycloak-migration' });
    expect(jobs.spec.policyTypes).toEqual(['Egress']);
    expect(jobs.spec.egress[1]).toEqual({ ports: [{ protocol: 'TCP', port: 443 }, { protocol: 'TCP', port: 6443 }], to: [{ ipBlock: { cidr: '172.18.0.2/32' } }] });
    // The policy selects exactly the Jobs' pods.
    const { chart } = stack();
    const jobPods = byKind(Testing.synth(chart), 'Job').map((job) => job.spec.template.metadata.labels);
    for (const labels of jobPods) expect(labels).toMatchObject(jobs.spec.podSelector.matchLabels);
  });

  it('opens the source database\'s own port to the Jobs, and the API server ports without addresses', () => {
    const [, jobs] = policiesOf({ apiServer: { ports: [8443] } }, 'repmgr', 5433);
    expect(jobs.spec.egress[0]).toEqual({ ports: [5432, 5433].map((port) => ({ protocol: 'TCP', port })), to: [{ podSelector: {} }] });
    expect(jobs.spec.egress[1]).toEqual({ ports: [{ protocol: 'TCP', port: 8443 }] });
  });

  it('fails when a peer names nothing, mixes an IP block with labels, or the API server has no address', () => {
    expect(() => policiesOf({ httpFrom: [{}] })).toThrow(
      `KeycloakNetworkPolicies 'httpFrom'[0] names nothing: set podLabels, namespaceLabels or cidr (an empty peer would match no one or everyone)`,
    );
    expect(() => policiesOf({ httpFrom: [] })).toThrow(/'httpFrom' must be a non-empty list of peers, or left out to allow anyone/);
    expect(() => policiesOf({ managementFrom: [{ cidr: '10.0.0.0/8', podLabels: { a: 'b' } }] })).toThrow(/sets cidr together with labels/);
    expect(() => policiesOf({ managementFrom: [{ cidr: '10.0.0.0' }] })).toThrow(`KeycloakNetworkPolicies 'managementFrom'[0].cidr must be CIDR notation such as "10.0.0.0/8", got "10.0.0.0"`);
    expect(() => policiesOf({ apiServer: { cidrs: [] } })).toThrow(/'apiServer'.cidrs must list the API server's endpoint addresses/);
    expect(() => policiesOf({ httpFrom: [{ podLabels: {} }] })).toThrow(/podLabels must hold at least one label/);
  });
});

describe('KeycloakMonitor', () => {
  it('scrapes /metrics on the management port with a ServiceMonitor or a PodMonitor', () => {
    const { chart, keycloak } = stack();
    new KeycloakMonitor(chart, 'sm', { keycloak, labels: { release: 'kube-prometheus-stack' } });
    new KeycloakMonitor(chart, 'pm', { keycloak, kind: 'PodMonitor', interval: '1m', name: 'keycloak-pods' });
    const objects = Testing.synth(chart);
    const [serviceMonitor] = byKind(objects, 'ServiceMonitor');
    expect(serviceMonitor.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(serviceMonitor.metadata.labels.release).toBe('kube-prometheus-stack');
    expect(serviceMonitor.spec.endpoints).toEqual([{ port: 'management', path: '/metrics', interval: '30s', scheme: 'http' }]);
    const [podMonitor] = byKind(objects, 'PodMonitor');
    expect(podMonitor.spec.podMetricsEndpoints[0].interval).toBe('1m');
    // The port the monitors name exists on Keycloak's Service and container.
    const service = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'keycloak');
    expect(service.spec.ports.map((p: any) => p.name)).toContain('management');
  });

  it('fails without metrics and on a bad interval', () => {
    const chart = new Chart(Testing.app(), 'c');
    const database = new PostgresHa(chart, 'db');
    const keycloak = new Keycloak(chart, 'kc', { database: database.connection, metricsEnabled: false });
    expect(() => new KeycloakMonitor(chart, 'm', { keycloak })).toThrow(/metricsEnabled: false, so there is nothing to scrape/);
    const { chart: other, keycloak: withMetrics } = stack();
    expect(() => new KeycloakMonitor(other, 'm', { keycloak: withMetrics, interval: '30 seconds' })).toThrow(
      `KeycloakMonitor 'interval' must be a Prometheus duration such as "30s" or "1m", got "30 seconds"`,
    );
  });

  it('fails on labels the API server would refuse, naming the key or the value', () => {
    const monitorWith = (labels: Record<string, string>) => {
      const { chart, keycloak } = stack();
      return () => new KeycloakMonitor(chart, 'm', { keycloak, labels });
    };
    expect(monitorWith({ 'bad key!': 'x' })).toThrow(/KeycloakMonitor 'labels' has the key "bad key!", which is not a label key/);
    expect(monitorWith({ release: 'kube prometheus stack' })).toThrow(/KeycloakMonitor 'labels'.release must be a label value .*got "kube prometheus stack"/);
    expect(monitorWith({ 'example.com/team': 'identity', empty: '' })).not.toThrow();
  });
});

describe('platform config: ingress, networkPolicies, monitoring', () => {
  it('adds them to the platform chart of either shape and tool, the Ingress with Keycloak\'s wave, the NetworkPolicies with Keycloak\'s or the restore Job\'s', async () => {
    const { KeycloakPlatform } = await import('../lib/keycloak-platform.js');
    for (const shape of ['v1', 'v2'] as const) {
      const chart = new KeycloakPlatform(Testing.app(), 'keycloak', {
        flavor: 'argocd',
        shape,
        ingress: { host: 'sso.example.com', ingressClassName: 'nginx', tlsSecretName: 'sso-tls' },
        networkPolicies: { apiServerCidrs: ['172.18.0.2/32'] },
        monitoring: { labels: { release: 'prometheus' } },
      });
      const objects = Testing.synth(chart);
      const ingress = byKind(objects, 'Ingress')[0];
      expect(ingress.spec.rules[0].host).toBe('sso.example.com');
      expect(ingress.metadata.annotations['argocd.argoproj.io/sync-wave']).toBe('-10');
      // After the backup: at the database's wave the old Keycloak still runs, and Keycloak's
      // default-deny egress would cut it off the legacy database before the backup stops it. The
      // backup Job restores too (Argo CD's default), so they come with Keycloak: no wave of their own.
      for (const policy of byKind(objects, 'NetworkPolicy')) expect(policy.metadata.annotations['argocd.argoproj.io/sync-wave']).toBe('-10');
      const policies = byKind(objects, 'NetworkPolicy').map((p) => p.metadata.name);
      expect(policies).toEqual(shape === 'v2' ? ['keycloak', 'keycloak-migration-jobs'] : ['keycloak']);
      expect(byKind(objects, 'ServiceMonitor')).toHaveLength(1);
    }
  });

  it('puts the NetworkPolicies with the restore Job when there is one (migration.restoreInBackupJob: false)', async () => {
    const { KeycloakPlatform } = await import('../lib/keycloak-platform.js');
    const chart = new KeycloakPlatform(Testing.app(), 'keycloak', {
      flavor: 'argocd',
      shape: 'v2',
      networkPolicies: { apiServerCidrs: ['172.18.0.2/32'] },
      migration: { restoreInBackupJob: false },
    });
    const objects = Testing.synth(chart);
    const restoreJob = byKind(objects, 'Job').find((job) => job.spec.template.spec.containers[0].args[0] === 'restore-phase');
    expect(restoreJob.metadata.annotations['argocd.argoproj.io/sync-wave']).toBe('-20');
    for (const policy of byKind(objects, 'NetworkPolicy')) expect(policy.metadata.annotations['argocd.argoproj.io/sync-wave']).toBe('-20');
    const backupEnv = byKind(objects, 'Job').find((job) => job.spec.template.spec.containers[0].args[0] === 'backup-phase').spec.template.spec.containers[0].env;
    expect(backupEnv.find((variable: { name: string }) => variable.name === 'MIGRATION_RESTORE_IN_BACKUP_JOB')).toBeUndefined();
    // Under Helm the backup Job cannot restore: the new database comes after the pre-upgrade hooks.
    expect(() => new KeycloakPlatform(Testing.app(), 'keycloak', { flavor: 'helm', shape: 'v2', migration: { restoreInBackupJob: true } })).toThrow(
      /restoreInBackupJob is true with flavor helm/,
    );
    expect(() => new KeycloakPlatform(Testing.app(), 'keycloak', { flavor: 'argocd', shape: 'v2', migration: { restoreInBackupJob: 'no' as never } })).toThrow(
      /'migration.restoreInBackupJob' must be true or false, got "no"/,
    );
  });

  it('passes networkPolicies.apiServerPorts on without apiServerCidrs', async () => {
    const { KeycloakPlatform } = await import('../lib/keycloak-platform.js');
    const chart = new KeycloakPlatform(Testing.app(), 'keycloak', { flavor: 'helm', shape: 'v2', networkPolicies: { apiServerPorts: [8443] } });
    const jobs = byKind(Testing.synth(chart), 'NetworkPolicy').find((policy) => policy.metadata.name === 'keycloak-migration-jobs');
    expect(jobs.spec.egress[1]).toEqual({ ports: [{ protocol: 'TCP', port: 8443 }] });
  });

  it('fails when ingress has no host, or a section has an unknown key', async () => {
    const { KeycloakPlatform } = await import('../lib/keycloak-platform.js');
    expect(() => new KeycloakPlatform(Testing.app(), 'keycloak', { flavor: 'helm', ingress: { ingressClassName: 'nginx' } as never })).toThrow(
      `platform config 'ingress.host' is required when 'ingress' is set: the public host name, e.g. "sso.example.com"`,
    );
    expect(() => new KeycloakPlatform(Testing.app(), 'keycloak', { flavor: 'helm', monitoring: { enabled: true } as never })).toThrow(
      /platform config 'monitoring.enabled' is not a known setting/,
    );
  });
});
