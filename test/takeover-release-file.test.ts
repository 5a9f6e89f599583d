// `npm run rehearse:takeover` reads the user's rendered release before it starts anything: every
// fixture is understood (release, namespace, the one database, Keycloak, its Service and admin
// Secret), and bad input — not Kubernetes YAML, no PostgreSQL, two candidate databases — stops it
// with exit 2, a message naming the file and what was found, and nothing created.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';

import { parseManifestText } from '../rehearsal/manifests.js';
import { readReleaseFile, ReleaseFileError } from '../rehearsal/takeover/release-file.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'bitnami-keycloak');
const REPOSITORY = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'takeover-input-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function fixture(file: string): string {
  return join(FIXTURES, file);
}

function writeObjects(name: string, objects: unknown[]): string {
  const path = join(work, name);
  writeFileSync(path, objects.map((object) => stringify(object)).join('---\n'));
  return path;
}

function refusal(path: string): ReleaseFileError {
  try {
    readReleaseFile(path);
  } catch (error) {
    expect(error).toBeInstanceOf(ReleaseFileError);
    return error as ReleaseFileError;
  }
  throw new Error(`expected ${path} to be refused`);
}

describe('reading a rendered Bitnami release', () => {
  it.each([
    ['keycloak-25.4.0-release-keycloak.yaml', 'keycloak', 'keycloak-postgresql', 17, 'keycloak'],
    ['keycloak-25.4.0-release-idp.yaml', 'idp', 'idp-postgresql', 17, 'idp-keycloak'],
    ['keycloak-25.4.0-release-idp-existing-secret.yaml', 'idp', 'idp-postgresql', 17, 'idp-keycloak'],
    ['keycloak-25.4.0-release-keycloak-ingress.yaml', 'keycloak', 'keycloak-postgresql', 17, 'keycloak'],
    ['keycloak-25.4.0-release-keycloak-pg-replication.yaml', 'keycloak', 'keycloak-postgresql-primary', 17, 'keycloak'],
    ['keycloak-24.9.1-release-keycloak.yaml', 'keycloak', 'keycloak-postgresql', 17, 'keycloak'],
    ['keycloak-21.8.0-release-keycloak.yaml', 'keycloak', 'keycloak-postgresql', 16, 'keycloak'],
    ['keycloak-13.4.1-release-keycloak.yaml', 'keycloak', 'keycloak-postgresql', 15, 'keycloak'],
    ['keycloak-6.2.5-release-keycloak.yaml', 'keycloak', 'keycloak-postgresql', 11, 'keycloak'],
  ])('%s: release %s, database %s (PostgreSQL %i), Keycloak %s', (file, release, database, major, keycloak) => {
    const read = readReleaseFile(fixture(file));
    expect(read.release).toBe(release);
    expect(read.namespace).toBe('keycloak');
    expect(read.database).toMatchObject({ statefulSet: database, tagMajor: major });
    expect(read.keycloak).toEqual({ statefulSet: keycloak, service: keycloak, adminSecret: keycloak });
  });

  it('takes --release and --namespace over what the file says', () => {
    const read = readReleaseFile(fixture('keycloak-25.4.0-release-keycloak.yaml'), { release: 'sso', namespace: 'iam' });
    expect([read.release, read.namespace]).toEqual(['sso', 'iam']);
  });

  it('fails when the file is not Kubernetes YAML, naming the file', () => {
    const broken = join(work, 'broken.yaml');
    writeFileSync(broken, 'kind: StatefulSet\nmetadata: [unclosed\n');
    expect(refusal(broken).message).toMatch(new RegExp(`^${broken} is not Kubernetes YAML: invalid YAML`));
    const notObjects = join(work, 'list.yaml');
    writeFileSync(notObjects, '- a\n- b\n');
    expect(refusal(notObjects).message).toBe(`${notObjects} is not Kubernetes YAML: a document is not a Kubernetes object (got a list)`);
    const noKind = join(work, 'no-kind.yaml');
    writeFileSync(noKind, 'name: keycloak\nreplicas: 2\n');
    expect(refusal(noKind).message).toContain(`${noKind} is not Kubernetes YAML: every object needs apiVersion, kind and metadata.name`);
    const empty = join(work, 'empty.yaml');
    writeFileSync(empty, '# nothing\n');
    expect(refusal(empty).message).toContain(`${empty} holds no Kubernetes objects`);
    expect(refusal(join(work, 'missing.yaml')).message).toContain('no such file');
  });

  it('fails when the release holds no PostgreSQL (an external database), listing what it found', () => {
    const objects = parseManifestText(readFileSync(fixture('keycloak-25.4.0-release-keycloak.yaml'), 'utf8'), 'fixture').filter(
      (object) => object.metadata.labels?.['app.kubernetes.io/name'] !== 'postgresql',
    );
    const path = writeObjects('external-db.yaml', objects);
    expect(refusal(path).message).toBe(
      `${path} holds no PostgreSQL: no StatefulSet runs a postgresql image or sets POSTGRES_USER (found 1 NetworkPolicy, 1 PodDisruptionBudget, 1 ServiceAccount, 1 Secret, 1 ConfigMap, 2 Service, 1 StatefulSet (keycloak)); the rehearsal needs the release's bundled database (postgresql.enabled: true)`,
    );
  });

  it('fails when the file holds two candidate databases (two releases), naming both', () => {
    const text = ['keycloak-25.4.0-release-keycloak.yaml', 'keycloak-25.4.0-release-idp.yaml'].map((file) => readFileSync(fixture(file), 'utf8')).join('\n---\n');
    const path = join(work, 'two-releases.yaml');
    writeFileSync(path, text);
    expect(refusal(path).message).toBe(
      `${path} holds 2 candidate databases: StatefulSet keycloak-postgresql (docker.io/bitnami/postgresql:17.6.0-debian-12-r4), StatefulSet idp-postgresql (docker.io/bitnami/postgresql:17.6.0-debian-12-r4); pass the manifests of one release`,
    );
  });

  it('fails when the file holds no Keycloak StatefulSet', () => {
    const objects = parseManifestText(readFileSync(fixture('keycloak-25.4.0-release-keycloak.yaml'), 'utf8'), 'fixture').filter(
      (object) => object.metadata.labels?.['app.kubernetes.io/name'] !== 'keycloak',
    );
    const noKeycloak = writeObjects('no-keycloak.yaml', objects);
    expect(refusal(noKeycloak).message).toContain(`${noKeycloak} holds no Keycloak StatefulSet (found `);
  });
});

