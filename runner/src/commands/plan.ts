/**
 * `plan`: what the next run of each hook would do, changing nothing. Reads the state ConfigMap,
 * the backup PVC, the workloads' replica counts and the legacy StatefulSet, and probes the source
 * and the target read-only (versions, sizes, the ready marker); then walks the same decisions the
 * hooks take.
 */
import { DeleteLegacy, Env, Phase, ReadyMarker, RunnerCommand, type PhaseName } from '../../../lib/contract.js';
import { defineCommand } from '../cli.js';
import { hookConfigFromEnv, type HookConfig } from '../config.js';
import { isRunnerError } from '../errors.js';
import { createKubeContext, type KubeContext } from '../kube/client.js';
import { StateStore } from '../kube/state-store.js';
import { listWorkloadsByLabel, readWorkloadPodSpec } from '../kube/workload-discovery.js';
import { parseWorkloadKey, readReplicaCounts, workloadKey, type WorkloadRef } from '../kube/workloads.js';
import { formatBytes } from '../log.js';
import { backupPvcSize, existingBackupPvcSize } from '../phases/backup-volume.js';
import { configWithAdoptedLegacy } from '../phases/adopt-legacy.js';
import {
  decidePrepare,
  probeAdoptedSource,
  probeLegacyDatabase,
  probeSource,
  probeTarget,
  type AdoptionOutcome,
  type LegacyProbe,
  type SourceProbe,
  type TargetProbe,
} from '../phases/decide.js';
import { effectivePhase, hasReached, isTerminal, type MigrationState } from '../state.js';

export interface PlanInput {
  readonly config: HookConfig;
  readonly state: MigrationState | undefined;
  readonly legacy: LegacyProbe;
  readonly target: TargetProbe;
  readonly source: SourceProbe;
  /** What prepare would adopt (no state yet and the configured source absent); undefined: not probed. */
  readonly adoption?: AdoptionOutcome;
  /** Size of the existing backup PVC, undefined when absent. */
  readonly backupPvc: string | undefined;
  /** Current replicas per workload key, or the error reading them. */
  readonly replicas: Readonly<Record<string, number>> | string;
}

interface RemainingStep {
  readonly reaches: PhaseName;
  readonly hook: string;
  readonly text: string;
}

function remainingSteps(input: PlanInput): RemainingStep[] {
  const { config } = input;
  const retain = config.legacyPvcs.length
    ? `set the PVs of ${config.legacyPvcs.join(', ')} to Retain${config.protectVolumes ? '' : ' (skipped: MIGRATION_PROTECT_VOLUMES is not true)'}`
    : 'no legacy PVCs to protect';
  const legacyObjects = [config.legacyStatefulSet ? `statefulset/${config.legacyStatefulSet}` : '', ...config.legacyPvcs.map((pvc) => `pvc/${pvc}`)].filter(Boolean).join(', ') || 'nothing';
  return [
    { reaches: Phase.quiesced, hook: RunnerCommand.backupPhase, text: `record the replicas of ${config.workloads.map((w) => `${w.kind}/${w.name}`).join(', ') || 'no workloads'} and scale them to 0` },
    { reaches: Phase.backedUp, hook: RunnerCommand.backupPhase, text: 'dump the source onto the backup volume' },
    { reaches: Phase.backupVerified, hook: RunnerCommand.backupPhase, text: 'verify the backup (files, sizes, digests, TOC; digests taken again only when resuming after the dump)' },
    {
      reaches: Phase.legacyProtected,
      hook: RunnerCommand.backupPhase,
      text: `${retain}${config.deleteLegacy === DeleteLegacy.afterBackup ? `; delete ${legacyObjects}` : ''}`,
    },
    { reaches: Phase.restoring, hook: RunnerCommand.restorePhase, text: `wait for the target to accept writes, mark it ${ReadyMarker.restoring}` },
    { reaches: Phase.restored, hook: RunnerCommand.restorePhase, text: 'restore the recorded backup' },
    { reaches: Phase.verified, hook: RunnerCommand.restorePhase, text: 'verify the target against the manifest' },
    {
      reaches: Phase.completed,
      hook: RunnerCommand.restorePhase,
      text: `hygiene, mark ${ReadyMarker.ready}, ${config.restoreReplicas ? `scale the workloads back${config.indexesAfterReady ? ', build the plain indexes while they start' : ''}` : 'leave the workloads at 0 for the GitOps tool to scale back'}${config.deleteLegacy === DeleteLegacy.afterRestore ? `, delete ${legacyObjects}` : ''}`,
    },
  ];
}

function describeTarget(target: TargetProbe): string {
  if (target.status === 'absent') return `not reachable (${target.reason})`;
  return target.marker ? `reachable, marker ${target.marker.status} (migration ${target.marker.migrationId})` : 'reachable, no marker';
}

