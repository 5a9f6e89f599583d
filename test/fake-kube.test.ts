// The fake API server, exercised through the real @kubernetes/client-node over HTTP: if a test
// here passes, the runner's Kubernetes code sees the same answers it would get from a cluster.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ApiException,
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  KubernetesObjectApi,
  type KubernetesObject,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { Agent, request as httpRequest } from 'node:http';
import { startFakeKubeApiServer, startWorkloadController, type FakeKubeApiServer } from './support/fake-kube/index.js';

const ns = 'kc';
/** Node's `server.keepAliveTimeout` default (it closes about a second later): what the fake closed idle connections after before. */
const API_SERVER_IDLE_TIMEOUT_MS_NODE_DEFAULT = 5_000;
let server: FakeKubeApiServer;
let core: CoreV1Api;
let apps: AppsV1Api;

async function apiError(promise: Promise<unknown>): Promise<{ code: number; body: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ApiException);
    const exception = error as ApiException<string | undefined>;
    // client-node leaves the body undefined for a 401, as it does against a real server.
    const body = exception.body === undefined ? {} : (JSON.parse(exception.body) as Record<string, unknown>);
    return { code: exception.code, body };
  }
  throw new Error('expected the call to fail');
}

function statefulSet(name: string, replicas = 1) {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, namespace: ns, labels: { app: name } },
    spec: {
      replicas,
      serviceName: name,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'main', image: 'postgres:15' }] } },
    },
  };
}

beforeAll(async () => {
  server = await startFakeKubeApiServer();
  core = server.kubeConfig().makeApiClient(CoreV1Api);
  apps = server.kubeConfig().makeApiClient(AppsV1Api);
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  server.clearFaults();
});

describe('CRUD and Status bodies', () => {
  it('creates, reads, lists, replaces and deletes a ConfigMap with server-owned metadata', async () => {
    const created = await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'crud', labels: { tier: 'a' } }, data: { k: 'v' } },
    });
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata?.resourceVersion).toMatch(/^\d+$/);
    expect(created.metadata?.creationTimestamp).toBeInstanceOf(Date);
    expect(created.metadata?.namespace).toBe(ns);
    expect(created.metadata?.generation).toBeUndefined();

    const read = await core.readNamespacedConfigMap({ name: 'crud', namespace: ns });
    expect(read.data).toEqual({ k: 'v' });

    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'other', labels: { tier: 'b' } } } });
    const byLabel = await core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'tier=a' });
    expect(byLabel.items.map((item) => item.metadata?.name)).toEqual(['crud']);
    const byField = await core.listNamespacedConfigMap({ namespace: ns, fieldSelector: 'metadata.name=other' });
    expect(byField.items.map((item) => item.metadata?.name)).toEqual(['other']);
    const notIn = await core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'tier notin (a),tier' });
    expect(notIn.items.map((item) => item.metadata?.name)).toEqual(['other']);

    read.data = { k: 'v2' };
    const replaced = await core.replaceNamespacedConfigMap({ name: 'crud', namespace: ns, body: read });
    expect(Number(replaced.metadata?.resourceVersion)).toBeGreaterThan(Number(read.metadata?.resourceVersion));
    expect(replaced.metadata?.uid).toBe(created.metadata?.uid);

    // A Background delete of an object without finalizers removes it at once and answers a
    // Status of success (store.go finalizeDelete). Foreground and finalizers: fake-kube-deletion.test.ts.
    const status = await core.deleteNamespacedConfigMap({ name: 'crud', namespace: ns, body: { propagationPolicy: 'Background' } });
    expect(status).toMatchObject({ kind: 'Status', status: 'Success', details: { name: 'crud', kind: 'configmaps', uid: created.metadata?.uid } });
    const missing = await apiError(core.readNamespacedConfigMap({ name: 'crud', namespace: ns }));
    expect(missing.code).toBe(404);
    expect(missing.body).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'configmaps "crud" not found',
      reason: 'NotFound',
      details: { name: 'crud', kind: 'configmaps' },
      code: 404,
    });
  });

  it('answers 409 AlreadyExists on a second create and 409 Conflict on a stale resourceVersion', async () => {
    const first = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'cas' }, data: { n: '0' } } });
    const duplicate = await apiError(core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'cas' } } }));
    expect(duplicate.code).toBe(409);
    expect(duplicate.body.reason).toBe('AlreadyExists');
    expect(duplicate.body.message).toBe('configmaps "cas" already exists');

    await core.replaceNamespacedConfigMap({ name: 'cas', namespace: ns, body: { ...first, data: { n: '1' } } });
    const stale = await apiError(core.replaceNamespacedConfigMap({ name: 'cas', namespace: ns, body: { ...first, data: { n: '2' } } }));
    expect(stale.code).toBe(409);
    expect(stale.body.reason).toBe('Conflict');
    expect(stale.body.message).toBe(
      'Operation cannot be fulfilled on configmaps "cas": the object has been modified; please apply your changes to the latest version and try again',
    );
    expect((await core.readNamespacedConfigMap({ name: 'cas', namespace: ns })).data).toEqual({ n: '1' });
  });

  it('keeps the resourceVersion on an update that changes nothing', async () => {
    const created = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'noop' }, data: { a: 'b' } } });
    const same = await core.replaceNamespacedConfigMap({ name: 'noop', namespace: ns, body: created });
    expect(same.metadata?.resourceVersion).toBe(created.metadata?.resourceVersion);
  });

  it('rejects an invalid name with a 422 naming the field', async () => {
    const invalid = await apiError(core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'Bad_Name' } } }));
    expect(invalid.code).toBe(422);
    expect(invalid.body.reason).toBe('Invalid');
    expect(String(invalid.body.message)).toContain('metadata.name: Invalid value: "Bad_Name"');
  });

  it('folds Secret stringData into base64 data', async () => {
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 's' }, stringData: { password: 'pä55' } } });
    const secret = await core.readNamespacedSecret({ name: 's', namespace: ns });
    expect(Buffer.from(secret.data?.password ?? '', 'base64').toString('utf8')).toBe('pä55');
    expect(secret.type).toBe('Opaque');
    expect(secret.stringData).toBeUndefined();
  });

  it('serves cluster-scoped PersistentVolumes and 404s a namespaced path for them', async () => {
    await core.createPersistentVolume({
      body: { metadata: { name: 'pv-a' }, spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteOnce'], hostPath: { path: '/x' } } },
    });
    const pv = await core.readPersistentVolume({ name: 'pv-a' });
    expect(pv.metadata?.namespace).toBeUndefined();
    expect(pv.spec?.persistentVolumeReclaimPolicy).toBe('Retain');
  });
});

