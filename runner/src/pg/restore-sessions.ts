/**
 * What every pg_restore run of the runner against the target shares: its sessions' name and
 * settings, and the lock that keeps two of them (a restore, the index builds after it) apart.
 */
import type pg from 'pg';
import { ExitCode } from '../../../lib/contract.js';
import { RunnerError, type EndpointDescription } from '../errors.js';
import type { Logger } from '../log.js';
import { APPLICATION_NAME, toolEnv, type ConnectionSettings } from './connection.js';

/** application_name suffix of pg_restore's sessions (to find the ones a killed run left). */
export const RESTORE_PURPOSE = 'restore';

/** Key of the session advisory lock a restore holds on the target ("kcmigr" in ASCII). */
export const RESTORE_ADVISORY_LOCK_KEY = 0x6b636d696772;

/**
 * Server options for pg_restore's sessions. Safe because the restore is verified afterwards and
 * re-runnable from the backup: asynchronous commit (no WAL flush wait per table; the ready
 * marker's commit, synchronous by the server's default, flushes the WAL past all of them before
 * Keycloak may start), more
 * memory for index builds, and no role-level timeouts cutting a long index build.
 *
 * No parallel workers inside one index build: `--jobs` already builds the indexes of several
 * tables at once, and a parallel build hands its workers' sorted runs to the leader through
 * temporary files. Measured on two cores, pg_restore -j2 of the benchmark's 0.2 GiB databases
 * without → with this option: wide 2.3-2.4 → 1.9 s and 3.9-4.0 → 3.0 s of server CPU, Keycloak-
 * shaped 2.4-2.55 → 2.0-2.15 s and 3.9-4.1 → 3.1-3.2 s; with -j1 still 0.9 s less CPU and no
 * slower. Only a target with idle cores to spare and a few very large tables would lose by it.
 */
export const RESTORE_SESSION_OPTIONS = ['-c synchronous_commit=off', ...indexBuildOptions()].join(' ');

/**
 * Server options for the index builds after the ready marker (pg/deferred-indexes.ts): the
 * restore's, but each commit synchronous (whatever the server's or the role's default) — nothing
 * the runner commits after them would flush an asynchronous one, so a target crash moments later
 * could lose an index the run then reports built.
 */
export const INDEX_BUILD_SESSION_OPTIONS = ['-c synchronous_commit=on', ...indexBuildOptions()].join(' ');

function indexBuildOptions(): string[] {
  return ['-c maintenance_work_mem=256MB', '-c max_parallel_maintenance_workers=0', '-c statement_timeout=0', '-c lock_timeout=0', '-c idle_in_transaction_session_timeout=0'];
}

/**
 * Takes the session advisory lock of the restore on `client`'s target (held until the session
 * ends), then ends the pg_restore sessions a killed run left there. Another run holding it: a
 * temporary failure naming the database.
 */
export async function takeRestoreLock(client: pg.Client, endpoint: EndpointDescription, log: Logger): Promise<void> {
  const locked = await client.query<{ locked: boolean }>('SELECT pg_catalog.pg_try_advisory_lock($1) AS locked', [RESTORE_ADVISORY_LOCK_KEY]);
  if (!locked.rows[0]!.locked) {
    throw new RunnerError(`another restore is running against ${endpoint.host}:${endpoint.port}/${endpoint.database}`, {
      exitCode: ExitCode.tempFail,
      hint: 'wait for it to finish; this run will then find the data in place',
    });
  }
  await terminateLeftoverRestoreSessions(client, log);
}

/** Ends the sessions of a pg_restore that a killed runner left (they may hold locks). */
export async function terminateLeftoverRestoreSessions(client: pg.Client, log: Logger): Promise<void> {
  const query = `SELECT pid FROM pg_catalog.pg_stat_activity
                  WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()`;
  const appName = `${APPLICATION_NAME}:${RESTORE_PURPOSE}`;
  const leftovers = await client.query<{ pid: number }>(query, [appName]);
  if (leftovers.rows.length === 0) return;
  log.warn('terminating sessions of an earlier restore', { pids: leftovers.rows.map((row) => row.pid) });
  for (const row of leftovers.rows) {
    await client.query('SELECT pg_catalog.pg_terminate_backend($1)', [row.pid]).catch(() => undefined);
  }
  for (let attempt = 0; attempt < 50; attempt += 1) {
    if ((await client.query(query, [appName])).rows.length === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new RunnerError('sessions of an earlier restore are still running on the target', {
    exitCode: ExitCode.tempFail,
    hint: 'wait for them to end or terminate them (pg_terminate_backend), then retry',
  });
}

/**
 * pg_restore's arguments for a restore into `database` of the items `listFile` selects: objects
 * owned by `owner` (`--role`, no ownership or privileges from the dump), stopping at the first error.
 */
export function restoreToolArgs(options: { jobs: number; owner: string; listFile: string; database: string; dumpDir: string; verbose?: boolean }): string[] {
  return [
    '--format=directory',
    `--jobs=${Math.max(1, options.jobs)}`,
    '--no-owner',
    '--no-privileges',
    `--role=${options.owner}`,
    '--exit-on-error',
    '--no-password',
    ...(options.verbose ? ['--verbose'] : []),
    `--use-list=${options.listFile}`,
    `--dbname=${options.database}`,
    options.dumpDir,
  ];
}

/**
 * pg_restore's environment: the target's connection, {@link RESTORE_PURPOSE} and
 * {@link RESTORE_SESSION_OPTIONS} (or, `forIndexBuilds`, {@link INDEX_BUILD_SESSION_OPTIONS}).
 */
export function restoreToolEnv(target: ConnectionSettings, forIndexBuilds = false): NodeJS.ProcessEnv {
  return toolEnv(target, { purpose: RESTORE_PURPOSE, pgOptions: forIndexBuilds ? INDEX_BUILD_SESSION_OPTIONS : RESTORE_SESSION_OPTIONS });
}
