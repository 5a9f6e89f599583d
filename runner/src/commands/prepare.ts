/**
 * `prepare` (hook: Helm pre-install/pre-upgrade weight 0, Argo CD PreSync wave 0): decide whether
 * anything is to migrate, and if so create the state, ensure the Secrets and the backup PVC, and
 * take the source's checksum pass (phases/early-pass.ts). Keycloak keeps running: the backup Job
 * stops it right before its dump, so the handoff between the two Jobs (a pod start, and under
 * Argo CD the pause between sync waves) is not part of the downtime, and a backup Job that cannot
 * start (its PVC does not bind, its image does not pull) leaves Keycloak serving.
 *
 * Runs on every Argo CD sync: once the migration is Completed or NotNeeded it reads the state,
 * makes sure the backup PVC exists (the next Job mounts it) and exits — two API requests, no
 * database connection.
 */
import { Env, ExitCode, Phase, RunnerCommand } from '../../../lib/contract.js';
import { defineCommand } from '../cli.js';
import { RunnerError } from '../errors.js';
import { ensureSecrets } from '../kube/secrets.js';
import { runnerLabels } from '../kube/state-store.js';
import type { BackupPreflight } from '../pg/backup.js';
import { advance, hasReached, isTerminal, newMigrationState, type MigrationState } from '../state.js';
import { backupPvcSize, ensureBackupVolume, ensureBackupVolumeExists } from '../phases/backup-volume.js';
import {
  beginStep,
  createHookContext,
  describePhase,
  endStep,
  newMigrationId,
  readState,
  runHook,
  useAdoptedLegacy,
  withMigrationLock,
  type HookContext,
} from '../phases/context.js';
import { decidePrepare, probeAdoptedSource, probeLegacyDatabase, probeSource, probeTarget, type PrepareDecision } from '../phases/decide.js';
import { takeEarlyPassBeforeQuiescing } from '../phases/early-pass.js';

export const SECRET_COMPONENT = 'migration-secret';

async function decide(ctx: HookContext): Promise<PrepareDecision> {
  const legacy = await probeLegacyDatabase(ctx.kube, ctx.config);
  const target = await probeTarget(ctx.config);
  // Skip the source when the target already says the data is in place (the source may be gone).
  const targetReady = target.status === 'reachable' && target.marker?.status === 'ready';
  const source = targetReady ? ({ status: 'absent', reason: 'not probed' } as const) : await probeSource(ctx.config);
  const adoption = targetReady ? undefined : await probeAdoptedSource(ctx.kube, ctx.config, legacy, source);
  const decision = decidePrepare(legacy, target, source, adoption);
  ctx.log.info(`decision: ${decision.kind}`, { reason: decision.reason });
  return decision;
}

/** Terminal: only make sure the backup PVC exists for the Job that mounts it next. */
async function finishTerminal(ctx: HookContext, state: MigrationState): Promise<number> {
  await ensureBackupVolumeExists(ctx);
  ctx.log.info(`migration ${state.migrationId} is ${state.phase}: nothing to prepare`, { reason: state.decisionReason });
  return 0;
}

/**
 * The acting path, under the lock: state, Secrets, backup PVC, and the early pass while the
 * workloads still run. Moves no phase: backup-phase quiesces (→ Quiesced) right before its dump.
 */
