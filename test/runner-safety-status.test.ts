// `status` from a workstation: `npm run runner -- status -n keycloak` with only a kubeconfig. The
// namespace is --namespace, else MIGRATION_NAMESPACE, else the kubeconfig context's; the ConfigMap
// is --configmap, else MIGRATION_STATE_CONFIGMAP, else keycloak-migration-state.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, Phase, RunnerCommand } from '../lib/contract.js';
import { formatStatus } from '../runner/src/commands/status.js';
import { advance, newMigrationState, startStep, supersedeBackup } from '../runner/src/state.js';
import { createScenario, startWorld, type Scenario, type World } from './support/runner-hooks-harness.js';
import { logLines, runRunner } from './support/runner-cli.js';

let world: World;
let scenario: Scenario;
let laptop: Record<string, string>;

beforeAll(async () => {
  world = await startWorld({ users: 5 });
  scenario = await createScenario(world, { namespace: 'status-flags' });
  expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
  // What a person has on a laptop: their own kubeconfig (whose context names the namespace), nothing else.
  laptop = { KUBECONFIG: world.server.writeKubeconfig(join(world.root, 'laptop-kubeconfig'), world.server.adminToken, scenario.namespace) };
});
afterAll(async () => {
  await world?.stop();
});

describe('status flags', () => {
  it('reads the ConfigMap named by --configmap in the namespace named by -n, from source as npm run runner does', async () => {
    const result = await runRunner(['status', '-n', 'status-flags', '--configmap', 'kc-migration-state'], laptop);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Migration: +m-\d{8}-\d{6}-[0-9a-f]{6} \(ConfigMap kc-migration-state\)$/m);
    expect(result.stdout).toMatch(/^Phase: +Pending$/m);
  });

  it('defaults the ConfigMap to keycloak-migration-state and the namespace to the kubeconfig context\'s', async () => {
    const byDefault = await runRunner(['status', '-n', 'status-flags'], laptop);
    expect(byDefault.code, byDefault.stderr).toBe(0);
    expect(byDefault.stdout).toBe('No migration state: ConfigMap keycloak-migration-state does not exist in namespace status-flags (prepare has not run).\n');
    const fromContext = await runRunner(['status', '-c', 'kc-migration-state', '--json'], laptop);
    expect(fromContext.code, fromContext.stderr).toBe(0);
    expect(JSON.parse(fromContext.stdout)).toMatchObject({ phase: 'Pending', attempts: { prepare: 1 } });
  });

  it('takes MIGRATION_NAMESPACE / MIGRATION_STATE_CONFIGMAP when no flag is given, and the flags over them', async () => {
    const fromEnv = await runRunner(['status'], { ...laptop, MIGRATION_NAMESPACE: 'status-flags', MIGRATION_STATE_CONFIGMAP: 'kc-migration-state' });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
    expect(fromEnv.stdout).toMatch(/^Phase: +Pending$/m);
    const flagWins = await runRunner(['status', '--namespace', 'status-flags', '--configmap', 'kc-migration-state'], {
      ...laptop,
      MIGRATION_NAMESPACE: 'elsewhere',
      MIGRATION_STATE_CONFIGMAP: 'other-state',
    });
    expect(flagWins.code, flagWins.stderr).toBe(0);
    expect(flagWins.stdout).toMatch(/^Phase: +Pending$/m);
  });

  it('fails with 64 naming the flag when the namespace is not a namespace name', async () => {
    const result = await runRunner(['status', '-n', 'Keycloak_Prod'], laptop);
    expect(result.code).toBe(ExitCode.usage);
    expect(logLines(result.stderr).find((line) => line.level === 'error')?.msg).toBe(
      `--namespace must be a Kubernetes namespace name (lower-case letters, digits and '-'), got "Keycloak_Prod": fix --namespace (or MIGRATION_NAMESPACE)`,
    );
  });

  it('documents the flags in --help', async () => {
    const help = await runRunner(['status', '--help'], laptop);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/-n, --namespace NAMESPACE +Namespace of the release \(default: the kubeconfig context's\) \(env MIGRATION_NAMESPACE\)/);
    expect(help.stdout).toMatch(/-c, --configmap NAME +Name of the state ConfigMap \(env MIGRATION_STATE_CONFIGMAP, default keycloak-migration-state\)/);
  });

  it('shows superseded backups', () => {
    let state = advance(startStep(newMigrationState('m-20260101-120000-aaaaaa'), 'backup'), Phase.backedUp, 'dump', {
      changes: { backup: { dir: 'm-20260101-120000-aaaaaa', manifestSha256: 'a'.repeat(64), bytes: 1, tableCount: 1, rows: 1 } },
    });
    state = supersedeBackup(state, '7 write(s) to table audit.admin_event', new Date('2026-01-02T00:00:00Z'));
    expect(state.phase).toBe(Phase.quiesced);
    expect(state.backup).toBeUndefined();
    expect(formatStatus(state, 'kc-migration-state')).toContain(
      'Superseded backups: m-20260101-120000-aaaaaa at BackedUp (2026-01-02T00:00:00.000Z): 7 write(s) to table audit.admin_event\n',
    );
  });
});
