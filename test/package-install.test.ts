// The package as a cdk8s user installs it: `npm pack`, then the tarball installed into
// (a) an app laid out exactly as `cdk8s init typescript-app` writes it (CommonJS, ts-node, jest; the
//     template's files are copied from the installed cdk8s-cli, the init's `cdk8s import` step is
//     skipped because it downloads the Kubernetes schema),
// (b) an ES module app, run with tsx and with plain node,
// (c) an app pinned to the lowest supported cdk8s, cdk8s-plus-27 and constructs.
// Each synthesizes the README's example as written and must hold Keycloak, the database and the
// migration Jobs. Installs prefer npm's cache (the repository's own `npm ci` filled it).
import { execFileSync, type ExecFileSyncOptions } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// Outside the repository: TypeScript looks for @types in every parent's node_modules, and the
// repository's own (pg's, client-node's) must not leak into the apps.
const WORK = mkdtempSync(join(tmpdir(), 'kc-package-install-'));
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  peerDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const TEMPLATE = join(dirname(createRequire(import.meta.url).resolve('cdk8s-cli/package.json')), 'templates', 'typescript-app');
/** The lowest versions the peer ranges admit that the registry holds (cdk8s 2.68.11 was never published). */
const LOWEST = { cdk8s: '2.68.12', 'cdk8s-plus-27': '2.9.0', constructs: '10.3.0' };
const INSTALL_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];
const MINUTES = 60_000;

let tarball = '';

function run(command: string, args: readonly string[], cwd: string, options: ExecFileSyncOptions = {}): string {
  try {
    return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: 'pipe', env: { ...process.env, CI: 'true' }, ...options }) as string;
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd}:\n${failure.stdout ?? ''}\n${failure.stderr ?? ''}`, { cause: error });
  }
}

/** The README's construct example, verbatim. */
function readmeExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.split('## Use the constructs in your own cdk8s app')[1];
  const code = section?.match(/```ts\n([\s\S]*?)```/)?.[1];
  if (!code) throw new Error('README.md has no ```ts block under "Use the constructs in your own cdk8s app"');
  return code;
}

/** The objects of every YAML file in `dir`. */
function synthesized(dir: string): Array<{ kind: string; metadata: { name: string; annotations?: Record<string, string> } }> {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.yaml'))
    .flatMap((file) => parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((doc) => doc.toJS()))
    .filter(Boolean);
}

/** Keycloak, the database and the migration Jobs of the README example. */
function expectReadmeExample(dir: string): void {
  const objects = synthesized(dir);
  expect(objects.find((o) => o.kind === 'StatefulSet')?.metadata.name).toBe('keycloak');
  expect(objects.some((o) => o.kind === 'Cluster')).toBe(true);
  // Argo CD: the database before the backup hook (-30), which restores too; Keycloak after it.
  const wave = (kind: string) => objects.find((o) => o.kind === kind)?.metadata.annotations?.['argocd.argoproj.io/sync-wave'];
  expect([wave('Cluster'), wave('StatefulSet'), wave('Ingress')]).toEqual(['-40', '-10', '-10']);
  const jobs = objects.filter((o) => o.kind === 'Job').map((o) => o.metadata.name);
  expect(jobs.sort()).toEqual(['idp-migration-backup', 'idp-migration-prepare', 'idp-migration-record-failure']);
}

/** Every installed copy of `name` below node_modules, with its version. */
function installedCopies(app: string, name: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const path = join(dir, entry.name);
      if (entry.name.startsWith('@')) {
        walk(path);
        continue;
      }
      const relative = path.slice(join(app, 'node_modules').length + 1);
      if (relative === name || relative.endsWith(`/node_modules/${name}`)) {
        found.push(`${relative}@${(JSON.parse(readFileSync(join(path, 'package.json'), 'utf8')) as { version: string }).version}`);
      }
      try {
        walk(join(path, 'node_modules'));
      } catch {
        // no nested node_modules
      }
    }
  };
  walk(join(app, 'node_modules'));
  return found;
}

