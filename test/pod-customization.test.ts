import { Chart, Testing } from 'cdk8s';
import { k8s } from 'cdk8s-plus-27';
import { describe, expect, it } from 'vitest';
import type { DatabaseConnection } from '../lib/database-connection.js';
import { DatabaseMigration } from '../lib/database-migration.js';
import { Keycloak } from '../lib/keycloak.js';
import type { PodCustomization } from '../lib/pod-customization.js';
import { restrictedProfileViolations } from '../lib/pod-security.js';
import { PostgresHa } from '../lib/postgres-ha.js';
import { PostgresStandalone } from '../lib/postgres-standalone.js';
import { validateObjects } from './support/kube-schema.js';

const database: DatabaseConnection = {
  host: 'keycloak-postgresql-ha-pgpool',
  port: 5432,
  database: 'keycloak',
  credentials: { username: 'keycloak', secretName: 'keycloak-postgresql-ha-postgresql', passwordKey: 'password' },
};

/** A sidecar as a platform team would add one: restricted, with requests and a memory limit. */
const LOG_SHIPPER: k8s.Container = {
  name: 'log-shipper',
  image: 'docker.io/fluent/fluent-bit:3.2.2',
  resources: { requests: { cpu: k8s.Quantity.fromString('10m'), memory: k8s.Quantity.fromString('32Mi') }, limits: { memory: k8s.Quantity.fromString('64Mi') } },
  securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
};

const EVERYTHING: PodCustomization = {
  tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'identity', effect: 'NoSchedule' }],
  nodeSelector: { 'node-pool': 'identity' },
  topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway' }],
  priorityClassName: 'platform-critical',
  podAnnotations: { 'prometheus.io/scrape': 'true' },
  podLabels: { team: 'identity' },
  extraEnv: [{ name: 'JAVA_OPTS_APPEND', value: '-XX:MaxRAMPercentage=70' }],
  extraVolumes: [{ name: 'themes', configMap: { name: 'keycloak-themes' } }],
  extraVolumeMounts: [{ name: 'themes', mountPath: '/opt/keycloak/themes/company', readOnly: true }],
  sidecars: [LOG_SHIPPER],
  imagePullSecrets: ['registry-credentials'],
};

function keycloakPod(pod: PodCustomization) {
  const chart = Testing.chart();
  new Keycloak(chart, 'keycloak', { database, pod });
  const objects = Testing.synth(chart);
  validateObjects(objects);
  return objects.find((o) => o.kind === 'StatefulSet')!.spec.template;
}

