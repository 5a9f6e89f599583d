/**
 * The source's checksum pass before the downtime, for the hook Jobs: prepare takes it while
 * Keycloak still runs (the backup Job quiesces it later) and keeps it in the state ConfigMap under
 * `early-pass.json`; the backup Job hands it to the dump, which reuses the checksums of the tables
 * it proves unchanged (pg/early-pass.ts has the proof) and removes it once the backup is taken.
 *
 * Only ever an optimisation: a pass that cannot be taken, is too big for the ConfigMap or cannot
 * be read back is logged and skipped, and the backup then checksums every table in the downtime,
 * as it always did.
 */
import { StateKey } from '../../../lib/contract.js';
import { requireEndpoint } from '../config.js';
import { connect } from '../pg/connection.js';
import { parseEarlyPass, takeEarlyPass, type EarlyPass } from '../pg/early-pass.js';
import type { HookContext } from './context.js';

/**
 * Most a ConfigMap holds is 1 MiB with the state beside it: ~2,500 tables. A bigger pass is not
 * kept (the backup scans every table, as without one).
 */
const MAX_EARLY_PASS_BYTES = 512 * 1024;

/** Takes the pass and stores it (prepare, while the workloads run); never fails the step. */
export async function takeEarlyPassBeforeQuiescing(ctx: HookContext): Promise<void> {
  const source = requireEndpoint(ctx.config, 'source');
  let pass: EarlyPass;
  try {
    const client = await connect(source, { purpose: 'early-pass', action: 'checksum' });
    try {
      pass = await takeEarlyPass(client, source);
    } finally {
      await client.end().catch(() => undefined);
    }
  } catch (error) {
    ctx.log.warn('could not checksum the source before quiescing: the backup checksums every table in the downtime', { reason: (error as Error).message });
    return;
  }
  const text = JSON.stringify(pass);
  if (text.length > MAX_EARLY_PASS_BYTES) {
    ctx.log.info('not keeping the early checksum pass: too big for the state ConfigMap; the backup checksums every table in the downtime', {
      bytes: text.length,
      tables: pass.tables.length,
    });
    return;
  }
  await ctx.store.writeData(StateKey.earlyPass, text);
  ctx.log.info('source checksummed before quiescing', { tables: pass.tables.length, durationMs: pass.durationMs });
}

/**
 * What prepare left for the dump: the pass (undefined when none or unreadable: logged), and whether
 * the ConfigMap holds one at all (an unreadable one is removed after the dump all the same).
 */
export async function storedEarlyPass(ctx: HookContext): Promise<{ readonly pass?: EarlyPass; readonly stored: boolean }> {
  const text = await ctx.store.readData(StateKey.earlyPass);
  if (text === undefined) return { stored: false };
  try {
    return { pass: parseEarlyPass(text, `${StateKey.earlyPass} of ConfigMap ${ctx.store.name}`), stored: true };
  } catch (error) {
    ctx.log.warn('ignoring the early checksum pass: the backup checksums every table in the downtime', { reason: (error as Error).message });
    return { stored: true };
  }
}

/** Removes the stored pass once a backup is taken (it is only ever for the next dump). */
export async function forgetEarlyPass(ctx: HookContext): Promise<void> {
  await ctx.store.writeData(StateKey.earlyPass, undefined);
}
