// Argo CD applications do not prune by default. Then the legacy database keeps running after the
// v2 sync, and nothing may write to it once it was quiesced for the backup: writes there are
// lost. (The restore Sync hook runs before Keycloak's wave applies the new pod template, so
// scaling Keycloak up from the hook starts pods of the *old* template, which point at the legacy
// database.)
import { afterEach, describe, expect, it } from 'vitest';

import { Rehearsal } from './harness.js';
import { deploy, expectNoOpRepeat, installV1, seedKeycloakData, verifyMigrated } from './scenario.js';

describe('Argo CD without automatic prune', () => {
  let rehearsal: Rehearsal | undefined;
  afterEach(async () => rehearsal?.close());

  it('upgrades without any Keycloak write to the quiesced legacy database', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy: (c) => seedKeycloakData(c), argo: { prune: false, waveTimeoutMs: 120_000 } });
    const { legacy } = await installV1(rehearsal, 'argocd');
    const v2 = rehearsal.synthesize('v2');
    const result = await deploy(rehearsal, 'argocd', v2);
    expect(result.error?.message).toBeUndefined();
    await verifyMigrated(rehearsal, v2, legacy);
    await expectNoOpRepeat(rehearsal, 'argocd', v2);
  });
});
