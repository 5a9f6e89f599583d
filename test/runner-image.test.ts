/**
 * The runner image, run for real with podman: `npm run image` builds it (npm test runs it before
 * vitest; alone, this file builds it in beforeAll). Containers get the flags the rehearsal derives
 * from the library's restricted securityContext (rehearsal/container-runtime.ts), host networking
 * to the test servers, and host directories as volumes.
 *
 * - what the image is: the help as UID 65532, Node 24 and PostgreSQL 17 client tools, no package
 *   manager, the size;
 * - the securityContext is really applied: under readOnlyRootFilesystem nothing outside the
 *   mounts is writable, and a container of another user cannot read a backup;
 * - cross-major: the image's pg_dump 17 backs up PostgreSQL 11, 13, 15, 16 and 17 and its pg_restore
 *   restores each into 17 through the runner's `backup` and `restore` commands, exactly.
 */
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RUNNER_USER_ID } from '../lib/database-migration.js';
import { resolvePodSecurity, restrictedContainerSecurityContext } from '../lib/pod-security.js';
import { securityOptions } from '../rehearsal/container-runtime.js';
import { ensureRunnerImage, type RunnerImage } from '../scripts/build-image.js';
import { createKeycloakData, readComparableContent } from './support/keycloak-data.js';
import { startPostgres, type PostgresMajor, type TestPostgres } from './support/postgres.js';
import { endpointEnv, logLines } from './support/runner-cli.js';

const RUNNER = { uid: 1001, gid: 1001 };
const OTHER = { uid: 2002, gid: 2002 };
/** The flags of the hook Jobs' container securityContext (read-only root, no capabilities, ...). */
const RESTRICTED = securityOptions({
  ...restrictedContainerSecurityContext(resolvePodSecurity('test', undefined, RUNNER.uid)),
} as Parameters<typeof securityOptions>[0]);

let image: RunnerImage;
let workDir: string;

interface ContainerRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `podman run` of the image; `volumes` maps container paths to host directories. */
function runInImage(
  args: readonly string[],
  options: { user?: { uid: number; gid: number }; groups?: number[]; flags?: readonly string[]; volumes?: Record<string, string>; env?: Record<string, string>; entrypoint?: string[] } = {},
): Promise<ContainerRun> {
  const argv = [
    'run', '--rm', '--pull=never', '--network=host',
    ...(options.user ? ['--user', `${options.user.uid}:${options.user.gid}`] : []),
    ...(options.groups ?? []).flatMap((group) => ['--group-add', String(group)]),
    ...(options.flags ?? []),
    ...Object.entries(options.volumes ?? {}).flatMap(([path, hostDir]) => ['-v', `${hostDir}:${path}`]),
    ...Object.entries({ MIGRATION_LOG_FORMAT: 'json', ...options.env }).flatMap(([key, value]) => ['-e', `${key}=${value}`]),
    ...(options.entrypoint ? ['--entrypoint', JSON.stringify(options.entrypoint)] : []),
    image.reference,
    ...args,
  ];
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn('podman', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', rejectRun);
    child.on('close', (code) => resolveRun({ code, stdout, stderr }));
  });
}

/** A fresh host directory for a volume, owned as the kubelet leaves an emptyDir with fsGroup. */
function volumeDir(name: string, owner = RUNNER): string {
  const dir = join(workDir, name);
  mkdirSync(dir, { recursive: true });
  chownSync(dir, owner.uid, owner.gid);
  chmodSync(dir, 0o2775);
  return dir;
}

/** What a node program inside the container reports about writing `path`. */
const WRITE_PROBE = `
const [path] = process.argv.slice(1);
try { require('node:fs').writeFileSync(path, 'x'); console.log('written'); } catch (error) { console.log(error.code); }
`;