describe('pod customization', () => {
  it('adds scheduling, metadata, env, volumes, a sidecar and pull secrets to Keycloak, still restricted', () => {
    const template = keycloakPod(EVERYTHING);
    const spec = template.spec;
    expect(spec.tolerations).toEqual([{ key: 'dedicated', operator: 'Equal', value: 'identity', effect: 'NoSchedule' }]);
    expect(spec.nodeSelector).toEqual({ 'node-pool': 'identity' });
    // A spread constraint without a selector spreads the workload's own pods.
    expect(spec.topologySpreadConstraints[0].labelSelector.matchLabels['app.kubernetes.io/component']).toBe('keycloak');
    expect(spec.priorityClassName).toBe('platform-critical');
    expect(template.metadata.annotations).toEqual({ 'prometheus.io/scrape': 'true' });
    expect(template.metadata.labels.team).toBe('identity');
    const keycloak = spec.containers.find((c: any) => c.name === 'keycloak');
    expect(keycloak.env).toContainEqual({ name: 'JAVA_OPTS_APPEND', value: '-XX:MaxRAMPercentage=70' });
    expect(keycloak.volumeMounts).toContainEqual({ name: 'themes', mountPath: '/opt/keycloak/themes/company', readOnly: true });
    expect(spec.volumes).toContainEqual({ name: 'themes', configMap: { name: 'keycloak-themes' } });
    // The sidecar is written as the API spells it (quantities as strings), and gets no extra env.
    const sidecar = spec.containers.find((c: any) => c.name === 'log-shipper');
    expect(sidecar.resources).toEqual({ requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '64Mi' } });
    expect(sidecar.env).toBeUndefined();
    // The gate init container is Keycloak's, not a main container: no extra env there.
    expect(spec.imagePullSecrets).toEqual([{ name: 'registry-credentials' }]);
    expect(restrictedProfileViolations(spec)).toEqual([]);
  });

  it('fails on a pod label the API server would refuse', () => {
    expect(() => keycloakPod({ podLabels: { 'team/identity/x': 'a' } })).toThrow(/'pod'.podLabels has the key "team\/identity\/x", which is not a label key/);
    expect(() => keycloakPod({ podLabels: { team: 'a b' } })).toThrow(/'pod'.podLabels.team must be a label value/);
  });

  it('adds an affinity to the construct\'s: the PostgreSQL pods keep their soft anti-affinity', () => {
    const chart = new Chart(Testing.app(), 'c', { namespace: 'keycloak' });
    const nodeAffinity = { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['db'] }] }] } };
    const zoneApart = { weight: 50, podAffinityTerm: { topologyKey: 'topology.kubernetes.io/zone', labelSelector: { matchLabels: { app: 'x' } } } };
    new PostgresHa(chart, 'ha', { pod: { affinity: { nodeAffinity, podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [zoneApart] } } } });
    const objects = Testing.synth(chart);
    validateObjects(objects);
    const affinity = objects.find((o) => o.kind === 'StatefulSet')!.spec.template.spec.affinity;
    expect(affinity.nodeAffinity).toEqual(nodeAffinity);
    const preferred = affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution;
    expect(preferred).toHaveLength(2);
    expect(preferred[0].podAffinityTerm.topologyKey).toBe('kubernetes.io/hostname');
    expect(preferred[1]).toEqual(zoneApart);
  });

  it('reaches the PostgreSQL, Pgpool and Job pods', () => {
    const chart = new Chart(Testing.app(), 'c', { namespace: 'keycloak' });
    const tolerations = EVERYTHING.tolerations;
    new PostgresHa(chart, 'ha', { pod: { tolerations }, pgpoolPod: { nodeSelector: { pool: 'edge' } } });
    new PostgresStandalone(chart, 'legacy', { release: 'old', pod: { priorityClassName: 'databases' } });
    new DatabaseMigration(chart, 'migration', {
      name: 'keycloak-migration',
      flavor: 'argocd',
      runnerImage: 'ghcr.io/example/runner:1.2.3',
      source: database,
      target: database,
      workloads: [{ kind: 'StatefulSet', name: 'keycloak' }],
      targetConstructs: [],
      workloadConstructs: [],
      jobPod: { podAnnotations: { 'sidecar.istio.io/inject': 'false' } },
    });
    const objects = Testing.synth(chart);
    validateObjects(objects);
    const pod = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name)!.spec.template;
    expect(pod('StatefulSet', 'keycloak-postgresql-ha-postgresql').spec.tolerations).toEqual(tolerations);
    expect(pod('Deployment', 'keycloak-postgresql-ha-pgpool').spec.nodeSelector).toEqual({ pool: 'edge' });
    expect(pod('StatefulSet', 'old-postgresql').spec.priorityClassName).toBe('databases');
    const jobs = objects.filter((o) => o.kind === 'Job');
    expect(jobs.length).toBeGreaterThanOrEqual(3);
    for (const job of jobs) expect(job.spec.template.metadata.annotations).toEqual({ 'sidecar.istio.io/inject': 'false' });
  });

  it('maps onto a CloudNativePG Cluster\'s own fields', () => {
    const chart = Testing.chart();
    new PostgresHa(chart, 'ha', {
      flavor: 'cloudnative-pg',
      pod: {
        tolerations: EVERYTHING.tolerations,
        nodeSelector: { pool: 'db' },
        affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { 'cnpg.io/cluster': 'keycloak-postgresql-ha' } } }] } },
        podLabels: { team: 'identity' },
        extraEnv: [{ name: 'TZ', value: 'UTC' }],
      },
    });
    const cluster = Testing.synth(chart).find((o) => o.kind === 'Cluster')!;
    expect(cluster.spec.affinity).toEqual({
      tolerations: EVERYTHING.tolerations,
      nodeSelector: { pool: 'db' },
      additionalPodAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { 'cnpg.io/cluster': 'keycloak-postgresql-ha' } } }] },
    });
    expect(cluster.spec.inheritedMetadata).toEqual({ labels: { team: 'identity' } });
    expect(cluster.spec.env).toEqual([{ name: 'TZ', value: 'UTC' }]);
  });

  it('changes nothing when not given', () => {
    const plain = (() => {
      const chart = Testing.chart();
      new Keycloak(chart, 'keycloak', { database });
      return Testing.synth(chart);
    })();
    const empty = (() => {
      const chart = Testing.chart();
      new Keycloak(chart, 'keycloak', { database, pod: {} });
      return Testing.synth(chart);
    })();
    expect(empty).toEqual(plain);
  });

  it('fails when a pod label would change the selector', () => {
    expect(() => keycloakPod({ podLabels: { 'app.kubernetes.io/component': 'web' } })).toThrow(
      `Keycloak 'pod'.podLabels.app.kubernetes.io/component is "web", but the workload's selector needs "keycloak": choose another label key`,
    );
  });

  it('fails when extra env overrides a variable the construct sets', () => {
    expect(() => keycloakPod({ extraEnv: [{ name: 'KC_DB_URL_HOST', value: 'elsewhere' }] })).toThrow(
      /Keycloak 'pod'.extraEnv\[0\] sets KC_DB_URL_HOST, which the construct sets itself on container keycloak/,
    );
  });

  it('fails when a sidecar breaks the restricted profile', () => {
    const root: k8s.Container = { ...LOG_SHIPPER, securityContext: { runAsUser: 0, privileged: true } };
    expect(() => keycloakPod({ sidecars: [root] })).toThrow(
      /Keycloak 'pod' makes the pod break the Pod Security "restricted" profile: container log-shipper is privileged; .*runAsUser is 0/,
    );
  });

  it('fails on a hostPath volume, a mount of a missing volume and a taken container name', () => {
    expect(() => keycloakPod({ extraVolumes: [{ name: 'host', hostPath: { path: '/var/log' } }] })).toThrow(/volume host has type hostPath, not allowed by "restricted"/);
    expect(() => keycloakPod({ extraVolumeMounts: [{ name: 'nope', mountPath: '/x' }] })).toThrow(
      `Keycloak 'pod'.extraVolumeMounts[0] mounts volume "nope", which the pod does not have: add it to Keycloak 'pod'.extraVolumes`,
    );
    expect(() => keycloakPod({ sidecars: [{ ...LOG_SHIPPER, name: 'keycloak' }] })).toThrow(/sidecars\[0\].name "keycloak" is taken by the pod's containers \(keycloak\): choose another name/);
    expect(() => keycloakPod({ sidecars: [{ ...LOG_SHIPPER, name: 'log.shipper' }] })).toThrow(/sidecars\[0\].name must be a DNS-1123 label .* got "log.shipper"/);
    expect(() => keycloakPod({ extraVolumes: [{ name: 'tmp', emptyDir: {} }] })).toThrow(/extraVolumes\[0\].name "tmp" is missing or already used by the pod/);
  });

  it('fails when a CloudNativePG Cluster is given a sidecar, and Pgpool customization without Pgpool', () => {
    expect(() => new PostgresHa(Testing.chart(), 'ha', { flavor: 'cloudnative-pg', pod: { sidecars: [LOG_SHIPPER] } })).toThrow(
      `PostgresHa 'pod' 'sidecars' cannot be applied to a CloudNativePG Cluster (the operator makes its pods): remove it, or use flavor 'repmgr', or the operator's own plugin mechanism`,
    );
    expect(() => new PostgresHa(Testing.chart(), 'ha', { flavor: 'cloudnative-pg', pgpoolPod: { tolerations: [] } })).toThrow(/'pgpoolPod' does not apply to flavor 'cloudnative-pg'/);
  });

  it('accepts dotted PriorityClass and pull-secret names, as the API server does (DNS-1123 subdomains)', () => {
    const { spec } = keycloakPod({ priorityClassName: 'team.critical', imagePullSecrets: ['registry.example.com'] });
    expect(spec.priorityClassName).toBe('team.critical');
    expect(spec.imagePullSecrets).toEqual([{ name: 'registry.example.com' }]);
  });

  it('checks the shape of a CloudNativePG customization as it does for workloads', () => {
    const cluster = (pod: PodCustomization) => new PostgresHa(Testing.chart(), 'ha', { flavor: 'cloudnative-pg', pod });
    expect(() => cluster({ nodeSelector: ['pool=db'] as unknown as Record<string, string> })).toThrow(`PostgresHa 'pod'.nodeSelector must be a map of strings, got ["pool=db"]`);
    expect(() => cluster({ tolerations: { key: 'db' } as unknown as k8s.Toleration[] })).toThrow(`PostgresHa 'pod'.tolerations must be a list, got {"key":"db"}`);
    expect(() => cluster({ imagePullSecrets: ['Bad Name'] })).toThrow(/PostgresHa 'pod'.imagePullSecrets\[0\] must be a DNS-1123 subdomain/);
    expect(() => cluster({ extraEnv: [{ value: 'x' } as unknown as k8s.EnvVar] })).toThrow(`PostgresHa 'pod'.extraEnv[0] needs a name, got {"value":"x"}`);
  });

  it('fails on a bad priority class and a spread constraint without a topology key', () => {
    expect(() => keycloakPod({ priorityClassName: 'Not A Name' })).toThrow(/^Keycloak 'pod'.priorityClassName must be a DNS-1123 subdomain .*got "Not A Name"/);
    expect(() => keycloakPod({ imagePullSecrets: ['Registry_Credentials'] })).toThrow(/^Keycloak 'pod'.imagePullSecrets\[0\] must be a DNS-1123 subdomain .*got "Registry_Credentials"/);
    expect(() => keycloakPod({ topologySpreadConstraints: [{ maxSkew: 1, whenUnsatisfiable: 'DoNotSchedule' } as unknown as k8s.TopologySpreadConstraint] })).toThrow(
      /topologySpreadConstraints\[0\].topologyKey must be a node label key/,
    );
  });
});
