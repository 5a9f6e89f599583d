/**
 * LegacyProtected → Restoring → Restored: the target is marked `restoring` (Keycloak's gate keeps
 * waiting, whatever is in the database), then the verified backup is restored. Restoring into a
 * target that already holds exactly the backup is a no-op; a partial restore left by a killed run
 * is cleaned and redone (pg/restore.ts).
 */
import { Phase, ReadyMarker } from '../../../lib/contract.js';
import { requireEndpoint } from '../config.js';
import { withClient, type ConnectionSettings } from '../pg/connection.js';
import { readMarkerWith, writeMarker } from '../pg/marker.js';
import { dataError } from '../errors.js';
import { restoreDatabase, type RestoreResult } from '../pg/restore.js';
import type { MigrationState } from '../state.js';
import { runStep, type HookContext } from './context.js';
import { assertRecordedManifest, backupDirectoryOf } from './dump.js';

export function targetOwner(ctx: HookContext): string {
  return ctx.config.targetOwner ?? requireEndpoint(ctx.config, 'target').user;
}

export function markRestoringStep(ctx: HookContext) {
  return runStep(ctx, {
    name: 'mark-restoring',
    reaches: Phase.restoring,
    async run(state) {
      const target = requireEndpoint(ctx.config, 'target');
      await assertNoWritesBeforeTheRestore(target);
      await writeMarker(target, { status: ReadyMarker.restoring, migrationId: state.migrationId, owner: targetOwner(ctx) });
      return { detail: `ready marker set to ${ReadyMarker.restoring}`, note: `→ ${Phase.restoring}` };
    },
  });
}

/**
 * Refuses (data error, nothing dropped) when the target holds tables, sequences, views or large
 * objects although no restore ever started there (no ready marker). Whatever a restore creates
 * comes after its `restoring` marker, so such objects were written by someone else — in practice a
 * Keycloak that started on the empty new database without its database gate, created its schema
 * and may since have taken logins or admin changes. Cleaning them like a partial restore would
 * throw those writes away while that Keycloak keeps serving from caches of the database it saw.
 */
export async function assertNoWritesBeforeTheRestore(target: ConnectionSettings): Promise<void> {
  const found = await withClient(
    target,
    async (client) => {
      if (await readMarkerWith(client)) return undefined;
      const relations = await client.query<{ id: string }>(
        `SELECT n.nspname || '.' || c.relname AS id
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname NOT LIKE 'pg\\_%'
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
          ORDER BY 1`,
        [ReadyMarker.schema],
      );
      const largeObjects = Number((await client.query<{ count: string }>('SELECT count(*) AS count FROM pg_catalog.pg_largeobject_metadata')).rows[0]!.count);
      return relations.rows.length > 0 || largeObjects > 0 ? { relations: relations.rows.map((row) => row.id), largeObjects } : undefined;
    },
    { purpose: 'restore-precheck', action: 'inspect' },
  );
  if (!found) return;
  const shown = found.relations.slice(0, 8).join(', ') + (found.relations.length > 8 ? `, … (${found.relations.length} in all)` : '');
  const what = [found.relations.length ? `${found.relations.length} relation(s): ${shown}` : '', found.largeObjects ? `${found.largeObjects} large object(s)` : '']
    .filter(Boolean)
    .join(' and ');
  throw dataError(
    `the target database ${target.host}:${target.port}/${target.database} already holds ${what}, but no restore has started there (no ${ReadyMarker.schema}.${ReadyMarker.table} row): something wrote to it before the migration — most likely Keycloak started on it without its database gate (init container) and created its schema. Nothing was dropped`,
    `scale Keycloak down, make sure nothing of value is in ${target.database} (a Keycloak that found it empty created its schema and bootstrap admin), drop and recreate ${target.database} empty, then run the upgrade or sync again; keep the database gate in Keycloak's pod template`,
  );
}

/**
 * Whether ANALYZE waits until Keycloak is back: when this runner scales the workloads back itself,
 * the statistics are taken while Keycloak boots (complete.ts), off the downtime; when the GitOps
 * tool brings them back only after this hook Job has ended, anything the Job does is downtime, and
 * ANALYZE overlaps the restore instead.
 */
export function analyzeAfterKeycloakIsBack(ctx: HookContext): boolean {
  return ctx.config.restoreReplicas;
}

/**
 * Restores the recorded backup into the target (idempotent); shared by the restore and a
 * re-restore after a failed verification. Each table is checksummed (and, unless
 * {@link analyzeAfterKeycloakIsBack}, ANALYZEd) as soon as pg_restore has loaded it, overlapping
 * the rest of the restore; the result is kept in memory
 * only (`ctx.restoredInThisRun`) for this process's verification and hygiene — never persisted, so
 * a restore that crashes leaves nothing the next process could wrongly trust.
 */
export async function restoreRecordedBackup(ctx: HookContext) {
  const state = ctx.state!;
  const dir = backupDirectoryOf(ctx, state);
  await assertRecordedManifest(dir, state);
  ctx.lock?.assertHeld();
  ctx.restoredInThisRun = undefined;
  const result = await restoreDatabase({
    dir,
    target: requireEndpoint(ctx.config, 'target'),
    owner: targetOwner(ctx),
    jobs: ctx.config.parallelJobs,
    log: ctx.log,
    checksumDuringRestore: true,
    analyze: !analyzeAfterKeycloakIsBack(ctx),
    // Built while Keycloak boots, before that ANALYZE (complete.ts).
    deferPlainIndexes: analyzeAfterKeycloakIsBack(ctx) && ctx.config.indexesAfterReady,
    // The backup Job that also restores digested these files just before (context.ts).
    ...(ctx.backupDigestedInThisRun ? { digestedByThisProcess: ctx.backupDigestedInThisRun } : {}),
  });
  ctx.restoredInThisRun = { manifestSha256: state.backup!.manifestSha256, result };
  return result;
}

/** What this process's finished restore of the backup on record left for the steps after it. */
export function restoredInThisRun(ctx: HookContext, state: MigrationState): RestoreResult | undefined {
  const restored = ctx.restoredInThisRun;
  return restored && state.backup && restored.manifestSha256 === state.backup.manifestSha256 ? restored.result : undefined;
}

export function restoreStep(ctx: HookContext) {
  return runStep(ctx, {
    name: 'restore',
    reaches: Phase.restored,
    async run() {
      const result = await restoreRecordedBackup(ctx);
      const how =
        result.action === 'already-restored'
          ? 'the target already held the backup'
          : result.cleaned.length > 0
            ? `cleaned ${result.cleaned.length} objects of a partial restore, restored again`
            : 'restored';
      const early = result.checksummedTables.size ? `; ${result.checksummedTables.size} table(s) checksummed during the restore` : '';
      return { detail: how, rows: result.manifest.totalRows, bytes: result.bytes, note: `→ ${Phase.restored}, ${how}${early}` };
    },
  });
}
