/**
 * `restore --dir D`: restore D into TARGET_* (idempotent: a target holding exactly the backup is
 * left alone, a partial restore is cleaned and redone), verify the target against the manifest,
 * apply the Keycloak hygiene (jgroups_ping, databasechangeloglock), log "target ready" (Keycloak may
 * start from then on), then build the plain indexes the restore left out (pg/deferred-indexes.ts)
 * and ANALYZE.
 */
import { Env, RunnerCommand } from '../../../lib/contract.js';
import { CommonFlags, defineCommand } from '../cli.js';
import { booleanFromEnv } from '../config.js';
import type { Logger, SummaryRow } from '../log.js';
import { settingsFromEnv } from '../pg/connection.js';
import { applyKeycloakHygiene } from '../pg/hygiene.js';
import { buildDeferredIndexes } from '../pg/deferred-indexes.js';
import { analyzeRemaining, restoreDatabase, type DigestedBackup } from '../pg/restore.js';
import { verifyTarget } from '../pg/verify-target.js';

/**
 * Logged (message of a JSON log line) once the target is verified and the hygiene applied: Keycloak
 * may start from then on; the ANALYZE that follows does not keep it down. The benchmark ends the
 * runner's downtime at this line (bench/contenders.ts).
 */
export const TARGET_READY_MESSAGE = 'target ready';

/**
 * Restores `dir` into TARGET_* without its plain indexes, verifies it, applies the hygiene, logs
 * {@link TARGET_READY_MESSAGE}, builds those indexes and ANALYZEs; returns the summary rows. `digestedByThisProcess`: the backup this process has
 * just taken, whose digests the restore may use (pg/restore.ts).
 */
export async function restoreAndVerify(options: {
  dir: string;
  jobs: number;
  owner: string | undefined;
  hygiene: boolean;
  /** Build the plain indexes after "target ready" (pg/deferred-indexes.ts) rather than in the restore. */
  plainIndexesAfterReady: boolean;
  digestedByThisProcess?: DigestedBackup;
  env: NodeJS.ProcessEnv;
  log: Logger;
}): Promise<SummaryRow[]> {
  const { dir, jobs, log } = options;
  const target = settingsFromEnv('TARGET', options.env);
  const owner = options.owner ?? target.user;
  const rows: SummaryRow[] = [];
  const hygiene = options.hygiene;
  // Tables are checksummed as soon as pg_restore has loaded them, overlapping the rest of the
  // restore; the verification below scans only what is left. ANALYZE waits until the target is
  // verified and ready (see below).
  const restore = await restoreDatabase({
    dir,
    target,
    owner,
    jobs,
    log,
    checksumDuringRestore: true,
    deferPlainIndexes: options.plainIndexesAfterReady,
    ...(options.digestedByThisProcess ? { digestedByThisProcess: options.digestedByThisProcess } : {}),
  });
  rows.push({
    step: 'restore',
    durationMs: restore.durationMs,
    rows: restore.manifest.totalRows,
    bytes: restore.bytes,
    note: restore.action === 'already-restored' ? 'skipped: target already holds the backup' : restore.cleaned.length ? `cleaned ${restore.cleaned.length} objects of a partial restore first` : '',
  });
  const verification = await verifyTarget(target, restore.manifest, {
    owner,
    jobs,
    log,
    checksummedTables: restore.checksummedTables,
    checksummedLargeObjects: restore.checksummedLargeObjects,
    checksumsInProgress: restore.checksumsInProgress,
    indexesBuiltLater: restore.indexesBuiltLater,
  });
  const early = restore.checksummedTables.size;
  rows.push({
    step: 'verify target',
    durationMs: verification.durationMs,
    rows: verification.rows,
    note: `${verification.tables} tables${early ? `, ${early} checksummed during the restore` : ''}`,
  });
  if (hygiene) {
    const started = Date.now();
    const result = await applyKeycloakHygiene(target, { owner, log, analyze: false });
    rows.push({
      step: 'hygiene',
      durationMs: Date.now() - started,
      note: `emptied ${Object.keys(result.jgroupsRowsDeleted).length} JGroups table(s); released ${Object.values(result.changelogLocksReleased).reduce((a, b) => a + b, 0)} Liquibase lock(s)`,
    });
  }
  // Keycloak may start from here on: the statistics follow while it boots (ANALYZE changes no
  // data, and its lock makes only DDL wait). The hooks do the same after scaling Keycloak back
  // (phases/complete.ts).
  log.info(TARGET_READY_MESSAGE, { tables: verification.tables, rows: verification.rows, indexesStillToBuild: restore.indexesBuiltLater.size || undefined });
  // The plain indexes the restore left out, then the statistics (ANALYZE also samples the
  // expression indexes, so it comes after them).
  const indexes = restore.indexesBuiltLater.size > 0 ? await buildDeferredIndexes({ dir, target, owner, jobs, log, plan: restore.deferredIndexes }) : { built: [], durationMs: 0 };
  if (indexes.built.length > 0) rows.push({ step: 'indexes', durationMs: indexes.durationMs, note: `${indexes.built.length} plain index(es), after the target was ready` });
  if (hygiene) {
    const analyzeStarted = Date.now();
    await analyzeRemaining(target, owner, new Set(), { jobs, log });
    rows.push({ step: 'analyze', durationMs: Date.now() - analyzeStarted, note: 'after the target was verified and ready' });
  }
  return rows;
}