describe('patch content types', () => {
  it('applies JSON patch (the client default), merge patch and strategic merge patch', async () => {
    await apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet('patched') });

    const jsonPatched = await apps.patchNamespacedStatefulSet({
      name: 'patched',
      namespace: ns,
      body: [{ op: 'replace', path: '/spec/replicas', value: 2 }],
    });
    expect(jsonPatched.spec?.replicas).toBe(2);
    expect(jsonPatched.metadata?.generation).toBe(2);
    expect(server.requests.at(-1)?.contentType).toBe(PatchStrategy.JsonPatch);

    const merged = await apps.patchNamespacedStatefulSet(
      { name: 'patched', namespace: ns, body: { metadata: { labels: { extra: 'yes', app: null } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(merged.metadata?.labels).toEqual({ extra: 'yes' });
    expect(merged.metadata?.generation).toBe(2);

    const strategic = await apps.patchNamespacedStatefulSet(
      {
        name: 'patched',
        namespace: ns,
        body: { spec: { template: { spec: { containers: [{ name: 'sidecar', image: 'busybox' }] } } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    expect(strategic.spec?.template.spec?.containers.map((container) => container.name)).toEqual(['main', 'sidecar']);

    const failedTest = await apiError(
      apps.patchNamespacedStatefulSet({ name: 'patched', namespace: ns, body: [{ op: 'test', path: '/spec/replicas', value: 9 }] }),
    );
    expect(failedTest.code).toBe(422);
  });

  // Merge keys and directives as k8s.io/api's patchMergeKey tags and apimachinery's strategicpatch define them
  // (https://github.com/kubernetes/community/blob/master/contributors/devel/sig-api-machinery/strategic-merge-patch.md).
  it('merges a Service\'s ports by port: helm 3\'s three-way patch ($setElementOrder, $patch: delete) from Bitnami 80/443 to 80/8080/9000', async () => {
    await core.createNamespacedService({
      namespace: ns,
      body: { metadata: { name: 'smp-ports' }, spec: { selector: { app: 'x' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'https', port: 443, targetPort: 'https' }] } },
    });
    // The body helm 3.17 sends for that change (kube.Client.Update → strategicpatch.CreateThreeWayMergePatch).
    const patched = await core.patchNamespacedService(
      {
        name: 'smp-ports',
        namespace: ns,
        body: {
          spec: {
            '$setElementOrder/ports': [{ port: 80 }, { port: 8080 }, { port: 9000 }],
            ports: [{ name: 'http-direct', port: 8080, targetPort: 'http' }, { name: 'management', port: 9000, targetPort: 'management' }, { $patch: 'delete', port: 443 }],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    expect(patched.spec?.ports?.map((port) => [port.name, port.port])).toEqual([['http', 80], ['http-direct', 8080], ['management', 9000]]);
  });

  it('merges container ports by containerPort and volumeMounts by mountPath, replaces atomic lists (args, tolerations), merges finalizers as a set', async () => {
    await apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet('smp-keys') });
    await apps.patchNamespacedStatefulSet(
      {
        name: 'smp-keys',
        namespace: ns,
        body: {
          metadata: { finalizers: ['example.com/a'] },
          spec: { template: { spec: { tolerations: [{ key: 'a', operator: 'Exists' }], containers: [{ name: 'main', args: ['one', 'two'], ports: [{ containerPort: 8080, name: 'http' }], volumeMounts: [{ name: 'data', mountPath: '/data' }] }] } } },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    const patched = await apps.patchNamespacedStatefulSet(
      {
        name: 'smp-keys',
        namespace: ns,
        body: {
          metadata: { finalizers: ['example.com/b'], '$deleteFromPrimitiveList/finalizers': ['example.com/a'] },
          spec: {
            template: {
              spec: {
                tolerations: [{ key: 'b', operator: 'Exists' }],
                containers: [{ name: 'main', args: ['three'], ports: [{ containerPort: 8080, name: 'web' }, { containerPort: 9000, name: 'management' }], volumeMounts: [{ name: 'tmp', mountPath: '/data' }] }],
              },
            },
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    const main = patched.spec?.template.spec?.containers.find((container) => container.name === 'main');
    expect(patched.metadata?.finalizers).toEqual(['example.com/b']);
    expect(patched.spec?.template.spec?.tolerations).toEqual([{ key: 'b', operator: 'Exists' }]);
    expect(main?.args).toEqual(['three']);
    expect(main?.ports).toEqual([{ containerPort: 8080, name: 'web' }, { containerPort: 9000, name: 'management' }]);
    expect(main?.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/data' }]);

    const missingKey = await apiError(
      apps.patchNamespacedStatefulSet(
        { name: 'smp-keys', namespace: ns, body: { spec: { template: { spec: { containers: [{ image: 'no-name' }] } } } } },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      ),
    );
    expect(missingKey.code).toBe(422);
    expect(String(missingKey.body.message)).toMatch(/does not contain declared merge key: name/);
  });

  it('treats a resourceVersion inside a merge patch as a precondition', async () => {
    const created = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'patch-rv' }, data: { a: '1' } } });
    await core.patchNamespacedConfigMap(
      { name: 'patch-rv', namespace: ns, body: { data: { a: '2' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const stale = await apiError(
      core.patchNamespacedConfigMap(
        { name: 'patch-rv', namespace: ns, body: { metadata: { resourceVersion: created.metadata?.resourceVersion }, data: { a: '3' } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    expect(stale.code).toBe(409);
    expect(stale.body.reason).toBe('Conflict');
  });

  it('refuses to change immutable StatefulSet fields like the real server', async () => {
    const invalid = await apiError(
      apps.patchNamespacedStatefulSet(
        { name: 'patched', namespace: ns, body: { spec: { serviceName: 'other' } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    expect(invalid.code).toBe(422);
    expect(String(invalid.body.message)).toContain("updates to statefulset spec for fields other than 'replicas'");
  });
});

// The fields a takeover of another chart's release trips over (kubernetes pkg/apis/*/validation,
// pkg/registry/core/service/storage): each refused with 422 Invalid and the real message.
describe('immutable fields', () => {
  const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  const forbiddenSpec =
    "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

  it('refuses a StatefulSet selector, serviceName or volumeClaimTemplates change with the real message and Status', async () => {
    await apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet('imm-sts') });
    const live = await apps.readNamespacedStatefulSet({ name: 'imm-sts', namespace: ns });
    const changes: Record<string, unknown>[] = [
      { selector: { matchLabels: { app: 'imm-sts', extra: 'x' } }, template: { metadata: { labels: { app: 'imm-sts', extra: 'x' } } } },
      { serviceName: 'imm-sts-headless' },
      { volumeClaimTemplates: [{ metadata: { name: 'data' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } }] },
    ];
    for (const spec of changes) {
      const invalid = await apiError(apps.patchNamespacedStatefulSet({ name: 'imm-sts', namespace: ns, body: { spec } }, merge));
      expect(invalid.code).toBe(422);
      expect(invalid.body).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'Invalid', details: { name: 'imm-sts', group: 'apps', kind: 'StatefulSet' } });
      expect(invalid.body.message).toBe(`StatefulSet.apps "imm-sts" is invalid: ${forbiddenSpec}`);
    }
    // A PUT of the whole object with another serviceName is refused the same way.
    const replaced = await apiError(
      apps.replaceNamespacedStatefulSet({ name: 'imm-sts', namespace: ns, body: { ...live, spec: { ...live.spec!, serviceName: 'other' } } }),
    );
    expect(replaced.code).toBe(422);
    // What stays mutable: replicas, template, updateStrategy, minReadySeconds.
    const allowed = await apps.patchNamespacedStatefulSet(
      { name: 'imm-sts', namespace: ns, body: { spec: { replicas: 0, minReadySeconds: 5, updateStrategy: { type: 'OnDelete' } } } },
      merge,
    );
    expect(allowed.spec?.replicas).toBe(0);
    expect((await apps.readNamespacedStatefulSet({ name: 'imm-sts', namespace: ns })).spec?.serviceName).toBe('imm-sts');
  });

  it('allocates a Service clusterIP, keeps it when an update omits it and refuses to change it', async () => {
    const created = await core.createNamespacedService({
      namespace: ns,
      body: { metadata: { name: 'imm-svc' }, spec: { selector: { app: 'a' }, ports: [{ name: 'http', port: 80 }] } },
    });
    const ip = created.spec?.clusterIP;
    expect(ip).toMatch(/^10\.96\.\d+\.\d+$/);
    expect(created.spec?.clusterIPs).toEqual([ip]);
    expect(created.spec?.type).toBe('ClusterIP');
    // A replace without clusterIP (kubectl apply / Helm's merge of a manifest that has none) keeps it.
    const replaced = await core.replaceNamespacedService({
      name: 'imm-svc',
      namespace: ns,
      body: { metadata: { name: 'imm-svc', resourceVersion: created.metadata?.resourceVersion }, spec: { selector: { app: 'b' }, ports: [{ name: 'http', port: 8080 }] } },
    });
    expect(replaced.spec?.clusterIP).toBe(ip);
    expect(replaced.spec?.ports?.[0]?.port).toBe(8080);
    // Headless in the new manifest: refused.
    const headless = await apiError(core.patchNamespacedService({ name: 'imm-svc', namespace: ns, body: { spec: { clusterIP: 'None', clusterIPs: ['None'] } } }, merge));
    expect(headless.code).toBe(422);
    expect(headless.body.message).toBe('Service "imm-svc" is invalid: spec.clusterIPs[0]: Invalid value: []string{"None"}: may not change once set');
    expect(headless.body).toMatchObject({ reason: 'Invalid', details: { name: 'imm-svc', kind: 'Service' } });
    const other = await apiError(core.patchNamespacedService({ name: 'imm-svc', namespace: ns, body: { spec: { clusterIP: '10.96.200.200' } } }, merge));
    expect(other.code).toBe(422);
    expect(String(other.body.message)).toContain('spec.clusterIPs[0]: Invalid value: []string{"10.96.200.200"}: may not change once set');
    // A headless Service stays headless.
    const none = await core.createNamespacedService({ namespace: ns, body: { metadata: { name: 'imm-hl' }, spec: { clusterIP: 'None', ports: [{ port: 5432 }] } } });
    expect(none.spec?.clusterIPs).toEqual(['None']);
  });

  it('refuses a Job selector or template change', async () => {
    const client = KubernetesObjectApi.makeApiClient(server.kubeConfig());
    const job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'imm-job', namespace: ns },
      spec: {
        selector: { matchLabels: { job: 'imm-job' } },
        manualSelector: true,
        template: { metadata: { labels: { job: 'imm-job' } }, spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'busybox:1' }] } },
      },
    };
    await client.create(job as KubernetesObject);
    const template = await apiError(
      client.patch(
        { ...job, spec: { template: { spec: { containers: [{ name: 'main', image: 'busybox:2' }] } } } } as KubernetesObject,
        undefined, undefined, undefined, undefined, PatchStrategy.MergePatch,
      ),
    );
    expect(template.code).toBe(422);
    expect(template.body.message).toBe('Job.batch "imm-job" is invalid: spec.template: Invalid value: field is immutable');
    const selector = await apiError(
      client.patch(
        { ...job, spec: { selector: { matchLabels: { job: 'other' } } } } as KubernetesObject,
        undefined, undefined, undefined, undefined, PatchStrategy.MergePatch,
      ),
    );
    expect(selector.code).toBe(422);
    expect(String(selector.body.message)).toMatch(/^Job\.batch "imm-job" is invalid: spec\.selector: Invalid value: .*: field is immutable/);
  });

  it('lets a PVC grow its request but refuses any other spec change', async () => {
    await core.createNamespacedPersistentVolumeClaim({
      namespace: ns,
      body: { metadata: { name: 'imm-pvc' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } },
    });
    const grown = await core.patchNamespacedPersistentVolumeClaim({ name: 'imm-pvc', namespace: ns, body: { spec: { resources: { requests: { storage: '2Gi' } } } } }, merge);
    expect(grown.spec?.resources?.requests?.storage).toBe('2Gi');
    const invalid = await apiError(
      core.patchNamespacedPersistentVolumeClaim({ name: 'imm-pvc', namespace: ns, body: { spec: { accessModes: ['ReadWriteMany'] } } }, merge),
    );
    expect(invalid.code).toBe(422);
    expect(String(invalid.body.message)).toMatch(/^PersistentVolumeClaim "imm-pvc" is invalid: spec: Forbidden: spec is immutable after creation/);
  });
});

describe('scale subresource', () => {
  it('reads, replaces and patches /scale of StatefulSets and Deployments', async () => {
    await apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet('db', 3) });
    const scale = await apps.readNamespacedStatefulSetScale({ name: 'db', namespace: ns });
    expect(scale.kind).toBe('Scale');
    expect(scale.spec?.replicas).toBe(3);
    expect(scale.status?.selector).toBe('app=db');

    const replaced = await apps.replaceNamespacedStatefulSetScale({
      name: 'db',
      namespace: ns,
      body: { metadata: { name: 'db', namespace: ns, resourceVersion: scale.metadata?.resourceVersion }, spec: { replicas: 1 } },
    });
    expect(replaced.spec?.replicas).toBe(1);
    const stale = await apiError(
      apps.replaceNamespacedStatefulSetScale({
        name: 'db',
        namespace: ns,
        body: { metadata: { name: 'db', namespace: ns, resourceVersion: scale.metadata?.resourceVersion }, spec: { replicas: 0 } },
      }),
    );
    expect(stale.code).toBe(409);

    await apps.patchNamespacedStatefulSetScale(
      { name: 'db', namespace: ns, body: { spec: { replicas: 0 } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const sts = await apps.readNamespacedStatefulSet({ name: 'db', namespace: ns });
    expect(sts.spec?.replicas).toBe(0);
    expect(sts.metadata?.generation).toBe(3);

    await apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: 'web' },
        spec: {
          selector: { matchLabels: { app: 'web' } },
          template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'x' }] } },
        },
      },
    });
    const patched = await apps.patchNamespacedDeploymentScale({
      name: 'web',
      namespace: ns,
      body: [{ op: 'replace', path: '/spec/replicas', value: 4 }],
    });
    expect(patched.spec?.replicas).toBe(4);
    const negative = await apiError(
      apps.patchNamespacedDeploymentScale({ name: 'web', namespace: ns, body: [{ op: 'replace', path: '/spec/replicas', value: -1 }] }),
    );
    expect(negative.code).toBe(422);
  });

  it('lets a simulated controller create and delete Pods on scale', async () => {
    // Pods terminate after a grace period, as the kubelet's do: long enough that a loaded machine
    // still lists both right after the scale (20 ms was outrun in CI).
    const controller = startWorkloadController(server, { terminationDelayMs: 2000 });
    try {
      await apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet('ctl', 2) });
      await controller.settled();
      let pods = await core.listNamespacedPod({ namespace: ns, labelSelector: 'app=ctl' });
      expect(pods.items.map((pod) => pod.metadata?.name)).toEqual(['ctl-0', 'ctl-1']);
      expect((await apps.readNamespacedStatefulSet({ name: 'ctl', namespace: ns })).status?.readyReplicas).toBe(2);

      await apps.patchNamespacedStatefulSetScale({ name: 'ctl', namespace: ns, body: [{ op: 'replace', path: '/spec/replicas', value: 0 }] });
      pods = await core.listNamespacedPod({ namespace: ns, labelSelector: 'app=ctl' });
      expect(pods.items).toHaveLength(2);
      await controller.settled();
      pods = await core.listNamespacedPod({ namespace: ns, labelSelector: 'app=ctl' });
      expect(pods.items).toHaveLength(0);
      expect((await apps.readNamespacedStatefulSet({ name: 'ctl', namespace: ns })).status?.replicas).toBe(0);
      expect(server.listenerErrors).toEqual([]);
    } finally {
      controller.stop();
    }
  });

  it('garbage-collects owned Pods when their StatefulSet is deleted, unless orphaned', async () => {
    const controller = startWorkloadController(server);
    try {
      await apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet('gc', 1) });
      await apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet('orphan', 1) });
      await controller.settled();
      controller.stop();
      await apps.deleteNamespacedStatefulSet({ name: 'gc', namespace: ns });
      await apps.deleteNamespacedStatefulSet({ name: 'orphan', namespace: ns, propagationPolicy: 'Orphan' });
      // The garbage collector works after the DELETE has been answered: poll, as a client must.
      const gone = (name: string) => server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name, namespace: ns }) === undefined;
      for (let tries = 0; !(gone('gc') && gone('orphan') && !server.get({ apiVersion: 'v1', kind: 'Pod', name: 'gc-0', namespace: ns })); tries += 1) {
        expect(tries).toBeLessThan(500);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const pods = await core.listNamespacedPod({ namespace: ns });
      const names = pods.items.map((pod) => pod.metadata?.name);
      expect(names).not.toContain('gc-0');
      expect(names).toContain('orphan-0');
      const orphan = server.get({ apiVersion: 'v1', kind: 'Pod', name: 'orphan-0', namespace: ns });
      expect(orphan?.metadata.ownerReferences).toBeUndefined();
    } finally {
      controller.stop();
    }
  });
});

