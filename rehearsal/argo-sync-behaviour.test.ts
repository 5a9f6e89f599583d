// Argo CD as its source behaves (gitops-engine, ../shared/reference/gitops-tools-from-source.md),
// against the migration:
// - prune runs FIRST in its wave: the legacy StatefulSet, dropped from Git, is deleted at the start
//   of Sync wave 0 — after the PreSync backup, while the new database is still starting;
// - `PruneLast=true` moves that prune after the Sync phase's last wave (Keycloak's);
// - when the new database never becomes healthy (its operator is down), the sync stops in wave 0
//   with the legacy StatefulSet already pruned; reverting Git brings v1 back on the retained
//   volume, nothing lost;
// - a selective sync (what automated self-heal runs) after a failed migration runs no hook: v2's
//   Keycloak is applied but its database gate keeps it off the empty new database; the next full
//   sync completes the migration;
// - `ServerSideApply=true`: Argo CD applies server-side with force as `argocd-controller`; the
//   runner's scale of Keycloak leaves no ownership behind to fight over.
import { afterEach, describe, expect, it } from 'vitest';

import { fingerprint, fingerprintDifferences, KEYCLOAK_RUNTIME_TABLES, KEYCLOAK_WRITES_TABLE } from './checks.js';
import { jobEnv, transformShape } from './faults.js';
import { Rehearsal } from './harness.js';
import { ARGOCD_FIELD_MANAGER, type LifecycleEvent } from './lifecycle.js';
import { deploy, expectNoOpRepeat, findObject, installV1, legacyConnection, NAMES, readState, seedKeycloakData, targetDatabase, verifyMigrated } from './scenario.js';

const LEGACY_STATEFULSET = `StatefulSet/${NAMES.legacyStatefulSet}`;

/** Index of the first event matching, or -1. */
function indexOf(events: readonly LifecycleEvent[], action: LifecycleEvent['action'], target: string | RegExp): number {
  return events.findIndex((event) => event.action === action && (typeof target === 'string' ? event.target.includes(target) : target.test(event.target)));
}

