// What the real helm binaries need from the fake API server, against the API's documented
// semantics: server-side apply with managedFields and conflicts (kubernetes.io "Server-Side
// Apply"), watch with resourceVersions and selectors ("Efficient detection of changes"), the
// OpenAPI v3 discovery documents, and protobuf bodies of Secrets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppsV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

import { startFakeKubeApiServer, type FakeKubeApiServer } from './support/fake-kube/index.js';
import { conflictMessage } from './support/fake-kube/managed-fields.js';
import { decodeKubernetesProtobuf } from './support/fake-kube/protobuf.js';
import { readWatchStream } from './support/watch-stream.js';

const ns = 'kc';
let server: FakeKubeApiServer;

beforeAll(async () => {
  server = await startFakeKubeApiServer();
});
afterAll(async () => {
  await server.close();
});

async function call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ code: number; body: Record<string, any> }> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': contentType, 'user-agent': 'test-client/1.0' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return { code: response.status, body: (await response.json()) as Record<string, any> };
}

function statefulSet(name: string, replicas: number, labels: Record<string, string> = { app: name }) {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, labels },
    spec: {
      replicas,
      serviceName: name,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'app', image: 'app:1', env: [{ name: 'A', value: '1' }], ports: [{ containerPort: 8080 }] }] },
      },
    },
  };
}

const stsPath = (name: string) => `/apis/apps/v1/namespaces/${ns}/statefulsets/${name}`;
const apply = (name: string, body: unknown, query = 'fieldManager=helm') =>
  call('PATCH', `${stsPath(name)}?${query}`, body, 'application/apply-patch+yaml');