describe('RBAC', () => {
  const role = 'migration';
  let saCore: CoreV1Api;
  let saApps: AppsV1Api;

  beforeAll(async () => {
    const rbac = server.kubeConfig().makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: ns,
      body: {
        metadata: { name: role },
        rules: [
          { apiGroups: [''], resources: ['configmaps'], verbs: ['create', 'list'] },
          { apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'update'], resourceNames: ['state'] },
          { apiGroups: ['apps'], resources: ['statefulsets/scale'], verbs: ['get', 'patch'], resourceNames: ['keycloak'] },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: role },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role },
        subjects: [{ kind: 'ServiceAccount', name: 'runner', namespace: ns }],
      },
    });
    await rbac.createClusterRole({
      body: { metadata: { name: 'pv-protect' }, rules: [{ apiGroups: [''], resources: ['persistentvolumes'], verbs: ['get', 'patch'] }] },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: 'pv-protect' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'pv-protect' },
        subjects: [{ kind: 'ServiceAccount', name: 'runner', namespace: ns }],
      },
    });
    await apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet('keycloak', 2) });
    const token = server.tokenForServiceAccount(ns, 'runner');
    saCore = server.kubeConfig(token).makeApiClient(CoreV1Api);
    saApps = server.kubeConfig(token).makeApiClient(AppsV1Api);
  });

  it('allows what the Role grants, including resourceNames and subresources', async () => {
    await saCore.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'state' } } });
    const state = await saCore.readNamespacedConfigMap({ name: 'state', namespace: ns });
    await saCore.replaceNamespacedConfigMap({ name: 'state', namespace: ns, body: { ...state, data: { a: 'b' } } });
    await saCore.listNamespacedConfigMap({ namespace: ns });
    const scale = await saApps.readNamespacedStatefulSetScale({ name: 'keycloak', namespace: ns });
    expect(scale.spec?.replicas).toBe(2);
    await saApps.patchNamespacedStatefulSetScale({ name: 'keycloak', namespace: ns, body: [{ op: 'replace', path: '/spec/replicas', value: 0 }] });
    await saCore.patchPersistentVolume(
      { name: 'pv-a', body: { spec: { persistentVolumeReclaimPolicy: 'Retain' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  });

  it('denies other names, the parent resource of a subresource, other verbs and other namespaces with the real message', async () => {
    const otherName = await apiError(saCore.readNamespacedConfigMap({ name: 'crud-other', namespace: ns }));
    expect(otherName.code).toBe(403);
    expect(otherName.body.message).toBe(
      `configmaps "crud-other" is forbidden: User "system:serviceaccount:${ns}:runner" cannot get resource "configmaps" in API group "" in the namespace "${ns}"`,
    );
    expect(otherName.body.reason).toBe('Forbidden');
    expect(otherName.body.details).toEqual({ name: 'crud-other', kind: 'configmaps' });

    const parent = await apiError(saApps.readNamespacedStatefulSet({ name: 'keycloak', namespace: ns }));
    expect(parent.code).toBe(403);

    const scaleOther = await apiError(
      saApps.patchNamespacedStatefulSetScale({ name: 'db', namespace: ns, body: [{ op: 'replace', path: '/spec/replicas', value: 0 }] }),
    );
    expect(scaleOther.body.message).toBe(
      `statefulsets.apps "db" is forbidden: User "system:serviceaccount:${ns}:runner" cannot patch resource "statefulsets/scale" in API group "apps" in the namespace "${ns}"`,
    );

    const deleteVerb = await apiError(saCore.deleteNamespacedConfigMap({ name: 'state', namespace: ns }));
    expect(deleteVerb.code).toBe(403);

    const elsewhere = await apiError(saCore.listNamespacedConfigMap({ namespace: 'other' }));
    expect(elsewhere.body.message).toBe(
      `configmaps is forbidden: User "system:serviceaccount:${ns}:runner" cannot list resource "configmaps" in API group "" in the namespace "other"`,
    );

    const clusterScope = await apiError(saCore.listPersistentVolume());
    expect(clusterScope.body.message).toBe(
      `persistentvolumes is forbidden: User "system:serviceaccount:${ns}:runner" cannot list resource "persistentvolumes" in API group "" at the cluster scope`,
    );
  });

  it('never matches resourceNames rules for create (the request has no name)', async () => {
    const rbac = server.kubeConfig().makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: ns,
      body: { metadata: { name: 'named-create' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['create'], resourceNames: ['db'] }] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'named-create' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'named-create' },
        subjects: [{ kind: 'ServiceAccount', name: 'runner', namespace: ns }],
      },
    });
    const denied = await apiError(saCore.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'db' } } }));
    expect(denied.code).toBe(403);
    expect(denied.body.message).toBe(
      `secrets is forbidden: User "system:serviceaccount:${ns}:runner" cannot create resource "secrets" in API group "" in the namespace "${ns}"`,
    );
  });

  it('answers 401 for an unknown token', async () => {
    const stranger = server.kubeConfig('nope').makeApiClient(CoreV1Api);
    const unauthorized = await apiError(stranger.listNamespacedConfigMap({ namespace: ns }));
    expect(unauthorized.code).toBe(401);
  });
});

