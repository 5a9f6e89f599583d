/**
 * Hook and sync-wave annotations for the two ways the same constructs are deployed: Helm hooks
 * (`helm.sh/hook*`) or Argo CD hooks and waves (`argocd.argoproj.io/*`).
 *
 * The constructs say *what* an object is for (a logical {@link HookPhase} and an order within it);
 * this module alone decides how each tool spells that, following
 * `shared/reference/hooks-and-sync-waves.md`:
 *
 * | phase         | Helm `helm.sh/hook`                                   | Argo CD `argocd.argoproj.io/hook` |
 * |---------------|-------------------------------------------------------|-----------------------------------|
 * | `rbac`        | pre-install,pre-upgrade,post-install,post-upgrade     | PreSync                           |
 * | `pre`         | pre-install,pre-upgrade                               | PreSync                           |
 * | `sync`        | post-install,post-upgrade                             | Sync (at a wave)                  |
 * | `sync-failed` | – (Helm has no such hook: an error)                   | SyncFail                          |
 *
 * Delete policies always name before-hook-creation explicitly: an explicit list without it
 * makes the next run fail with "already exists".
 * - Helm: Jobs `before-hook-creation,hook-succeeded` (failed Jobs kept for their logs). RBAC only
 *   `before-hook-creation`: up to 3.18 Helm deleted hook-succeeded resources only after every hook
 *   of the event succeeded, but from 3.19 and in Helm 4, when a hook fails (a Job past
 *   `--timeout`), the hooks of the event that already succeeded are deleted — RBAC included, while
 *   the timed-out Job still runs and needs it (test/fake-kube-real-helm.test.ts shows it with the
 *   real helm 4). Kept, the RBAC is replaced by the next upgrade's before-hook-creation.
 * - Argo CD: Jobs `BeforeHookCreation,HookSucceeded` (failed Jobs kept for their logs). RBAC only
 *   `BeforeHookCreation`: it is created in PreSync but must still exist for the Sync backup and
 *   restore hooks and the SyncFail hook, which run later in the same sync.
 */
import { ApiObject } from 'cdk8s';
import type { IConstruct } from 'constructs';
import { parseArgoSyncOptions } from './contract.js';

/** Which tool applies the synthesized manifests. */
export type GitOpsFlavor = 'helm' | 'argocd';

/** Every {@link GitOpsFlavor}, for validation and for tests that cover both. */
export const GITOPS_FLAVORS: readonly GitOpsFlavor[] = ['helm', 'argocd'];

/**
 * The logical moment a hook runs.
 * - `rbac`: the ServiceAccount, Role and bindings every hook Job uses (before any of them).
 * - `pre`: before the chart's ordinary resources are applied (Helm: the backup side of a migration).
 * - `sync`: among the ordinary resources — Argo CD a Sync hook at a wave (the backup after the new
 *   database's wave, the restore before the workloads'); Helm after all of them (post-install,
 *   post-upgrade: the restore).
 * - `sync-failed`: when an Argo CD sync failed (there is no Helm equivalent).
 */
export type HookPhase = 'rbac' | 'pre' | 'sync' | 'sync-failed';

/** Annotation keys Helm reads. */
export const HelmAnnotation = {
  hook: 'helm.sh/hook',
  weight: 'helm.sh/hook-weight',
  deletePolicy: 'helm.sh/hook-delete-policy',
} as const;

/** Annotation keys Argo CD reads. */
export const ArgoAnnotation = {
  hook: 'argocd.argoproj.io/hook',
  syncWave: 'argocd.argoproj.io/sync-wave',
  deletePolicy: 'argocd.argoproj.io/hook-delete-policy',
  syncOptions: 'argocd.argoproj.io/sync-options',
} as const;

/** Helm hook events per phase. */
export const HELM_HOOK_EVENTS: Readonly<Record<Exclude<HookPhase, 'sync-failed'>, string>> = {
  rbac: 'pre-install,pre-upgrade,post-install,post-upgrade',
  pre: 'pre-install,pre-upgrade',
  sync: 'post-install,post-upgrade',
};

/** Argo CD hook type per phase. */
export const ARGO_HOOK_TYPES: Readonly<Record<HookPhase, string>> = {
  rbac: 'PreSync',
  pre: 'PreSync',
  sync: 'Sync',
  'sync-failed': 'SyncFail',
};

/** Where a hook object sits. */
export interface HookPlacement {
  /** The logical phase. */
  readonly phase: HookPhase;
  /**
   * Order within the phase: Helm `hook-weight`, Argo CD `sync-wave`. Lower runs first; RBAC must
   * be strictly lower than the Jobs that use it (equal weights sort by kind and name, not intent).
   */
  readonly order: number;
  /**
   * `job` for a run-to-completion Job (deleted only once it succeeded, kept when it failed);
   * `support` for what the Jobs need (ServiceAccount, Role, bindings).
   */
  readonly role: 'job' | 'support';
}

/** Checks a flavor read from configuration; the error names the field and the accepted values. */
export function assertGitOpsFlavor(value: unknown, field = 'flavor'): GitOpsFlavor {
  if (typeof value === 'string' && (GITOPS_FLAVORS as readonly string[]).includes(value)) {
    return value as GitOpsFlavor;
  }
  throw new Error(
    `'${field}' must be one of ${GITOPS_FLAVORS.map((f) => `'${f}'`).join(', ')}, got ${JSON.stringify(value)}: ` +
      `use 'helm' for a chart installed with helm, 'argocd' for plain manifests synced by Argo CD`,
  );
}

