/**
 * `npm run image`: builds the runner image from runner/Dockerfile with podman and runc, without a
 * Docker daemon or an image registry, into podman's default storage, so that `podman run
 * <reference>` works right after. The last line printed is `<reference> <size>`.
 *
 * 1. The bundle (runner/build.mjs): the image's only input from this repository.
 * 2. The Dockerfile's default base, docker.io/library/debian:trixie-slim, when podman does not
 *    have it: `mmdebstrap --variant=minbase trixie` from Debian's own packages (what the images on
 *    Docker Hub are made from), imported under that name. Made once; kept in podman's storage.
 * 3. The image, tagged `localhost/keycloak-pg-migration-runner:<version>-<inputs>` where <inputs>
 *    is a digest of the Dockerfile, its ignore file, the bundle and the base image's id: unchanged
 *    inputs find their image and build nothing. Older tags of this repository beyond the newest
 *    three are removed (each is ~150 MB).
 *
 * The rehearsal and test/runner-image.test.ts call {@link ensureRunnerImage} themselves, so a run
 * right after `npm ci` builds what it needs, or stops at once naming what is missing.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPOSITORY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RUNNER_DIR = join(REPOSITORY_ROOT, 'runner');
const DOCKERFILE = join(RUNNER_DIR, 'Dockerfile');
const BUNDLE = join(RUNNER_DIR, 'dist', 'runner.mjs');
const BUNDLE_CHUNKS = join(RUNNER_DIR, 'dist', 'chunks');
/** The repository part of the local image's reference. */
export const LOCAL_IMAGE_REPOSITORY = 'localhost/keycloak-pg-migration-runner';
/** runner/Dockerfile's `ARG BASE_IMAGE` default: what a base made by mmdebstrap stands in for. */
export const DEFAULT_BASE_IMAGE = 'docker.io/library/debian:trixie-slim';
const DEBIAN_MIRROR = 'http://deb.debian.org/debian';
/**
 * Digest-tagged images kept after a build (newest first). Several checkouts of the repository
 * (git worktrees) on one machine each build their own digest while their rehearsals run, so a
 * few are kept; RUNNER_IMAGE_KEEP raises it.
 */
const KEPT_TAGS = Math.max(1, Number.parseInt(process.env.RUNNER_IMAGE_KEEP ?? '', 10) || 8);

export interface RunnerImage {
  /** `localhost/keycloak-pg-migration-runner:<version>-<inputs digest>` */
  readonly reference: string;
  /** Uncompressed size in bytes, as podman reports it. */
  readonly sizeBytes: number;
  /** False when an image of the same inputs already existed. */
  readonly built: boolean;
}

/** A tool this needs is missing or failed; the message is one line saying what and the fix. */
export class RunnerImageError extends Error {
  override readonly name = 'RunnerImageError';
}

export interface EnsureRunnerImageOptions {
  /** Progress lines. @default - to stderr */
  readonly log?: (line: string) => void;
}

