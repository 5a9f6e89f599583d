/**
 * `restore --dir D`: restore D into TARGET_* (idempotent: a target holding exactly the backup is
 * left alone, a partial restore is cleaned and redone), verify the target against the manifest,
 * then apply the Keycloak hygiene (ANALYZE, jgroups_ping, databasechangeloglock).
 */
import { Env, RunnerCommand } from '../../../lib/contract.js';
import { CommonFlags, defineCommand } from '../cli.js';
import { type SummaryRow } from '../log.js';
import { settingsFromEnv } from '../pg/connection.js';
import { analyzeDatabase, applyKeycloakHygiene } from '../pg/hygiene.js';
import { restoreDatabase } from '../pg/restore.js';
import { verifyTarget } from '../pg/verify-target.js';

export const restoreCommand = defineCommand({
  name: RunnerCommand.restore,
  summary: 'Restore --dir into the TARGET_* database, verify it against the manifest, apply Keycloak hygiene',
  description: `
Reads TARGET_PGHOST, TARGET_PGPORT, TARGET_PGUSER, TARGET_PGPASSWORD, TARGET_PGDATABASE and
TARGET_OWNER (the role owning every restored object; default TARGET_PGUSER).
Re-running is safe: a target that already holds the backup is left as it is, a partial restore
(from a crashed run) is dropped and redone. A target whose ready marker says "ready" is never
cleaned.`,
  flags: {
    dir: CommonFlags.dir,
    jobs: CommonFlags.jobs,
    owner: { type: 'string', description: 'Role that owns every restored object', env: Env.targetOwner, valueName: 'ROLE' },
    'skip-hygiene': { type: 'boolean', description: 'Do not ANALYZE, empty jgroups_ping or release databasechangeloglock' },
  },
  async run({ flags, env, log }) {
    const target = settingsFromEnv('TARGET', env);
    const owner = flags.owner ?? target.user;
    const rows: SummaryRow[] = [];
    const analyze = !flags['skip-hygiene'];
    // Tables are checksummed and ANALYZEd as soon as pg_restore has loaded them, overlapping the
    // rest of the restore; the verification below scans only what is left, while what is left to
    // ANALYZE is analyzed alongside it.
    const restore = await restoreDatabase({
      dir: flags.dir,
      target,
      owner,
      jobs: flags.jobs,
      log,
      checksumDuringRestore: true,
      analyze,
      deferRemainingAnalyze: true,
    });
    rows.push({
      step: 'restore',
      durationMs: restore.durationMs,
      rows: restore.manifest.totalRows,
      bytes: restore.bytes,
      note: restore.action === 'already-restored' ? 'skipped: target already holds the backup' : restore.cleaned.length ? `cleaned ${restore.cleaned.length} objects of a partial restore first` : '',
    });
    // ANALYZE changes no data: what the restore left (or everything, when the target already
    // held the backup) runs while the verification reads the same tables.
    const analyzeStarted = Date.now();
    const [verification] = await Promise.all([
      verifyTarget(target, restore.manifest, { owner, jobs: flags.jobs, log, checksummedTables: restore.checksummedTables, checksummedLargeObjects: restore.checksummedLargeObjects }),
      restore.analyzeRemaining ? restore.analyzeRemaining() : analyze && !restore.analyzed ? analyzeDatabase(target, { owner }) : Promise.resolve(),
    ]);
    const analyzeMs = Date.now() - analyzeStarted;
    const early = restore.checksummedTables.size;
    rows.push({
      step: 'verify target',
      durationMs: verification.durationMs,
      rows: verification.rows,
      note: `${verification.tables} tables${early ? `, ${early} checksummed during the restore` : ''}`,
    });
    if (analyze) {
      const started = Date.now();
      await applyKeycloakHygiene(target, { owner, log, analyze: false });
      rows.push({
        step: 'hygiene',
        durationMs: Date.now() - started,
        note: restore.analyzeRemaining
          ? `ANALYZE during the restore, the rest alongside the verification (${analyzeMs}ms)`
          : restore.analyzed
            ? 'ANALYZE during the restore'
            : `ANALYZE ${analyzeMs}ms alongside the verification`,
      });
    }
    log.summary(rows);
    return 0;
  },
});
