/**
 * The fault matrix as data: each {@link FaultCase} says what goes wrong during the first v2
 * deployment (a manifest change, a runtime fault, a runner killed at a point), what must be true
 * after that attempt, and what the operator does before deploying the unchanged v2 again — after
 * which every case must converge to the fully checked migration of scenario.ts.
 */
import { Env, ExitCode, Phase } from '../lib/contract.js';
import type { PlatformConfig } from '../lib/platform-config.js';

import type { DatabaseFingerprint } from './checks.js';
import type { Rehearsal, SynthesizedShape } from './harness.js';
import type { LifecycleResult } from './lifecycle.js';
import type { KubeObject } from './manifests.js';
import { countRows, legacyConnection, NAMES, readState, type Tool } from './scenario.js';

export interface FaultContext {
  readonly rehearsal: Rehearsal;
  readonly tool: Tool;
  readonly legacy: DatabaseFingerprint;
  readonly v1: SynthesizedShape;
}

export interface FaultCase {
  readonly name: string;
  readonly tools: readonly Tool[];
  /** Platform configuration of the first v2 attempt (the retry uses it too unless `fixConfig`). */
  readonly v2Config?: PlatformConfig;
  /** Manifest change for the first attempt only (the operator's retry deploys the plain v2). */
  readonly transform?: (object: KubeObject) => KubeObject;
  /** Manifest change for every attempt (e.g. a short lock TTL so that a killed holder expires fast). */
  readonly always?: (object: KubeObject) => KubeObject;
  /** Armed before the first attempt. */
  readonly arm?: (context: FaultContext) => void | Promise<void>;
  /** How the first attempt must end. */
  readonly firstAttempt: 'fails' | 'succeeds';
  /** Checks after the first attempt. */
  readonly afterFirst?: (context: FaultContext, result: LifecycleResult) => void | Promise<void>;
  /** The operator's fix before the retry (nothing when the first attempt succeeds). */
  readonly fix?: (context: FaultContext) => void | Promise<void>;
  /** Platform configuration of the retry, when the fix is a configuration change. */
  readonly fixConfig?: PlatformConfig;
  /** Seed ~24 MiB more legacy data, so that dump and restore last long enough to be interrupted. */
  readonly bulk?: boolean;
}

// ---- manifest transforms -------------------------------------------------------------------

type Container = { name: string; env?: { name: string; value?: string }[] };
type JobSpec = { activeDeadlineSeconds?: number; backoffLimit?: number; template: { spec: { containers: Container[] } } };

/** Jobs whose name ends in a suffix ('' = all), or those a predicate picks. */
type JobSelector = string | ((job: KubeObject) => boolean);

function selects(selector: JobSelector, object: KubeObject): boolean {
  if (object.kind !== 'Job') return false;
  return typeof selector === 'string' ? object.metadata.name.endsWith(selector) : selector(object);
}

/**
 * The Job that restores: the restore Job, or under Argo CD (MIGRATION_RESTORE_IN_BACKUP_JOB, the
 * default) the backup Job, which runs restore-phase after backup-phase and leaves no restore Job.
 */
export function restoresIn(job: KubeObject): boolean {
  if (job.metadata.name.endsWith('-restore')) return true;
  const env = (job.spec as JobSpec).template.spec.containers[0]?.env ?? [];
  return job.metadata.name.endsWith('-backup') && env.some((variable) => variable.name === Env.restoreInBackupJob && variable.value === 'true');
}

/** The name suffix of the Job that restores with each tool's default configuration (see {@link restoresIn}). */
export function restoringJobSuffix(tool: Tool): '-backup' | '-restore' {
  return tool === 'argocd' ? '-backup' : '-restore';
}

/** Sets an env var on the runner container of the selected Jobs. */
export function jobEnv(jobs: JobSelector, name: string, value: string): (object: KubeObject) => KubeObject {
  return (object) => {
    if (!selects(jobs, object)) return object;
    const copy = structuredClone(object);
    for (const container of (copy.spec as JobSpec).template.spec.containers) {
      const env = (container.env ??= []);
      const existing = env.find((variable) => variable.name === name);
      if (existing) existing.value = value;
      else env.push({ name, value });
    }
    return copy;
  };
}

/** Changes the selected Jobs' spec fields. */
export function jobSpec(jobs: JobSelector, patch: Partial<Pick<JobSpec, 'activeDeadlineSeconds' | 'backoffLimit'>>): (object: KubeObject) => KubeObject {
  return (object) => {
    if (!selects(jobs, object)) return object;
    const copy = structuredClone(object);
    Object.assign(copy.spec as JobSpec, patch);
    return copy;
  };
}

/** Removes `verb` on `resource` from every rule of the migration Role (an RBAC mistake). */
export function withoutPermission(resource: string, verb: string): (object: KubeObject) => KubeObject {
  return (object) => {
    if (object.kind !== 'Role') return object;
    const copy = structuredClone(object);
    const rules = copy.rules as { resources: string[]; verbs: string[] }[];
    for (const rule of rules) if (rule.resources.includes(resource)) rule.verbs = rule.verbs.filter((v) => v !== verb);
    copy.rules = rules.filter((rule) => rule.verbs.length > 0);
    return copy;
  };
}

export function compose(...transforms: ((object: KubeObject) => KubeObject)[]): (object: KubeObject) => KubeObject {
  return (object) => transforms.reduce((current, transform) => transform(current), object);
}

/** Applies an object transform to every object of a synthesized shape (both tools' views). */
export function transformShape(shape: SynthesizedShape, transform: (object: KubeObject) => KubeObject): SynthesizedShape {
  return {
    helm: {
      ...shape.helm,
      resources: shape.helm.resources.map(transform),
      hooks: shape.helm.hooks.map((hook) => ({ ...hook, object: transform(hook.object) })),
    },
    argocd: {
      ...shape.argocd,
      resources: shape.argocd.resources.map((resource) => ({ ...resource, object: transform(resource.object) })),
      hooks: shape.argocd.hooks.map((hook) => ({ ...hook, object: transform(hook.object) })),
    },
  };
}

// ---- shared expectations -------------------------------------------------------------------

/** Nothing was lost: the legacy database still runs with every user row (nothing deleted before the failure). */
export async function expectLegacyIntact(context: FaultContext): Promise<void> {
  const users = await countRows(legacyConnection(context.rehearsal), 'public.user_entity');
  const expected = context.legacy.tables['public.user_entity']?.rows;
  if (users !== expected) throw new Error(`the legacy database holds ${users} users, expected ${expected}`);
}

/** The pod logs of every run of the Job whose name ends in `suffix`, joined. */
export function jobLogs(context: FaultContext, suffix: string): string {
  return jobLogsOf(context.rehearsal, suffix);
}

/** Every pod log of the Jobs whose name ends with `suffix`, in run order. */
export function jobLogsOf(rehearsal: Rehearsal, suffix: string): string {
  return rehearsal.jobs.runs
    .filter((run) => run.jobName.endsWith(suffix))
    .map((run) => rehearsal.jobs.logsOf(run.podName))
    .join('\n');
}

export function exitCodesOf(context: FaultContext, suffix: string): (number | null | undefined)[] {
  return context.rehearsal.jobs.runs.filter((run) => run.jobName.endsWith(suffix)).map((run) => run.exitCode);
}

export { ExitCode, NAMES, Phase, readState };
