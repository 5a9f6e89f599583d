/**
 * Runs one {@link FaultCase} with one tool: v1 installed with Keycloak-shaped data (plus bulk
 * data when the case kills inside dump or restore), the first v2 attempt with the fault, the
 * case's checks, the operator's fix and a second attempt, then the full migration checks and a
 * no-op repeat (scenario.ts). `config` chooses e.g. the target's flavor.
 */
import { expect } from 'vitest';

import type { PlatformConfig } from '../lib/platform-config.js';

import { withClient, type Connection } from './checks.js';
import { transformShape, type FaultCase, type FaultContext } from './faults.js';
import { Rehearsal } from './harness.js';
import { deploy, expectNoOpRepeat, installV1, seedKeycloakData, verifyMigrated, type Tool } from './scenario.js';

/**
 * The whole matrix runs into repmgr + Pgpool; fault-cloudnative-pg.test.ts runs the cases that
 * touch the target (kills inside dump and restore, the restore failures) into CloudNativePG.
 */
export const REPMGR: PlatformConfig = { database: { flavor: 'repmgr' } };

/** Enough data that dump and restore take long enough to be killed in the middle. */
const BULK_BYTES = 24 * 1024 * 1024;

export async function runFaultCase(fault: FaultCase, tool: Tool, config: PlatformConfig = {}): Promise<void> {
  const rehearsal = await Rehearsal.start({
    config,
    seedLegacy: async (connection) => {
      await seedKeycloakData(connection);
      if (fault.bulk) await seedBulk(connection);
    },
    helm: { timeoutMs: 180_000 },
    argo: { waveTimeoutMs: 180_000 },
  });
  try {
    const { v1, legacy } = await installV1(rehearsal, tool);
    const context: FaultContext = { rehearsal, tool, legacy, v1 };
    const always = fault.always ?? ((object) => object);
    const v2 = transformShape(rehearsal.synthesize('v2', fault.v2Config), always);
    await fault.arm?.(context);
    const first = await deploy(rehearsal, tool, fault.transform ? transformShape(v2, fault.transform) : v2);
    if (fault.firstAttempt === 'succeeds') expect(first.error?.message, failedPodLogs(rehearsal)).toBeUndefined();
    else expect(first.ok, 'the first attempt was expected to fail').toBe(false);
    await fault.afterFirst?.(context, first);

    let final = v2;
    if (fault.firstAttempt === 'fails') {
      await fault.fix?.(context);
      if (fault.fixConfig) final = transformShape(rehearsal.synthesize('v2', fault.fixConfig), always);
      const retry = await deploy(rehearsal, tool, final);
      expect(retry.error?.message, failedPodLogs(rehearsal)).toBeUndefined();
    }
    await verifyMigrated(rehearsal, final, legacy);
    await expectNoOpRepeat(rehearsal, tool, final);
  } finally {
    await rehearsal.close();
  }
}

/**
 * The end of the log of every pod that exited with an error (not killed by the case): an
 * unexpected failure names its cause in the test's message, since CI keeps no pod logs.
 */
function failedPodLogs(rehearsal: Rehearsal): string {
  return rehearsal.jobs.runs
    .filter((run) => run.exitCode !== undefined && run.exitCode !== null && run.exitCode !== 0)
    .map((run) => `pod ${run.podName} exited ${run.exitCode}; its log ends:\n${rehearsal.jobs.logsOf(run.podName).split('\n').slice(-25).join('\n')}`)
    .join('\n\n');
}

/** Adds ~24 MiB to the legacy database (more than a 1Mi backup volume holds, and long dumps). */
export async function seedBulk(connection: Connection): Promise<void> {
  await withClient(connection, async (client) => {
    const rows = Math.ceil(BULK_BYTES / 1024);
    await client.query(`CREATE TABLE public.offline_user_session (id bigint PRIMARY KEY, data text)`);
    await client.query(
      `INSERT INTO public.offline_user_session SELECT i, (SELECT string_agg(md5((i * 100 + j)::text), '') FROM generate_series(1, 32) AS j) FROM generate_series(1, ${rows}) AS i`,
    );
  });
}