/** `--indexes-in-restore`, of `restore` and `copy`. */
export const IndexesInRestoreFlag = {
  type: 'boolean',
  description: `Build every index in the restore, before "target ready" (default: plain indexes after it; also ${Env.indexesAfterReady}=false)`,
} as const;

/** Whether the plain indexes wait until after "target ready": not with the flag, nor with the variable set to false. */
export function plainIndexesAfterReady(indexesInRestore: boolean, env: NodeJS.ProcessEnv): boolean {
  return !indexesInRestore && booleanFromEnv(env, Env.indexesAfterReady, true);
}

export const restoreCommand = defineCommand({
  name: RunnerCommand.restore,
  summary: 'Restore --dir into the TARGET_* database, verify it against the manifest, apply Keycloak hygiene',
  description: `
Reads TARGET_PGHOST, TARGET_PGPORT, TARGET_PGUSER, TARGET_PGPASSWORD, TARGET_PGDATABASE and
TARGET_OWNER (the role owning every restored object; default TARGET_PGUSER).
Re-running is safe: a target that already holds the backup is left as it is, a partial restore
(from a crashed run) is dropped and redone. A target whose ready marker says "ready" is never
cleaned. Plain (non-unique) indexes are left out of the restore: once the target is verified and
the hygiene applied it logs "target ready" (Keycloak may start from then on), then builds them
from the backup and ANALYZEs the restored tables, on --jobs sessions. Writes to a table wait
while one of its indexes builds; reads do not. --indexes-in-restore (or
MIGRATION_INDEXES_AFTER_READY=false) builds every index in the restore instead.`,
  flags: {
    dir: CommonFlags.dir,
    jobs: CommonFlags.jobs,
    owner: { type: 'string', description: 'Role that owns every restored object', env: Env.targetOwner, valueName: 'ROLE' },
    'skip-hygiene': { type: 'boolean', description: 'Do not ANALYZE, empty jgroups_ping or release databasechangeloglock' },
    'indexes-in-restore': IndexesInRestoreFlag,
  },
  async run({ flags, env, log }) {
    log.summary(
      await restoreAndVerify({
        dir: flags.dir,
        jobs: flags.jobs,
        owner: flags.owner,
        hygiene: !flags['skip-hygiene'],
        plainIndexesAfterReady: plainIndexesAfterReady(flags['indexes-in-restore'], env),
        env,
        log,
      }),
    );
    return 0;
  },
});