describe('npm run rehearse:takeover with bad input', () => {
  // The CLI itself, in a fresh TMPDIR: a refusal exits 2 before any rehearsal directory (or
  // process, or image build) exists.
  function run(args: string[]) {
    const temp = mkdtempSync(join(work, 'tmp-'));
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'rehearsal/takeover/cli.ts', ...args], {
      cwd: REPOSITORY,
      encoding: 'utf8',
      env: { ...process.env, TMPDIR: temp },
      timeout: 60_000,
    });
    return { ...result, created: readdirSync(temp).filter((entry) => entry.startsWith('rehearsal-')) };
  }

  it('exits 2 naming the file that is not Kubernetes YAML, creating nothing', () => {
    const broken = join(work, 'cli-broken.yaml');
    writeFileSync(broken, 'this is: [not\n');
    const result = run(['--from', broken]);
    expect(result.stderr).toContain(`rehearse:takeover: ${broken} is not Kubernetes YAML`);
    expect(result.status).toBe(2);
    expect(result.created).toEqual([]);
  });

  it('exits 2 on an unknown tool, helm major, a wave delay that is not milliseconds or not for Argo CD, or a missing --from, with the usage', () => {
    const tool = run(['--from', fixture('keycloak-25.4.0-release-keycloak.yaml'), '--tool', 'flux']);
    expect(tool.status).toBe(2);
    expect(tool.stderr).toContain('--tool must be helm or argocd, got "flux"');
    const helm = run(['--from', fixture('keycloak-25.4.0-release-keycloak.yaml'), '--helm', '3.17']);
    expect(helm.status).toBe(2);
    expect(helm.stderr).toContain('--helm must be 3 (helm 3.17) or 4 (helm 4.1, what users install today), got "3.17"');
    const delay = run(['--from', fixture('keycloak-25.4.0-release-keycloak.yaml'), '--tool', 'argocd', '--wave-delay', '2s']);
    expect(delay.status).toBe(2);
    expect(delay.stderr).toContain('--wave-delay must be milliseconds (0-99999) with --tool argocd (Argo CD\'s ARGOCD_SYNC_WAVE_DELAY, 2000 in a real Argo CD), got "2s"');
    const delayWithHelm = run(['--from', fixture('keycloak-25.4.0-release-keycloak.yaml'), '--wave-delay', '2000']);
    expect(delayWithHelm.status).toBe(2);
    expect(delayWithHelm.stderr).toContain('got "2000" with --tool helm');
    const from = run([]);
    expect(from.status).toBe(2);
    expect(from.stderr).toContain('--from is required');
    expect(from.stderr).toContain('usage: npm run rehearse:takeover -- --from <release.yaml>');
  });

  it('exits 2 on a --config that fails validation, naming the flag, the file and the field', () => {
    const config = join(work, 'bad-config.yaml');
    writeFileSync(config, 'database: { instances: 1 }\n');
    const result = run(['--from', fixture('keycloak-25.4.0-release-keycloak.yaml'), '--config', config]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`--config ${config}: platform config file ${config}: platform config 'database.instances' must be an integer of at least 2`);
  });
});
