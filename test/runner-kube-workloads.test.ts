// Quiesce through the fake API server: scale to 0 via /scale, a simulated controller deletes the
// Pods, the wait returns; a Pod that does not stop makes the wait time out naming it; replicas
// come back to the recorded counts; the Role needs the scale subresource, pods, and get/patch on
// the workloads to give up the field ownership each scale records (so that a server-side apply of
// the chart's replicas by helm 4 or Argo CD does not conflict with the runner).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../lib/contract.js';
import { RunnerError } from '../runner/src/errors.js';
import {
  listWorkloadPods,
  mergeOriginalReplicas,
  parseWorkloads,
  quiesceWorkloads,
  readReplicas,
  waitForPodsGone,
  RUNNER_FIELD_MANAGER,
} from '../runner/src/kube/workloads.js';
import type { KubeContext } from '../runner/src/kube/client.js';
import type { HookContext } from '../runner/src/phases/context.js';
import { unquiesce } from '../runner/src/phases/quiesce.js';
import { startFakeKubeApiServer, startWorkloadController, type FakeKubeApiServer, type WorkloadController } from './support/fake-kube/index.js';
import { fakeRunnerKube } from './support/fake-kube/runner-kube-context.js';

const ns = 'kc';

/** What unquiesce reads of a hook's context: the API, the log, no state (no adopted workloads), no lock. */
function hookContextOf(kube: KubeContext): HookContext {
  return { kube, log: kube.log, state: undefined, lock: undefined } as unknown as HookContext;
}
let server: FakeKubeApiServer;
let controller: WorkloadController;
let runnerToken: string;

function workload(kind: 'StatefulSet' | 'Deployment', name: string, replicas: number) {
  return {
    apiVersion: 'apps/v1',
    kind,
    metadata: { name, namespace: ns },
    spec: {
      replicas,
      ...(kind === 'StatefulSet' ? { serviceName: name } : {}),
      selector: { matchLabels: { 'app.kubernetes.io/name': name } },
      template: { metadata: { labels: { 'app.kubernetes.io/name': name } }, spec: { containers: [{ name: 'main', image: 'x' }] } },
    },
  };
}

beforeAll(async () => {
  server = await startFakeKubeApiServer();
  controller = startWorkloadController(server, { terminationDelayMs: 400 });
  // Exactly what quiesce needs, nothing more.
  server.seed(
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'quiesce', namespace: ns },
      rules: [
        { apiGroups: ['apps'], resources: ['statefulsets/scale', 'deployments/scale'], verbs: ['get', 'patch'] },
        { apiGroups: ['apps'], resources: ['statefulsets', 'deployments'], verbs: ['get', 'patch'] },
        { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'quiesce', namespace: ns },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'quiesce' },
      subjects: [{ kind: 'ServiceAccount', name: 'runner', namespace: ns }],
    },
  );
  runnerToken = server.tokenForServiceAccount(ns, 'runner');
});
afterAll(async () => {
  controller.stop();
  await server.close();
});

describe('parseWorkloads', () => {
  it('parses statefulset/ and deployment/ entries, case-insensitive kinds, without duplicates', () => {
    expect(parseWorkloads('statefulset/keycloak, Deployment/admin,StatefulSet/keycloak')).toEqual([
      { kind: 'statefulset', name: 'keycloak' },
      { kind: 'deployment', name: 'admin' },
    ]);
    expect(parseWorkloads('')).toEqual([]);
    expect(parseWorkloads(undefined)).toEqual([]);
  });

  it('fails on anything else, naming the variable, the entry and the expected form', () => {
    expect(() => parseWorkloads('daemonset/x')).toThrow('MIGRATION_WORKLOADS has an invalid entry "daemonset/x" (in "daemonset/x")');
    expect(() => parseWorkloads('keycloak')).toThrow(/invalid entry "keycloak"/);
    expect(() => parseWorkloads('statefulset/Key_cloak')).toThrow(/invalid entry/);
    expect(() => parseWorkloads('job/x')).toThrow(
      expect.objectContaining({ exitCode: ExitCode.usage, hint: expect.stringContaining('statefulset/<name> or deployment/<name>') }),
    );
  });
});

