/**
 * `record-failure` (Argo CD SyncFail hook): write the failed sync into the state — phase Failed
 * with the phase reached kept in `resumeFrom`, so the next sync resumes there — and emit a Warning
 * Event on the state ConfigMap. Never fails the hook itself, except when the Kubernetes API cannot
 * be reached (then nothing could be recorded, and the hook's failure says so).
 */
import { ExitCode, RunnerCommand } from '../../../lib/contract.js';
import { defineCommand } from '../cli.js';
import { isRunnerError } from '../errors.js';
import { isKubeApiError } from '../kube/client.js';
import { isTerminal, recordFailure } from '../state.js';
import { createHookContext, readState, updateState, type HookContext } from '../phases/context.js';

export const SYNC_STEP = 'sync';

export async function runRecordFailure(ctx: HookContext): Promise<number> {
  try {
    const state = await readState(ctx);
    if (!state) {
      ctx.log.warn('the sync failed before any migration state existed: nothing to record', { configMap: ctx.config.stateConfigMap });
      return 0;
    }
    const updated = await updateState(ctx, (current) => {
      const previous = current.lastError && current.lastError.step !== SYNC_STEP ? current.lastError : undefined;
      const message = isTerminal(current)
        ? `Argo CD sync failed after the migration was ${current.phase} (not a migration failure)`
        : `Argo CD sync failed during the migration (phase ${current.phase})${previous ? `; the runner's last error was in step ${previous.step} (exit ${previous.exitCode}): ${previous.message}` : ''}`;
      return recordFailure(current, { step: SYNC_STEP, message: message.slice(0, 2000), exitCode: previous?.exitCode ?? ExitCode.unexpected, terminal: true });
    });
    ctx.log.warn('recorded the failed sync in the migration state', { phase: updated.phase, resumeFrom: updated.resumeFrom, lastError: updated.lastError?.message });
    return 0;
  } catch (error) {
    if (isKubeApiError(error, 'Unavailable')) throw error;
    ctx.log.error('could not record the failed sync in the migration state', { error: isRunnerError(error) ? error.oneLine() : String(error) });
    return 0;
  }
}

export const recordFailureCommand = defineCommand({
  name: RunnerCommand.recordFailure,
  summary: "Argo CD SyncFail hook: record the failed sync in the state ConfigMap and emit an Event",
  description: `
Sets phase Failed (resumeFrom keeps the phase reached; the next sync resumes there) with lastError,
and a Warning Event on the state ConfigMap. Exits 0 unless the Kubernetes API is unreachable.`,
  flags: {},
  async run({ env, log, signal }) {
    return runRecordFailure(createHookContext(RunnerCommand.recordFailure, { env, log, signal }));
  },
});