/** Builds (or finds) the runner image of the current sources; see the module comment. */
export function ensureRunnerImage(options: EnsureRunnerImageOptions = {}): RunnerImage {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  requireTool('podman', ['--version'], 'podman is missing: run `bash scripts/setup-test-machine.sh` (installs podman, runc, mmdebstrap, uidmap)');
  run(process.execPath, [join(RUNNER_DIR, 'build.mjs')], 'building the runner bundle (node runner/build.mjs)', log);
  const baseId = ensureBaseImage(log);
  const reference = `${LOCAL_IMAGE_REPOSITORY}:${packageVersion()}-${inputsDigest(baseId)}`;
  let built = false;
  if (!imageExists(reference)) {
    log(`building ${reference} (podman build, runner/Dockerfile)`);
    const started = Date.now();
    run('podman', [...buildArguments(reference)], `podman build of ${reference}`, log, 'inherit');
    log(`built ${reference} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    built = true;
    removeOlderTags(reference, log);
  }
  const sizeBytes = Number(podman(['image', 'inspect', '--format', '{{.Size}}', reference]).trim());
  return { reference, sizeBytes, built };
}

/** `153 MB`: podman's and Docker's decimal megabytes. */
export function formatImageSize(bytes: number): string {
  return `${Math.round(bytes / 1e6)} MB`;
}

function buildArguments(reference: string): string[] {
  const args = ['build', '--network=host', '--ulimit', 'nofile=4096:4096', '--ulimit', 'nproc=4096:4096', '-f', DOCKERFILE, '-t', reference];
  // A machine behind a TLS-intercepting proxy trusts its CA through these variables; the build's
  // Node download needs the same trust (a build secret: it never lands in a layer).
  const caBundle = [process.env.CURL_CA_BUNDLE, process.env.SSL_CERT_FILE, process.env.NODE_EXTRA_CA_CERTS].find((file) => file && existsSync(file));
  if (caBundle) args.push('--secret', `id=download-ca-bundle,src=${caBundle}`);
  return [...args, RUNNER_DIR];
}

/** The base image's id, making it with mmdebstrap first when podman does not have it. */
function ensureBaseImage(log: (line: string) => void): string {
  if (!imageExists(DEFAULT_BASE_IMAGE)) {
    requireTool('mmdebstrap', ['--version'], 'mmdebstrap is missing: run `bash scripts/setup-test-machine.sh`');
    const work = mkdtempSync(join(tmpdir(), 'runner-base-'));
    try {
      const tarball = join(work, 'trixie-minbase.tar');
      log(`making ${DEFAULT_BASE_IMAGE} from Debian's packages (mmdebstrap --variant=minbase trixie, ~40 s)`);
      run('mmdebstrap', ['--quiet', '--variant=minbase', 'trixie', tarball, DEBIAN_MIRROR], 'mmdebstrap of Debian trixie', log);
      run('podman', ['import', '--quiet', tarball, DEFAULT_BASE_IMAGE], `podman import of ${DEFAULT_BASE_IMAGE}`, log);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  return podman(['image', 'inspect', '--format', '{{.Id}}', DEFAULT_BASE_IMAGE]).trim();
}

/** What the image is made of: a change to any of these is a new image. */
function inputsDigest(baseImageId: string): string {
  if (!existsSync(BUNDLE)) throw new RunnerImageError(`${BUNDLE} is missing after the bundle build`);
  const hash = createHash('sha256');
  // The chunks too, although runner.mjs imports them by names that carry their hashes.
  const chunks = readdirSync(BUNDLE_CHUNKS).sort().map((name) => join(BUNDLE_CHUNKS, name));
  for (const file of [DOCKERFILE, join(RUNNER_DIR, '.dockerignore'), BUNDLE, ...chunks]) hash.update(readFileSync(file)).update('\0');
  return hash.update(baseImageId).digest('hex').slice(0, 12);
}

function removeOlderTags(keep: string, log: (line: string) => void): void {
  const listed = podman(['images', '--format', '{{.Repository}}:{{.Tag}} {{.CreatedAt}}', '--filter', `reference=${LOCAL_IMAGE_REPOSITORY}`]);
  const references = listed
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ')[0]!)
    .filter((reference) => reference !== keep);
  // `podman images` lists newest first.
  for (const stale of references.slice(KEPT_TAGS - 1)) {
    const removed = spawnSync('podman', ['rmi', stale], { encoding: 'utf8' });
    if (removed.status === 0) log(`removed the older image ${stale}`);
  }
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(join(REPOSITORY_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

function imageExists(reference: string): boolean {
  return spawnSync('podman', ['image', 'exists', reference]).status === 0;
}

function podman(args: string[]): string {
  return execFileSync('podman', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function requireTool(program: string, args: string[], missing: string): void {
  const probe = spawnSync(program, args, { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) throw new RunnerImageError(missing);
}

/** Runs a step; on failure the error names the step and ends with the tool's last output. */
function run(program: string, args: string[], what: string, log: (line: string) => void, stdio: 'pipe' | 'inherit' = 'pipe'): void {
  const result = spawnSync(program, args, { encoding: 'utf8', stdio: ['ignore', stdio === 'inherit' ? process.stderr : 'pipe', stdio === 'inherit' ? process.stderr : 'pipe'] });
  if (result.status === 0) {
    const said = (result.stdout ?? '').trim();
    if (said && stdio === 'pipe' && program === process.execPath) log(said);
    return;
  }
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-5).join(' | ');
  throw new RunnerImageError(`${what} failed (${result.error?.message ?? `exit ${result.status}`})${output ? `: ${output}` : ''}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const image = ensureRunnerImage();
    if (!image.built) process.stderr.write(`${image.reference} is up to date (its inputs are unchanged)\n`);
    process.stdout.write(`${image.reference} ${formatImageSize(image.sizeBytes)}\n`);
  } catch (error) {
    process.stderr.write(`npm run image: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
