/**
 * NotNeeded: nothing was migrated, but Keycloak's gate still waits for the ready marker in the
 * target. The restore phase writes it once (after the target accepts writes) and records that in
 * the state, so that later syncs answer from one API read without a database connection.
 */
import { ReadyMarker } from '../../../lib/contract.js';
import { requireEndpoint } from '../config.js';
import { configError } from '../errors.js';
import { readMarker, writeMarker } from '../pg/marker.js';
import { updateState, type HookContext } from './context.js';
import { targetOwner } from './restore.js';
import { waitForWritableTarget } from './wait-for-target.js';

export async function ensureReadyMarkerWithoutMigration(ctx: HookContext): Promise<'written' | 'already-ready'> {
  const state = ctx.state!;
  const target = requireEndpoint(ctx.config, 'target');
  ctx.currentStep = 'mark-ready';
  await waitForWritableTarget(target, { timeoutSeconds: ctx.config.targetWaitSeconds, log: ctx.log, signal: ctx.signal });
  const marker = await readMarker(target);
  if (marker?.status === ReadyMarker.restoring) {
    // A restore began there after prepare decided nothing was to migrate: never mark that ready.
    throw configError(
      `the target database carries the ${ReadyMarker.restoring} marker of migration ${marker.migrationId} (since ${marker.updatedAt.toISOString()}), but migration ${state.migrationId} found nothing to migrate (${state.decisionReason ?? 'NotNeeded'}): a restore into it began and did not finish. Not marking it ready`,
      `if it holds a legacy database's data, restore it fully (delete ConfigMap ${ctx.config.stateConfigMap} while the legacy database answers, then upgrade again); if nothing of value is in it, drop and recreate it empty and upgrade again`,
    );
  }
  let outcome: 'written' | 'already-ready' = 'already-ready';
  if (marker?.status !== ReadyMarker.ready) {
    await writeMarker(target, { status: ReadyMarker.ready, migrationId: state.migrationId, owner: targetOwner(ctx) });
    outcome = 'written';
  }
  const at = new Date().toISOString();
  await updateState(ctx, (current) => (current.readyMarkerAt ? current : { ...current, readyMarkerAt: at, updatedAt: at }));
  ctx.currentStep = undefined;
  ctx.log.info(outcome === 'written' ? 'wrote the ready marker: nothing to migrate' : 'the target already carries the ready marker', {
    reason: state.decisionReason,
  });
  return outcome;
}
