// Secrets with generated passwords through the fake API server: created when absent, never
// overwritten, never logged, and a Secret the runner did not create is never modified.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, Labels, MANAGED_BY_RUNNER } from '../lib/contract.js';
import { RunnerError } from '../runner/src/errors.js';
import { ensureSecrets, generatePassword, parseEnsureSecrets } from '../runner/src/kube/secrets.js';
import { runnerLabels } from '../runner/src/kube/state-store.js';
import { startFakeKubeApiServer, type FakeKubeApiServer } from './support/fake-kube/index.js';
import { fakeRunnerKube } from './support/fake-kube/runner-kube-context.js';

const ns = 'kc';
const labels = runnerLabels('generated-secret');
let server: FakeKubeApiServer;

function secretData(name: string): Record<string, string> {
  const secret = server.get({ apiVersion: 'v1', kind: 'Secret', name, namespace: ns });
  return Object.fromEntries(
    Object.entries((secret?.data ?? {}) as Record<string, string>).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]),
  );
}

beforeAll(async () => {
  server = await startFakeKubeApiServer();
});
afterAll(async () => {
  await server.close();
});

describe('parseEnsureSecrets', () => {
  it('parses the JSON list and treats empty as none', () => {
    expect(parseEnsureSecrets('[{"name":"pg-ha","keys":["password","repmgr-password","password"]}]')).toEqual([
      { name: 'pg-ha', keys: ['password', 'repmgr-password'] },
    ]);
    expect(parseEnsureSecrets('')).toEqual([]);
  });

  it('fails on malformed input naming the variable and the entry', () => {
    expect(() => parseEnsureSecrets('{')).toThrow(/^MIGRATION_ENSURE_SECRETS is not valid JSON/);
    expect(() => parseEnsureSecrets('{"name":"x"}')).toThrow('MIGRATION_ENSURE_SECRETS must be a JSON array');
    expect(() => parseEnsureSecrets('[{"name":"Bad Name","keys":["a"]}]')).toThrow('MIGRATION_ENSURE_SECRETS entry 0 has an invalid Secret name "Bad Name"');
    expect(() => parseEnsureSecrets('[{"name":"ok","keys":[]}]')).toThrow(/entry 0 \(ok\) needs a non-empty "keys" array/);
    expect(() => parseEnsureSecrets('[{"name":"ok","keys":["a b"]}]')).toThrow(/invalid key "a b"/);
  });
});

describe('generatePassword', () => {
  it('draws 32 alphanumeric characters, different every time', () => {
    const passwords = new Set(Array.from({ length: 50 }, () => generatePassword()));
    expect(passwords.size).toBe(50);
    for (const password of passwords) expect(password).toMatch(/^[A-Za-z0-9]{32}$/);
  });
});

describe('ensureSecrets', () => {
  it('creates missing Secrets with random passwords per key, labelled, and never logs the values', async () => {
    const { kube, log } = fakeRunnerKube(server, { namespace: ns });
    const result = await ensureSecrets(kube, [{ name: 'pg-ha', keys: ['password', 'repmgr-password'] }], { labels });
    expect(result).toEqual([{ name: 'pg-ha', created: true, generatedKeys: ['password', 'repmgr-password'] }]);
    const data = secretData('pg-ha');
    expect(data.password).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(data['repmgr-password']).not.toBe(data.password);
    expect(server.get({ apiVersion: 'v1', kind: 'Secret', name: 'pg-ha', namespace: ns })?.metadata.labels).toEqual(labels);
    const printed = log.text();
    expect(printed).toContain('Secret/pg-ha');
    expect(printed).not.toContain(data.password);
    expect(printed).not.toContain(Buffer.from(data.password as string).toString('base64'));
  });

  it('never overwrites an existing key on a second run', async () => {
    const before = secretData('pg-ha');
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const result = await ensureSecrets(kube, [{ name: 'pg-ha', keys: ['password', 'repmgr-password'] }], { labels });
    expect(result).toEqual([{ name: 'pg-ha', created: false, generatedKeys: [] }]);
    expect(secretData('pg-ha')).toEqual(before);
  });

  it('adds only the missing key to a Secret the runner created', async () => {
    const before = secretData('pg-ha');
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    const result = await ensureSecrets(kube, [{ name: 'pg-ha', keys: ['password', 'pgpool-admin-password'] }], { labels });
    expect(result).toEqual([{ name: 'pg-ha', created: false, generatedKeys: ['pgpool-admin-password'] }]);
    const after = secretData('pg-ha');
    expect(after.password).toBe(before.password);
    expect(after['repmgr-password']).toBe(before['repmgr-password']);
    expect(after['pgpool-admin-password']).toMatch(/^[A-Za-z0-9]{32}$/);
  });

  it('never modifies a Secret it did not create, and names the missing key', async () => {
    server.seed({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'user-provided', namespace: ns, labels: { [Labels.managedBy]: 'Helm' } },
      stringData: { password: 'chosen-by-the-user' },
    });
    const { kube } = fakeRunnerKube(server, { namespace: ns });
    expect(await ensureSecrets(kube, [{ name: 'user-provided', keys: ['password'] }], { labels })).toEqual([
      { name: 'user-provided', created: false, generatedKeys: [] },
    ]);
    const error = await ensureSecrets(kube, [{ name: 'user-provided', keys: ['password', 'admin-password'] }], { labels }).catch((caught: unknown) => caught);
    expect((error as RunnerError).exitCode).toBe(ExitCode.config);
    expect((error as RunnerError).message).toBe('Secret user-provided exists but lacks key(s) admin-password');
    expect(secretData('user-provided')).toEqual({ password: 'chosen-by-the-user' });
  });

  it('two runners at once agree on one password', async () => {
    const [a, b] = [fakeRunnerKube(server, { namespace: ns }).kube, fakeRunnerKube(server, { namespace: ns }).kube];
    const results = await Promise.all([
      ensureSecrets(a, [{ name: 'raced', keys: ['password'] }], { labels }),
      ensureSecrets(b, [{ name: 'raced', keys: ['password'] }], { labels }),
    ]);
    expect(results.flat().filter((result) => result.created)).toHaveLength(1);
    expect(server.get({ apiVersion: 'v1', kind: 'Secret', name: 'raced', namespace: ns })?.metadata.labels?.[Labels.managedBy]).toBe(MANAGED_BY_RUNNER);
  });
});