function describeSource(source: SourceProbe): string {
  if (source.status === 'reachable') return `reachable, PostgreSQL ${source.preflight.server.version}, ${formatBytes(source.preflight.databaseBytes)}`;
  if (source.status === 'absent') return `not reachable (${source.reason})`;
  return `answers with an error: ${source.error.oneLine()}`;
}

/** The adopted legacy database: recorded in the state, or what prepare would adopt now. */
function describeAdoption(input: PlanInput): string[] {
  if (input.state?.adoptedLegacy) return [`Adopted legacy database: ${input.state.adoptedLegacy.evidence} (recorded in the state)`];
  if (input.adoption?.status === 'adopted') return [`Adopted legacy database: ${input.adoption.adopted.evidence} (prepare would adopt it)`];
  return [];
}

/** The plan as text (pure, for tests). */
export function formatPlan(input: PlanInput): string {
  const { config, state } = input;
  const lines: string[] = [];
  const inBackupJob = `in the backup Job, after backup-phase (${Env.restoreInBackupJob}=true): `;
  const hook = (name: string, text: string) =>
    lines.push(`${`${name}:`.padEnd(16)}${name === RunnerCommand.restorePhase && config.restoreInBackupJob ? inBackupJob : ''}${text}`);
  lines.push(
    state ? `State: migration ${state.migrationId}, phase ${state.phase}${state.phase === Phase.failed ? ` (resumes from ${effectivePhase(state)})` : ''}` : `State: none (ConfigMap ${config.stateConfigMap} does not exist)`,
    `Source: ${describeSource(input.source)}`,
    `Target: ${describeTarget(input.target)}`,
    `Legacy StatefulSet: ${input.legacy.name ? `${input.legacy.name} ${input.legacy.exists ? 'exists' : 'does not exist'}` : 'none configured'}`,
    ...describeAdoption(input),
    `Backup PVC: ${config.backupPvc} ${input.backupPvc ? `exists (${input.backupPvc})` : 'does not exist'}`,
    `Workloads: ${typeof input.replicas === 'string' ? input.replicas : Object.entries(input.replicas).map(([key, count]) => `${key}=${count}`).join(', ') || 'none'}`,
    '',
  );

  const pvcText = (size: string) => (input.backupPvc ? `keep the backup PVC (${input.backupPvc})` : `create the backup PVC ${config.backupPvc} (${size})`);
  if (state && isTerminal(state)) {
    hook(RunnerCommand.prepare, `nothing to decide (${state.phase}); ${pvcText(backupPvcSize(config, undefined))}`);
    const comparesLegacy = state.phase === Phase.completed && !state.legacyDeleted && state.backup !== undefined && input.legacy.exists;
    hook(
      RunnerCommand.backupPhase,
      !comparesLegacy
        ? 'nothing (exit 0)'
        : config.acceptLegacyChangesOf === state.migrationId
          ? `nothing (exit 0): ${Env.acceptLegacyChangesOf} accepts the legacy database's changes since backup ${state.backup!.dir}`
          : `compare the legacy database (its StatefulSet exists again: a rollback?) with backup ${state.backup!.dir}: unchanged → nothing (exit 0); changed → refuse (exit 65); not comparable → stop (exit 69 while it does not answer, 78 without ${Env.sourcePassword}); until ${Env.acceptLegacyChangesOf}=${state.migrationId} or a new migration`,
    );
    hook(
      RunnerCommand.restorePhase,
      state.phase === Phase.notNeeded && !state.readyMarkerAt ? `write the ready marker into the target (${describeTarget(input.target)})` : 'nothing (exit 0)',
    );
  } else {
    // Only a migration (new or resumed) gets here; `prepareText` is prepare's own part.
    let prepareText: string;
    if (state) {
      prepareText = `resume migration ${state.migrationId}: ensure the Secrets and the backup PVC${hasReached(state, Phase.quiesced) ? '' : ', checksum the source while the workloads still run'}`;
    } else {
      let decision: ReturnType<typeof decidePrepare>;
      try {
        decision = decidePrepare(input.legacy, input.target, input.source, input.adoption);
      } catch (error) {
        hook(RunnerCommand.prepare, `fails: ${isRunnerError(error) ? error.oneLine() : String(error)}`);
        hook(RunnerCommand.backupPhase, 'fails: prepare did not finish');
        hook(RunnerCommand.restorePhase, 'fails: prepare did not finish');
        return finish(lines, input);
      }
      if (decision.kind === 'not-needed') {
        hook(RunnerCommand.prepare, `record NotNeeded: ${decision.reason}; ${pvcText(backupPvcSize(config, undefined))}`);
        hook(RunnerCommand.backupPhase, 'nothing (exit 0)');
        hook(RunnerCommand.restorePhase, decision.targetReady ? 'nothing (the target is already marked ready)' : 'write the ready marker into the target');
        return finish(lines, input);
      }
      let size: string;
      try {
        size = backupPvcSize(config, decision.preflight);
      } catch (error) {
        size = `fails: ${isRunnerError(error) ? error.oneLine() : String(error)}`;
      }
      prepareText = `migrate (${decision.reason}): create the state, ensure ${config.ensureSecrets.length} Secret(s), ${pvcText(size)}, checksum the source while the workloads still run`;
    }
    const steps = remainingSteps(input).filter((step) => !state || !hasReached(state, step.reaches));
    for (const name of [RunnerCommand.prepare, RunnerCommand.backupPhase, RunnerCommand.restorePhase]) {
      // A backup on record is reused only if the legacy database did not change since it (source-freshness.ts).
      const recheck =
        state && hasReached(state, Phase.quiesced) && name === RunnerCommand.backupPhase
          ? [
              'scale the workloads to 0 again (the replicas on record stay)',
              ...(state.backup
                ? [`compare the legacy database's write counters with backup ${state.backup.dir}: unchanged → keep it; changed → supersede it and redo the steps from ${Phase.backedUp}`]
                : []),
            ]
          : state?.backup && name === RunnerCommand.restorePhase
            ? [`refuse (exit 65) if the legacy database changed after backup ${state.backup.dir}`]
            : [];
      const texts = [
        ...(name === RunnerCommand.prepare ? [prepareText] : []),
        ...recheck,
        ...steps.filter((step) => step.hook === name).map((step) => `${step.text} → ${step.reaches}`),
      ];
      hook(name, texts.length ? texts.join('; ') : 'nothing (its steps are done)');
    }
  }
  return finish(lines, input);
}

