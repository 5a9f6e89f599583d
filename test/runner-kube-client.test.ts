// The runner's API client against the fake API server: loading the kubeconfig the way the runner
// does (KUBECONFIG), and turning every kind of API failure into one clear RunnerError.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../lib/contract.js';
import { RunnerError } from '../runner/src/errors.js';
import { callApi, createKubeContext, isConflict, isNotFound, KubeApiError } from '../runner/src/kube/client.js';
import { createLogger } from '../runner/src/log.js';
import { startFakeKubeApiServer, type FakeKubeApiServer } from './support/fake-kube/index.js';
import { fakeRunnerKube } from './support/fake-kube/runner-kube-context.js';

const ns = 'kc';
let server: FakeKubeApiServer;
let dir: string;

beforeAll(async () => {
  server = await startFakeKubeApiServer();
  dir = mkdtempSync(join(tmpdir(), 'runner-kube-client-'));
  server.seed({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'present', namespace: ns }, data: { a: 'b' } });
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function failureOf(promise: Promise<unknown>): Promise<KubeApiError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(KubeApiError);
  return error as KubeApiError;
}

describe('createKubeContext', () => {
  it('loads KUBECONFIG through loadFromDefault and reads MIGRATION_NAMESPACE', async () => {
    const path = server.writeKubeconfig(join(dir, 'config'), server.adminToken, 'ignored-context-namespace');
    const previous = process.env.KUBECONFIG;
    process.env.KUBECONFIG = path;
    try {
      const kube = createKubeContext({ env: { MIGRATION_NAMESPACE: ns }, log: createLogger({ env: {}, level: 'error' }) });
      expect(kube.namespace).toBe(ns);
      const configMap = await kube.core.readNamespacedConfigMap({ name: 'present', namespace: kube.namespace });
      expect(configMap.data).toEqual({ a: 'b' });

      const fromContext = createKubeContext({ env: {}, log: createLogger({ env: {}, level: 'error' }) });
      expect(fromContext.namespace).toBe('ignored-context-namespace');
    } finally {
      if (previous === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = previous;
    }
  });

  it('fails when no namespace is known, naming the variable', () => {
    const kubeConfig = server.kubeConfig();
    kubeConfig.contexts = kubeConfig.contexts.map((context) => ({ ...context, namespace: undefined }));
    expect(() => createKubeContext({ env: {}, kubeConfig })).toThrow(/MIGRATION_NAMESPACE is not set/);
  });
});

describe('callApi error mapping', () => {
  it('maps 404 to NotFound and 409 to Conflict (retriable)', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const missing = await failureOf(
      callApi(kube, { verb: 'get', resource: 'configmaps', name: 'absent', namespace: ns }, () =>
        kube.core.readNamespacedConfigMap({ name: 'absent', namespace: ns }),
      ),
    );
    expect(isNotFound(missing)).toBe(true);
    expect(missing.statusCode).toBe(404);
    expect(missing.status?.reason).toBe('NotFound');

    const current = await kube.core.readNamespacedConfigMap({ name: 'present', namespace: ns });
    await kube.core.replaceNamespacedConfigMap({ name: 'present', namespace: ns, body: { ...current, data: { a: 'c' } } });
    const conflict = await failureOf(
      callApi(kube, { verb: 'update', resource: 'configmaps', name: 'present', namespace: ns }, () =>
        kube.core.replaceNamespacedConfigMap({ name: 'present', namespace: ns, body: { ...current, data: { a: 'd' } } }),
      ),
    );
    expect(isConflict(conflict)).toBe(true);
    expect(conflict.exitCode).toBe(ExitCode.tempFail);
  });

  it('maps 403 to noPermission with one line naming verb, resource and the Role fix', async () => {
    const token = server.tokenForServiceAccount(ns, 'migration-runner');
    const { kube } = fakeRunnerKube(server, { namespace: ns, token });
    const denied = await failureOf(
      callApi(kube, { verb: 'patch', resource: 'statefulsets/scale', group: 'apps', name: 'keycloak', namespace: ns }, () =>
        kube.apps.patchNamespacedStatefulSetScale({ name: 'keycloak', namespace: ns, body: [{ op: 'replace', path: '/spec/replicas', value: 0 }] }),
      ),
    );
    expect(denied.reason).toBe('Forbidden');
    expect(denied.exitCode).toBe(ExitCode.noPermission);
    expect(denied.oneLine()).toBe(
      'Kubernetes RBAC denied patch on statefulsets/scale "keycloak" (API group apps) in namespace kc: ' +
        'grant "patch" on "statefulsets/scale" (apiGroups: ["apps"]) to ServiceAccount kc/migration-runner in the migration Role',
    );
    expect(denied.oneLine()).not.toContain('\n');

    const clusterScoped = await failureOf(
      callApi(kube, { verb: 'patch', resource: 'persistentvolumes', name: 'pv-1' }, () => kube.core.readPersistentVolume({ name: 'pv-1' })),
    );
    expect(clusterScoped.hint).toContain('in the migration ClusterRole');
  });

  it('retries a 503 and succeeds when the API server recovers', async () => {
    const { kube, log } = fakeRunnerKube(server, { namespace: ns });
    const fault = server.injectFault({ verb: 'get', resource: 'configmaps', name: 'present', status: 503, times: 2 });
    const configMap = await callApi(kube, { verb: 'get', resource: 'configmaps', name: 'present', namespace: ns }, () =>
      kube.core.readNamespacedConfigMap({ name: 'present', namespace: ns }),
    );
    expect(configMap.metadata?.name).toBe('present');
    expect(fault.fired).toBe(2);
    expect(log.lines.filter((line) => line.msg === 'Kubernetes API call failed, retrying')).toHaveLength(2);
  });

  it('gives up after the retry budget with exit code unavailable', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    server.injectFault({ verb: 'get', resource: 'configmaps', name: 'present', status: 500, times: 10 });
    const error = await failureOf(
      callApi(kube, { verb: 'get', resource: 'configmaps', name: 'present', namespace: ns }, () =>
        kube.core.readNamespacedConfigMap({ name: 'present', namespace: ns }),
      ),
    );
    server.clearFaults();
    expect(error.reason).toBe('Unavailable');
    expect(error.exitCode).toBe(ExitCode.unavailable);
    expect(server.requests.filter((record) => record.code === 500)).toHaveLength(4);
  });

  it('maps a dropped connection and a refused connection to unavailable', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns, retry: { attempts: 1, baseDelayMs: 1 } });
    server.injectFault({ verb: 'get', resource: 'configmaps', status: 'reset' });
    const reset = await failureOf(
      callApi(kube, { verb: 'get', resource: 'configmaps', name: 'present', namespace: ns }, () =>
        kube.core.readNamespacedConfigMap({ name: 'present', namespace: ns }),
      ),
    );
    expect(reset.exitCode).toBe(ExitCode.unavailable);

    const stopped = await startFakeKubeApiServer();
    const { kube: orphan } = fakeRunnerKube(stopped, { namespace: ns, retry: { attempts: 2, baseDelayMs: 1 } });
    await stopped.close();
    const refused = await failureOf(
      callApi(orphan, { verb: 'get', resource: 'configmaps', name: 'present', namespace: ns }, () =>
        orphan.core.readNamespacedConfigMap({ name: 'present', namespace: ns }),
      ),
    );
    expect(refused.message).toContain('cannot reach the Kubernetes API server (ECONNREFUSED)');
    expect(refused.exitCode).toBe(ExitCode.unavailable);
  });

  it('passes a RunnerError through unchanged', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const original = new RunnerError('already explained', { exitCode: ExitCode.config });
    await expect(callApi(kube, { verb: 'get', resource: 'x' }, () => Promise.reject(original))).rejects.toBe(original);
  });
});