/** The annotations that make an object a hook of the given placement, spelled for the flavor. */
export function hookAnnotations(flavor: GitOpsFlavor, placement: HookPlacement): Record<string, string> {
  assertGitOpsFlavor(flavor);
  assertOrder(placement.order, `hook order of phase '${placement.phase}'`);
  if (flavor === 'helm') {
    if (placement.phase === 'sync-failed') {
      throw new Error(
        `hook phase 'sync-failed' exists only for Argo CD (SyncFail); Helm has no such hook: ` +
          `synthesize the failure recorder only when flavor is 'argocd'`,
      );
    }
    return {
      [HelmAnnotation.hook]: HELM_HOOK_EVENTS[placement.phase],
      [HelmAnnotation.weight]: String(placement.order),
      [HelmAnnotation.deletePolicy]: placement.role === 'job' ? 'before-hook-creation,hook-succeeded' : 'before-hook-creation',
    };
  }
  return {
    [ArgoAnnotation.hook]: ARGO_HOOK_TYPES[placement.phase],
    [ArgoAnnotation.syncWave]: String(placement.order),
    [ArgoAnnotation.deletePolicy]:
      placement.role === 'job' ? 'BeforeHookCreation,HookSucceeded' : 'BeforeHookCreation',
  };
}

/** Marks every ApiObject in `scope` (itself and all descendants) as a hook of `placement`. */
export function markAsHook(scope: IConstruct, flavor: GitOpsFlavor, placement: HookPlacement): void {
  const annotations = hookAnnotations(flavor, placement);
  for (const apiObject of apiObjectsOf(scope)) {
    for (const [key, value] of Object.entries(annotations)) apiObject.metadata.addAnnotation(key, value);
  }
}

/**
 * Puts `argocd.argoproj.io/sync-wave` on every ordinary (non-hook) ApiObject in `scope`, so Argo CD
 * applies it in that wave and waits for it to be healthy before the next. Helm has no waves
 * (ordering is hooks only): with flavor `helm` this adds nothing.
 */
export function setSyncWave(scope: IConstruct, flavor: GitOpsFlavor, wave: number): void {
  assertGitOpsFlavor(flavor);
  assertOrder(wave, 'sync wave');
  if (flavor !== 'argocd') return;
  for (const apiObject of apiObjectsOf(scope)) {
    const annotations: Record<string, string> = apiObject.metadata.toJson().annotations ?? {};
    if (annotations[ArgoAnnotation.hook] !== undefined) continue;
    apiObject.metadata.addAnnotation(ArgoAnnotation.syncWave, String(wave));
  }
}

/**
 * Puts `argocd.argoproj.io/sync-options: PruneLast=true` on every ordinary ApiObject in `scope`:
 * when a later revision drops them from Git, Argo CD prunes them after the Sync phase's last wave
 * instead of at the start of their own (gitops-engine reads the option from the live object:
 * `pkg/sync/sync_context.go`). For a database that a later revision migrates away from, that keeps
 * it running until the migration's backup and the new workloads' wave are done. Helm: nothing.
 */
export function setPruneLast(scope: IConstruct, flavor: GitOpsFlavor): void {
  assertGitOpsFlavor(flavor);
  if (flavor !== 'argocd') return;
  for (const apiObject of apiObjectsOf(scope)) {
    const annotations: Record<string, string> = apiObject.metadata.toJson().annotations ?? {};
    if (annotations[ArgoAnnotation.hook] !== undefined) continue;
    const options = parseArgoSyncOptions(annotations[ArgoAnnotation.syncOptions]);
    if (options.includes('PruneLast=true')) continue;
    apiObject.metadata.addAnnotation(ArgoAnnotation.syncOptions, [...options, 'PruneLast=true'].join(','));
  }
}

/** What {@link readHookPlacement} finds on a synthesized manifest. */
export interface ReadHookPlacement {
  readonly flavor: GitOpsFlavor;
  /** Helm events or Argo CD hook types, as written. */
  readonly hooks: readonly string[];
  /** Helm weight or Argo CD wave; 0 (both tools' default) when absent. */
  readonly order: number;
  readonly deletePolicies: readonly string[];
}

/**
 * Reads the hook annotations of a synthesized manifest (for tests and tooling), or `undefined`
 * when the object is an ordinary resource.
 */
export function readHookPlacement(annotations: Record<string, string> | undefined): ReadHookPlacement | undefined {
  if (!annotations) return undefined;
  const split = (value: string | undefined) => (value ? value.split(',').map((part) => part.trim()) : []);
  if (annotations[ArgoAnnotation.hook] !== undefined) {
    return {
      flavor: 'argocd',
      hooks: split(annotations[ArgoAnnotation.hook]),
      order: Number(annotations[ArgoAnnotation.syncWave] ?? '0'),
      deletePolicies: split(annotations[ArgoAnnotation.deletePolicy]),
    };
  }
  if (annotations[HelmAnnotation.hook] !== undefined) {
    return {
      flavor: 'helm',
      hooks: split(annotations[HelmAnnotation.hook]),
      order: Number(annotations[HelmAnnotation.weight] ?? '0'),
      deletePolicies: split(annotations[HelmAnnotation.deletePolicy]),
    };
  }
  return undefined;
}

function apiObjectsOf(scope: IConstruct): ApiObject[] {
  return scope.node.findAll().filter((child): child is ApiObject => ApiObject.isApiObject(child));
}

function assertOrder(value: number, what: string): void {
  // Both tools parse these as integers; "1.5" would be rejected by Helm and Argo CD alike.
  if (!Number.isSafeInteger(value)) {
    throw new Error(`${what} must be an integer (Helm hook-weight / Argo CD sync-wave), got ${value}`);
  }
}
