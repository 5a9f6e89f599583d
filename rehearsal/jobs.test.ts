// The Job controller on its own, with a stand-in program mounted over the runner image's bundle
// (the containers are real: podman run of the runner image): retries up to backoffLimit,
// podFailurePolicy FailJob on listed exit codes, activeDeadlineSeconds (and PID 1 ignoring a
// SIGTERM it has no handler for), env from Secrets and the downward API, a PVC mounted at its
// path, RBAC through the pod's in-cluster ServiceAccount token.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

// Behaves like the runner as far as the controller can see: args decide the exit code. Like the
// runner it ends on SIGTERM with 128 + 15; 'sleep-ignoring-term' has no handler, so as PID 1 of
// its container it ignores SIGTERM (the kernel does not apply default actions to PID 1).
const PROGRAM = `
import { appendFileSync, readFileSync } from 'node:fs';
import { get } from 'node:https';
const [mode, value] = process.argv.slice(2);
if (mode === 'exit') process.exit(Number(value));
if (mode === 'sleep') { process.on('SIGTERM', () => process.exit(143)); setTimeout(() => process.exit(0), Number(value)); }
if (mode === 'sleep-ignoring-term') setTimeout(() => process.exit(0), Number(value));
if (mode === 'env') { console.log(JSON.stringify({ secret: process.env.SECRET, ns: process.env.NS, pod: process.env.POD, dir: process.env.DIR, uid: process.getuid() })); appendFileSync(process.env.DIR + '/written', 'x'); }
if (mode === 'api') {
  // What client-node's loadFromCluster does: the mounted token and CA, the kubernetes Service env.
  const dir = '/var/run/secrets/kubernetes.io/serviceaccount';
  const namespace = readFileSync(dir + '/namespace', 'utf8');
  const status = await new Promise((resolve, reject) => get({
    host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT, ca: readFileSync(dir + '/ca.crt'),
    path: '/api/v1/namespaces/' + namespace + '/secrets/s', headers: { authorization: 'Bearer ' + readFileSync(dir + '/token', 'utf8') },
  }, (response) => { response.resume(); resolve(response.statusCode); }).on('error', reject));
  process.exit(status === 200 ? 0 : 77);
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
  // The pods' users must reach the pod directories and read the program.
  chmodSync(root, 0o755);
  writeFileSync(join(root, 'program.mjs'), PROGRAM, { mode: 0o644 });
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
    // Long enough for the program to install its SIGTERM handler on a loaded machine: before that,
    // its container's PID 1 ignores SIGTERM (the next test).
    const object = job('deadline', ['sleep', '60000'], { activeDeadlineSeconds: 4 });
    await cluster.create(object);
    await expect(cluster.waitReady(object, 20_000)).rejects.toThrow(/DeadlineExceeded/);
    // podman kill, the container's exit and podman's clean-up take a moment after the Job failed.
    await expect.poll(() => controller.runsOf('deadline')[0]!.signal, { timeout: 10_000 }).toBe('SIGTERM');
  });

  it('kills a container whose PID 1 ignores SIGTERM with SIGKILL after the grace period', async () => {
    const object = job('deadline-ignored', ['sleep-ignoring-term', '60000'], { activeDeadlineSeconds: 1 });
    await cluster.create(object);
    await expect(cluster.waitReady(object, 20_000)).rejects.toThrow(/DeadlineExceeded/);
    await expect.poll(() => controller.runsOf('deadline-ignored')[0]!.signal, { timeout: 10_000 }).toBe('SIGKILL');
    const run = controller.runsOf('deadline-ignored')[0]!;
    // It started before the deadline (1 s) and ended no sooner than the grace period (2 s) after it.
    expect(run.endedAt! - run.startedAt).toBeGreaterThanOrEqual(2000 - 100);
  });

  it('resolves secretKeyRef and fieldRef, mounts the PVC at its path, and completes', async () => {
    server.seed({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'data', namespace: NS }, spec: { resources: { requests: { storage: '1Mi' } } } });
    const object = job('env', ['env'], {}, {
      env: [
        { name: 'SECRET', valueFrom: { secretKeyRef: { name: 's', key: 'key' } } },
        { name: 'NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
        { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'DIR', value: '/data/sub' },
      ],
      volumeMounts: [{ name: 'data', mountPath: '/data' }],
      podSpec: { securityContext: { runAsUser: 1001, runAsGroup: 1001, fsGroup: 1001 }, volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }] },
    });
    const pvcDir = volumes.directoryOfClaim('data')!;
    mkdirSync(join(pvcDir, 'sub'));
    chmodSync(join(pvcDir, 'sub'), 0o777);
    await cluster.create(object);
    await cluster.waitReady(object, 20_000);
    const [run] = controller.runsOf('env');
    const printed = JSON.parse(readFileSync(run!.logFile, 'utf8').trim()) as Record<string, string>;
    expect(printed).toEqual({ secret: 'from-the-secret', ns: NS, pod: run!.podName, dir: '/data/sub', uid: 1001 });
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
