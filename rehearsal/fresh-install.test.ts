// A fresh install of v2 (no legacy database anywhere) with each tool, repmgr + Pgpool target
// (upgrade-cloudnative-pg.test.ts has CloudNativePG's): nothing migrated, Keycloak starts.
import { describe, it } from 'vitest';

import { freshInstallScenario, type Tool } from './scenario.js';

describe.each(['helm', 'argocd'] as Tool[])('fresh install of v2 with %s', (tool) => {
  it('migrates nothing and starts Keycloak on the new database', async () => {
    await freshInstallScenario(tool, { database: { flavor: 'repmgr' } });
  });
});
