/**
 * The shipped artefacts: the esbuild bundle runs with plain `node` from a directory without
 * node_modules (pg and client-node inside it), and the Dockerfile keeps its invariants (there is no
 * Docker engine here to build it).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeycloakData } from './support/keycloak-data.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { endpointEnv, logLines, REPOSITORY_ROOT, runRunner } from './support/runner-cli.js';

let isolatedDir: string;
let bundle: string;
let server: TestPostgres;

beforeAll(async () => {
  const build = spawnSync(process.execPath, [join(REPOSITORY_ROOT, 'runner', 'build.mjs')], { encoding: 'utf8' });
  expect(build.status, build.stderr).toBe(0);
  isolatedDir = mkdtempSync(join(tmpdir(), 'kc-runner-bundle-'));
  bundle = join(isolatedDir, 'runner.mjs');
  copyFileSync(join(REPOSITORY_ROOT, 'runner', 'dist', 'runner.mjs'), bundle);
  server = await startPostgres({ major: 15 });
  await server.createUser('bn_keycloak', 'bundle-pass');
  await server.createDatabase('keycloak', 'bn_keycloak');
  await createKeycloakData(server.settings('keycloak', 'bn_keycloak', 'bundle-pass'), { users: 30 });
});

afterAll(async () => {
  await server?.stop();
  if (isolatedDir) rmSync(isolatedDir, { recursive: true, force: true });
});

describe('the bundle', () => {
  it('has no node_modules to fall back on where it runs', () => {
    for (const dir of [isolatedDir, tmpdir(), '/']) expect(existsSync(join(dir, 'node_modules')), dir).toBe(false);
  });

  it('starts with plain node and loads the Kubernetes client it bundles', async () => {
    const run = await runRunner(['--version'], {}, { bundle, cwd: isolatedDir });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^keycloak-pg-migration-runner \d+\.\d+\.\d+\n/);
    expect(run.stdout).toContain('@kubernetes/client-node: loaded');
    expect(run.stdout).toMatch(/pg_dump 15\.\d+/);
  });

  it('backs up and verifies a real database with the bundled pg driver', async () => {
    const dir = join(isolatedDir, 'backup');
    const env = endpointEnv('SOURCE', server.settings('keycloak', 'bn_keycloak', 'bundle-pass'));
    const backup = await runRunner(['backup', '--dir', dir], env, { bundle, cwd: isolatedDir });
    expect(backup.code, backup.stderr).toBe(0);
    const verify = await runRunner(['verify', '--dir', dir], {}, { bundle, cwd: isolatedDir });
    expect(verify.code, verify.stderr).toBe(0);
    expect(logLines(verify.stderr).some((line) => line.msg === 'backup verified')).toBe(true);
  });

  it('exits 64 with one line for a usage error', async () => {
    const run = await runRunner(['backup'], {}, { bundle, cwd: isolatedDir });
    expect(run.code).toBe(64);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('runner/Dockerfile', () => {
  const dockerfile = readFileSync(join(REPOSITORY_ROOT, 'runner', 'Dockerfile'), 'utf8');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const args = Object.fromEntries(
    instructions.filter((line) => /^ARG \w+=/.test(line)).map((line) => line.slice(4).split('=') as [string, string]),
  );
  const expand = (text: string) => text.replace(/\$\{(\w+)\}/g, (_match, name: string) => args[name] ?? `\${${name}}`);
  const stages = instructions.filter((line) => line.startsWith('FROM '));

  it('is multi-stage and every stage is a Node LTS of at least 22', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) {
      const image = expand(stage.split(/\s+/)[1]!);
      const major = /^node:(\d+)/.exec(image);
      expect(major, image).not.toBeNull();
      expect(Number(major![1])).toBeGreaterThanOrEqual(22);
      expect(Number(major![1]) % 2, 'an even (LTS) major').toBe(0);
    }
  });

  it('installs PostgreSQL client tools of major 17 or newer and points PG_BINDIR at them', () => {
    const major = Number(args.POSTGRESQL_CLIENT_MAJOR);
    expect(major).toBeGreaterThanOrEqual(17);
    expect(dockerfile).toContain('postgresql-client-${POSTGRESQL_CLIENT_MAJOR}');
    expect(instructions.join('\n')).toMatch(/ENV PG_BINDIR=\/usr\/lib\/postgresql\/\$\{POSTGRESQL_CLIENT_MAJOR\}\/bin/);
  });

  it('runs the bundle as a numeric non-root user', () => {
    const runtime = instructions.slice(instructions.lastIndexOf(stages.at(-1)!));
    const user = runtime.filter((line) => line.startsWith('USER ')).at(-1);
    expect(user).toMatch(/^USER [1-9]\d*(:\d+)?$/);
    const entrypoint = runtime.find((line) => line.startsWith('ENTRYPOINT '));
    expect(JSON.parse(entrypoint!.slice('ENTRYPOINT '.length))).toEqual(['node', '/opt/runner/runner.mjs']);
    expect(runtime.some((line) => line.startsWith('COPY --from=build') && line.includes('runner/dist/runner.mjs /opt/runner/runner.mjs'))).toBe(true);
  });

  it('builds the bundle with npm ci and the repository build script', () => {
    expect(instructions).toContain('RUN npm ci --ignore-scripts --no-audit --no-fund');
    expect(instructions.some((line) => line.startsWith('RUN node runner/build.mjs'))).toBe(true);
    const ignored = readFileSync(join(REPOSITORY_ROOT, 'runner', 'Dockerfile.dockerignore'), 'utf8');
    expect(ignored).toMatch(/^\*\*\/node_modules$/m);
  });
});