beforeAll(() => {
  image = ensureRunnerImage({ log: () => undefined });
  workDir = mkdtempSync(join(tmpdir(), 'kc-runner-image-'));
  chmodSync(workDir, 0o755);
}, 600_000);

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('the runner image', () => {
  it('prints the help as UID 65532 by default', async () => {
    const help = await runInImage(['--help']);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: runner <command> \[flags\]/);
    expect(help.stderr).toBe('');
    const identity = await runInImage(['-e', 'console.log(`${process.getuid()}:${process.getgid()}`)'], { entrypoint: ['/usr/local/bin/node'] });
    expect(identity.stdout.trim()).toBe('65532:65532');
  });

  it('carries Node 24 and the PostgreSQL 17 client tools under PG_BINDIR, no package manager, ≤ 200 MB', async () => {
    const version = await runInImage(['--version']);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout).toMatch(/^node v24\./m);
    expect(version.stdout).toMatch(/^pg_dump 17\.\d+ \(\/usr\/lib\/postgresql\/17\/bin\/pg_dump\)$/m);
    expect(version.stdout).toMatch(/^pg_restore 17\.\d+ /m);
    const lookFor = await runInImage(['-c', 'for tool in apt apt-get dpkg bash; do command -v "$tool"; done; exit 0'], { entrypoint: ['/bin/sh'] });
    expect(lookFor.code, lookFor.stderr).toBe(0);
    expect(lookFor.stdout.trim()).toBe('');
    expect(image.sizeBytes).toBeLessThanOrEqual(200e6);
  });

  it('under readOnlyRootFilesystem can write only into its mounted volumes', async () => {
    const probe = (flags: readonly string[], volumes: Record<string, string> = {}) =>
      runInImage(['-e', WRITE_PROBE, '/tmp/probe'], { user: RUNNER, flags, volumes, entrypoint: ['/usr/local/bin/node'] }).then((run) => run.stdout.trim());
    // The image's own /tmp is writable for everyone (1777) ...
    expect(await probe([])).toBe('written');
    // ... but not with the hook Jobs' securityContext, which makes the root file system read-only,
    expect(await probe(RESTRICTED)).toBe('EROFS');
    // where the pod's emptyDir at /tmp is what can be written.
    const emptyDir = volumeDir('tmp-volume');
    expect(await probe(RESTRICTED, { '/tmp': emptyDir })).toBe('written');
    expect(statSync(join(emptyDir, 'probe')).uid).toBe(RUNNER.uid);
  });

  it('starts from the compile cache made at build time as the hook Jobs’ user, under a read-only root; another user starts without it', async () => {
    // Node says per module whether V8 accepted the cached code (NODE_DEBUG_NATIVE=COMPILE_CACHE).
    const cacheVerdicts = async (user: { uid: number; gid: number }) => {
      const run = await runInImage(['restore-phase'], { user, flags: RESTRICTED, env: { NODE_DEBUG_NATIVE: 'COMPILE_CACHE' } });
      // Still the command's own answer: exit 64 naming the missing variable.
      expect(run.code, run.stderr).toBe(64);
      expect(run.stderr).toMatch(/MIGRATION_STATE_CONFIGMAP is not set/);
      const verdicts = [...run.stderr.matchAll(/V8 code cache for ESM file:\/\/(\/opt\/runner\/\S+) (was \w+( \w+)?)/g)].map((match) => `${match[1]} ${match[2]}`);
      return { verdicts, stderr: run.stderr };
    };
    // runner/Dockerfile makes the cache for the hook Jobs' default UID: a new default needs a new cache.
    expect(RUNNER_USER_ID, 'the UID runner/Dockerfile makes the compile cache for').toBe(RUNNER.uid);
    const { verdicts } = await cacheVerdicts(RUNNER);
    // The entry point, the Kubernetes client's chunk and the command's modules: all from the cache.
    expect(verdicts.length).toBeGreaterThanOrEqual(5);
    expect(verdicts.filter((verdict) => !verdict.endsWith('was accepted'))).toEqual([]);
    expect(verdicts).toContain('/opt/runner/runner.mjs was accepted');
    // An id the image has no cache for: Node cannot make its directory (read-only) and starts uncached.
    const other = await cacheVerdicts(OTHER);
    expect(other.stderr).toMatch(/Cannot create cache directory/);
    expect(other.verdicts).toEqual([]);
  });

  describe('with a backup written by the runner', () => {
    let source: TestPostgres;
    let backupVolume: string;

    beforeAll(async () => {
      source = await startPostgres({ major: 15 });
      await source.createUser('bn_keycloak', 'legacy-pass');
      await source.createDatabase('keycloak', 'bn_keycloak');
      await createKeycloakData(source.settings('keycloak', 'bn_keycloak', 'legacy-pass'), { users: 10 });
      backupVolume = volumeDir('backup-volume');
      const backup = await runInImage(['backup', '--dir', '/backup/b1'], {
        user: RUNNER,
        groups: [RUNNER.gid],
        flags: RESTRICTED,
        volumes: { '/backup': backupVolume, '/tmp': volumeDir('backup-tmp') },
        env: endpointEnv('SOURCE', source.settings('keycloak', 'bn_keycloak', 'legacy-pass')),
      });
      expect(backup.code, backup.stderr).toBe(0);
    });

    afterAll(async () => {
      await source?.stop();
    });

    it('cannot be read by a container running as another user, and is read by the runner’s user', async () => {
      const dump = statSync(join(backupVolume, 'b1', 'dump'));
      expect(dump.uid).toBe(RUNNER.uid);
      expect(dump.mode & 0o007).toBe(0);
      const verifyAs = (user: { uid: number; gid: number }) =>
        runInImage(['verify', '--dir', '/backup/b1'], { user, flags: RESTRICTED, volumes: { '/backup': backupVolume, '/tmp': volumeDir(`verify-tmp-${user.uid}`, user) } });
      const intruder = await verifyAs(OTHER);
      // Said as what it is (a permission problem of an intact backup), not as a missing dump.
      expect(intruder.code, intruder.stderr).toBe(78);
      expect(intruder.stderr).toMatch(/cannot read \/backup\/b1(\/dump)? .*EACCES/);
      expect(intruder.stderr).not.toMatch(/no dump\/ directory/);
      const readAs = (user: { uid: number; gid: number }) =>
        runInImage(['-e', "try { require('node:fs').readFileSync('/backup/b1/dump/toc.dat'); console.log('read') } catch (error) { console.log(error.code) }"], {
          user,
          flags: RESTRICTED,
          volumes: { '/backup': backupVolume },
          entrypoint: ['/usr/local/bin/node'],
        }).then((run) => run.stdout.trim());
      expect(await readAs(OTHER)).toBe('EACCES');
      expect(await readAs(RUNNER)).toBe('read');
      const owner = await verifyAs(RUNNER);
      expect(owner.code, owner.stderr).toBe(0);
      expect(logLines(owner.stderr).some((line) => line.msg === 'backup verified')).toBe(true);
    });
  });
});

