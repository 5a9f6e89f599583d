/**
 * Waits until the target primary accepts writes: reachable, not in recovery, and a write commits.
 * Right after `helm upgrade` applied postgresql-ha (or CloudNativePG created its cluster), the
 * service may not resolve yet, the primary may still be starting, or a standby may answer first.
 */
import { ExitCode } from '../../../lib/contract.js';
import { isRunnerError, RunnerError } from '../errors.js';
import type { Logger } from '../log.js';
import { describeEndpoint, withClient, type ConnectionSettings } from '../pg/connection.js';

export interface WaitForTargetOptions {
  readonly timeoutSeconds: number;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** @default {@link TARGET_POLL_MS} */
  readonly pollMs?: number;
}

/**
 * Between two attempts to write to the target. restore-phase waits here, in the downtime, for
 * the new primary that the upgrade just created (under Argo CD it is healthy a wave earlier):
 * half an interval is lost on average once it is up (a second at the former 2 s); an attempt is
 * one short connection.
 */
export const TARGET_POLL_MS = 500;

/** One check; throws a RunnerError saying why the target does not accept writes yet. */
export async function checkTargetWritable(target: ConnectionSettings): Promise<void> {
  await withClient(
    target,
    async (client) => {
      const recovery = await client.query<{ in_recovery: boolean }>('SELECT pg_catalog.pg_is_in_recovery() AS in_recovery');
      if (recovery.rows[0]?.in_recovery) {
        throw new RunnerError(`${target.host}:${target.port} is a standby (pg_is_in_recovery() = true)`, {
          exitCode: ExitCode.unavailable,
          hint: 'wait for the primary to be elected, or point TARGET_PGHOST at the primary (read-write) service',
        });
      }
      // A transaction that writes (allocates a transaction id) proves the primary commits.
      await client.query('BEGIN');
      await client.query('SELECT pg_catalog.txid_current()');
      await client.query('COMMIT');
    },
    { purpose: 'wait-writable', action: 'check that it accepts writes' },
  );
}

/** Polls {@link checkTargetWritable} until it passes; tempFail (75) naming the last reason at the deadline. */
export async function waitForWritableTarget(target: ConnectionSettings, options: WaitForTargetOptions): Promise<void> {
  const deadline = Date.now() + options.timeoutSeconds * 1000;
  const pollMs = options.pollMs ?? TARGET_POLL_MS;
  const endpoint = describeEndpoint(target);
  let lastReason = '';
  for (let attempt = 1; ; attempt += 1) {
    try {
      await checkTargetWritable(target);
      if (attempt > 1) options.log.info('the target accepts writes', { target: `${endpoint.host}:${endpoint.port}`, attempts: attempt });
      return;
    } catch (error) {
      if (!isRunnerError(error)) throw error;
      // A wrong password or a missing database does not heal by waiting.
      if (error.exitCode === ExitCode.noPermission || error.exitCode === ExitCode.usage) throw error;
      if (error.message !== lastReason) options.log.info('waiting for the target to accept writes', { reason: error.message });
      lastReason = error.message;
    }
    if (Date.now() >= deadline || options.signal?.aborted) {
      throw new RunnerError(`the target ${endpoint.host}:${endpoint.port}/${endpoint.database} did not accept writes within ${options.timeoutSeconds}s: ${lastReason}`, {
        exitCode: ExitCode.tempFail,
        hint: 'check the new database (its pods, its primary election); raise MIGRATION_TARGET_WAIT_SECONDS if it needs longer to start',
      });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, Math.max(0, deadline - Date.now()))));
  }
}