describe('quiesce', () => {
  it('records originals before scaling, scales to 0, waits for the Pods to go, and restores', async () => {
    server.seed(workload('StatefulSet', 'keycloak', 3), workload('Deployment', 'admin', 2));
    await controller.settled();
    const { kube } = fakeRunnerKube(server, { namespace: ns, token: runnerToken });
    const refs = parseWorkloads('statefulset/keycloak,deployment/admin');
    expect(await listWorkloadPods(kube, refs[0]!)).toEqual(['keycloak-0', 'keycloak-1', 'keycloak-2']);

    let recorded: Record<string, number> = {};
    let replicasWhenPersisted = -1;
    server.clearRequestLog();
    const originals = await quiesceWorkloads(kube, refs, {
      timeoutMs: 5_000,
      pollMs: 20,
      persistOriginals: async (observed) => {
        replicasWhenPersisted = (server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'keycloak', namespace: ns })?.spec as { replicas: number }).replicas;
        recorded = mergeOriginalReplicas(recorded, observed);
        return recorded;
      },
    });
    expect(replicasWhenPersisted).toBe(3);
    // The Pods take 400 ms to terminate (the scale and the ownership release before the wait take a
    // few round trips): the wait must have polled while they were still there.
    expect(server.requestCount({ verb: 'list', resource: 'pods' })).toBeGreaterThan(2);
    expect(server.listenerErrors).toEqual([]);
    expect(originals).toEqual({ 'statefulset/keycloak': 3, 'deployment/admin': 2 });
    expect(server.list('v1', 'Pod', ns).filter((pod) => /^(keycloak|admin)-/.test(pod.metadata.name))).toEqual([]);
    expect(await readReplicas(kube, refs[0]!)).toBe(0);
    // The scale recorded the runner as owner of .spec.replicas; the runner gave that up again, so
    // a server-side apply of the chart's replicas (helm 4, Argo CD ServerSideApply) does not conflict.
    const managers = (name: string, kind: string) =>
      ((server.get({ apiVersion: 'apps/v1', kind, name, namespace: ns })!.metadata.managedFields ?? []) as { manager: string }[]).map((entry) => entry.manager);
    expect(managers('keycloak', 'StatefulSet')).not.toContain(RUNNER_FIELD_MANAGER);
    expect(managers('admin', 'Deployment')).not.toContain(RUNNER_FIELD_MANAGER);
    expect(server.requestCount({ verb: 'patch', resource: 'statefulsets' })).toBe(1);

    // A resumed run sees 0 replicas but keeps the counts on record.
    const resumed = await quiesceWorkloads(kube, refs, {
      timeoutMs: 5_000,
      pollMs: 20,
      persistOriginals: async (observed) => {
        expect(observed).toEqual({ 'statefulset/keycloak': 0, 'deployment/admin': 0 });
        recorded = mergeOriginalReplicas(recorded, observed);
        return recorded;
      },
    });
    expect(resumed).toEqual({ 'statefulset/keycloak': 3, 'deployment/admin': 2 });

    // Scaled back by unquiesce (restore-phase's): only workloads still at 0, to their recorded counts.
    expect(await unquiesce(hookContextOf(kube), resumed)).toEqual({ scaled: { 'statefulset/keycloak': 3, 'deployment/admin': 2 }, untouched: [] });
    await controller.settled();
    expect(await readReplicas(kube, refs[0]!)).toBe(3);
    expect(managers('keycloak', 'StatefulSet')).not.toContain(RUNNER_FIELD_MANAGER);
    expect(await listWorkloadPods(kube, refs[1]!)).toHaveLength(2);
  });

  it('times out naming the Pods still running', async () => {
    server.seed(workload('StatefulSet', 'stuck', 0));
    // A Pod matching the selector that no controller removes (e.g. stuck on a finalizer).
    server.seed({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'stuck-0', namespace: ns, labels: { 'app.kubernetes.io/name': 'stuck' } },
      spec: { containers: [{ name: 'main', image: 'x' }] },
    });
    const { kube } = fakeRunnerKube(server, { namespace: ns, token: runnerToken });
    const started = Date.now();
    const error = await waitForPodsGone(kube, { kind: 'statefulset', name: 'stuck' }, { timeoutMs: 200, pollMs: 50 }).catch((caught: unknown) => caught);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(error).toBeInstanceOf(RunnerError);
    expect((error as RunnerError).exitCode).toBe(ExitCode.tempFail);
    expect((error as RunnerError).message).toBe('timed out after 0s waiting for statefulset/stuck to stop: still running stuck-0');
    expect((error as RunnerError).hint).toContain('MIGRATION_QUIESCE_TIMEOUT_SECONDS');
  });

  it('names a configured workload that does not exist', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns, token: runnerToken });
    await expect(readReplicas(kube, { kind: 'statefulset', name: 'ghost' })).rejects.toThrow(
      'MIGRATION_WORKLOADS names statefulset/ghost, but no StatefulSet ghost exists in namespace kc',
    );
    // Scaling back a workload the upgrade removed is skipped, not fatal.
    expect(await unquiesce(hookContextOf(kube), { 'statefulset/ghost': 2 })).toEqual({ scaled: {}, untouched: ['statefulset/ghost'] });
  });

  it('retries a 503 on the scale patch', async () => {
    server.seed(workload('Deployment', 'flaky', 1));
    await controller.settled();
    const { kube } = fakeRunnerKube(server, { namespace: ns, token: runnerToken });
    const fault = server.injectFault({ verb: 'patch', resource: 'deployments/scale', name: 'flaky', status: 503 });
    await quiesceWorkloads(kube, [{ kind: 'deployment', name: 'flaky' }], { timeoutMs: 5_000, pollMs: 20, persistOriginals: async (o) => o });
    expect(fault.fired).toBe(1);
    expect(await readReplicas(kube, { kind: 'deployment', name: 'flaky' })).toBe(0);
  });

  it('fails with the RBAC fix when the Role lacks the scale subresource', async () => {
    const { kube } = fakeRunnerKube(server, { namespace: ns, token: server.tokenForServiceAccount(ns, 'nobody') });
    const error = await readReplicas(kube, { kind: 'statefulset', name: 'keycloak' }).catch((caught: unknown) => caught);
    expect((error as RunnerError).exitCode).toBe(ExitCode.noPermission);
    expect((error as RunnerError).oneLine()).toContain('grant "get" on "statefulsets/scale" (apiGroups: ["apps"]) to ServiceAccount kc/nobody in the migration Role');
  });
});