describe('server-side apply', () => {
  it('creates the object, records the manager as Apply owner, and a repeat changes nothing', async () => {
    const created = await apply('created', statefulSet('created', 2));
    expect(created.code).toBe(201);
    const entry = created.body.metadata.managedFields[0];
    expect(entry).toMatchObject({ manager: 'helm', operation: 'Apply', apiVersion: 'apps/v1', fieldsType: 'FieldsV1' });
    expect(entry.fieldsV1['f:spec']['f:replicas']).toEqual({});
    // Containers are a map keyed by name, env by name, ports by containerPort and protocol.
    const container = entry.fieldsV1['f:spec']['f:template']['f:spec']['f:containers']['k:{"name":"app"}'];
    expect(container['.']).toEqual({});
    expect(container['f:env']['k:{"name":"A"}']['f:value']).toEqual({});
    expect(container['f:ports']['k:{"containerPort":8080,"protocol":"TCP"}']).toBeDefined();
    const again = await apply('created', statefulSet('created', 2));
    expect(again.code).toBe(200);
    expect(again.body.metadata.resourceVersion).toBe(created.body.metadata.resourceVersion);
  });

  it('refuses to apply a field another manager changed through the scale subresource (409), unless forced', async () => {
    await apply('scaled', statefulSet('scaled', 2));
    // The runner's scale: a merge patch of /scale through client-node, as runner/src/kube/workloads.ts does.
    const appsApi = server.kubeConfig().makeApiClient(AppsV1Api);
    await appsApi.patchNamespacedStatefulSetScale({ name: 'scaled', namespace: ns, body: { spec: { replicas: 0 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    const live = server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'scaled', namespace: ns })!;
    const scaleEntry = (live.metadata.managedFields as any[]).find((entry) => entry.subresource === 'scale');
    expect(scaleEntry).toMatchObject({ operation: 'Update', fieldsV1: { 'f:spec': { 'f:replicas': {} } } });
    // Helm's apply no longer owns replicas: the scale's writer took it.
    const helmEntry = (live.metadata.managedFields as any[]).find((entry) => entry.manager === 'helm');
    expect(helmEntry.fieldsV1['f:spec']['f:replicas']).toBeUndefined();

    const refused = await apply('scaled', statefulSet('scaled', 2));
    expect(refused.code).toBe(409);
    expect(refused.body.reason).toBe('Conflict');
    expect(refused.body.message).toBe(`Apply failed with 1 conflict: conflict with "${scaleEntry.manager}" with subresource "scale" using apps/v1: .spec.replicas`);
    expect(refused.body.details.causes).toEqual([{ reason: 'FieldManagerConflict', message: `conflict with "${scaleEntry.manager}" with subresource "scale" using apps/v1`, field: '.spec.replicas' }]);
    expect((server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'scaled', namespace: ns })!.spec as any).replicas).toBe(0);

    // The same value as the live one is no conflict: both managers own it.
    expect((await apply('scaled', statefulSet('scaled', 0))).code).toBe(200);

    const forced = await apply('scaled', statefulSet('scaled', 2), 'fieldManager=helm&force=true');
    expect(forced.code).toBe(200);
    expect(forced.body.spec.replicas).toBe(2);
    expect((forced.body.metadata.managedFields as any[]).some((entry) => entry.subresource === 'scale')).toBe(false);
  });

  it('lets a manager relinquish its entry with a JSON patch of managedFields, after which the apply succeeds', async () => {
    await apply('relinquished', statefulSet('relinquished', 2));
    const appsApi = server.kubeConfig().makeApiClient(AppsV1Api);
    await appsApi.patchNamespacedStatefulSetScale({ name: 'relinquished', namespace: ns, body: { spec: { replicas: 0 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    const live = server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'relinquished', namespace: ns })!;
    const index = (live.metadata.managedFields as any[]).findIndex((entry) => entry.subresource === 'scale');
    const patched = await call('PATCH', stsPath('relinquished'), [
      { op: 'test', path: `/metadata/managedFields/${index}/subresource`, value: 'scale' },
      { op: 'remove', path: `/metadata/managedFields/${index}` },
    ], 'application/json-patch+json');
    expect(patched.code).toBe(200);
    expect((patched.body.metadata.managedFields as any[]).map((entry) => entry.manager)).toEqual(['helm']);
    expect(patched.body.spec.replicas).toBe(0);
    const applied = await apply('relinquished', statefulSet('relinquished', 2));
    expect(applied.code).toBe(200);
    expect(applied.body.spec.replicas).toBe(2);
  });

  it('removes the fields a manager stops applying, unless another manager owns them', async () => {
    await apply('dropped', statefulSet('dropped', 1, { app: 'dropped', tier: 'web' }));
    const dropped = await apply('dropped', statefulSet('dropped', 1, { app: 'dropped' }));
    expect(dropped.body.metadata.labels).toEqual({ app: 'dropped' });
    // Another manager's label survives helm's next apply.
    await call('PATCH', `${stsPath('dropped')}?fieldManager=kubectl-label`, { metadata: { labels: { team: 'x' } } }, 'application/merge-patch+json');
    const kept = await apply('dropped', statefulSet('dropped', 1, { app: 'dropped' }));
    expect(kept.body.metadata.labels).toEqual({ app: 'dropped', team: 'x' });
  });

  it('names several conflicts per manager, one line each', () => {
    expect(
      conflictMessage([
        { manager: 'a', apiVersion: 'apps/v1', path: 'f:spec\u0000f:replicas' },
        { manager: 'a', apiVersion: 'apps/v1', path: 'f:metadata\u0000f:labels\u0000f:x' },
      ]),
    ).toBe('Apply failed with 2 conflicts: conflicts with "a" using apps/v1:\n- .spec.replicas\n- .metadata.labels.x');
  });

  it('requires a fieldManager and the object type', async () => {
    const missing = await call('PATCH', stsPath('x'), statefulSet('x', 1), 'application/apply-patch+yaml');
    expect(missing.code).toBe(422);
    expect(missing.body.message).toContain('fieldManager: Required value');
    const untyped = await apply('x', { metadata: { name: 'x' } });
    expect(untyped.code).toBe(400);
  });

  it('accepts YAML applied configurations (kubectl sends YAML)', async () => {
    const yaml = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: "1"\n`;
    const result = await call('PATCH', `/api/v1/namespaces/${ns}/configmaps/from-yaml?fieldManager=kubectl`, yaml, 'application/apply-patch+yaml');
    expect(result.code).toBe(201);
    expect(result.body.data).toEqual({ a: '1' });
  });
});

/** Reads a watch stream until `count` events arrived (or the stream ended). */
async function watchEvents(path: string, count: number): Promise<{ type: string; object: Record<string, any> }[]> {
  const controller = new AbortController();
  const response = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${server.adminToken}` }, signal: controller.signal });
  expect(response.status).toBe(200);
  const events: { type: string; object: Record<string, any> }[] = [];
  const deadline = setTimeout(() => controller.abort(), 5_000);
  try {
    await readWatchStream(response.body!, events, (received) => received.length >= count);
  } finally {
    clearTimeout(deadline);
    controller.abort();
  }
  return events;
}

const cmPath = `/api/v1/namespaces/${ns}/configmaps`;

describe('watch', () => {
  it('streams the changes after a list resourceVersion, in order, filtered by label selector', async () => {
    const list = await call('GET', `${cmPath}?labelSelector=watched%3Dyes`);
    const from = list.body.metadata.resourceVersion as string;
    const stream = watchEvents(`${cmPath}?watch=true&resourceVersion=${from}&labelSelector=watched%3Dyes`, 4);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await call('POST', cmPath, { metadata: { name: 'w1', labels: { watched: 'yes' } }, data: { n: '1' } });
    await call('POST', cmPath, { metadata: { name: 'other', labels: { watched: 'no' } } });
    await call('PATCH', `${cmPath}/w1`, { data: { n: '2' } }, 'application/merge-patch+json');
    // Leaving the selector is a DELETED for this watch, as the watch cache reports it.
    await call('PATCH', `${cmPath}/w1`, { metadata: { labels: { watched: 'no' } } }, 'application/merge-patch+json');
    await call('POST', cmPath, { metadata: { name: 'w2', labels: { watched: 'yes' } } });
    const events = await stream;
    expect(events.map((event) => `${event.type} ${event.object.metadata.name}`)).toEqual(['ADDED w1', 'MODIFIED w1', 'DELETED w1', 'ADDED w2']);
    expect(events[1]!.object.data).toEqual({ n: '2' });
    const versions = events.map((event) => Number(event.object.metadata.resourceVersion));
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
  });

  it('starts with ADDED events for existing objects without a resourceVersion, and a DELETED on delete', async () => {
    await call('POST', cmPath, { metadata: { name: 'existing', labels: { group: 'g' } } });
    const stream = watchEvents(`${cmPath}?watch=1&labelSelector=group%3Dg`, 2);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await call('DELETE', `${cmPath}/existing`);
    expect((await stream).map((event) => `${event.type} ${event.object.metadata.name}`)).toEqual(['ADDED existing', 'DELETED existing']);
  });

  it('filters by field selector (metadata.name), as helm watches one hook', async () => {
    const from = (await call('GET', cmPath)).body.metadata.resourceVersion as string;
    const stream = watchEvents(`${cmPath}?watch=true&resourceVersion=${from}&fieldSelector=metadata.name%3Dhook`, 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await call('POST', cmPath, { metadata: { name: 'not-the-hook' } });
    await call('POST', cmPath, { metadata: { name: 'hook' } });
    expect((await stream).map((event) => event.object.metadata.name)).toEqual(['hook']);
  });

  it('resumed from a resourceVersion, sends nothing for a change of an object that matched the selector neither before nor after', async () => {
    // The watch cache evaluates the selector on the old and the new object of each event
    // (k8s.io/apiserver pkg/storage/cacher cacheWatcher.convertToWatchEvent): neither → no event,
    // old only → DELETED, new only → ADDED, both → MODIFIED.
    await call('POST', cmPath, { metadata: { name: 'bystander', labels: { role: 'none' } } });
    await call('POST', cmPath, { metadata: { name: 'joiner', labels: { role: 'none' } } });
    const from = (await call('GET', cmPath)).body.metadata.resourceVersion as string;
    // The changes happen before the watch opens: it replays them from the server's history, as
    // for a client (helm, an informer) that resumes from the resourceVersion of its last list.
    await call('PATCH', `${cmPath}/bystander`, { data: { touched: 'yes' } }, 'application/merge-patch+json');
    await call('DELETE', `${cmPath}/bystander`);
    await call('PATCH', `${cmPath}/joiner`, { metadata: { labels: { role: 'hook' } } }, 'application/merge-patch+json');
    await call('PATCH', `${cmPath}/joiner`, { data: { n: '1' } }, 'application/merge-patch+json');
    await call('PATCH', `${cmPath}/joiner`, { metadata: { labels: { role: 'none' } } }, 'application/merge-patch+json');
    const events = await watchEvents(`${cmPath}?watch=true&resourceVersion=${from}&labelSelector=role%3Dhook`, 3);
    expect(events.map((event) => `${event.type} ${event.object.metadata.name}`)).toEqual(['ADDED joiner', 'MODIFIED joiner', 'DELETED joiner']);
    // The DELETED for leaving the selector carries the last matching content, at the new resourceVersion.
    expect(events[2]!.object.metadata.labels).toEqual({ role: 'hook' });
    expect(Number(events[2]!.object.metadata.resourceVersion)).toBeGreaterThan(Number(events[1]!.object.metadata.resourceVersion));
  });

  it('answers a resourceVersion older than its history with a 410 Expired ERROR event', async () => {
    const events = await watchEvents(`${cmPath}?watch=true&resourceVersion=1`, 1);
    expect(events[0]).toMatchObject({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } });
    expect(events[0]!.object.message).toMatch(/^too old resource version: 1 \(\d+\)$/);
  });

  it('sends the initial events then a BOOKMARK marking their end (sendInitialEvents)', async () => {
    await call('POST', cmPath, { metadata: { name: 'initial', labels: { initial: 'yes' } } });
    const events = await watchEvents(`${cmPath}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=initial%3Dyes`, 2);
    expect(events.map((event) => event.type)).toEqual(['ADDED', 'BOOKMARK']);
    expect(events[1]!.object.metadata.annotations).toEqual({ 'k8s.io/initial-events-end': 'true' });
  });

  it('ends the stream after timeoutSeconds', async () => {
    const started = Date.now();
    const events = await watchEvents(`${cmPath}?watch=true&resourceVersion=${(await call('GET', cmPath)).body.metadata.resourceVersion}&timeoutSeconds=1`, 1);
    expect(events).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });
});

describe('OpenAPI v3 and protobuf', () => {
  it('lists each group-version document, whose PATCH operations declare fieldValidation (so clients validate server-side)', async () => {
    const root = await call('GET', '/openapi/v3');
    const appsUrl = root.body.paths['apis/apps/v1'].serverRelativeURL as string;
    expect(appsUrl).toMatch(/^\/openapi\/v3\/apis\/apps\/v1\?hash=[0-9A-F]+$/);
    expect(root.body.paths['api/v1']).toBeDefined();
    const document = await call('GET', appsUrl);
    const patch = document.body.paths['/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}'].patch;
    expect(patch['x-kubernetes-group-version-kind']).toEqual({ group: 'apps', version: 'v1', kind: 'StatefulSet' });
    expect(patch.parameters.map((parameter: { name: string }) => parameter.name)).toContain('fieldValidation');
    expect((await call('GET', '/openapi/v3/apis/nothing/v9')).code).toBe(404);
  });

  it('decodes a protobuf Secret (k8s\\0 envelope, runtime.Unknown, v1.Secret) and refuses other kinds with 415', async () => {
    // Hand-encoded: Unknown{typeMeta{apiVersion v1, kind Secret}, raw Secret{metadata{name s, labels{owner: helm}}, data{k: "v"}, type "helm.sh/release.v1"}}.
    const field = (number: number, bytes: Buffer) => Buffer.concat([Buffer.from([(number << 3) | 2, bytes.length]), bytes]);
    const text = (value: string) => Buffer.from(value);
    const entry = (key: string, value: string) => Buffer.concat([field(1, text(key)), field(2, text(value))]);
    const metadata = Buffer.concat([field(1, text('s')), field(11, entry('owner', 'helm'))]);
    const secret = Buffer.concat([field(1, metadata), field(2, entry('k', 'v')), field(3, text('helm.sh/release.v1'))]);
    const typeMeta = Buffer.concat([field(1, text('v1')), field(2, text('Secret'))]);
    const body = Buffer.concat([Buffer.from('k8s\0'), field(1, typeMeta), field(2, secret)]);
    expect(decodeKubernetesProtobuf(body)).toEqual({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', labels: { owner: 'helm' } }, data: { k: Buffer.from('v').toString('base64') }, type: 'helm.sh/release.v1' });
    const response = await fetch(`${server.url}/api/v1/namespaces/${ns}/secrets`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/vnd.kubernetes.protobuf' },
      body,
    });
    expect(response.status).toBe(201);
    expect(server.get({ apiVersion: 'v1', kind: 'Secret', name: 's', namespace: ns })?.metadata.labels).toEqual({ owner: 'helm' });
    const podMeta = Buffer.concat([field(1, text('v1')), field(2, text('Pod'))]);
    const pod = await fetch(`${server.url}/api/v1/namespaces/${ns}/pods`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/vnd.kubernetes.protobuf' },
      body: Buffer.concat([Buffer.from('k8s\0'), field(1, podMeta), field(2, Buffer.alloc(0))]),
    });
    expect(pod.status).toBe(415);
  });
});
