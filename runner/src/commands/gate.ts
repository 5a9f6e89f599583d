/**
 * `gate` (Keycloak's init container): exit 0 as soon as the target database carries the ready
 * marker; until then log why not (unreachable, no marker, restore in progress) about every 10 s,
 * and after MIGRATION_GATE_TIMEOUT_SECONDS exit tempFail (75) so that the kubelet restarts it with
 * back-off — a visible restart count instead of a silent hang.
 *
 * Uses Keycloak's own database settings (TARGET_*), no Kubernetes API. Imports nothing of the
 * Kubernetes side of the runner: Keycloak's start-up pays for this command on every pod start.
 */
import { Env, ExitCode, ReadyMarker, RunnerCommand } from '../../../lib/contract.js';
import { defineCommand } from '../cli.js';
import { isRunnerError, RunnerError, usageError } from '../errors.js';
import type { Logger } from '../log.js';
import { settingsFromEnv, type ConnectionSettings } from '../pg/connection.js';
import { readMarker } from '../pg/marker.js';

export const DEFAULT_GATE_TIMEOUT_SECONDS = 600;

/**
 * Between two checks of the marker. Keycloak's pods often wait here while the restore runs (Helm
 * creates them with the upgrade, before its post-upgrade hook restores): the data is ready when
 * the marker says so, and every moment until the next check is downtime — half an interval on
 * average, a second at the former 2 s. A check is one short connection and one query.
 */
export const GATE_POLL_MS = 500;

export interface GateOptions {
  readonly target: ConnectionSettings;
  readonly timeoutSeconds: number;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** Between checks. @default {@link GATE_POLL_MS} */
  readonly pollMs?: number;
  /** Between "still waiting" lines. @default 10000 */
  readonly reportEveryMs?: number;
}

export function gateTimeoutFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env[Env.gateTimeoutSeconds]?.trim();
  if (!raw) return DEFAULT_GATE_TIMEOUT_SECONDS;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < 1 || value > 86_400) {
    throw usageError(`${Env.gateTimeoutSeconds} must be a whole number of seconds from 1 to 86400, got "${raw}"`, `fix ${Env.gateTimeoutSeconds}, or unset it for ${DEFAULT_GATE_TIMEOUT_SECONDS}`);
  }
  return value;
}

/** Why the gate is still closed, or undefined when the marker says ready. */
async function closedBecause(target: ConnectionSettings): Promise<string | undefined> {
  try {
    const marker = await readMarker(target);
    if (!marker) return `the database has no ready marker (${ReadyMarker.schema}.${ReadyMarker.table}) yet: the migration has not finished`;
    if (marker.status === ReadyMarker.ready) return undefined;
    return `the migration ${marker.migrationId} is restoring the data (since ${marker.updatedAt.toISOString()})`;
  } catch (error) {
    return `the database is not reachable: ${isRunnerError(error) ? error.message : String(error)}`;
  }
}

/** Waits for the marker; resolves when ready, throws tempFail at the deadline. */
export async function waitForReadyMarker(options: GateOptions): Promise<void> {
  const started = Date.now();
  const deadline = started + options.timeoutSeconds * 1000;
  const pollMs = options.pollMs ?? GATE_POLL_MS;
  const reportEveryMs = options.reportEveryMs ?? 10_000;
  let lastReport = 0;
  let lastReason = '';
  for (;;) {
    const reason = await closedBecause(options.target);
    if (reason === undefined) {
      options.log.info('the database is ready: starting Keycloak', { waitedMs: Date.now() - started });
      return;
    }
    const now = Date.now();
    if (reason !== lastReason || now - lastReport >= reportEveryMs) {
      options.log.info('waiting for the migrated data', { reason, waitedSeconds: Math.round((now - started) / 1000) });
      lastReport = now;
      lastReason = reason;
    }
    if (now >= deadline || options.signal?.aborted) {
      throw new RunnerError(`the database was not ready after ${options.timeoutSeconds}s: ${reason}`, {
        exitCode: ExitCode.tempFail,
        hint: 'the kubelet restarts this init container; check the migration (kubectl describe configmap of its state, the logs of the Job that restores: the restore Job, under Argo CD the backup Job)',
      });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, Math.max(0, deadline - now))));
  }
}

export const gateCommand = defineCommand({
  name: RunnerCommand.gate,
  summary: "Keycloak's init container: exit 0 once the target database carries the ready marker",
  description: `
Reads TARGET_PGHOST, TARGET_PGPORT, TARGET_PGUSER, TARGET_PGPASSWORD, TARGET_PGDATABASE (Keycloak's
own database settings) and MIGRATION_GATE_TIMEOUT_SECONDS (default ${DEFAULT_GATE_TIMEOUT_SECONDS}).
Exit 75 after the timeout, so that the kubelet restarts it.`,
  flags: {},
  async run({ env, log, signal }) {
    const timeoutSeconds = gateTimeoutFromEnv(env);
    await waitForReadyMarker({ target: settingsFromEnv('TARGET', env), timeoutSeconds, log: log.child({ command: RunnerCommand.gate }), signal });
    return 0;
  },
});
