/**
 * `status`: the state ConfigMap as a person wants to read it — phase, the decision, the step
 * history with durations and attempts, the backup, the verification, the protected volumes and the
 * last error. `--json` prints the stored state as it is.
 *
 * Needs only read access to the state ConfigMap. Namespace and name come from flags, the Jobs'
 * variables, or defaults (the kubeconfig context's namespace, {@link DEFAULT_STATE_CONFIGMAP}), so
 * that `npx keycloak-postgres-ha-migration status -n keycloak` works from a workstation.
 */
import { Env, RunnerCommand } from '../../../lib/contract.js';
import { defineCommand } from '../cli.js';
import { usageError } from '../errors.js';
import { createKubeContext } from '../kube/client.js';
import { StateStore } from '../kube/state-store.js';
import { formatBytes, formatDuration } from '../log.js';
import { effectivePhase, type MigrationState } from '../state.js';

function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const render = (cells: readonly string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd();
  return [render(header), ...rows.map(render)];
}

/** The human-readable report of a state (pure, for tests). */
export function formatStatus(state: MigrationState, configMap: string): string {
  const lines: string[] = [];
  const field = (name: string, value: string) => lines.push(`${`${name}:`.padEnd(20)}${value}`);
  field('Migration', `${state.migrationId} (ConfigMap ${configMap})`);
  field('Phase', state.phase === 'Failed' ? `Failed (resumes from ${effectivePhase(state)})` : state.phase);
  if (state.decisionReason) field('Decision', state.decisionReason);
  if (state.adoptedLegacy) field('Adopted legacy', state.adoptedLegacy.evidence);
  for (const [configured, adopted] of Object.entries(state.adoptedWorkloads ?? {})) {
    const copies = adopted.secretCopies.length > 0 ? `; copied ${adopted.secretCopies.join(', ')}` : '';
    field('Adopted workload', `${adopted.workload} for ${configured} (labels ${adopted.selector})${copies}`);
  }
  field('Created', state.createdAt);
  field('Updated', state.updatedAt);
  if (state.currentStep) field('Step in progress', `${state.currentStep.name} since ${state.currentStep.startedAt}`);
  const backup = state.backup;
  field(
    'Backup',
    backup
      ? `${formatBytes(backup.bytes)}, ${backup.tableCount} tables, ${backup.rows} rows in ${backup.dir}${backup.pvc ? ` on PVC ${backup.pvc}` : ''} (manifest sha256 ${backup.manifestSha256.slice(0, 16)}…)`
      : 'none yet',
  );
  if (state.supersededBackups?.length) {
    field('Superseded backups', state.supersededBackups.map((backup) => `${backup.dir} at ${backup.phase} (${backup.at}): ${backup.reason}`).join('; '));
  }
  const verification = state.verification;
  field(
    'Verification',
    verification
      ? verification.ok
        ? `passed at ${verification.at}: ${verification.tablesChecked} tables, ${verification.rowsChecked} rows match the backup`
        : `FAILED at ${verification.at}: ${verification.mismatches.join('; ')}`
      : 'not yet',
  );
  field(
    'Protected volumes',
    state.protectedVolumes.length ? state.protectedVolumes.map((volume) => `${volume.pvc} → PV ${volume.pv} Retain (was ${volume.previousReclaimPolicy})`).join(', ') : 'none',
  );
  const originals = Object.entries(state.originalReplicas);
  field('Original replicas', originals.length ? originals.map(([key, replicas]) => `${key}=${replicas}`).join(', ') : 'none recorded');
  field('Legacy deleted', state.legacyDeleted ? 'yes' : 'no');
  field('Ready marker', state.readyMarkerAt ? `written at ${state.readyMarkerAt}` : 'not written by this migration');
  const attempts = Object.entries(state.attempts);
  field('Attempts', attempts.length ? attempts.map(([step, count]) => `${step}=${count}`).join(', ') : 'none');
  const error = state.lastError;
  field('Last error', error ? `${error.step} (exit ${error.exitCode}) at ${error.at}: ${error.message}` : 'none');
  lines.push('', 'History:');
  if (state.history.length === 0) lines.push('  (no phase reached yet)');
  else {
    const rows = state.history.map((entry) => [entry.phase, entry.startedAt, formatDuration(entry.durationMs), String(entry.attempt), entry.detail ?? '']);
    lines.push(...table(['PHASE', 'STARTED', 'DURATION', 'ATTEMPT', 'DETAIL'], rows).map((line) => `  ${line}`));
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The state ConfigMap's name when neither --configmap nor MIGRATION_STATE_CONFIGMAP is given: what
 * KeycloakPlatform names it for a release called `keycloak` (`<release>-migration-state`).
 */
export const DEFAULT_STATE_CONFIGMAP = 'keycloak-migration-state';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export const statusCommand = defineCommand({
  name: RunnerCommand.status,
  summary: 'Show the migration state ConfigMap: phase, step history with durations, backup, verification, last error',
  description: `
Reads the state ConfigMap through KUBECONFIG (or the pod's ServiceAccount). From a workstation:
  npx keycloak-postgres-ha-migration status -n keycloak
  kubectl keycloak-migration status -n keycloak     (the package's kubectl plugin)
The namespace is --namespace, else ${Env.namespace}, else the kubeconfig context's; the ConfigMap is
--configmap, else ${Env.stateConfigMap}, else ${DEFAULT_STATE_CONFIGMAP}. Exit 0 also when no
migration has started.`,
  flags: {
    json: { type: 'boolean', description: 'Print the stored state as JSON' },
    namespace: { type: 'string', short: 'n', env: Env.namespace, valueName: 'NAMESPACE', description: "Namespace of the release (default: the kubeconfig context's)" },
    configmap: { type: 'string', short: 'c', env: Env.stateConfigMap, default: DEFAULT_STATE_CONFIGMAP, valueName: 'NAME', description: 'Name of the state ConfigMap' },
  },
  async run({ flags, env, log, stdout }) {
    if (flags.namespace !== undefined && !DNS_LABEL.test(flags.namespace)) {
      throw usageError(`--namespace must be a Kubernetes namespace name (lower-case letters, digits and '-'), got "${flags.namespace}"`, 'fix --namespace (or MIGRATION_NAMESPACE)');
    }
    if (!DNS_SUBDOMAIN.test(flags.configmap)) {
      throw usageError(`--configmap must be a ConfigMap name (lower-case letters, digits, '-' and '.'), got "${flags.configmap}"`, 'fix --configmap (or MIGRATION_STATE_CONFIGMAP)');
    }
    // The flag wins over MIGRATION_NAMESPACE; without either, createKubeContext takes the context's.
    const kube = createKubeContext({ env: flags.namespace !== undefined ? { ...env, [Env.namespace]: flags.namespace } : env, log });
    const store = new StateStore(kube, { name: flags.configmap, ...(env[Env.podName] ? { instance: env[Env.podName] } : {}) });
    const stored = await store.read();
    if (!stored) {
      stdout.write(flags.json ? 'null\n' : `No migration state: ConfigMap ${store.name} does not exist in namespace ${kube.namespace} (prepare has not run).\n`);
      return 0;
    }
    stdout.write(flags.json ? `${JSON.stringify(stored.state, null, 2)}\n` : formatStatus(stored.state, store.name));
    return 0;
  },
});
