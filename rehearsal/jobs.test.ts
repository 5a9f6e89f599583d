// The Job controller on its own, with a stand-in program instead of the runner bundle: retries
// up to backoffLimit, podFailurePolicy FailJob on listed exit codes, activeDeadlineSeconds, env
// from Secrets and the downward API, a PVC mounted as a directory, RBAC through the pod's token.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startFakeKubeApiServer, type FakeKubeApiServer } from '../test/support/fake-kube/index.js';

import { FakeCluster } from './cluster.js';
import { JobController, matchPodFailurePolicy } from './jobs.js';
import type { KubeObject } from './manifests.js';
import { PodEndpoints, ServiceProxies } from './service-proxy.js';
import { Volumes } from './volumes.js';

const NS = 'jobs';
let server: FakeKubeApiServer;
let controller: JobController;
let volumes: Volumes;
let proxies: ServiceProxies;
let cluster: FakeCluster;
let root: string;

// Behaves like the runner as far as the controller can see: args decide the exit code.
const PROGRAM = `
import { appendFileSync, readFileSync } from 'node:fs';
const [mode, value] = process.argv.slice(2);
if (mode === 'exit') process.exit(Number(value));
if (mode === 'sleep') setTimeout(() => process.exit(0), Number(value));
if (mode === 'env') { console.log(JSON.stringify({ secret: process.env.SECRET, ns: process.env.NS, pod: process.env.POD, dir: process.env.DIR, home: process.env.HOME })); appendFileSync(process.env.DIR + '/written', 'x'); }
if (mode === 'api') {
  const config = readFileSync(process.env.KUBECONFIG, 'utf8');
  const { clusters, users } = JSON.parse(config);
  const response = await fetch(clusters[0].cluster.server + '/api/v1/namespaces/${NS}/secrets/s', { headers: { authorization: 'Bearer ' + users[0].user.token } });
  process.exit(response.status === 200 ? 0 : 77);
}
`;

function job(name: string, args: string[], spec: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: NS },
    spec: {
      backoffLimit: 1,
      ...spec,
      template: { spec: { serviceAccountName: 'runner', restartPolicy: 'Never', containers: [{ name: 'runner', args, ...extra }], ...((extra.podSpec as object) ?? {}) } },
    },
  };
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'rehearsal-jobs-'));
  writeFileSync(join(root, 'program.mjs'), PROGRAM);
  server = await startFakeKubeApiServer();
  volumes = new Volumes(server, NS, root, { sizedVolumes: false });
  proxies = new ServiceProxies(server, NS, new PodEndpoints());
  controller = new JobController({ server, namespace: NS, volumes, proxies, root: join(root, 'jobs'), runnerBundle: join(root, 'program.mjs'), backoffBaseMs: 50 });
  cluster = new FakeCluster(server, NS, 20);
  server.seed(
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'runner', namespace: NS } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: NS }, stringData: { key: 'from-the-secret' } },
  );
});
afterAll(async () => {
  await controller.close();
  volumes.close();
  await proxies.close();
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

describe('the rehearsal Job controller', () => {
  it('retries a failing pod until backoffLimit, then fails with BackoffLimitExceeded', async () => {
    const object = job('retries', ['exit', '1']);
    await cluster.create(object);
    await expect(cluster.waitReady(object, 20_000)).rejects.toThrow(/BackoffLimitExceeded/);
    expect(controller.runsOf('retries').map((run) => run.exitCode)).toEqual([1, 1]);
  });

  it('fails at once on a podFailurePolicy FailJob exit code', async () => {
    const object = job('non-retriable', ['exit', '77'], {
      podFailurePolicy: { rules: [{ action: 'FailJob', onExitCodes: { containerName: 'runner', operator: 'In', values: [64, 77] } }] },
    });
    await cluster.create(object);
    await expect(cluster.waitReady(object, 20_000)).rejects.toThrow(/PodFailurePolicy.*exit code 77/);
    expect(controller.runsOf('non-retriable')).toHaveLength(1);
    expect(matchPodFailurePolicy([{ action: 'FailJob', onExitCodes: { operator: 'NotIn', values: [1] } }], 'runner', 0)).toBeUndefined();
  });

  it('kills the pod at activeDeadlineSeconds and fails with DeadlineExceeded', async () => {
    const object = job('deadline', ['sleep', '60000'], { activeDeadlineSeconds: 1 });
    await cluster.create(object);
    await expect(cluster.waitReady(object, 20_000)).rejects.toThrow(/DeadlineExceeded/);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(controller.runsOf('deadline')[0]!.signal).toBe('SIGTERM');
  });

  it('resolves secretKeyRef and fieldRef, maps a PVC mount, and completes', async () => {
    server.seed({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'data', namespace: NS }, spec: { resources: { requests: { storage: '1Mi' } } } });
    const object = job('env', ['env'], {}, {
      env: [
        { name: 'SECRET', valueFrom: { secretKeyRef: { name: 's', key: 'key' } } },
        { name: 'NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
        { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'DIR', value: '/data/sub' },
      ],
      volumeMounts: [{ name: 'data', mountPath: '/data' }],
      podSpec: { volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }] },
    });
    const pvcDir = volumes.directoryOfClaim('data')!;
    (await import('node:fs')).mkdirSync(join(pvcDir, 'sub'));
    await cluster.create(object);
    await cluster.waitReady(object, 20_000);
    const [run] = controller.runsOf('env');
    const printed = JSON.parse(readFileSync(run!.logFile, 'utf8').trim()) as Record<string, string>;
    expect(printed).toEqual(expect.objectContaining({ secret: 'from-the-secret', ns: NS, pod: run!.podName, dir: join(pvcDir, 'sub') }));
    expect(readFileSync(join(pvcDir, 'sub', 'written'), 'utf8')).toBe('x');
  });

  it('waits for a missing non-optional Secret (CreateContainerConfigError), then runs', async () => {
    const object = job('late-secret', ['exit', '0'], {}, { env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'late', key: 'k' } } }] });
    await cluster.create(object);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(controller.runsOf('late-secret')).toHaveLength(0);
    const pod = server.list('v1', 'Pod', NS).find((p) => p.metadata.name.startsWith('late-secret-'))!;
    expect((pod.status as { reason?: string }).reason).toBe('CreateContainerConfigError');
    server.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'late', namespace: NS }, stringData: { k: 'v' } });
    await cluster.waitReady(object, 20_000);
  });

  it("gives the pod its ServiceAccount's token: RBAC of the stored Roles applies", async () => {
    const denied = job('no-role', ['api']);
    await cluster.create(denied);
    await expect(cluster.waitReady(denied, 20_000)).rejects.toThrow(/BackoffLimitExceeded/);
    expect(controller.runsOf('no-role').map((run) => run.exitCode)).toEqual([77, 77]);
    server.seed(
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'read-s', namespace: NS }, rules: [{ apiGroups: [''], resources: ['secrets'], resourceNames: ['s'], verbs: ['get'] }] },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'read-s', namespace: NS },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-s' },
        subjects: [{ kind: 'ServiceAccount', name: 'runner', namespace: NS }],
      },
    );
    const allowed = job('with-role', ['api']);
    await cluster.create(allowed);
    await cluster.waitReady(allowed, 20_000);
  });
});
