// The upgrade itself, v1 → v2, with each tool and nothing in the way (repmgr + Pgpool target;
// upgrade-cloudnative-pg.test.ts runs the same into CloudNativePG).
import { describe, it } from 'vitest';

import { upgradeScenario, type Tool } from './scenario.js';

describe.each(['helm', 'argocd'] as Tool[])('upgrade v1 → v2 with %s', (tool) => {
  it('moves every row, sequence and large object to primary and standby; Keycloak waits; a repeat is a no-op', async () => {
    const { rehearsal } = await upgradeScenario(tool, { database: { flavor: 'repmgr' } });
    await rehearsal.close();
  });
});
