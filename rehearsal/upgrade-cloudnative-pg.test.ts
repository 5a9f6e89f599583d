// Into CloudNativePG (the operator stand-in, cnpg-operator.ts): v1 → v2 with each tool and the
// fresh install of v2, with the same checks as the repmgr target (scenario.ts, flavor-aware:
// every instance compared with the legacy database, a write through `-rw` lands on the primary).
import { describe, it } from 'vitest';

import { freshInstallScenario, upgradeScenario, type Tool } from './scenario.js';

const CLOUDNATIVE_PG = { database: { flavor: 'cloudnative-pg' as const } };

describe.each(['helm', 'argocd'] as Tool[])('CloudNativePG target with %s', (tool) => {
  it('upgrade v1 → v2: every row, sequence and large object on primary and standby; Keycloak waits; a repeat is a no-op', async () => {
    const { rehearsal } = await upgradeScenario(tool, CLOUDNATIVE_PG);
    await rehearsal.close();
  });

  it('fresh install of v2: nothing migrated, Keycloak starts on the new database', async () => {
    await freshInstallScenario(tool, CLOUDNATIVE_PG);
  });
});
