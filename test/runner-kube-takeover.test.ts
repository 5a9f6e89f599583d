// The take-over's pure parts: the immutable-field comparison, the sync-options merge and the
// MIGRATION_WORKLOAD_SPECS parser's bad input (the API side is in bitnami-takeover.test.ts), and
// the Orphan deletion's wait against the fake API server's garbage collector.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Env, ExitCode } from '../lib/contract.js';
import { deleteStatefulSetOrphaning, immutableSpecDifferences, parseWorkloadSpecs, withPruneDisabled } from '../runner/src/kube/takeover.js';
import { parseWorkloadDiscovery, secretsReadingKey } from '../runner/src/kube/workload-discovery.js';
import { startFakeKubeApiServer, type FakeKubeApiServer } from './support/fake-kube/index.js';
import { fakeRunnerKube } from './support/fake-kube/runner-kube-context.js';

describe('immutableSpecDifferences', () => {
  const ours = { selector: { 'app.kubernetes.io/name': 'keycloak', 'app.kubernetes.io/instance': 'keycloak' }, serviceName: 'keycloak-discovery', volumeClaimTemplates: [] };
  it('finds nothing when only the label order differs', () => {
    expect(immutableSpecDifferences({ ...ours, selector: { 'app.kubernetes.io/instance': 'keycloak', 'app.kubernetes.io/name': 'keycloak' } }, ours)).toEqual([]);
  });
  it('names each differing field: Bitnami 25.x selector (part-of), headless serviceName, claim templates', () => {
    const bitnami = { selector: { ...ours.selector, 'app.kubernetes.io/part-of': 'keycloak' }, serviceName: 'keycloak-headless', volumeClaimTemplates: ['data'] };
    const differences = immutableSpecDifferences(bitnami, ours);
    expect(differences).toHaveLength(3);
    expect(differences[0]).toMatch(/^selector .*part-of.* → /);
    expect(differences[1]).toBe('serviceName "keycloak-headless" → "keycloak-discovery"');
    expect(differences[2]).toBe('volumeClaimTemplates ["data"] → []');
  });
});

describe('withPruneDisabled', () => {
  it('adds Prune=false to existing sync options once, replacing another Prune value', () => {
    expect(withPruneDisabled(undefined)).toBe('Prune=false');
    expect(withPruneDisabled('ServerSideApply=true')).toBe('ServerSideApply=true,Prune=false');
    expect(withPruneDisabled('Prune=true, Replace=true')).toBe('Replace=true,Prune=false');
    expect(withPruneDisabled('Prune=false')).toBe('Prune=false');
  });
});

describe('parseWorkloadSpecs bad input', () => {
  const parse = (value: string) => () => parseWorkloadSpecs(value, Env.workloadSpecs);
  it('is empty when unset', () => {
    expect(parseWorkloadSpecs(undefined, Env.workloadSpecs)).toEqual({});
    expect(parseWorkloadSpecs(' ', Env.workloadSpecs)).toEqual({});
  });
  it('fails with a usage error naming the variable and the problem', () => {
    expect(parse('{')).toThrow(/MIGRATION_WORKLOAD_SPECS is not valid JSON/);
    expect(parse('[]')).toThrow(/must be a JSON object keyed by statefulset\/<name>/);
    expect(parse('{"deployment/x":{"selector":{}}}')).toThrow(/invalid key "deployment\/x"/);
    expect(parse('{"statefulset/x":{"selector":{"a":1}}}')).toThrow(/statefulset\/x\.selector must be an object of label strings/);
    expect(parse('{"statefulset/x":{"selector":{},"volumeClaimTemplates":"data"}}')).toThrow(/volumeClaimTemplates must be a list of names/);
    expect(parse('{')).toThrow(expect.objectContaining({ exitCode: ExitCode.usage }));
  });
  it('reads a valid value', () => {
    expect(parseWorkloadSpecs('{"statefulset/kc":{"selector":{"a":"b"},"serviceName":"kc-d"}}', Env.workloadSpecs)).toEqual({
      'statefulset/kc': { selector: { a: 'b' }, serviceName: 'kc-d', volumeClaimTemplates: [] },
    });
  });
});

