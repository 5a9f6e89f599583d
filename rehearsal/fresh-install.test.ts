// A fresh install of v2 (no legacy database anywhere) into repmgr + Pgpool
// (upgrade-cloudnative-pg.test.ts has CloudNativePG's, with both helm binaries): nothing migrated,
// Keycloak starts.
import { describe, it } from 'vitest';

import { defaultRun, freshInstallScenario } from './scenario.js';

describe.each([defaultRun('helm'), defaultRun('argocd')])('fresh install of v2 with $label', (run) => {
  it('migrates nothing and starts Keycloak on the new database', async () => {
    await freshInstallScenario(run, { database: { flavor: 'repmgr' } });
  });
});