describe('faults, latency and the request log', () => {
  it('fails the next N matching requests, then answers normally', async () => {
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'flaky' } } });
    const fault = server.injectFault({ verb: 'get', resource: 'configmaps', name: 'flaky', status: 503, times: 2 });
    expect((await apiError(core.readNamespacedConfigMap({ name: 'flaky', namespace: ns }))).body.reason).toBe('ServiceUnavailable');
    await core.readNamespacedConfigMap({ name: 'other', namespace: ns });
    expect((await apiError(core.readNamespacedConfigMap({ name: 'flaky', namespace: ns }))).code).toBe(503);
    expect((await core.readNamespacedConfigMap({ name: 'flaky', namespace: ns })).metadata?.name).toBe('flaky');
    expect(fault.fired).toBe(2);
    expect(fault.remaining).toBe(0);
  });

  it('drops the connection on a reset fault', async () => {
    server.injectFault({ verb: 'list', resource: 'pods', status: 'reset' });
    await expect(core.listNamespacedPod({ namespace: ns })).rejects.toThrow();
    await core.listNamespacedPod({ namespace: ns });
  });

  it('keeps an idle keep-alive connection open past Node\'s 5 s (the API server keeps it 90 s), so a DELETE sent on it after a pause is answered', async () => {
    // Node's http server closes idle connections after 5 s; the API server after 90 s (and
    // client-go's transport drops them after 90 s too). A client that reuses a connection the
    // server is closing gets EOF, and Go retries only GET/HEAD/OPTIONS/TRACE: helm's DELETE of a
    // hook Job after a restore longer than 5 s failed the upgrade that way in a rehearsal.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const url = new URL(server.url);
    const send = (method: string, path: string) =>
      new Promise<{ status: number; reusedSocket: boolean }>((resolve, reject) => {
        const request = httpRequest(
          { agent, host: url.hostname, port: url.port, method, path, headers: { authorization: `Bearer ${server.adminToken}` } },
          (response) => {
            response.resume();
            response.on('end', () => resolve({ status: response.statusCode ?? 0, reusedSocket: request.reusedSocket }));
          },
        );
        request.on('error', reject);
        request.end();
      });
    try {
      expect((await send('GET', `/api/v1/namespaces/${ns}/configmaps`)).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, API_SERVER_IDLE_TIMEOUT_MS_NODE_DEFAULT + 2_500));
      const deleted = await send('DELETE', `/api/v1/namespaces/${ns}/configmaps/never-created`);
      expect(deleted).toEqual({ status: 404, reusedSocket: true });
    } finally {
      agent.destroy();
    }
  }, 15_000);

  it('adds latency and counts API calls', async () => {
    server.clearRequestLog();
    const removeLatency = server.addLatency(150, { verb: 'get', resource: 'configmaps' });
    const started = Date.now();
    await core.readNamespacedConfigMap({ name: 'flaky', namespace: ns });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    removeLatency();
    await core.listNamespacedPod({ namespace: ns });
    expect(server.requestCount()).toBe(2);
    expect(server.requestCount({ verb: 'get', resource: 'configmaps' })).toBe(1);
  });

  it('tells change listeners about every write', async () => {
    const seen: string[] = [];
    const unsubscribe = server.onChange((event, object, info) => {
      seen.push(`${event} ${info.resourceType.plural}/${object.metadata.name}${info.subresource ? `/${info.subresource}` : ''}`);
    });
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'watched' } } });
    await core.deleteNamespacedConfigMap({ name: 'watched', namespace: ns });
    await apps.patchNamespacedStatefulSetScale({ name: 'db', namespace: ns, body: [{ op: 'replace', path: '/spec/replicas', value: 2 }] });
    unsubscribe();
    expect(seen).toEqual(['ADDED configmaps/watched', 'DELETED configmaps/watched', 'MODIFIED statefulsets/db/scale']);
  });
});

