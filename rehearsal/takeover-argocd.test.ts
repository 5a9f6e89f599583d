// Takeover of rendered Bitnami keycloak releases (test/fixtures/bitnami-keycloak/) with argocd, default
// configuration (the runner adopts what the configured names miss from the labels and pod spec), as
// `npm run rehearse:takeover` runs them. Which releases: takeover/scenarios.ts (REHEARSAL_TAKEOVER=all: every one).
import { describe, it } from 'vitest';

import { expectTakeoverPasses, scenarioName, takeoverScenarios } from './takeover/scenarios.js';

describe('takeover of a Bitnami release with argocd', () => {
  it.each(takeoverScenarios('argocd').map((file) => [scenarioName(file), file] as const))('%s', async (_name, file) => {
    await expectTakeoverPasses(file, 'argocd');
  });
});
