/**
 * Reads synthesized output the way each tool does, from the files alone:
 * - Helm: the chart is rendered with the real `helm template` binary (so a chart Helm would
 *   reject fails here too), then each document is classified by `helm.sh/hook`,
 *   `helm.sh/hook-weight` and `helm.sh/hook-delete-policy` with Helm's own rules
 *   (pkg/releaseutil/manifest_sorter.go: one unknown event drops the whole resource).
 * - Argo CD: every `*.yaml`/`*.yml`/`*.json` file of a directory, each document classified by
 *   `argocd.argoproj.io/hook`, `sync-wave` and `hook-delete-policy`, with Helm annotations mapped
 *   the way gitops-engine maps them (pkg/sync/hook/helm) when no Argo CD hook is given.
 *
 * This module deliberately does not reuse `lib/gitops.ts`: the rehearsal must read the output as
 * the tools do, not as the library believes it wrote it.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

import { runHelm } from '../test/support/helm.js';

/** A Kubernetes object as found in a manifest. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

/** `kind/name` (namespace-less: the rehearsal deploys one release into one namespace). */
export function objectKey(object: Pick<KubeObject, 'kind' | 'metadata'>): string {
  return `${object.kind}/${object.metadata.name}`;
}

// ---------------------------------------------------------------------------------------------
// Helm

/** Helm's hook events (pkg/release/hook.go); anything else makes Helm skip the resource. */
export const HELM_HOOK_EVENTS = [
  'pre-install',
  'post-install',
  'pre-delete',
  'post-delete',
  'pre-upgrade',
  'post-upgrade',
  'pre-rollback',
  'post-rollback',
  'test',
  'test-success',
] as const;
export type HelmHookEvent = (typeof HELM_HOOK_EVENTS)[number];

export const HELM_DELETE_POLICIES = ['before-hook-creation', 'hook-succeeded', 'hook-failed'] as const;
export type HelmDeletePolicy = (typeof HELM_DELETE_POLICIES)[number];

export interface HelmHook {
  readonly object: KubeObject;
  readonly events: readonly HelmHookEvent[];
  /** `helm.sh/hook-weight` parsed as Helm does (an unparsable weight counts as 0). */
  readonly weight: number;
  /**
   * The delete policies as written; when the annotation is absent Helm applies
   * `before-hook-creation` (pkg/action/hooks.go), which is made explicit here.
   */
  readonly deletePolicies: readonly HelmDeletePolicy[];
}

export interface HelmChartManifests {
  readonly chartDir: string;
  /** Ordinary release resources (applied by install/upgrade, tracked in the release). */
  readonly resources: readonly KubeObject[];
  readonly hooks: readonly HelmHook[];
  /** Resources Helm drops because their hook annotation names an unknown event. */
  readonly skipped: readonly { readonly object: KubeObject; readonly reason: string }[];
}

export interface HelmRenderOptions {
  readonly releaseName: string;
  readonly namespace: string;
}

/** Renders the chart with the real helm binary and classifies every document. */
export function readHelmChart(chartDir: string, options: HelmRenderOptions): HelmChartManifests {
  const result = runHelm(['template', options.releaseName, chartDir, '--namespace', options.namespace]);
  if (result.status !== 0) {
    throw new Error(`helm template ${chartDir} failed (exit ${result.status}): ${result.stderr.trim()}`);
  }
  return classifyHelmObjects(chartDir, parseManifestText(result.stdout, `helm template ${chartDir}`));
}

