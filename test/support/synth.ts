/**
 * Synthesis helpers for the platform tests: every (shape, flavor, database flavor) variant
 * in-process, the real `main.ts` in a child process (as `cdk8s synth` runs it), directory
 * listings, and a walk over every pod spec in a set of manifests.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Testing } from 'cdk8s';
import { parseAllDocuments } from 'yaml';
import type { GitOpsFlavor } from '../../lib/gitops.js';
import { KeycloakPlatform } from '../../lib/keycloak-platform.js';
import type { LifecycleShape, PlatformConfig } from '../../lib/platform-config.js';
import type { PostgresHaFlavorName } from '../../lib/postgres-ha.js';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** One way the platform can be synthesized. */
export interface PlatformVariant {
  readonly shape: LifecycleShape;
  readonly flavor: GitOpsFlavor;
  /** Only meaningful for v2. */
  readonly database: PostgresHaFlavorName;
}

/** Every variant: v1 once per flavor, v2 per flavor and HA database flavor. */
export const PLATFORM_VARIANTS: readonly PlatformVariant[] = [
  { shape: 'v1', flavor: 'helm', database: 'repmgr' },
  { shape: 'v1', flavor: 'argocd', database: 'repmgr' },
  { shape: 'v2', flavor: 'helm', database: 'repmgr' },
  { shape: 'v2', flavor: 'argocd', database: 'repmgr' },
  { shape: 'v2', flavor: 'helm', database: 'cloudnative-pg' },
  { shape: 'v2', flavor: 'argocd', database: 'cloudnative-pg' },
];

export function variantName(variant: PlatformVariant): string {
  return variant.shape === 'v1' ? `v1/${variant.flavor}` : `v2/${variant.flavor}/${variant.database}`;
}

/** A synthesized manifest as plain JSON. */
export type Manifest = Record<string, any>;

/** Builds the platform chart for a variant (plus any config overrides) in a throwaway app. */
export function buildPlatform(variant: PlatformVariant, config: PlatformConfig = {}): KeycloakPlatform {
  return new KeycloakPlatform(Testing.app(), 'keycloak', {
    ...config,
    shape: variant.shape,
    flavor: variant.flavor,
    database: { ...config.database, flavor: variant.database },
  });
}

/** The manifests of a variant, as `Testing.synth` returns them. */
export function synthPlatform(variant: PlatformVariant, config: PlatformConfig = {}): Manifest[] {
  return Testing.synth(buildPlatform(variant, config));
}

/**
 * Runs `main.ts` exactly as `cdk8s synth` does (`tsx main.ts` with `CDK8S_OUTDIR`), into `outdir`.
 * Throws with the child's output when it fails.
 */
export function runMainInto(outdir: string): void {
  const tsx = join(projectRoot, 'node_modules', '.bin', 'tsx');
  const result = spawnSync(tsx, ['main.ts'], {
    cwd: projectRoot,
    encoding: 'utf8',
    env: { ...process.env, CDK8S_OUTDIR: outdir },
  });
  if (result.error) throw new Error(`could not run ${tsx} main.ts`, { cause: result.error });
  if (result.status !== 0) {
    throw new Error(`tsx main.ts exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  }
}

/** Every file below `dir`, as sorted paths relative to it. */
export function listFiles(dir: string): string[] {
  const files: string[] = [];
  const walk = (current: string) => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) walk(path);
      else files.push(relative(dir, path));
    }
  };
  walk(dir);
  return files.sort();
}

/** The YAML documents of a file. */
export function readManifests(path: string): Manifest[] {
  return parseAllDocuments(readFileSync(path, 'utf8'))
    .map((document) => document.toJS() as Manifest | null)
    .filter((manifest): manifest is Manifest => manifest !== null);
}

/** Where each workload kind keeps its pod spec. */
const POD_SPEC_PATHS: Record<string, readonly string[]> = {
  Pod: ['spec'],
  Job: ['spec', 'template', 'spec'],
  StatefulSet: ['spec', 'template', 'spec'],
  Deployment: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  ReplicaSet: ['spec', 'template', 'spec'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
};

/** Every pod spec in `manifests`, labelled `Kind/name`. Fails on a workload without one. */
export function podSpecsOf(manifests: readonly Manifest[]): Array<{ owner: string; podSpec: Manifest }> {
  const found: Array<{ owner: string; podSpec: Manifest }> = [];
  for (const manifest of manifests) {
    const path = POD_SPEC_PATHS[manifest.kind];
    if (!path) continue;
    const podSpec = path.reduce<any>((node, key) => node?.[key], manifest);
    const owner = `${manifest.kind}/${manifest.metadata?.name}`;
    if (!podSpec) throw new Error(`${owner} has no pod spec at ${path.join('.')}`);
    found.push({ owner, podSpec });
  }
  return found;
}
