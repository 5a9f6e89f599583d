// Failover drills after a completed migration (failover-drill.ts), one per target flavor, while a
// writer that behaves like Keycloak's pool keeps writing through the application's Service: no
// acknowledged write lost, none into a read-only server, writes again within the bound; the
// measured outage goes to the rehearsal summary.
import { describe, expect, it } from 'vitest';

import { failoverDrill } from './failover-drill.js';
import { defaultRun, findObject, NAMES, upgradeScenario } from './scenario.js';

/** Writes must resume within this after the fault (measured values are in the summary). */
const OUTAGE_BOUND_MS = 20_000;

describe('failover drills after a completed migration', () => {
  it('CloudNativePG: a switchover moves -rw to the promoted standby', async ({ task }) => {
    const { rehearsal, v2 } = await upgradeScenario(defaultRun('argocd'), { database: { flavor: 'cloudnative-pg' } });
    try {
      const measurement = await failoverDrill(rehearsal, v2, () => rehearsal.cnpg!.promote(NAMES.cnpgCluster, `${NAMES.cnpgCluster}-2`), OUTAGE_BOUND_MS);
      task.meta.failover = measurement;
      expect(measurement.lost).toBe(0);
      expect(measurement.readOnlyWrites).toBe(0);
      expect(measurement.acknowledged).toBeGreaterThan(10);
      expect(rehearsal.cnpg!.errors).toEqual([]);
    } finally {
      await rehearsal.close();
    }
  });

  it('repmgr + Pgpool: the primary is killed, repmgrd promotes the standby, Pgpool fails over', async ({ task }) => {
    const { rehearsal, v2 } = await upgradeScenario(defaultRun('argocd'), { database: { flavor: 'repmgr' } });
    try {
      const cluster = (await rehearsal.workloads.repmgrCluster(NAMES.haStatefulSet))!;
      // repmgrd's patience comes from the StatefulSet's environment, as the image configures it.
      const env = (name: string) => {
        const statefulSet = findObject(v2, 'StatefulSet', NAMES.haStatefulSet);
        const value = (statefulSet.spec as { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } }).template.spec.containers[0]!.env.find((e) => e.name === name)?.value;
        if (value === undefined) throw new Error(`the repmgr StatefulSet sets no ${name}`);
        return Number(value);
      };
      await cluster.startDaemon(1, { reconnectAttempts: env('REPMGR_RECONNECT_ATTEMPTS'), reconnectInterval: env('REPMGR_RECONNECT_INTERVAL'), connectTimeout: env('REPMGR_CONNECT_TIMEOUT') });
      const measurement = await failoverDrill(rehearsal, v2, () => cluster.killNode(0), OUTAGE_BOUND_MS);
      task.meta.failover = measurement;
      expect(measurement.lost).toBe(0);
      expect(measurement.readOnlyWrites).toBe(0);
      expect(measurement.acknowledged).toBeGreaterThan(10);
    } finally {
      await rehearsal.close();
    }
  });
});
