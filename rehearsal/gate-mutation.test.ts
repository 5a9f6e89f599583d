// The rehearsal has teeth: with the database-gate init container removed from the synthesized
// Keycloak StatefulSet, a Helm upgrade re-applies Keycloak's replicas before the post-upgrade
// restore, Keycloak starts on the empty new database and creates its schema there — and the
// checks of scenario.ts reject the result. (Argo CD's waves put Keycloak after the restore, so
// there the gate guards selective syncs rather than the normal order.)
import { afterEach, describe, expect, it } from 'vitest';

import { transformShape } from './faults.js';
import { Rehearsal } from './harness.js';
import type { KubeObject } from './manifests.js';
import { deploy, installV1, NAMES, seedKeycloakData, verifyMigrated } from './scenario.js';

function withoutGate(object: KubeObject): KubeObject {
  if (object.kind !== 'StatefulSet' || object.metadata.name !== NAMES.keycloak) return object;
  const copy = structuredClone(object);
  delete (copy.spec as { template: { spec: { initContainers?: unknown } } }).template.spec.initContainers;
  return copy;
}

describe('without the database gate', () => {
  let rehearsal: Rehearsal | undefined;
  afterEach(async () => rehearsal?.close());

  it('a Helm upgrade lets Keycloak write to the new database before the restore, and the checks say so', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy: (c) => seedKeycloakData(c) });
    const { legacy } = await installV1(rehearsal, 'helm');
    const v2 = transformShape(rehearsal.synthesize('v2'), withoutGate);
    const result = await deploy(rehearsal, 'helm', v2);
    const early = rehearsal.workloads.keycloakWrites.filter((write) => write.host === NAMES.pgpoolService);
    expect(early.some((write) => write.createdSchema)).toBe(true);
    if (result.ok) {
      await expect(verifyMigrated(rehearsal, v2, legacy)).rejects.toThrow(/created Keycloak's schema|before the restore was verified/);
    } else {
      // Or the runner refuses to restore over a database that is no longer empty.
      expect(result.error?.message).toMatch(/keycloak-migration-restore/);
    }
  });
});
