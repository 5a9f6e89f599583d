/**
 * Latency of the two commands that run on every sync or pod start once the migration is done:
 *
 * - the pre-phase decision (the `prepare` hook Job, which Argo CD runs on every sync): node start-up,
 *   read the state ConfigMap, see Completed, make sure the backup PVC exists, exit 0;
 * - Keycloak's database gate (its init container): node start-up, connect with Keycloak's own
 *   credentials, read the ready marker, exit 0.
 *
 * Both against a cluster that really was migrated: the test world of the hook tests (two real
 * PostgreSQL servers, the fake Kubernetes API server with the RBAC the DatabaseMigration construct
 * synthesizes) after `prepare`, `backup-phase` and `restore-phase` ran there, so the runner gets
 * exactly its Job's environment and a ServiceAccount token bound by that RBAC.
 */
import { RunnerCommand } from '../lib/contract.js';
import { BUNDLE, createScenario, startWorld, TARGET_APP_USER } from '../test/support/runner-hooks-harness.js';
import { measureLatency, type LatencyResult } from './measure-latency.js';

export interface MigratedClusterLatency {
  readonly prePhase: LatencyResult;
  readonly gate: LatencyResult;
}

export async function measureMigratedClusterLatency(options: { repositoryRoot: string; runs?: number }): Promise<MigratedClusterLatency> {
  const world = await startWorld();
  try {
    const scenario = await createScenario(world, { namespace: 'bench-latency' });
    await scenario.migrate();
    const phase = scenario.state()?.phase;
    if (phase !== 'Completed') throw new Error(`the migration of the latency world ended in phase ${phase}, not Completed`);
    const runs = options.runs ?? 20;
    const prePhase = await measureLatency({
      name: 'Pre-phase no-op decision (already migrated)',
      argv: [process.execPath, BUNDLE, RunnerCommand.prepare],
      env: scenario.env(RunnerCommand.prepare, 'kc-migration-prepare-bench'),
      cwd: options.repositoryRoot,
      runs,
      warmup: 3,
    });
    const target = scenario.targetSettings(TARGET_APP_USER);
    const gate = await measureLatency({
      name: 'Database gate (marker present)',
      argv: [process.execPath, BUNDLE, RunnerCommand.gate],
      env: {
        TARGET_PGHOST: target.host,
        TARGET_PGPORT: String(target.port),
        TARGET_PGUSER: target.user,
        TARGET_PGPASSWORD: target.password ?? '',
        TARGET_PGDATABASE: target.database,
        MIGRATION_LOG_FORMAT: 'json',
      },
      cwd: options.repositoryRoot,
      runs,
      warmup: 3,
    });
    return { prePhase, gate };
  } finally {
    await world.stop();
  }
}
