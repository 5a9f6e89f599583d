// Deletion as the real API server and garbage collector do it, against the documented semantics:
// kubernetes.io "Finalizers" and "Garbage Collection" (foreground, background and orphan
// cascading deletion, blockOwnerDeletion), the API conventions on DELETE, and the apiserver's
// generic registry (k8s.io/apiserver pkg/registry/generic/registry/store.go: Delete,
// updateForGracefulDeletionAndFinalizers, markAsDeleting, shouldDeleteDuringUpdate;
// pkg/endpoints/handlers/delete.go for the answer's code and body).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoreV1Api } from '@kubernetes/client-node';

import { startFakeKubeApiServer, startWorkloadController, type FakeKubeApiServer, type KubeObject } from './support/fake-kube/index.js';
import { readWatchStream } from './support/watch-stream.js';

const ns = 'del';
let server: FakeKubeApiServer;
let core: CoreV1Api;

beforeAll(async () => {
  server = await startFakeKubeApiServer();
  core = server.kubeConfig().makeApiClient(CoreV1Api);
});
afterAll(async () => {
  await server.close();
});

type Json = Record<string, any>;

async function call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ code: number; body: Json }> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': contentType },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { code: response.status, body: (await response.json()) as Json };
}

/** Polls until `check` holds, as a client waiting for a deletion to finish has to. */
async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Opens a watch, runs `during`, and returns the events that arrived (until `until` holds). The watch's
 * headers only come with its first event, so the stream is read concurrently with `during`.
 */
