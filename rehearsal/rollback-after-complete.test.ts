// A rollback after the migration completed: `helm rollback` to v1 brings the legacy StatefulSet
// (on its retained volume) and the old Keycloak back, which writes to the legacy database again.
// The next upgrade to v2 would put Keycloak back on the new database, where those writes are
// missing. The backup hook stops that upgrade before anything changes (v1 keeps running, nothing
// lost); once the operator accepts the legacy changes, the upgrade converges on the new database.
import { afterEach, describe, expect, it } from 'vitest';

import { Phase } from '../lib/contract.js';
import { withClient } from './checks.js';
import { jobLogsOf } from './faults.js';
import { Rehearsal } from './harness.js';
import { waitFor } from './postgres-processes.js';
import { deploy, findObject, installV1, legacyConnection, NAMES, readState, seedKeycloakData, verifyMigrated } from './scenario.js';

describe('rollback to v1 after the migration completed, with helm', () => {
  let rehearsal: Rehearsal | undefined;
  afterEach(async () => rehearsal?.close());

  it('the next upgrade stops in the backup hook with v1 still serving; accepting the legacy changes converges', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy: (c) => seedKeycloakData(c) });
    const { v1, legacy } = await installV1(rehearsal, 'helm');
    const v2 = rehearsal.synthesize('v2');
    expect((await deploy(rehearsal, 'helm', v2)).error?.message).toBeUndefined();
    await verifyMigrated(rehearsal, v2, legacy);
    const { migrationId } = readState(rehearsal).state!;

    // helm rollback: the v1 manifests again; its Keycloak starts on the legacy database and writes.
    const rolledBackAt = Date.now();
    const back = await deploy(rehearsal, 'helm', v1);
    expect(back.error?.message).toBeUndefined();
    // The StatefulSet's pods roll to the v1 template one by one: wait for one on the legacy database.
    await waitFor('a v1 Keycloak pod to write to the legacy database', async () =>
      rehearsal!.workloads.keycloakWrites.some((write) => write.host === NAMES.legacyStatefulSet && write.at >= rolledBackAt),
      120_000,
    );
    await withClient(legacyConnection(rehearsal), (client) => client.query(`UPDATE realm SET ssl_required = 'rolled-back' WHERE id = (SELECT min(id) FROM realm)`));

    // The upgrade again: refused by the backup hook, before any release object changes.
    const refused = await deploy(rehearsal, 'helm', v2);
    expect(refused.ok).toBe(false);
    expect(refused.error?.message).toMatch(/pre-upgrade hooks failed: [\s\S]*keycloak-migration-backup/);
    expect(refused.events.some((event) => event.action === 'apply')).toBe(false);
    expect(jobLogsOf(rehearsal, '-backup')).toMatch(new RegExp(`the legacy database changed after migration ${migrationId} completed`));
    expect(jobLogsOf(rehearsal, '-backup')).toContain(`MIGRATION_ACCEPT_LEGACY_CHANGES_OF=${migrationId}`);
    expect(readState(rehearsal).state?.phase).toBe(Phase.completed);
    // v1 keeps serving from the legacy database, the rollback's write in place.
    await rehearsal.waitReady(findObject(v1, 'StatefulSet', NAMES.keycloak), 60_000);
    const kept = await withClient(legacyConnection(rehearsal), async (client) => (await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM realm WHERE ssl_required = 'rolled-back'`)).rows[0]!.n);
    expect(kept).toBe('1');

    // The operator keeps the new database: the upgrade goes through and Keycloak is back on it.
    const acceptedAt = Date.now();
    const accepting = rehearsal.synthesize('v2', { migration: { acceptLegacyChangesOf: migrationId } });
    const again = await deploy(rehearsal, 'helm', accepting);
    expect(again.error?.message).toBeUndefined();
    expect(readState(rehearsal).state?.phase).toBe(Phase.completed);
    await verifyMigrated(rehearsal, accepting, legacy, { keycloakWritesSince: acceptedAt });
  });
});