/** Adds the gate's line and renders. */
function finish(lines: string[], input: PlanInput): string {
  const marker = input.target.status === 'reachable' ? input.target.marker : undefined;
  const gate = marker?.status === ReadyMarker.ready ? 'passes (the target is marked ready)' : `waits (${describeTarget(input.target)})`;
  lines.push(`${`${RunnerCommand.gate}:`.padEnd(16)}${gate}`);
  return `${lines.join('\n')}\n`;
}

/** Gathers what `formatPlan` needs, read-only. */
export async function gatherPlanInput(kube: KubeContext, configured: HookConfig): Promise<PlanInput> {
  const store = new StateStore(kube, { name: configured.stateConfigMap });
  const state = (await store.read())?.state;
  // The phases use the database the state says was adopted; so does the plan.
  const config = state?.adoptedLegacy ? await configWithAdoptedLegacy(kube, configured, state.adoptedLegacy) : configured;
  const [legacy, target, source, backupPvc] = await Promise.all([
    probeLegacyDatabase(kube, config),
    probeTarget(config),
    probeSource(config),
    existingBackupPvcSize(kube, config.backupPvc),
  ]);
  let replicas: PlanInput['replicas'];
  try {
    replicas = await readReplicaCounts(kube, await workloadsForPlan(kube, config, state));
  } catch (error) {
    replicas = `cannot read: ${isRunnerError(error) ? error.message : String(error)}`;
  }
  const adoption = state ? undefined : await probeAdoptedSource(kube, config, legacy, source);
  return { config, state, legacy, target, source, ...(adoption ? { adoption } : {}), backupPvc, replicas };
}

/**
 * The workloads backup-phase would quiesce: those adopted by label (state) in place of the configured
 * ones; before any state, a configured one that does not exist is looked up by its labels, as
 * prepare would (the one match; none or several: the configured name, whose read then says so).
 */
async function workloadsForPlan(kube: KubeContext, config: HookConfig, state: MigrationState | undefined): Promise<WorkloadRef[]> {
  const refs: WorkloadRef[] = [];
  for (const ref of config.workloads) {
    const adopted = state?.adoptedWorkloads?.[workloadKey(ref)];
    const spec = config.workloadDiscovery[workloadKey(ref)];
    if (adopted) refs.push(parseWorkloadKey(adopted.workload));
    else if (!state && spec && (await readWorkloadPodSpec(kube, ref)) === undefined) {
      const matches = await listWorkloadsByLabel(kube, ref.kind, spec.selector);
      refs.push(matches.length === 1 ? matches[0]!.ref : ref);
    } else refs.push(ref);
  }
  return refs;
}

export const planCommand = defineCommand({
  name: RunnerCommand.plan,
  summary: 'Show what the next run of each hook would do, changing nothing',
  description: `
Reads the same environment as the hook Jobs (run it in such a pod, or export the variables).
Only reads: the state ConfigMap, the backup PVC, the workloads' scale, the legacy StatefulSet, and
the source and target databases (version, size, ready marker).`,
  flags: {},
  async run({ env, log, stdout }) {
    const config = hookConfigFromEnv(env);
    const kube = createKubeContext({ env, log });
    stdout.write(formatPlan(await gatherPlanInput(kube, config)));
    return 0;
  },
});