async function prepareMigration(ctx: HookContext, decision: PrepareDecision | undefined): Promise<number> {
  return withMigrationLock(ctx, async () => {
    const reason = decision?.reason;
    const adopted = decision?.kind === 'migrate' ? decision.adopted : undefined;
    const stored = await ctx.store.ensure(() => ({
      ...newMigrationState(newMigrationId()),
      ...(reason ? { decisionReason: reason } : {}),
      // Recorded with the state, so every later Job (and a re-run) uses the same database.
      ...(adopted ? { adoptedLegacy: adopted } : {}),
    }));
    ctx.state = stored.state;
    await useAdoptedLegacy(ctx);
    // Another runner may have decided while this one waited for the lock.
    if (isTerminal(ctx.state)) return finishTerminal(ctx, ctx.state);
    const started = Date.now();
    await beginStep(ctx, 'prepare');
    const secrets = await ensureSecrets(ctx.kube, ctx.config.ensureSecrets, { labels: runnerLabels(SECRET_COMPONENT) });
    const quiesced = hasReached(ctx.state, Phase.quiesced);
    let preflight: BackupPreflight | undefined = decision?.kind === 'migrate' ? decision.preflight : undefined;
    if (!preflight && !quiesced) {
      // Resuming a migration not yet quiesced (no decision this run): size the volume from the source again.
      const source = await probeSource(ctx.config);
      if (source.status === 'error') throw source.error;
      if (source.status === 'absent') {
        throw new RunnerError(`cannot reach the source database to size the backup volume: ${source.reason}`, {
          exitCode: ExitCode.unavailable,
          hint: `start the legacy database or fix ${Env.sourceHost}; the migration resumes where it stopped`,
        });
      }
      preflight = source.preflight;
    }
    const pvc = await ensureBackupVolume(ctx, backupPvcSize(ctx.config, preflight));
    // While Keycloak still runs: the backup then only proves most tables unchanged in the downtime.
    if (!quiesced) await takeEarlyPassBeforeQuiescing(ctx);
    const state = await endStep(ctx);
    ctx.log.info(`prepared migration ${state.migrationId} (${describePhase(state)}): the backup Job stops the workloads right before its dump`);
    ctx.summary.push({
      step: 'prepare',
      durationMs: Date.now() - started,
      note: `${state.phase}; ${secrets.filter((secret) => secret.created).length} Secret(s) created; PVC ${pvc.name} ${pvc.size}${pvc.created ? ' (created)' : ''}`,
    });
    return 0;
  });
}

export async function runPrepare(ctx: HookContext): Promise<number> {
  return runHook(ctx, async () => {
    const state = await readState(ctx);
    if (state && isTerminal(state)) return finishTerminal(ctx, state);
    if (state) return prepareMigration(ctx, undefined);

    const decision = await decide(ctx);
    if (decision.kind === 'migrate') return prepareMigration(ctx, decision);
    // A fresh install needs the generated Secrets too: the new database and Keycloak read them.
    await ensureSecrets(ctx.kube, ctx.config.ensureSecrets, { labels: runnerLabels(SECRET_COMPONENT) });
    const at = new Date();
    const stored = await ctx.store.ensure(() =>
      advance(newMigrationState(newMigrationId(at), at), Phase.notNeeded, decision.reason, {
        step: 'prepare',
        now: at,
        changes: { decisionReason: decision.reason, ...(decision.targetReady ? { readyMarkerAt: at.toISOString() } : {}) },
      }),
    );
    ctx.state = stored.state;
    // Someone else's state won the create: follow it (it may be a migration in progress).
    if (!isTerminal(stored.state)) return prepareMigration(ctx, undefined);
    return finishTerminal(ctx, stored.state);
  });
}

export const prepareCommand = defineCommand({
  name: RunnerCommand.prepare,
  summary: 'Hook, first pre-phase Job: decide, create the state and the backup PVC, checksum the source while Keycloak runs',
  description: `
Reads the whole migration configuration from the MIGRATION_* and SOURCE_*/TARGET_* variables.
Completed or NotNeeded: makes sure the backup PVC exists and exits 0 (two API requests).
Fresh install (no legacy StatefulSet, source unreachable or its Secret absent), or a target that
already carries the ready marker: records NotNeeded with the reason. Otherwise, holding the Lease:
creates the state ConfigMap, the Secrets and the backup PVC (sized from pg_database_size) and
checksums the source while the workloads still run (kept in the ConfigMap for the backup Job).
The phase stays Pending and nothing is stopped: backup-phase quiesces the workloads right before
its dump.`,
  flags: {},
  async run({ env, log, signal }) {
    return runPrepare(createHookContext(RunnerCommand.prepare, { env, log, signal }));
  },
});
