/**
 * The cost Argo CD pays on every sync once the migration is done: the pre-phase Job's runner
 * starts, reads the state ConfigMap, sees the migration completed and exits 0. Measured from node
 * start-up to exit, against the fake Kubernetes API server (a real HTTP server speaking the API's
 * REST protocol, so the runner's client-node code runs as in a cluster, minus network latency).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Env, RunnerCommand } from '../lib/contract.js';
import { advance, newMigrationState, PHASE_ORDER, serializeState, type MigrationState } from '../runner/src/state.js';
import { startFakeKubeApiServer } from '../test/support/fake-kube/index.js';
import { measureLatency, type LatencyResult } from './measure-latency.js';

const NAMESPACE = 'keycloak';
const STATE_CONFIGMAP = 'keycloak-db-migration-state';

export interface PrePhaseOptions {
  readonly repositoryRoot: string;
  /** Path of runner/dist/runner.mjs. */
  readonly bundle: string;
  /** Database endpoints the Job's environment carries (the decision must not need them). */
  readonly databaseEnv: Readonly<Record<string, string>>;
  readonly runs?: number;
}

/** A migration that went through every phase, as the runner's own state module records it. */
function completedState(): MigrationState {
  let state = newMigrationState('bench-completed-migration', new Date(Date.now() - 3_600_000));
  for (const phase of PHASE_ORDER.slice(1)) state = advance(state, phase, `bench: ${phase}`);
  return state;
}

export async function measurePrePhaseDecision(options: PrePhaseOptions): Promise<LatencyResult> {
  const kube = await startFakeKubeApiServer();
  const dir = mkdtempSync(join(tmpdir(), 'bench-kube-'));
  try {
    kube.seed({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: STATE_CONFIGMAP, namespace: NAMESPACE },
      data: serializeState(completedState()),
    });
    const kubeconfig = kube.writeKubeconfig(join(dir, 'kubeconfig'), kube.adminToken, NAMESPACE);
    return measureLatency({
      name: 'Pre-phase no-op decision (already migrated)',
      argv: ['node', options.bundle, RunnerCommand.prepare],
      env: {
        KUBECONFIG: kubeconfig,
        [Env.namespace]: NAMESPACE,
        [Env.podName]: 'keycloak-db-migration-prepare-bench',
        [Env.stateConfigMap]: STATE_CONFIGMAP,
        [Env.lockLease]: 'keycloak-db-migration-lock',
        [Env.backupPvc]: 'keycloak-db-migration-backup',
        [Env.backupDir]: '/backup',
        [Env.workloads]: 'statefulset/keycloak',
        [Env.legacyStatefulSet]: 'keycloak-postgresql',
        [Env.legacyPvcs]: 'data-keycloak-postgresql-0',
        [Env.logFormat]: 'json',
        ...options.databaseEnv,
      },
      cwd: options.repositoryRoot,
      runs: options.runs ?? 20,
      warmup: 3,
    });
  } finally {
    await kube.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
