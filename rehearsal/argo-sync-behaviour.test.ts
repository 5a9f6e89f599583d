// Argo CD as its source behaves (gitops-engine, ../shared/reference/gitops-tools-from-source.md),
// against the migration:
// - prune runs FIRST in its wave, the live object's own: v1's database (this project's, at wave
//   -40) carries `PruneLast=true`, which moves it after the Sync phase's last wave — after the new
//   database started (-40), the backup Sync hook stopped Keycloak, backed up and restored (-30)
//   and Keycloak was healthy on the new database (-10); a Bitnami release's objects carry no wave
//   and go at 0, the same place (rehearsal/takeover-argocd.test.ts);
// - the Application's `PruneLast=true` does the same for every pruned object;
// - when the new database never becomes healthy (its operator is down), the sync stops at the
//   database's wave before the backup: Keycloak was never stopped and the legacy StatefulSet never
//   pruned; reverting Git leaves v1 as it was, nothing lost;
// - a selective sync (what automated self-heal runs) after a failed migration runs no hook: v2's
//   Keycloak is applied but its database gate keeps it off the empty new database; the next full
//   sync completes the migration;
// - `ServerSideApply=true`: Argo CD applies server-side with force as `argocd-controller`; the
//   runner's scale of Keycloak leaves no ownership behind to fight over.
import { afterEach, describe, expect, it } from 'vitest';

import { fingerprint, fingerprintDifferences, KEYCLOAK_RUNTIME_TABLES, KEYCLOAK_WRITES_TABLE } from './checks.js';
import { jobEnv, restoresIn, transformShape } from './faults.js';
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

  it('prune on: the new database is healthy before the backup stops Keycloak, and v1’s database (PruneLast=true) is pruned after the last wave, once Keycloak is healthy on the new one; nothing lost', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy: (c) => seedKeycloakData(c), argo: { waveTimeoutMs: 180_000 } });
    const { legacy } = await installV1(rehearsal, 'argocd');
    const v2 = rehearsal.synthesize('v2');
    const result = await deploy(rehearsal, 'argocd', v2);
    expect(result.error?.message).toBeUndefined();
    const { events } = result;
    const clusterReady = indexOf(events, 'ready', `Cluster/${NAMES.cnpgCluster}`);
    const backupCreated = indexOf(events, 'hook-create', '-migration-backup');
    const backupDone = indexOf(events, 'hook-ready', '-migration-backup');
    const keycloakReady = indexOf(events, 'ready', `StatefulSet/${NAMES.keycloak}`);
    const pruned = indexOf(events, 'prune', LEGACY_STATEFULSET);
    // The wave the prune ran in: v1's database carries PruneLast=true (it sits at -40 itself), so the
    // Sync phase's last wave + 1 — the last wave being Keycloak's -10, gitops-engine counts from 0: 1.
    const pruneWave = events.map((event) => event.action).lastIndexOf('wave', pruned);
    // The new database's start-up is over before the downtime begins (the backup Job stops Keycloak).
    expect(clusterReady).toBeGreaterThanOrEqual(0);
    expect(backupCreated).toBeGreaterThan(clusterReady);
    expect(events[backupCreated]!.detail).toBe('Sync wave -30');
    expect(backupDone).toBeGreaterThan(backupCreated);
    // The legacy database goes only once Keycloak runs on the new one: the prune is not in the downtime.
    expect(keycloakReady).toBeGreaterThan(backupDone);
    // (Without the prune, lastIndexOf(…, -1) would search from the end and find the last wave.)
    expect(pruned).toBeGreaterThan(keycloakReady);
    expect(events[pruneWave]!.target).toBe('Sync 1');
    expect(pruneWave).toBeGreaterThan(keycloakReady);
    // The Sync phase's waves: the backup Job restores too, so no wave stands between it and
    // Keycloak's (each wave but the last costs Argo CD's pause of ARGOCD_SYNC_WAVE_DELAY).
    const syncWaves = events.filter((event) => event.action === 'wave' && event.target.startsWith('Sync ')).map((event) => event.target);
    expect(syncWaves).toEqual(['Sync -40', 'Sync -30', 'Sync -10', 'Sync 1']);
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

  it('the new database never becomes healthy (operator down): the sync stops at its wave, before the backup, with Keycloak still serving on the legacy database; reverting Git to v1 changes nothing, nothing lost', async () => {
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
    // Stopped at the database's wave: no backup Job, nothing pruned, Keycloak never stopped.
    expect(indexOf(failed.events, 'hook-create', '-migration-backup')).toBe(-1);
    expect(indexOf(failed.events, 'prune', LEGACY_STATEFULSET)).toBe(-1);
    expect(rehearsal.server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: NAMES.legacyStatefulSet, namespace: rehearsal.namespace })).toBeDefined();
    const failedAt = Date.now();
    await expect.poll(() => rehearsal!.workloads.keycloakAcceptedWrites.filter((write) => write.at > failedAt).length, { timeout: 30_000 }).toBeGreaterThan(5);

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
    const v2 = transformShape(rehearsal.synthesize('v2'), jobEnv(restoresIn, 'MIGRATION_TARGET_WAIT_SECONDS', '3'));
    // The restore cannot reach the new database: the migration fails in the backup Job's Sync
    // wave, which restores too (MIGRATION_RESTORE_IN_BACKUP_JOB).
    rehearsal.proxies.block(target);
    const failed = await deploy(rehearsal, 'argocd', v2);
    expect(failed.ok).toBe(false);
    expect(failed.error?.message).toMatch(/migration-backup/);
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