describe('generic objects and discovery', () => {
  it('applies custom resources and other kinds through KubernetesObjectApi', async () => {
    const objects = KubernetesObjectApi.makeApiClient(server.kubeConfig());
    const cluster = {
      apiVersion: 'postgresql.cnpg.io/v1',
      kind: 'Cluster',
      metadata: { name: 'pg', namespace: ns },
      spec: { instances: 3, storage: { size: '1Gi' } },
    };
    const created: KubernetesObject = await objects.create(cluster);
    expect(created.metadata?.uid).toBeDefined();
    const read = await objects.read({ apiVersion: 'postgresql.cnpg.io/v1', kind: 'Cluster', metadata: { name: 'pg', namespace: ns } });
    expect((read as unknown as { spec: { instances: number } }).spec.instances).toBe(3);
    await objects.create({
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: 'pdb', namespace: ns },
      spec: { maxUnavailable: 1, selector: { matchLabels: { app: 'x' } } },
    });
    expect(server.get({ apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', name: 'pdb', namespace: ns })?.metadata.generation).toBe(1);
    await objects.delete({ apiVersion: 'postgresql.cnpg.io/v1', kind: 'Cluster', metadata: { name: 'pg', namespace: ns } });
    expect(server.get({ apiVersion: 'postgresql.cnpg.io/v1', kind: 'Cluster', name: 'pg', namespace: ns })).toBeUndefined();
  });

  it('stores an unregistered namespaced kind through the generic fallback', async () => {
    const objects = KubernetesObjectApi.makeApiClient(server.kubeConfig());
    server.registerResourceType({
      group: 'example.com',
      version: 'v1',
      plural: 'widgets',
      kind: 'Widget',
      namespaced: true,
      subresources: [],
      hasGeneration: true,
      deleteReturnsObject: true,
    });
    await objects.create({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w', namespace: ns } });
    const list = await objects.list('example.com/v1', 'Widget', ns);
    expect(list.items.map((item) => item.metadata?.name)).toEqual(['w']);
  });

  it('does not serve the group of a CRD that is not installed: discovery omits it, requests are 404 (what helm and kubectl map "no matches for kind" from)', async () => {
    const withoutCrd = await startFakeKubeApiServer();
    try {
      withoutCrd.withdrawGroup('postgresql.cnpg.io');
      const objects = KubernetesObjectApi.makeApiClient(withoutCrd.kubeConfig());
      const cluster = { apiVersion: 'postgresql.cnpg.io/v1', kind: 'Cluster', metadata: { name: 'pg', namespace: ns } };
      // client-node resolves the plural through discovery, like helm's RESTMapper.
      await expect(objects.create(cluster)).rejects.toThrow(/postgresql\.cnpg\.io\/v1/);
      const groups = (await (await fetch(`${withoutCrd.url}/apis`, { headers: { authorization: `Bearer ${withoutCrd.adminToken}` } })).json()) as { groups: { name: string }[] };
      expect(groups.groups.map((group) => group.name)).not.toContain('postgresql.cnpg.io');
      expect(groups.groups.map((group) => group.name)).toContain('apps');
      const direct = await fetch(`${withoutCrd.url}/apis/postgresql.cnpg.io/v1/namespaces/${ns}/clusters`, {
        method: 'POST',
        headers: { authorization: `Bearer ${withoutCrd.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(cluster),
      });
      expect(direct.status).toBe(404);
      expect(((await direct.json()) as { message: string }).message).toBe('the server could not find the requested resource');
      // Clients fall back to the v2 document for kinds the v3 documents lack; it describes none.
      const v2 = await fetch(`${withoutCrd.url}/openapi/v2`, { headers: { authorization: `Bearer ${withoutCrd.adminToken}` } });
      expect(v2.status).toBe(200);
      expect(v2.headers.get('content-type')).toBe('application/com.github.proto-openapi.spec.v2.v1.0+protobuf');
      expect((await v2.arrayBuffer()).byteLength).toBe(0);
      expect(withoutCrd.serves('postgresql.cnpg.io/v1')).toBe(false);
      expect(withoutCrd.serves('apps/v1')).toBe(true);
    } finally {
      await withoutCrd.close();
    }
  });

  it('leases: create, update with resourceVersion', async () => {
    const coordination = server.kubeConfig().makeApiClient(CoordinationV1Api);
    const lease = await coordination.createNamespacedLease({
      namespace: ns,
      body: { metadata: { name: 'lock' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 60 } },
    });
    const stale = structuredClone(lease);
    lease.spec = { ...lease.spec, holderIdentity: 'b' };
    await coordination.replaceNamespacedLease({ name: 'lock', namespace: ns, body: lease });
    const conflict = await apiError(coordination.replaceNamespacedLease({ name: 'lock', namespace: ns, body: stale }));
    expect(conflict.code).toBe(409);
    expect(conflict.body.message).toContain('leases.coordination.k8s.io "lock"');
  });
});
