/**
 * Which workloads backup-phase quiesces: the configured ones, or, where a configured name does not
 * exist and MIGRATION_WORKLOAD_DISCOVERY says how, the ONE workload of that kind carrying its
 * labels (a Bitnami release under `fullnameOverride` / `nameOverride`).
 *
 * | configured name | state                               | quiesced                                     |
 * |-----------------|-------------------------------------|----------------------------------------------|
 * | exists          | —                                   | it                                           |
 * | missing         | counts on record (resumed)          | nothing (replaced for the new release)       |
 * | missing         | `adoptedWorkloads` names one        | that one while it exists (and the configured |
 * |                 |                                     | one once an earlier attempt created it)      |
 * | missing         | —, one match by label               | the match: recorded, its Secrets copied      |
 * | missing         | —, no match                         | none: exit 64 naming name and labels         |
 * | missing         | —, two matches                      | none: exit 78 naming them                    |
 *
 * The adoption is recorded in the state and its Secrets copied BEFORE anything is scaled, so a
 * resumed run quiesces the same workload and nothing of the old release is lost.
 */
import { ExitCode } from '../../../lib/contract.js';
import { RunnerError } from '../errors.js';
import { copySecretReadingKey, listWorkloadsByLabel, readWorkloadPodSpec, type WorkloadDiscoverySpec } from '../kube/workload-discovery.js';
import { parseWorkloadKey, readReplicas, workloadKey, WorkloadNotFoundError, type WorkloadRef } from '../kube/workloads.js';
import { runnerLabels } from '../kube/state-store.js';
import type { AdoptedWorkload } from '../state.js';
import { updateState, type HookContext } from './context.js';

/** Labels of the Secret copies the runner creates. */
export const SECRET_COPY_COMPONENT = 'migration-secret-copy';

async function exists(ctx: HookContext, ref: WorkloadRef): Promise<boolean> {
  try {
    await readReplicas(ctx.kube, ref);
    return true;
  } catch (error) {
    if (error instanceof WorkloadNotFoundError) return false;
    throw error;
  }
}

/** The workloads to quiesce now (see the module comment). */
export async function workloadsToQuiesce(ctx: HookContext): Promise<WorkloadRef[]> {
  const recorded = ctx.state?.originalReplicas ?? {};
  const present: WorkloadRef[] = [];
  for (const ref of ctx.config.workloads) {
    const key = workloadKey(ref);
    const spec = ctx.config.workloadDiscovery[key];
    const adopted = ctx.state?.adoptedWorkloads?.[key];
    const candidates = adopted ? [parseWorkloadKey(adopted.workload), ref] : [ref];
    let found = false;
    for (const candidate of candidates) {
      if (!(await exists(ctx, candidate))) continue;
      // An adopted one still there: its copies again (idempotent; a run may have died in between).
      if (candidate !== ref && spec) await copySecrets(ctx, candidate, spec);
      present.push(candidate);
      found = true;
    }
    if (found || adopted) continue;
    if (recorded[key] !== undefined) {
      ctx.log.info('a workload quiesced earlier by this migration no longer exists (replaced for the new release); nothing to stop', { workload: key });
      continue;
    }
    // A first run: without discovery, the miss is an error naming the configured workload.
    if (!spec) await readReplicas(ctx.kube, ref);
    present.push(await adoptByLabels(ctx, ref, spec!));
  }
  return present;
}

async function adoptByLabels(ctx: HookContext, ref: WorkloadRef, spec: WorkloadDiscoverySpec): Promise<WorkloadRef> {
  const key = workloadKey(ref);
  const kind = ref.kind === 'statefulset' ? 'StatefulSet' : 'Deployment';
  const matches = await listWorkloadsByLabel(ctx.kube, ref.kind, spec.selector);
  if (matches.length === 0) {
    throw new WorkloadNotFoundError(ref, `no ${kind} ${ref.name} exists in namespace ${ctx.kube.namespace}, and none carries the labels ${spec.selector}`, {
      exitCode: ExitCode.usage,
      hint: `the workload to quiesce (Keycloak) was found neither by name nor by labels: check the release name and namespace the chart was synthesized for`,
      cause: undefined,
    });
  }
  if (matches.length > 1) {
    throw new RunnerError(
      `no ${kind} ${ref.name} exists, and ${matches.length} ${kind}s carry the labels ${spec.selector}: ${matches.map((match) => match.ref.name).join(', ')}; the runner quiesces only one it is sure of`,
      {
        exitCode: ExitCode.config,
        hint: `leave exactly one ${kind} with those labels (the Keycloak whose database is migrated), e.g. delete a stale one; nothing was changed`,
      },
    );
  }
  const found = matches[0]!;
  ctx.lock?.assertHeld();
  const secretCopies = await copySecrets(ctx, found.ref, spec);
  const adopted: AdoptedWorkload = { workload: workloadKey(found.ref), selector: spec.selector, secretCopies };
  await updateState(ctx, (current) => ({ ...current, adoptedWorkloads: { ...current.adoptedWorkloads, [key]: adopted } }));
  ctx.log.info('quiescing the workload found by its labels: the configured one does not exist', { configured: key, found: adopted.workload, selector: spec.selector });
  return found.ref;
}

/** Copies each Secret of `spec.secretCopies` from the workload's pod spec (idempotent). */
async function copySecrets(ctx: HookContext, ref: WorkloadRef, spec: WorkloadDiscoverySpec): Promise<string[]> {
  const copies = spec.secretCopies ?? [];
  if (copies.length === 0) return [];
  const podSpec = await readWorkloadPodSpec(ctx.kube, ref);
  const done: string[] = [];
  for (const copy of copies) {
    const outcome = await copySecretReadingKey(ctx.kube, ref, podSpec, copy, runnerLabels(SECRET_COPY_COMPONENT));
    done.push(outcome.status === 'copied' ? `Secret/${outcome.from} → Secret/${copy.to}` : `Secret/${copy.to} (existed)`);
  }
  return done;
}
