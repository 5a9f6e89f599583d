// `status` renders the state ConfigMap for people; `plan` says what each hook would do next and
// changes nothing (no state, no PVC, no scaling, no database writes).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Phase, RunnerCommand } from '../lib/contract.js';
import { formatStatus } from '../runner/src/commands/status.js';
import { advance, newMigrationState, recordFailure, startStep } from '../runner/src/state.js';
import { createScenario, KEYCLOAK_REPLICAS, startWorld, type World } from './support/runner-hooks-harness.js';

let world: World;

beforeAll(async () => {
  world = await startWorld({ users: 10 });
});
afterAll(async () => {
  await world?.stop();
});

describe('formatStatus', () => {
  it('shows the phase, the resume point, the backup, the failed verification, the last error and the history', () => {
    const t0 = new Date('2026-01-01T10:00:00Z');
    const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
    let state = newMigrationState('m-test', t0);
    state = advance(startStep(state, 'prepare', at(0)), Phase.quiesced, 'quiesced statefulset/keycloak', { now: at(12) });
    state = advance(startStep(state, 'backup', at(13)), Phase.backedUp, '14 tables', {
      now: at(73),
      changes: { backup: { dir: 'm-test', manifestSha256: 'ab'.repeat(32), bytes: 5 * 1024 * 1024, tableCount: 14, rows: 1234, pvc: 'kc-backup' }, originalReplicas: { 'statefulset/keycloak': 3 } },
    });
    state = { ...state, verification: { ok: false, at: at(100).toISOString(), tablesChecked: 14, rowsChecked: 0, mismatches: ['public.credential: 10 rows, expected 11'] } };
    state = recordFailure(state, { step: 'verify-target', message: 'the target does not match the backup in table(s) public.credential', exitCode: 65, terminal: true }, at(101));
    const text = formatStatus(state, 'kc-migration-state');
    expect(text).toContain('Migration:          m-test (ConfigMap kc-migration-state)');
    expect(text).toContain('Phase:              Failed (resumes from BackedUp)');
    expect(text).toContain('Backup:             5.2 MB, 14 tables, 1234 rows in m-test on PVC kc-backup (manifest sha256 abababababababab…)');
    expect(text).toContain('Verification:       FAILED at 2026-01-01T10:01:40.000Z: public.credential: 10 rows, expected 11');
    expect(text).toContain('Original replicas:  statefulset/keycloak=3');
    expect(text).toContain('Attempts:           prepare=1, backup=1');
    expect(text).toContain('Last error:         verify-target (exit 65) at 2026-01-01T10:01:41.000Z: the target does not match the backup in table(s) public.credential');
    expect(text).toMatch(/  PHASE +STARTED +DURATION +ATTEMPT +DETAIL\n  Quiesced +2026-01-01T10:00:00.000Z +12\.0s +1 +quiesced statefulset\/keycloak\n  BackedUp +2026-01-01T10:00:13.000Z +1m00s +1 +14 tables/);
  });
});

describe('status and plan against a scenario', () => {
  it('plan before anything says what each hook would do and changes nothing', async () => {
    const scenario = await createScenario(world, { namespace: 'plan' });
    const status = await scenario.run(RunnerCommand.status);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toBe('No migration state: ConfigMap kc-migration-state does not exist in namespace plan (prepare has not run).\n');

    world.server.clearRequestLog();
    const plan = await scenario.run(RunnerCommand.plan);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('State: none (ConfigMap kc-migration-state does not exist)');
    expect(plan.stdout).toMatch(/^Source: reachable, PostgreSQL 15\.\d+/m);
    expect(plan.stdout).toMatch(/^prepare: +migrate \(the source database is reachable .*\): create the state, ensure 1 Secret\(s\), create the backup PVC kc-migration-backup \(1Gi\), checksum the source while the workloads still run$/m);
    expect(plan.stdout).toMatch(/^backup-phase: +record the replicas of statefulset\/keycloak and scale them to 0 → Quiesced; dump the source onto the backup volume → BackedUp; verify the backup .* → BackupVerified; set the PVs of data-legacy-postgresql-0 to Retain → LegacyProtected$/m);
    expect(plan.stdout).toMatch(/^restore-phase: +wait for the target .* → Restoring; .*; hygiene, mark ready, scale the workloads back, build the plain indexes while they start, delete statefulset\/legacy-postgresql, pvc\/data-legacy-postgresql-0 → Completed$/m);
    expect(plan.stdout).toMatch(/^gate: +waits \(reachable, no marker\)$/m);
    expect(plan.stdout).toContain('Workloads: statefulset/keycloak=2');
    // Read-only: only get/list went to the API, nothing was created or scaled, no marker written.
    const verbs = new Set(world.server.requests.filter((request) => request.namespace === 'plan' || !request.namespace).map((request) => request.verb));
    expect([...verbs].every((verb) => verb === 'get' || verb === 'list' || verb === 'discovery'), [...verbs].join(',')).toBe(true);
    expect(scenario.state()).toBeUndefined();
    expect(scenario.keycloakReplicas()).toBe(KEYCLOAK_REPLICAS);
    expect(await world.target.query("SELECT 1 FROM pg_namespace WHERE nspname = 'kc_migration'", [], scenario.targetDatabase)).toEqual([]);
  });

  it('status after a migration shows the whole history; plan says every hook has nothing left to do', async () => {
    const scenario = await createScenario(world, { namespace: 'status-done' });
    await scenario.migrate();
    const status = await scenario.run(RunnerCommand.status);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^Phase: +Completed$/m);
    expect(status.stdout).toMatch(/^Verification: +passed at .*: \d+ tables, \d+ rows match the backup$/m);
    expect(status.stdout).toContain('data-legacy-postgresql-0 → PV pv-status-done-legacy-0 Retain (was Delete)');
    expect(status.stdout).toMatch(/^Legacy deleted: +yes$/m);
    for (const phase of [Phase.quiesced, Phase.backedUp, Phase.backupVerified, Phase.legacyProtected, Phase.restoring, Phase.restored, Phase.verified, Phase.completed]) {
      expect(status.stdout).toMatch(new RegExp(`^  ${phase} +\\d{4}-`, 'm'));
    }
    const json = await scenario.run(RunnerCommand.status, { args: ['--json'] });
    expect(JSON.parse(json.stdout)).toEqual(scenario.state());

    const plan = await scenario.run(RunnerCommand.plan);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/^prepare: +nothing to decide \(Completed\); keep the backup PVC \(1Gi\)$/m);
    expect(plan.stdout).toMatch(/^backup-phase: +nothing \(exit 0\)$/m);
    expect(plan.stdout).toMatch(/^restore-phase: +nothing \(exit 0\)$/m);
    expect(plan.stdout).toMatch(/^gate: +passes \(the target is marked ready\)$/m);
  });

  it('plan on a fresh install says NotNeeded', async () => {
    const scenario = await createScenario(world, { namespace: 'plan-fresh', legacy: false });
    const plan = await scenario.run(RunnerCommand.plan);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/^prepare: +record NotNeeded: fresh install: no legacy StatefulSet legacy-postgresql and no source database \(SOURCE_PGPASSWORD is unset/m);
    expect(plan.stdout).toMatch(/^restore-phase: +write the ready marker into the target$/m);
  });
});
