// The upgrade itself, v1 → v2, with each tool and nothing in the way, into repmgr + Pgpool
// (upgrade-cloudnative-pg.test.ts runs the same into CloudNativePG, the default, with both helm
// binaries). Under helm 4 the upgrade completes only because the runner gives up the
// `.spec.replicas` ownership its scale records (a default helm 4 upgrade applies server-side
// without --force-conflicts).
import { describe, it } from 'vitest';

import { EVERY_TOOL, upgradeScenario } from './scenario.js';

describe.each(EVERY_TOOL)('upgrade v1 → v2 with $label', (run) => {
  it('moves every row, sequence and large object to primary and standby; Keycloak waits; a repeat is a no-op', async () => {
    const { rehearsal } = await upgradeScenario(run, { database: { flavor: 'repmgr' } });
    await rehearsal.close();
  });
});