describe('parseWorkloadDiscovery bad input', () => {
  const parse = (value: string) => () => parseWorkloadDiscovery(value);
  const failure = (value: string) => {
    try {
      parse(value)();
    } catch (error) {
      return error as { exitCode: number; message: string; hint: string };
    }
    throw new Error(`${value} was accepted`);
  };
  it('is empty when unset', () => {
    expect(parseWorkloadDiscovery(undefined)).toEqual({});
    expect(parseWorkloadDiscovery('')).toEqual({});
  });
  it('fails with a usage error naming the variable, the entry and an example', () => {
    expect(parse('{')).toThrow(/^MIGRATION_WORKLOAD_DISCOVERY is not valid JSON/);
    expect(parse('[]')).toThrow(/must be a JSON object keyed by statefulset\/<name> or deployment\/<name>/);
    expect(parse('{"pod/x":{"selector":"a=b"}}')).toThrow(/invalid key "pod\/x"/);
    expect(parse('{"statefulset/x":{}}')).toThrow(/statefulset\/x\.selector must be comma-separated key=value label requirements, got undefined/);
    expect(parse('{"statefulset/x":{"selector":"a in (b)"}}')).toThrow(/got "a in \(b\)"/);
    expect(parse('{"statefulset/x":{"selector":"a=b","secretCopies":{}}}')).toThrow(/secretCopies must be a list/);
    expect(parse('{"statefulset/x":{"selector":"a=b","secretCopies":[{"key":"a b","to":"c"}]}}')).toThrow(/secretCopies\[0\]\.key must be a Secret key, got "a b"/);
    expect(parse('{"statefulset/x":{"selector":"a=b","secretCopies":[{"key":"k","to":"Upper"}]}}')).toThrow(/secretCopies\[0\]\.to must be a Secret name, got "Upper"/);
    const error = failure('{');
    expect(error.exitCode).toBe(ExitCode.usage);
    expect(error.hint).toContain('{"statefulset/keycloak":{"selector":"app.kubernetes.io/instance=keycloak');
  });
  it('reads a valid value', () => {
    expect(parseWorkloadDiscovery('{"statefulset/kc":{"selector":" a=b, c/d=e "},"deployment/w":{"selector":"x=y","secretCopies":[{"key":"admin-password","to":"kc"}]}}')).toEqual({
      'statefulset/kc': { selector: 'a=b,c/d=e' },
      'deployment/w': { selector: 'x=y', secretCopies: [{ key: 'admin-password', to: 'kc' }] },
    });
  });
});

describe('secretsReadingKey', () => {
  it("names the Secrets a pod spec reads a key from: sure by secretKeyRef or items, maybe whole (Bitnami 25.x's projected volume)", () => {
    const pod = {
      containers: [
        {
          name: 'keycloak',
          env: [{ name: 'KEYCLOAK_ADMIN_PASSWORD', valueFrom: { secretKeyRef: { name: 'kc-admin', key: 'admin-password' } } }, { name: 'OTHER', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }],
          envFrom: [{ secretRef: { name: 'extra-env' } }],
        },
      ],
      volumes: [
        { name: 'secrets', projected: { sources: [{ secret: { name: 'sso' } }, { secret: { name: 'pg', items: [{ key: 'password', path: 'db-password' }] } }] } },
        { name: 'one', secret: { secretName: 'listed', items: [{ key: 'admin-password', path: 'p' }] } },
      ],
    };
    expect(secretsReadingKey(pod, 'admin-password')).toEqual({ sure: ['kc-admin', 'listed'], maybe: ['extra-env', 'sso'] });
    expect(secretsReadingKey(undefined, 'admin-password')).toEqual({ sure: [], maybe: [] });
  });
});

describe('deleteStatefulSetOrphaning against the API server', () => {
  let server: FakeKubeApiServer;
  beforeAll(async () => {
    server = await startFakeKubeApiServer();
  });
  afterAll(async () => server.close());

  const seed = (namespace: string, name: string) =>
    server.seed({
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name, namespace },
      spec: { replicas: 0, serviceName: name, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'c', image: 'x:1' }] } } },
    });
  const statefulSet = (namespace: string, name: string) => server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name, namespace });

  it('returns only once the StatefulSet is gone: an Orphan deletion keeps it, with the orphan finalizer, until the garbage collector releases it', async () => {
    seed('orphan-wait', 'keycloak');
    const { kube } = fakeRunnerKube(server, { namespace: 'orphan-wait' });
    const release = server.holdGarbageCollection();
    let done = false;
    const deletion = deleteStatefulSetOrphaning(kube, 'keycloak', { pollMs: 20 }).then((deleted) => ((done = true), deleted));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(statefulSet('orphan-wait', 'keycloak')?.metadata.deletionTimestamp).toBeDefined();
    expect(done).toBe(false);
    release();
    expect(await deletion).toBe(true);
    expect(statefulSet('orphan-wait', 'keycloak')).toBeUndefined();
    expect(await deleteStatefulSetOrphaning(kube, 'keycloak')).toBe(false);
  });

  it('fails (75, retried) when it is still being deleted after the wait, naming its finalizers', async () => {
    seed('orphan-stuck', 'keycloak');
    const { kube } = fakeRunnerKube(server, { namespace: 'orphan-stuck' });
    const release = server.holdGarbageCollection();
    try {
      await expect(deleteStatefulSetOrphaning(kube, 'keycloak', { timeoutMs: 200, pollMs: 20 })).rejects.toThrow(
        expect.objectContaining({ exitCode: ExitCode.tempFail, message: expect.stringMatching(/StatefulSet keycloak is still being deleted .*finalizers: orphan/) }),
      );
    } finally {
      release();
    }
  });
});