/** Helm's classification of rendered objects into release resources and hooks. */
export function classifyHelmObjects(chartDir: string, objects: readonly KubeObject[]): HelmChartManifests {
  const resources: KubeObject[] = [];
  const hooks: HelmHook[] = [];
  const skipped: { object: KubeObject; reason: string }[] = [];
  for (const object of objects) {
    const annotations = object.metadata.annotations ?? {};
    const hookValue = annotations['helm.sh/hook'];
    if (hookValue === undefined) {
      resources.push(object);
      continue;
    }
    const events = splitList(hookValue).map((event) => event.toLowerCase());
    const unknown = events.filter((event) => !(HELM_HOOK_EVENTS as readonly string[]).includes(event));
    if (unknown.length > 0 || events.length === 0) {
      skipped.push({ object, reason: `unknown helm.sh/hook event(s) ${JSON.stringify(unknown)} in ${JSON.stringify(hookValue)}` });
      continue;
    }
    const policyValue = annotations['helm.sh/hook-delete-policy'];
    const policies = policyValue === undefined ? ['before-hook-creation'] : splitList(policyValue);
    const weight = Number.parseInt(annotations['helm.sh/hook-weight'] ?? '0', 10);
    hooks.push({
      object,
      events: events as HelmHookEvent[],
      weight: Number.isNaN(weight) ? 0 : weight,
      // Helm ignores policies it does not know; keep only the known ones, as it does.
      deletePolicies: policies.filter((p): p is HelmDeletePolicy => (HELM_DELETE_POLICIES as readonly string[]).includes(p)),
    });
  }
  return { chartDir, resources, hooks, skipped };
}

// ---------------------------------------------------------------------------------------------
// Argo CD

export const ARGO_HOOK_TYPES = ['PreSync', 'Sync', 'PostSync', 'SyncFail', 'Skip', 'PreDelete', 'PostDelete'] as const;
export type ArgoHookType = (typeof ARGO_HOOK_TYPES)[number];
export const ARGO_DELETE_POLICIES = ['BeforeHookCreation', 'HookSucceeded', 'HookFailed'] as const;
export type ArgoDeletePolicy = (typeof ARGO_DELETE_POLICIES)[number];

export interface ArgoHook {
  readonly object: KubeObject;
  /** Hook types that take part in a sync (PreSync, Sync, PostSync, SyncFail). */
  readonly types: readonly ArgoHookType[];
  readonly wave: number;
  readonly deletePolicies: readonly ArgoDeletePolicy[];
}

export interface ArgoResource {
  readonly object: KubeObject;
  readonly wave: number;
}

export interface ArgoManifests {
  readonly dir: string;
  readonly resources: readonly ArgoResource[];
  readonly hooks: readonly ArgoHook[];
  /** Objects Argo CD never applies in a sync (Skip, rollback/test Helm hooks, delete hooks). */
  readonly skipped: readonly { readonly object: KubeObject; readonly reason: string }[];
}

// gitops-engine pkg/sync/hook/helm/type.go and delete_policy.go.
const HELM_TO_ARGO_HOOK: Readonly<Record<string, ArgoHookType | undefined>> = {
  'pre-install': 'PreSync',
  'pre-upgrade': 'PreSync',
  'post-install': 'PostSync',
  'post-upgrade': 'PostSync',
  // pre/post-rollback, test, pre/post-delete: never applied by a sync
};
const HELM_TO_ARGO_DELETE_POLICY: Readonly<Record<string, ArgoDeletePolicy>> = {
  'before-hook-creation': 'BeforeHookCreation',
  'hook-succeeded': 'HookSucceeded',
  'hook-failed': 'HookFailed',
};

/** Reads every manifest file of an Argo CD application directory (recursively, like directory apps). */
export function readArgoManifests(dir: string): ArgoManifests {
  const objects: KubeObject[] = [];
  for (const file of listManifestFiles(dir)) {
    objects.push(...parseManifestText(readFileSync(file, 'utf8'), file));
  }
  return classifyArgoObjects(dir, objects);
}

