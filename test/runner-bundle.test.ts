/**
 * The shipped artefacts: the esbuild bundle runs with plain `node` from a directory without
 * node_modules (pg and client-node inside it). The image built from it is tested for real in
 * runner-image.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
  // The entry point and the chunks it imports, as the image and the package ship them.
  cpSync(join(REPOSITORY_ROOT, 'runner', 'dist'), isolatedDir, { recursive: true });
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

  it("loads pg without the fetch implementation pg's runtime detection would load on Node 20 (~30 ms of every start)", () => {
    // A backup without SOURCE_* loads the backup command (and pg with it), then stops at the configuration.
    const probe = join(isolatedDir, 'undici-probe.cjs');
    writeFileSync(probe, "process.on('exit', () => process.stderr.write('undici-loaded=' + process.moduleLoadList.some((m) => /undici/.test(m)) + '\\n'));\n");
    const run = spawnSync(process.execPath, ['--require', probe, bundle, 'backup', '--dir', join(isolatedDir, 'unused')], { cwd: isolatedDir, encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(run.status, run.stderr).toBe(64);
    expect(run.stderr).toContain('SOURCE_PGHOST');
    expect(run.stderr).toContain('undici-loaded=false');
  });

  it("carries only the Kubernetes API clients the runner calls, not all of client-node's (every hook Job parses them)", () => {
    const chunks = readdirSync(join(isolatedDir, 'chunks')).map((name) => readFileSync(join(isolatedDir, 'chunks', name), 'utf8'));
    // esbuild writes a class as `var Name=class …`; each API group's client has its generated request factory.
    const defines = (name: string) => chunks.some((text) => new RegExp(`\\b${name}=class\\b`).test(text));
    expect(defines('KubeConfig')).toBe(true);
    for (const used of ['CoreV1Api', 'AppsV1Api', 'CoordinationV1Api']) expect(defines(`${used}RequestFactory`), used).toBe(true);
    // A namespace import of client-node (as `--version` once made) keeps every API group's client.
    for (const unused of ['BatchV1Api', 'NetworkingV1Api', 'RbacAuthorizationV1Api']) expect(defines(`${unused}RequestFactory`), unused).toBe(false);
    const bytes = chunks.reduce((sum, text) => sum + Buffer.byteLength(text), 0);
    expect(bytes).toBeLessThan(4_000_000);
  });

  it('exits 64 with one line for a usage error', async () => {
    const run = await runRunner(['backup'], {}, { bundle, cwd: isolatedDir });
    expect(run.code).toBe(64);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
  });
});