describe('Argo CD as gitops-engine syncs', () => {
  let rehearsal: Rehearsal | undefined;
  afterEach(async () => {
    await rehearsal?.close();
    rehearsal = undefined;
  });

  it('prune on: the legacy StatefulSet is pruned first in wave 0, after the verified backup and before the new database is applied; nothing lost', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy: (c) => seedKeycloakData(c), argo: { waveTimeoutMs: 180_000 } });
    const { legacy } = await installV1(rehearsal, 'argocd');
    const v2 = rehearsal.synthesize('v2');
    const result = await deploy(rehearsal, 'argocd', v2);
    expect(result.error?.message).toBeUndefined();
    const { events } = result;
    const backupDone = indexOf(events, 'hook-ready', '-migration-backup');
    const pruned = indexOf(events, 'prune', LEGACY_STATEFULSET);
    const wave0 = events.findIndex((event) => event.action === 'wave' && event.target === 'Sync 0');
    const clusterApplied = indexOf(events, 'apply', `Cluster/${NAMES.cnpgCluster}`);
    expect(backupDone).toBeGreaterThanOrEqual(0);
    expect(pruned).toBeGreaterThan(backupDone);
    expect(pruned).toBeGreaterThan(wave0);
    expect(pruned).toBeLessThan(clusterApplied);
    await verifyMigrated(rehearsal, v2, legacy);
  });

  it('PruneLast=true: the legacy objects are pruned after Keycloak’s wave; nothing lost', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy: (c) => seedKeycloakData(c), argo: { waveTimeoutMs: 180_000, pruneLast: true } });
    const { legacy } = await installV1(rehearsal, 'argocd');
    const v2 = rehearsal.synthesize('v2');
    const result = await deploy(rehearsal, 'argocd', v2);
    expect(result.error?.message).toBeUndefined();
    const { events } = result;
    const pruned = indexOf(events, 'prune', LEGACY_STATEFULSET);
    const keycloakReady = indexOf(events, 'ready', `StatefulSet/${NAMES.keycloak}`);
    expect(keycloakReady).toBeGreaterThanOrEqual(0);
    expect(pruned).toBeGreaterThan(keycloakReady);
    await verifyMigrated(rehearsal, v2, legacy);
  });

  it('the new database never becomes healthy (operator down): the sync stops in wave 0 with the legacy StatefulSet pruned; reverting Git to v1 brings Keycloak back on the retained volume, nothing lost', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy: (c) => seedKeycloakData(c), argo: { waveTimeoutMs: 20_000 }, workloads: { keycloakWriteIntervalMs: 200 } });
    const { v1 } = await installV1(rehearsal, 'argocd');
    // Keycloak's steady writes go on across the upgrade and the revert: every other table is compared.
    const notCompared = [...KEYCLOAK_RUNTIME_TABLES, KEYCLOAK_WRITES_TABLE];
    const legacy = await fingerprint(legacyConnection(rehearsal), notCompared);
    // The CloudNativePG operator is not running: the Cluster is stored but never reconciled.
    await rehearsal.cnpg!.close();
    const v2 = rehearsal.synthesize('v2');
    const failed = await deploy(rehearsal, 'argocd', v2);
    expect(failed.ok).toBe(false);
    expect(failed.error?.message).toMatch(new RegExp(`Cluster/${NAMES.cnpgCluster}`));
    // Prune ran first in wave 0: the legacy StatefulSet is already gone, its claim is not.
    expect(indexOf(failed.events, 'prune', LEGACY_STATEFULSET)).toBeGreaterThanOrEqual(0);
    expect(rehearsal.server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: NAMES.legacyStatefulSet, namespace: rehearsal.namespace })).toBeUndefined();
    expect(rehearsal.server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: NAMES.legacyPvc, namespace: rehearsal.namespace })).toBeDefined();

    // The operator reverts Git: Argo CD syncs v1 again.
    const reverted = await deploy(rehearsal, 'argocd', v1);
    expect(reverted.error?.message).toBeUndefined();
    await rehearsal.waitReady(findObject(v1, 'StatefulSet', NAMES.keycloak), 120_000);
    const revertedAt = Date.now();
    // Every table as before the upgrade.
    expect(fingerprintDifferences(legacy, await fingerprint(legacyConnection(rehearsal), notCompared), 'legacy')).toEqual([]);
    await expect.poll(() => rehearsal!.workloads.keycloakAcceptedWrites.filter((write) => write.at > revertedAt).length, { timeout: 60_000 }).toBeGreaterThan(5);
    expect(rehearsal.workloads.keycloakAcceptedWrites.every((write) => write.host === NAMES.legacyStatefulSet)).toBe(true);
  });

  it('a selective sync (self-heal) after a failed migration runs no hook: Keycloak’s gate keeps it off the empty new database; the next full sync converges', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy: (c) => seedKeycloakData(c), argo: { waveTimeoutMs: 120_000 } });
    const { legacy } = await installV1(rehearsal, 'argocd');
    const target = targetDatabase(rehearsal).appService;
    const v2 = transformShape(rehearsal.synthesize('v2'), jobEnv('-restore', 'MIGRATION_TARGET_WAIT_SECONDS', '3'));
    // The restore cannot reach the new database: the migration fails in Sync wave 5.
    rehearsal.proxies.block(target);
    const failed = await deploy(rehearsal, 'argocd', v2);
    expect(failed.ok).toBe(false);
    expect(failed.error?.message).toMatch(/migration-restore/);
    const before = readState(rehearsal).state;
    expect(before?.lastError?.message).toBeTruthy();

    // Self-heal: resources only. Keycloak's v2 pods start and wait at their gate.
    const selective = await rehearsal.argo.sync(v2.argocd, { hooks: false, waveTimeoutMs: 15_000 });
    expect(selective.events.filter((event) => event.action.startsWith('hook-'))).toEqual([]);
    expect(selective.ok).toBe(false);
    expect(selective.error?.message).toMatch(new RegExp(`StatefulSet/${NAMES.keycloak}`));
    expect(readState(rehearsal).state?.phase).toBe(before?.phase);
    expect(rehearsal.workloads.keycloakWrites.filter((write) => write.host === target)).toEqual([]);

    // The fix, then a full sync: the migration resumes and completes.
    rehearsal.proxies.unblock(target);
    const full = await deploy(rehearsal, 'argocd', v2);
    expect(full.error?.message).toBeUndefined();
    await verifyMigrated(rehearsal, v2, legacy);
  });

  it('ServerSideApply=true: applied server-side with force as argocd-controller; the migration completes and leaves Keycloak’s replicas to Argo CD', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy: (c) => seedKeycloakData(c), argo: { waveTimeoutMs: 180_000, serverSideApply: true } });
    const { legacy } = await installV1(rehearsal, 'argocd');
    const v2 = rehearsal.synthesize('v2');
    const result = await deploy(rehearsal, 'argocd', v2);
    expect(result.error?.message).toBeUndefined();
    await verifyMigrated(rehearsal, v2, legacy);
    const keycloak = rehearsal.server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: NAMES.keycloak, namespace: rehearsal.namespace })!;
    const managedFields = (keycloak.metadata.managedFields ?? []) as { manager: string; fieldsV1?: unknown }[];
    const owners = managedFields.filter((entry) => JSON.stringify(entry.fieldsV1 ?? {}).includes('"f:replicas"'));
    expect(owners.map((entry) => entry.manager)).toEqual([ARGOCD_FIELD_MANAGER]);
    await expectNoOpRepeat(rehearsal, 'argocd', v2);
  });
});
