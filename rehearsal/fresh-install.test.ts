// A fresh install of v2 (no legacy database anywhere) with each tool: the pre-phase decides there
// is nothing to migrate, Keycloak's gate lets it start at once on the empty new database, and a
// repeat is a no-op.
import { afterEach, describe, expect, it } from 'vitest';

import { Phase } from '../lib/contract.js';

import { Rehearsal } from './harness.js';
import { deploy, EVERY_TOOL, expectNoOpRepeat, findObject, NAMES, pgpoolConnection, readState } from './scenario.js';
import { probeWrite } from './checks.js';

describe.each(EVERY_TOOL)('fresh install of v2 with $label', ({ tool, helm }) => {
  let rehearsal: Rehearsal | undefined;
  afterEach(async () => {
    await rehearsal?.close();
    rehearsal = undefined;
  });

  it('migrates nothing and starts Keycloak on the new database', async () => {
    rehearsal = await Rehearsal.start({ argo: { waveTimeoutMs: 120_000 }, helm: { major: helm } });
    const v2 = rehearsal.synthesize('v2');
    const result = await deploy(rehearsal, tool, v2);
    expect(result.error?.message).toBeUndefined();
    await rehearsal.waitReady(findObject(v2, 'StatefulSet', NAMES.keycloak), 120_000);

    expect(readState(rehearsal).state?.phase).toBe(Phase.notNeeded);
    expect(rehearsal.server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: NAMES.legacyStatefulSet, namespace: rehearsal.namespace })).toBeUndefined();
    // Nothing to dump: no pg_dump ran, Keycloak created its own schema on the empty database.
    const logs = rehearsal.jobs.runs.map((run) => rehearsal!.jobs.logsOf(run.podName)).join('\n');
    expect(logs).not.toMatch(/"msg":"dumping"/);
    const writes = rehearsal.workloads.keycloakWrites;
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.every((write) => write.host === NAMES.pgpoolService)).toBe(true);
    expect(writes.some((write) => write.createdSchema)).toBe(true);
    expect((await probeWrite(await pgpoolConnection(rehearsal))).primary).toBe(true);

    await expectNoOpRepeat(rehearsal, tool, v2);
  });
});