async function watchEvents(path: string, until: (events: { type: string }[]) => boolean, during: () => Promise<void>): Promise<{ type: string; object: Json }[]> {
  const controller = new AbortController();
  const events: { type: string; object: Json }[] = [];
  const reading = (async () => {
    const response = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${server.adminToken}` }, signal: controller.signal });
    expect(response.status).toBe(200);
    await readWatchStream(response.body!, events, until);
  })();
  try {
    // Let the watch register before the changes.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await during();
    // Whatever arrived within the deadline: a missing event fails the caller's expectation.
    await Promise.race([reading.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 2_000))]);
  } finally {
    controller.abort();
    await reading.catch(() => undefined);
  }
  return events;
}

const cmPath = (name = '') => `/api/v1/namespaces/${ns}/configmaps${name ? `/${name}` : ''}`;
const podPath = (name = '') => `/api/v1/namespaces/${ns}/pods${name ? `/${name}` : ''}`;
const stsPath = (name = '') => `/apis/apps/v1/namespaces/${ns}/statefulsets${name ? `/${name}` : ''}`;
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

function ownedBy(owner: Json, blockOwnerDeletion = true) {
  return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.metadata.name, uid: owner.metadata.uid, blockOwnerDeletion };
}

function statefulSet(name: string, replicas: number) {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name },
    spec: {
      replicas,
      serviceName: name,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'main', image: 'postgres:15' }] } },
    },
  };
}

const exists = (kind: 'ConfigMap' | 'Pod' | 'StatefulSet' | 'Job', name: string) =>
  server.get({ apiVersion: kind === 'StatefulSet' ? 'apps/v1' : kind === 'Job' ? 'batch/v1' : 'v1', kind, name, namespace: ns }) !== undefined;

describe('DELETE of an object with finalizers', () => {
  it('marks it for deletion, answers 200 with the object (not a Status), keeps it readable, and answers the same to a second DELETE', async () => {
    await call('POST', cmPath(), { metadata: { name: 'held', finalizers: ['example.com/hold'] }, data: { k: 'v' } });
    const first = await call('DELETE', cmPath('held'));
    expect(first.code).toBe(200);
    expect(first.body.kind).toBe('ConfigMap');
    expect(first.body.data).toEqual({ k: 'v' });
    expect(first.body.metadata.deletionTimestamp).toMatch(RFC3339);
    expect(first.body.metadata.deletionGracePeriodSeconds).toBe(0);
    expect(first.body.metadata.finalizers).toEqual(['example.com/hold']);

    // Still there for readers, through client-node as the runner reads it.
    const read = await core.readNamespacedConfigMap({ name: 'held', namespace: ns });
    expect(read.metadata?.deletionTimestamp).toBeInstanceOf(Date);
    expect((await core.listNamespacedConfigMap({ namespace: ns })).items.map((item) => item.metadata?.name)).toContain('held');

    // Deleting what is already being deleted changes nothing and answers the object again.
    const second = await call('DELETE', cmPath('held'));
    expect(second.code).toBe(200);
    expect(second.body.metadata.deletionTimestamp).toBe(first.body.metadata.deletionTimestamp);
    expect(second.body.metadata.resourceVersion).toBe(first.body.metadata.resourceVersion);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(exists('ConfigMap', 'held')).toBe(true);
  });

  it('refuses new finalizers on a terminating object, keeps its deletionTimestamp, and removes it when an update removes the last finalizer', async () => {
    await call('POST', cmPath(), { metadata: { name: 'two', finalizers: ['example.com/a', 'example.com/b'] } });
    const marked = (await call('DELETE', cmPath('two'))).body;

    const added = await call('PATCH', cmPath('two'), { metadata: { finalizers: ['example.com/a', 'example.com/b', 'example.com/c'] } }, 'application/merge-patch+json');
    expect(added.code).toBe(422);
    expect(added.body.reason).toBe('Invalid');
    expect(added.body.message).toBe(
      'ConfigMap "two" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/c"}',
    );

    // An update can neither clear nor move the deletion timestamp (rest.BeforeUpdate).
    const one = await call('PATCH', cmPath('two'), { metadata: { finalizers: ['example.com/b'], deletionTimestamp: null } }, 'application/merge-patch+json');
    expect(one.code).toBe(200);
    expect(one.body.metadata.finalizers).toEqual(['example.com/b']);
    expect(one.body.metadata.deletionTimestamp).toBe(marked.metadata.deletionTimestamp);
    expect(exists('ConfigMap', 'two')).toBe(true);

    const last = await call('PATCH', cmPath('two'), [{ op: 'remove', path: '/metadata/finalizers' }], 'application/json-patch+json');
    expect(last.code).toBe(200);
    expect(last.body.metadata.name).toBe('two');
    expect((await call('GET', cmPath('two'))).code).toBe(404);
  });

  it('tells watchers MODIFIED when the object is marked and DELETED when its last finalizer goes', async () => {
    await call('POST', cmPath(), { metadata: { name: 'watched-deletion', finalizers: ['example.com/hold'] } });
    const from = (await call('GET', cmPath())).body.metadata.resourceVersion as string;
    const events = await watchEvents(`${cmPath()}?watch=true&resourceVersion=${from}&fieldSelector=metadata.name%3Dwatched-deletion`, (events) => events.length === 2, async () => {
      await call('DELETE', cmPath('watched-deletion'));
      await call('PATCH', cmPath('watched-deletion'), { metadata: { finalizers: null } }, 'application/merge-patch+json');
    });
    expect(events.map((event) => event.type)).toEqual(['MODIFIED', 'DELETED']);
    expect(events[0]!.object.metadata.deletionTimestamp).toMatch(RFC3339);
    expect(Number(events[1]!.object.metadata.resourceVersion)).toBeGreaterThan(Number(events[0]!.object.metadata.resourceVersion));
  });

  it('bumps metadata.generation when it marks an object that has one (markAsDeleting)', async () => {
    const created = (await call('POST', stsPath(), { ...statefulSet('generation', 0), metadata: { name: 'generation', finalizers: ['example.com/hold'] } })).body;
    expect(created.metadata.generation).toBe(1);
    const marked = await call('DELETE', stsPath('generation'));
    expect(marked.body.metadata.generation).toBe(2);
    await call('PATCH', stsPath('generation'), { metadata: { finalizers: null } }, 'application/merge-patch+json');
    expect(exists('StatefulSet', 'generation')).toBe(false);
  });

  it('clears a deletionTimestamp a client sends on create', async () => {
    const created = await call('POST', cmPath(), { metadata: { name: 'not-deleted', deletionTimestamp: '2020-01-01T00:00:00Z', deletionGracePeriodSeconds: 0 } });
    expect(created.code).toBe(201);
    expect(created.body.metadata.deletionTimestamp).toBeUndefined();
    expect(created.body.metadata.deletionGracePeriodSeconds).toBeUndefined();
  });
});

describe('propagationPolicy', () => {
  it('Background: removes an object without finalizers at once, answers a Status Success, and the GC then deletes its dependents', async () => {
    const owner = (await call('POST', cmPath(), { metadata: { name: 'bg-owner' } })).body;
    await call('POST', cmPath(), { metadata: { name: 'bg-dependent', ownerReferences: [ownedBy(owner)] } });
    const deleted = await call('DELETE', cmPath('bg-owner'), { propagationPolicy: 'Background' });
    expect(deleted.code).toBe(200);
    expect(deleted.body).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Success',
      details: { name: 'bg-owner', kind: 'configmaps', uid: owner.metadata.uid },
      code: 200,
    });
    expect((await call('GET', cmPath('bg-owner'))).code).toBe(404);
    await eventually(() => !exists('ConfigMap', 'bg-dependent'), 'the dependent is collected');
  });

  it('Foreground: answers 200 with the owner marked foregroundDeletion, deletes its dependents, and goes only once the blocking ones are gone', async () => {
    const controller = startWorkloadController(server);
    try {
      await call('POST', stsPath(), statefulSet('fg', 2));
      await controller.settled();
      expect(exists('Pod', 'fg-0') && exists('Pod', 'fg-1')).toBe(true);
      // fg-1 takes time to terminate (as a kubelet would, modelled by a finalizer).
      await call('PATCH', podPath('fg-1'), { metadata: { finalizers: ['example.com/still-stopping'] } }, 'application/merge-patch+json');

      const from = (await call('GET', stsPath())).body.metadata.resourceVersion as string;
      let deleted: { code: number; body: Json } | undefined;
      const events = await watchEvents(`${stsPath()}?watch=true&resourceVersion=${from}&fieldSelector=metadata.name%3Dfg`, (events) => events.at(-1)?.type === 'DELETED', async () => {
        deleted = await call('DELETE', stsPath('fg'), { propagationPolicy: 'Foreground' });
        expect(deleted.code).toBe(200);
        expect(deleted.body.kind).toBe('StatefulSet');
        expect(deleted.body.metadata.finalizers).toEqual(['foregroundDeletion']);
        expect(deleted.body.metadata.deletionTimestamp).toMatch(RFC3339);

        await eventually(() => !exists('Pod', 'fg-0'), 'the GC deleted fg-0');
        await controller.settled();
        // The pod that is still stopping holds its owner; nothing recreates fg-0 meanwhile.
        const pod = server.get({ apiVersion: 'v1', kind: 'Pod', name: 'fg-1', namespace: ns });
        expect(pod?.metadata.deletionTimestamp).toBeDefined();
        expect(exists('StatefulSet', 'fg')).toBe(true);
        expect(exists('Pod', 'fg-0')).toBe(false);

        await call('PATCH', podPath('fg-1'), { metadata: { finalizers: null } }, 'application/merge-patch+json');
        await eventually(() => !exists('StatefulSet', 'fg'), 'the owner went after its dependents');
      });
      // Marked, then its status follows the Pods going (the controller still writes it), then gone.
      expect(events[0]!.type).toBe('MODIFIED');
      expect(events[0]!.object.metadata.finalizers).toEqual(['foregroundDeletion']);
      expect(events.at(-1)!.type).toBe('DELETED');
      expect(events.slice(1, -1).every((event) => event.type === 'MODIFIED')).toBe(true);
      expect(exists('Pod', 'fg-1')).toBe(false);
      expect(server.listenerErrors).toEqual([]);
    } finally {
      controller.stop();
    }
  });

  it('Foreground: dependents without blockOwnerDeletion are deleted too but do not hold the owner', async () => {
    const owner = (await call('POST', cmPath(), { metadata: { name: 'fg-loose-owner' } })).body;
    await call('POST', cmPath(), { metadata: { name: 'fg-loose', finalizers: ['example.com/hold'], ownerReferences: [ownedBy(owner, false)] } });
    const deleted = await call('DELETE', cmPath('fg-loose-owner'), { propagationPolicy: 'Foreground' });
    expect(deleted.body.metadata.finalizers).toEqual(['foregroundDeletion']);
    await eventually(() => !exists('ConfigMap', 'fg-loose-owner'), 'the owner is gone');
    const dependent = server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: 'fg-loose', namespace: ns });
    expect(dependent?.metadata.deletionTimestamp).toBeDefined();
    await call('PATCH', cmPath('fg-loose'), { metadata: { finalizers: null } }, 'application/merge-patch+json');
    expect(exists('ConfigMap', 'fg-loose')).toBe(false);
  });

  it('Foreground: a dependent created while its owner waits for the others is collected too', async () => {
    const owner = (await call('POST', cmPath(), { metadata: { name: 'fg-late-owner' } })).body;
    await call('POST', cmPath(), { metadata: { name: 'fg-holder', finalizers: ['example.com/hold'], ownerReferences: [ownedBy(owner)] } });
    await call('DELETE', cmPath('fg-late-owner'), { propagationPolicy: 'Foreground' });
    await eventually(() => server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: 'fg-holder', namespace: ns })?.metadata.deletionTimestamp !== undefined, 'the holder is being deleted');
    // Only this creation happens now: the collector must notice it by itself.
    await call('POST', cmPath(), { metadata: { name: 'fg-late', ownerReferences: [ownedBy(owner)] } });
    await eventually(() => !exists('ConfigMap', 'fg-late'), 'the late dependent is collected');
    expect(exists('ConfigMap', 'fg-late-owner')).toBe(true);
    await call('PATCH', cmPath('fg-holder'), { metadata: { finalizers: null } }, 'application/merge-patch+json');
    await eventually(() => !exists('ConfigMap', 'fg-late-owner'), 'the owner is gone');
  });

  it('Foreground without dependents: answers the marked object, which is gone once the GC ran (the old instant Status Success was the fake\'s own)', async () => {
    await call('POST', cmPath(), { metadata: { name: 'fg-alone' } });
    const release = server.holdGarbageCollection();
    try {
      const deleted = await call('DELETE', cmPath('fg-alone'), { propagationPolicy: 'Foreground' });
      expect(deleted.code).toBe(200);
      expect(deleted.body.metadata.finalizers).toEqual(['foregroundDeletion']);
      // Until the GC has seen it, the object is there, terminating.
      expect((await call('GET', cmPath('fg-alone'))).body.metadata.deletionTimestamp).toBe(deleted.body.metadata.deletionTimestamp);
    } finally {
      release();
    }
    await eventually(async () => (await call('GET', cmPath('fg-alone'))).code === 404, 'it is gone');
  });

  it('Orphan: answers 200 with the owner marked orphan, strips the owner reference from its dependents, then removes the owner', async () => {
    const owner = (await call('POST', cmPath(), { metadata: { name: 'orphan-owner' } })).body;
    const other = (await call('POST', cmPath(), { metadata: { name: 'orphan-other-owner' } })).body;
    await call('POST', cmPath(), { metadata: { name: 'orphaned', ownerReferences: [ownedBy(owner), ownedBy(other)] } });
    const release = server.holdGarbageCollection();
    let deleted: { code: number; body: Json };
    try {
      deleted = await call('DELETE', cmPath('orphan-owner'), { propagationPolicy: 'Orphan' });
      expect(exists('ConfigMap', 'orphan-owner')).toBe(true);
    } finally {
      release();
    }
    expect(deleted.code).toBe(200);
    expect(deleted.body.metadata.finalizers).toEqual(['orphan']);
    await eventually(() => !exists('ConfigMap', 'orphan-owner'), 'the owner is gone');
    const dependent = server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: 'orphaned', namespace: ns });
    expect(dependent?.metadata.ownerReferences?.map((reference) => reference.name)).toEqual(['orphan-other-owner']);
  });

  it('a later DELETE with another policy replaces the GC finalizer: Background on a foreground deletion removes the owner at once', async () => {
    const owner = (await call('POST', cmPath(), { metadata: { name: 'switch-owner' } })).body;
    await call('POST', cmPath(), { metadata: { name: 'switch-dependent', finalizers: ['example.com/hold'], ownerReferences: [ownedBy(owner)] } });
    await call('DELETE', cmPath('switch-owner'), { propagationPolicy: 'Foreground' });
    await eventually(() => server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: 'switch-dependent', namespace: ns })?.metadata.deletionTimestamp !== undefined, 'the dependent is terminating');
    expect(exists('ConfigMap', 'switch-owner')).toBe(true);
    // The same policy again changes nothing.
    expect((await call('DELETE', cmPath('switch-owner'), { propagationPolicy: 'Foreground' })).body.kind).toBe('ConfigMap');
    const background = await call('DELETE', cmPath('switch-owner'), { propagationPolicy: 'Background' });
    expect(background.body).toMatchObject({ kind: 'Status', status: 'Success' });
    expect(exists('ConfigMap', 'switch-owner')).toBe(false);
    await call('PATCH', cmPath('switch-dependent'), { metadata: { finalizers: null } }, 'application/merge-patch+json');
    expect(exists('ConfigMap', 'switch-dependent')).toBe(false);
  });

  it('batch/v1 Jobs orphan their Pods when the DELETE names no policy (the Job strategy\'s default)', async () => {
    const job = (
      await call('POST', `/apis/batch/v1/namespaces/${ns}/jobs`, {
        metadata: { name: 'job' },
        spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: 'busybox' }] } } },
      })
    ).body;
    await call('POST', podPath(), { metadata: { name: 'job-pod', ownerReferences: [{ ...ownedBy(job), controller: true }] }, spec: { containers: [{ name: 'c', image: 'busybox' }] } });
    const deleted = await call('DELETE', `/apis/batch/v1/namespaces/${ns}/jobs/job`);
    expect(deleted.body.metadata.finalizers).toEqual(['orphan']);
    await eventually(() => !exists('Job', 'job'), 'the Job is gone');
    expect(server.get({ apiVersion: 'v1', kind: 'Pod', name: 'job-pod', namespace: ns })?.metadata.ownerReferences).toBeUndefined();
  });

  it('deletecollection deletes each selected object as its own DELETE would, and answers the list as it was read', async () => {
    await call('POST', cmPath(), { metadata: { name: 'batch-plain', labels: { batch: 'yes' } } });
    await call('POST', cmPath(), { metadata: { name: 'batch-held', labels: { batch: 'yes' }, finalizers: ['example.com/hold'] } });
    const answer = await call('DELETE', `${cmPath()}?labelSelector=batch%3Dyes`);
    expect(answer.code).toBe(200);
    expect(answer.body.kind).toBe('ConfigMapList');
    expect(answer.body.items.map((item: Json) => [item.metadata.name, item.metadata.deletionTimestamp])).toEqual([
      ['batch-held', undefined],
      ['batch-plain', undefined],
    ]);
    expect(exists('ConfigMap', 'batch-plain')).toBe(false);
    expect(server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: 'batch-held', namespace: ns })?.metadata.deletionTimestamp).toMatch(RFC3339);
    await call('PATCH', cmPath('batch-held'), { metadata: { finalizers: null } }, 'application/merge-patch+json');
    expect(exists('ConfigMap', 'batch-held')).toBe(false);
  });

  it('the direct remove() follows the same rules, and waitUntilGone() waits for the end of a foreground deletion', async () => {
    const owner = server.seed({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'direct-owner', namespace: ns } })[0] as KubeObject;
    server.seed({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'direct-dependent', namespace: ns, ownerReferences: [ownedBy(owner)] as never } });
    const reference = { apiVersion: 'v1', kind: 'ConfigMap', name: 'direct-owner', namespace: ns };
    expect(server.remove(reference, 'Foreground')).toBe(true);
    expect(server.get(reference)?.metadata.finalizers).toEqual(['foregroundDeletion']);
    await server.waitUntilGone(reference, 5_000);
    expect(exists('ConfigMap', 'direct-dependent')).toBe(false);
    expect(server.remove(reference)).toBe(false);
  });
});
