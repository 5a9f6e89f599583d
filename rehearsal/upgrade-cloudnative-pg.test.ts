// Into CloudNativePG (the operator stand-in, cnpg-operator.ts), the default flavor: v1 → v2 and the
// fresh install of v2 with helm 4.1, helm 3.17 and Argo CD, with the same checks as the repmgr
// target (scenario.ts, flavor-aware: every instance compared with the legacy database, a write
// through `-rw` lands on the primary).
import { describe, it } from 'vitest';

import { EVERY_TOOL, freshInstallScenario, upgradeScenario } from './scenario.js';

const CLOUDNATIVE_PG = { database: { flavor: 'cloudnative-pg' as const } };

describe.each(EVERY_TOOL)('CloudNativePG target with $label', (run) => {
  it('upgrade v1 → v2: every row, sequence and large object on primary and standby; Keycloak waits; a repeat is a no-op', async () => {
    const { rehearsal } = await upgradeScenario(run, CLOUDNATIVE_PG);
    await rehearsal.close();
  });

  it('fresh install of v2: nothing migrated, Keycloak starts on the new database', async () => {
    await freshInstallScenario(run, CLOUDNATIVE_PG);
  });
});
