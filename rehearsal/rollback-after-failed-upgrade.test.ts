// Going back to v1 after a v2 upgrade that failed in its pre-upgrade hooks (the backup volume is
// too small: nothing deleted). `helm rollback keycloak 1` does not work
// there: helm compares against the latest release — the failed v2, whose manifest lacks the legacy
// objects that still exist — and aborts with `no Service with the name "…" found`
// (pkg/action/rollback.go, pkg/kube/client.go Update). What works, as the README says: `helm
// upgrade` with the v1 chart, which diffs against the last *deployed* release (v1) and brings
// Keycloak back on the intact legacy database.
import { afterEach, describe, expect, it } from 'vitest';

import { fingerprint, fingerprintDifferences } from './checks.js';
import { Rehearsal } from './harness.js';
import { seedBulk } from './run-fault-case.js';
import { deploy, findObject, helmRun, installV1, legacyConnection, NAMES, seedKeycloakData } from './scenario.js';

describe.each([helmRun(4), helmRun(3)])('rollback to v1 after a v2 upgrade failed in its pre-upgrade hooks, with $label', ({ helm }) => {
  let rehearsal: Rehearsal | undefined;
  afterEach(async () => {
    await rehearsal?.close();
    rehearsal = undefined;
  });

  it('helm rollback aborts on the failed release; helm upgrade with the v1 chart brings v1 back on the intact legacy database', async () => {
    rehearsal = await Rehearsal.start({
      // More data than the 1Mi backup volume below holds.
      seedLegacy: async (c) => {
        await seedKeycloakData(c);
        await seedBulk(c);
      },
      helm: { major: helm, timeoutMs: 120_000 },
    });
    const { v1, legacy } = await installV1(rehearsal, 'helm');
    const keycloak = findObject(v1, 'StatefulSet', NAMES.keycloak);

    const v2 = rehearsal.synthesize('v2', { migration: { backupSize: '1Mi', backupMinSize: '1Mi' } });
    const failed = await deploy(rehearsal, 'helm', v2);
    expect(failed.ok).toBe(false);
    expect(failed.error?.message).toMatch(/pre-upgrade hooks failed/);
    expect(rehearsal.helm.status).toBe('failed');
    // Stopped before anything was deleted: the legacy StatefulSet is there.
    expect(rehearsal.server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: NAMES.legacyStatefulSet, namespace: rehearsal.namespace })).toBeDefined();

    // The intuitive command fails: helm applies what it can of v1 (its update errors are collected,
    // not fatal one by one) and records a failed rollback release.
    const rollback = await rehearsal.helm.rollback(1);
    expect(rollback.ok).toBe(false);
    // helm 3: `no Service with the name "…" found`; helm 4: `original object Service with the name "…" not found`.
    expect(rollback.error?.message).toMatch(/(no|original object) \w+ with the name "keycloak-postgresql[a-z-]*" (not )?found/);
    expect(rehearsal.helm.status).toBe('failed');

    // The command that works: helm upgrade with the v1 chart.
    const back = await deploy(rehearsal, 'helm', v1);
    expect(back.error?.message).toBeUndefined();
    expect(rehearsal.helm.status).toBe('deployed');
    await rehearsal.waitReady(keycloak, 120_000);
    expect(fingerprintDifferences(legacy, await fingerprint(legacyConnection(rehearsal)), 'legacy')).toEqual([]);
    // Keycloak (its v1 template) ran on the legacy database throughout: the failed backup came before
    // the quiesce, and nothing ever wrote to a new database.
    const writes = rehearsal.workloads.keycloakWrites;
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.filter((write) => write.host !== NAMES.legacyStatefulSet)).toEqual([]);
    expect(rehearsal.server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: NAMES.legacyStatefulSet, namespace: rehearsal.namespace })).toBeDefined();
  });
});