function freshDir(name: string): string {
  const dir = join(WORK, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

beforeAll(() => {
  const out = freshDir('tarball');
  // `npm pack` runs `prepack`: the library and the runner bundle are built from the sources.
  run('npm', ['pack', '--pack-destination', out, '--loglevel=error'], ROOT);
  const files = readdirSync(out).filter((file) => file.endsWith('.tgz'));
  expect(files).toHaveLength(1);
  tarball = join(out, files[0]!);
}, 5 * MINUTES);

afterAll(() => rmSync(WORK, { recursive: true, force: true }));

describe('the npm package', () => {
  it('holds the compiled library, its types, the CLI bundle, API.md and LICENSE, and nothing of the repository', () => {
    const listing = run('tar', ['tzf', tarball], ROOT).split('\n').filter(Boolean).map((path) => path.replace(/^package\//, ''));
    expect(listing).toEqual(expect.arrayContaining(['build/cjs/index.js', 'build/cjs/index.d.ts', 'build/esm/index.js', 'build/esm/index.d.ts', 'runner/dist/runner.mjs', 'API.md', 'LICENSE', 'README.md', 'package.json']));
    // The chunks the entry point imports (runner/build.mjs), every one of them.
    const chunkImports = [...readFileSync(join(ROOT, 'runner', 'dist', 'runner.mjs'), 'utf8').matchAll(/"\.\/(chunks\/[^"]+\.mjs)"/g)].map((match) => `runner/dist/${match[1]}`);
    expect(chunkImports.length).toBeGreaterThan(0);
    expect(listing).toEqual(expect.arrayContaining(chunkImports));
    const repositoryOnly = listing.filter((path) => /^(test|bench|rehearsal|dist|scripts|lib|runner\/src)\//.test(path) || path.endsWith('.ts') && !path.endsWith('.d.ts'));
    expect(repositoryOnly).toEqual([]);
  });

  it('runs as `npx <tarball> --help` without an app around it', () => {
    const empty = freshDir('npx');
    cpSync(tarball, join(empty, 'package.tgz'));
    // npx takes a tarball as a relative path (an absolute one is run as a command).
    const help = run('npx', ['--yes', '--prefer-offline', './package.tgz', '--help'], empty);
    expect(help).toContain('Usage: keycloak-postgres-ha-migration <command> [flags]');
    for (const command of ['status', 'plan', 'backup', 'restore', 'verify']) expect(help).toContain(`  ${command} `);
  }, 5 * MINUTES);

  it('in an app made like `cdk8s init typescript-app`: tsc, the template\'s jest test and cdk8s synth pass on the README example', () => {
    const app = freshDir('cdk8s-init-app');
    const versions = PACKAGE.devDependencies;
    const placeholders: Record<string, string> = {
      '{{ $base }}': 'cdk8s-init-app',
      '{{ cdk8s_core_version }}': versions.cdk8s!.replace(/^\^/, ''),
      '{{ cdk8s_plus_version }}': '2.4.0',
      '{{ constructs_version }}': versions.constructs!.replace(/^\^/, ''),
      '{{ cdk8s_cli_spec }}': versions['cdk8s-cli']!,
    };
    for (const entry of readdirSync(TEMPLATE)) {
      if (entry === '.hooks.sscaff.js') continue; // the init's own script: its steps are run below
      const target = entry === '{{}}.gitignore' ? '.gitignore' : entry;
      cpSync(join(TEMPLATE, entry), join(app, target), { recursive: true });
    }
    for (const file of ['package.json', 'main.ts']) {
      let text = readFileSync(join(app, file), 'utf8');
      for (const [placeholder, value] of Object.entries(placeholders)) text = text.replaceAll(placeholder, value);
      writeFileSync(join(app, file), text);
    }
    writeFileSync(join(app, 'main.ts'), readmeExample());
    run('npm', ['install', ...INSTALL_FLAGS, tarball], app);
    // The init's steps after `npm run import`: compile, test (updating the template's snapshot), synth.
    run('npm', ['run', 'compile'], app);
    expect(run('npm', ['run', 'test', '--', '-u'], app, { stdio: 'pipe' })).toBeDefined();
    run('npx', ['cdk8s', 'synth', '--no-check-upgrade'], app);
    expectReadmeExample(join(app, 'dist'));
    // The template's snapshot test now holds the example's objects.
    expect(readFileSync(join(app, '__snapshots__', 'main.test.ts.snap'), 'utf8')).toContain('idp-migration-backup');
    // Runner-only dependencies come bundled, never installed.
    expect(installedCopies(app, 'pg')).toEqual([]);
    expect(installedCopies(app, '@kubernetes/client-node')).toEqual([]);
    // The CLI, from the installed package: npx, and the kubectl plugin's executable.
    expect(run('npx', ['--no-install', PACKAGE.name, '--help'], app)).toContain('Commands:');
    expect(run(join(app, 'node_modules', '.bin', 'kubectl-keycloak_migration'), ['status', '--help'], app)).toContain('Usage: kubectl keycloak-migration status');
  }, 10 * MINUTES);

  it('in an ES module app: the README example runs with tsx and, compiled, with plain node', () => {
    const app = freshDir('esm-app');
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'esm-app', version: '1.0.0', private: true, type: 'module' }, null, 2));
    const versions = PACKAGE.devDependencies;
    run('npm', ['install', ...INSTALL_FLAGS, tarball, `cdk8s@${versions.cdk8s}`, `cdk8s-plus-27@${versions['cdk8s-plus-27']}`, `constructs@${versions.constructs}`, `tsx@${versions.tsx}`], app);
    const example = readmeExample();
    writeFileSync(join(app, 'main.ts'), example);
    run('npx', ['--no-install', 'tsx', 'main.ts'], app);
    expectReadmeExample(join(app, 'dist'));

    rmSync(join(app, 'dist'), { recursive: true, force: true });
    const compiled = ts.transpileModule(example, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    writeFileSync(join(app, 'main.js'), compiled);
    run(process.execPath, ['main.js'], app);
    expectReadmeExample(join(app, 'dist'));
  }, 5 * MINUTES);

  it('with the lowest supported cdk8s, cdk8s-plus-27 and constructs: one copy of each, and the example synthesizes', () => {
    const app = freshDir('lowest-peers-app');
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'lowest-peers-app', version: '1.0.0', private: true, type: 'module' }, null, 2));
    for (const [name, range] of Object.entries(PACKAGE.peerDependencies)) {
      // The pins must lie inside the declared ranges, or this test would prove nothing.
      expect(range, name).toMatch(/^\^/);
      expect(LOWEST[name as keyof typeof LOWEST], name).toBeDefined();
    }
    run('npm', ['install', ...INSTALL_FLAGS, '--save-exact', tarball, ...Object.entries(LOWEST).map(([name, version]) => `${name}@${version}`)], app);
    for (const [name, version] of Object.entries(LOWEST)) {
      expect(installedCopies(app, name), name).toEqual([`${name}@${version}`]);
    }
    const compiled = ts.transpileModule(readmeExample(), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    writeFileSync(join(app, 'main.js'), compiled);
    run(process.execPath, ['main.js'], app);
    expectReadmeExample(join(app, 'dist'));
  }, 5 * MINUTES);
});