describe("the image's pg_dump 17 and pg_restore 17 across majors", () => {
  const SOURCE_MAJORS: PostgresMajor[] = [11, 13, 15, 16, 17];
  const sources = new Map<PostgresMajor, TestPostgres>();
  let target: TestPostgres;

  beforeAll(async () => {
    const servers = await Promise.all([...SOURCE_MAJORS.map((major) => startPostgres({ major })), startPostgres({ major: 17 })]);
    SOURCE_MAJORS.forEach((major, index) => sources.set(major, servers[index]!));
    target = servers.at(-1)!;
    await target.createUser('keycloak', 'target-pass');
  }, 300_000);

  afterAll(async () => {
    await Promise.all([...sources.values(), target].map((server) => server?.stop()));
  });

  it.each(SOURCE_MAJORS)('backs up PostgreSQL %i and restores it into 17 exactly, in containers', async (major) => {
    const server = sources.get(major)!;
    await server.createUser('bn_keycloak', 'legacy-pass');
    await server.createDatabase('bitnami_keycloak', 'bn_keycloak');
    // citext and pgcrypto became trusted extensions in 13: on 11 an administrator creates them.
    await createKeycloakData(server.settings('bitnami_keycloak', 'bn_keycloak', 'legacy-pass'), { users: 20, extensionCreator: server.settings('bitnami_keycloak') });
    const backupVolume = volumeDir(`cross-${major}`);
    const container = (args: string[], env: Record<string, string>) =>
      runInImage(args, { user: RUNNER, groups: [RUNNER.gid], flags: RESTRICTED, volumes: { '/backup': backupVolume, '/tmp': volumeDir(`cross-${major}-tmp`) }, env });

    const backup = await container(['backup', '--dir', '/backup/m'], endpointEnv('SOURCE', server.settings('bitnami_keycloak', 'bn_keycloak', 'legacy-pass')));
    expect(backup.code, backup.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(backupVolume, 'm', 'manifest.json'), 'utf8')) as { source: { serverMajor: number }; pgDump: { major: number } };
    expect(manifest.source.serverMajor).toBe(major);
    expect(manifest.pgDump.major).toBe(17);

    const database = `from_${major}`;
    await target.createDatabase(database, 'keycloak');
    const restore = await container(['restore', '--dir', '/backup/m', '--owner', 'keycloak', '--skip-hygiene'], endpointEnv('TARGET', target.settings(database, 'keycloak', 'target-pass')));
    expect(restore.code, restore.stderr).toBe(0);

    // The test's own comparison, independent of the runner's verification.
    expect(await readComparableContent(target.settings(database))).toEqual(await readComparableContent(server.settings('bitnami_keycloak')));
  });
});