/** Argo CD's classification (explicit Argo hook wins over Helm's; Helm weight becomes the wave). */
export function classifyArgoObjects(dir: string, objects: readonly KubeObject[]): ArgoManifests {
  const resources: ArgoResource[] = [];
  const hooks: ArgoHook[] = [];
  const skipped: { object: KubeObject; reason: string }[] = [];
  for (const object of objects) {
    const annotations = object.metadata.annotations ?? {};
    const argoHook = annotations['argocd.argoproj.io/hook'];
    const helmHook = annotations['helm.sh/hook'];
    const wave = parseWave(annotations['argocd.argoproj.io/sync-wave'] ?? (argoHook === undefined ? annotations['helm.sh/hook-weight'] : undefined));
    if (argoHook !== undefined) {
      const types = splitList(argoHook).filter((t): t is ArgoHookType => (ARGO_HOOK_TYPES as readonly string[]).includes(t));
      if (types.includes('Skip')) {
        skipped.push({ object, reason: 'argocd.argoproj.io/hook: Skip' });
        continue;
      }
      const syncTypes = types.filter((t) => ['PreSync', 'Sync', 'PostSync', 'SyncFail'].includes(t));
      if (syncTypes.length === 0) {
        skipped.push({ object, reason: `hook ${JSON.stringify(argoHook)} is not run by a sync` });
        continue;
      }
      const policyValue = annotations['argocd.argoproj.io/hook-delete-policy'];
      hooks.push({ object, types: syncTypes, wave, deletePolicies: parseArgoPolicies(policyValue) });
      continue;
    }
    if (helmHook !== undefined) {
      const mapped = [...new Set(splitList(helmHook).map((event) => HELM_TO_ARGO_HOOK[event.toLowerCase()]))].filter(
        (t): t is ArgoHookType => t !== undefined,
      );
      if (mapped.length === 0) {
        skipped.push({ object, reason: `Helm hook ${JSON.stringify(helmHook)} has no Argo CD equivalent` });
        continue;
      }
      const helmPolicies = annotations['helm.sh/hook-delete-policy'];
      const policies =
        annotations['argocd.argoproj.io/hook-delete-policy'] !== undefined
          ? parseArgoPolicies(annotations['argocd.argoproj.io/hook-delete-policy'])
          : helmPolicies === undefined
            ? (['BeforeHookCreation'] as ArgoDeletePolicy[])
            : splitList(helmPolicies)
                .map((p) => HELM_TO_ARGO_DELETE_POLICY[p])
                .filter((p): p is ArgoDeletePolicy => p !== undefined);
      hooks.push({ object, types: mapped, wave, deletePolicies: policies });
      continue;
    }
    resources.push({ object, wave });
  }
  return { dir, resources, hooks, skipped };
}

function parseArgoPolicies(value: string | undefined): ArgoDeletePolicy[] {
  if (value === undefined) return ['BeforeHookCreation'];
  return splitList(value).filter((p): p is ArgoDeletePolicy => (ARGO_DELETE_POLICIES as readonly string[]).includes(p));
}

function parseWave(value: string | undefined): number {
  if (value === undefined) return 0;
  const wave = Number.parseInt(value, 10);
  // Argo CD logs and treats an unparsable wave as 0.
  return Number.isNaN(wave) ? 0 : wave;
}

// ---------------------------------------------------------------------------------------------
// Shared parsing

/** Parses multi-document YAML (or JSON) into objects, skipping empty documents and List kinds' wrapper. */
export function parseManifestText(text: string, source: string): KubeObject[] {
  const objects: KubeObject[] = [];
  for (const document of parseAllDocuments(text)) {
    if (document.errors.length > 0) {
      throw new Error(`${source}: invalid YAML: ${document.errors[0]!.message}`);
    }
    const value = document.toJS() as unknown;
    if (value === null || value === undefined) continue;
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw new Error(`${source}: a document is not a Kubernetes object (got ${Array.isArray(value) ? 'a list' : typeof value})`);
    }
    const candidate = value as Partial<KubeObject> & { items?: unknown[] };
    if (typeof candidate.kind === 'string' && candidate.kind.endsWith('List') && Array.isArray(candidate.items)) {
      objects.push(...(candidate.items as KubeObject[]).map((item) => assertObject(item, source)));
      continue;
    }
    objects.push(assertObject(candidate, source));
  }
  return objects;
}

function assertObject(value: unknown, source: string): KubeObject {
  const object = value as Partial<KubeObject>;
  if (typeof object.apiVersion !== 'string' || typeof object.kind !== 'string' || typeof object.metadata?.name !== 'string') {
    throw new Error(
      `${source}: every object needs apiVersion, kind and metadata.name, got ${JSON.stringify({
        apiVersion: object.apiVersion,
        kind: object.kind,
        name: object.metadata?.name,
      })}`,
    );
  }
  return object as KubeObject;
}

function listManifestFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) files.push(...listManifestFiles(path));
    else if (/\.(ya?ml|json)$/.test(entry)) files.push(path);
  }
  return files;
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
}
