// The rehearsal has teeth: with the database-gate init container removed from the synthesized
// Keycloak StatefulSet, a Helm upgrade re-applies Keycloak's replicas before the post-upgrade
// restore, Keycloak starts on the empty new database and creates its schema there — the runner
// refuses to restore over it (dropping nothing), the checks of scenario.ts reject the result, and
// the fix the runner's error names converges.
// (Argo CD's waves put Keycloak after the restore, so there the gate guards selective syncs
// rather than the normal order.)
import { afterEach, describe, expect, it } from 'vitest';

import { Phase } from '../lib/contract.js';
import { withClient } from './checks.js';
import { transformShape } from './faults.js';
import { Rehearsal } from './harness.js';
import type { KubeObject } from './manifests.js';
import { waitFor } from './postgres-processes.js';
import {
  defaultRun,
  deploy,
  findObject,
  holdRestoreUntilKeycloakReachedTheNewDatabase,
  isKeycloakPod,
  installV1,
  NAMES,
  appConnection,
  readState,
  seedKeycloakData,
  verifyMigrated,
} from './scenario.js';

function withoutGate(object: KubeObject): KubeObject {
  if (object.kind !== 'StatefulSet' || object.metadata.name !== NAMES.keycloak) return object;
  const copy = structuredClone(object);
  delete (copy.spec as { template: { spec: { initContainers?: unknown } } }).template.spec.initContainers;
  return copy;
}

describe('without the database gate', () => {
  let rehearsal: Rehearsal | undefined;
  afterEach(async () => rehearsal?.close());

  it(`a Helm upgrade (${defaultRun('helm').label}) lets Keycloak write to the new database before the restore; the runner refuses to restore over it, the checks say so, and the documented fix converges`, async () => {
    // repmgr: the check reaches the primary's superuser through the repmgr cluster.
    rehearsal = await Rehearsal.start({ config: { database: { flavor: 'repmgr' } }, seedLegacy: (c) => seedKeycloakData(c) });
    const { legacy } = await installV1(rehearsal, 'helm');
    const v2 = transformShape(rehearsal.synthesize('v2'), withoutGate);
    holdRestoreUntilKeycloakReachedTheNewDatabase(rehearsal);
    const result = await deploy(rehearsal, 'helm', v2);

    const early = rehearsal.workloads.keycloakWrites.filter((write) => write.host === NAMES.pgpoolService);
    expect(early.some((write) => write.createdSchema)).toBe(true);

    // The restore Job fails with a data error, before the restore, naming the likely cause.
    expect(result.ok).toBe(false);
    expect(result.error?.message).toMatch(/post-upgrade hooks failed: [\s\S]*keycloak-migration-restore/);
    const { state } = readState(rehearsal);
    expect(state?.phase).toBe(Phase.failed);
    expect(state?.lastError?.step).toBe('mark-restoring');
    expect(state?.lastError?.message).toMatch(/already holds .*public\.databasechangeloglock.*no restore has started there.*without its database gate/);

    // Nothing Keycloak wrote was dropped.
    const left = await withClient(await appConnection(rehearsal), async (client) =>
      (await client.query<{ table: string }>(`SELECT to_regclass('public.jgroups_ping')::text AS table`)).rows[0]!.table,
    );
    expect(left).toBe('jgroups_ping');

    await expect(verifyMigrated(rehearsal, v2, legacy)).rejects.toThrow(/created Keycloak's schema/);

    // The operator follows the error's hint: Keycloak down, the new database recreated empty, the
    // gate back in the template; the next upgrade resumes from the verified backup and converges.
    const keycloak = findObject(v2, 'StatefulSet', NAMES.keycloak);
    const live = rehearsal.cluster.get(keycloak)!;
    rehearsal.server.upsert({ ...live, spec: { ...(live.spec as object), replicas: 0 } });
    await waitFor('Keycloak pods to be gone', async () => !rehearsal!.server.list('v1', 'Pod', rehearsal!.namespace).some((pod) => isKeycloakPod(pod.metadata.name)), 120_000);
    const primary = (await rehearsal.workloads.repmgrCluster(NAMES.haStatefulSet))!.nodes[0]!;
    const superuser = { host: '127.0.0.1', port: primary.port, user: 'postgres', password: rehearsal.secretValue(NAMES.haSecret, 'postgres-password')!, database: 'postgres' };
    await withClient(superuser, async (client) => {
      const owner = (await client.query<{ owner: string }>(`SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'keycloak'`)).rows[0]!.owner;
      await client.query('DROP DATABASE keycloak WITH (FORCE)');
      await client.query(`CREATE DATABASE keycloak OWNER ${client.escapeIdentifier(owner)}`);
    });
    const fixedAt = Date.now();
    const fixed = rehearsal.synthesize('v2');
    const again = await deploy(rehearsal, 'helm', fixed);
    expect(again.error?.message).toBeUndefined();
    await verifyMigrated(rehearsal, fixed, legacy, { keycloakWritesSince: fixedAt });
  });
});
