// The upgrade itself, v1 → v2, with each tool and nothing in the way.
import { afterEach, describe, expect, it } from 'vitest';

import { Rehearsal } from './harness.js';
import { deploy, EVERY_TOOL, expectNoOpRepeat, holdRestoreUntilKeycloakReachedTheNewDatabase, installV1, seedKeycloakData, verifyMigrated } from './scenario.js';

describe.each(EVERY_TOOL)('upgrade v1 → v2 with $label', ({ tool, helm }) => {
  let rehearsal: Rehearsal | undefined;
  afterEach(async () => {
    await rehearsal?.close();
    rehearsal = undefined;
  });

  it('moves every row, sequence and large object to primary and standby; Keycloak waits; a repeat is a no-op', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy: (c) => seedKeycloakData(c), helm: { major: helm } });
    const { legacy } = await installV1(rehearsal, tool);
    expect(Object.keys(legacy.tables).length).toBeGreaterThan(5);

    const v2 = rehearsal.synthesize('v2');
    // Helm re-applies Keycloak's replicas before the post-upgrade restore: hold the restore until
    // Keycloak's gate has reached the empty new database, so the gate is what keeps it out.
    if (tool === 'helm') holdRestoreUntilKeycloakReachedTheNewDatabase(rehearsal);
    const result = await deploy(rehearsal, tool, v2);
    expect(result.error?.message).toBeUndefined();
    await verifyMigrated(rehearsal, v2, legacy);

    const repeat = await expectNoOpRepeat(rehearsal, tool, v2);
    expect(repeat.podRuns).toBeGreaterThan(0);
  });
});
