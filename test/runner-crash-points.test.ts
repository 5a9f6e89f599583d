// Crash points that no phase transition marks: work that became durable while the state write
// recording it never landed (the pod died, the deadline hit, the API was down), and a state lost
// after a restore began. The next run must converge without being misled by what was left behind:
// an unrecorded dump is not counted against the backup volume, and a target a restore began in is
// never marked ready by a run that thinks nothing was migrated.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, Phase, ReadyMarker, RunnerCommand, StateKey } from '../lib/contract.js';
import { estimateDumpBytes } from '../runner/src/pg/backup.js';
import { readMarker, writeMarker } from '../runner/src/pg/marker.js';
import { createScenario, expireLease, SOURCE_DATABASE, startWorld, TARGET_APP_USER, type RunningHook, type RunResult, type World } from './support/runner-hooks-harness.js';

let world: World;

beforeAll(async () => {
  world = await startWorld({ users: 20 });
});
afterAll(async () => {
  await world?.stop();
});

function errorLine(result: RunResult): string {
  const errors = result.lines.filter((line) => line.level === 'error' && typeof line.exitCode === 'number');
  expect(errors, result.stderr).toHaveLength(1);
  return errors[0]!.msg as string;
}

describe('a dump that completed but was never recorded', () => {
  it('is deleted before the re-run dumps, so a backup volume with room for one backup takes the new one', async () => {
    const scenario = await createScenario(world, { namespace: 'unrecorded-dump' });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    const id = scenario.state()!.migrationId;
    const stateWrite = { verb: 'update', resource: 'configmaps', name: scenario.names.stateConfigMap, namespace: scenario.namespace };
    // Once the dump step has begun, its next state write (after the manifest) is held while the
    // runner and its tools are killed, and never lands.
    let running: RunningHook | undefined;
    let armed = false;
    const unsubscribe = world.server.onChange((_event, object) => {
      if (armed || object.kind !== 'ConfigMap' || object.metadata.namespace !== scenario.namespace || object.metadata.name !== scenario.names.stateConfigMap) return;
      const state = JSON.parse((object.data as Record<string, string>)[StateKey.state]!) as { currentStep?: { name: string } };
      if (state.currentStep?.name !== 'backup') return;
      armed = true;
      world.server.holdRequest(stateWrite, async () => {
        running!.kill();
        await running!.done;
      });
      world.server.injectFault({ ...stateWrite, status: 503 });
    });
    try {
      running = scenario.start(RunnerCommand.backupPhase);
      expect((await running.done).signal).toBe('SIGKILL');
    } finally {
      unsubscribe();
    }
    const dumpDir = join(scenario.backupDir, id);
    expect(scenario.state()).toMatchObject({ phase: Phase.quiesced, currentStep: { name: 'backup' } });
    expect(scenario.state()!.backup).toBeUndefined();
    const left = JSON.parse(readFileSync(join(dumpDir, 'manifest.json'), 'utf8')) as { dumpBytes: number };
    expireLease(world, scenario);

    // A volume holding that dump and about half of another one.
    const source = new pg.Client(world.source.settings(SOURCE_DATABASE));
    await source.connect();
    const { estimatedBytes } = await estimateDumpBytes(source).finally(() => source.end());
    const volume = join(world.root, scenario.namespace, 'small-volume');
    mkdirSync(volume, { recursive: true });
    const size = Math.ceil((estimatedBytes + left.dumpBytes / 2) / 4096) * 4096 + 64 * 1024;
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', volume]);
    try {
      execFileSync('cp', ['-a', dumpDir, volume]);
      expect(Number(statfsSync(volume).bavail) * Number(statfsSync(volume).bsize)).toBeLessThan(estimatedBytes);
      const onSmallVolume = { env: { MIGRATION_BACKUP_DIR: volume } };
      const backup = await scenario.run(RunnerCommand.backupPhase, onSmallVolume);
      expect(backup.code, backup.stderr).toBe(0);
      const removal = backup.lines.find((line) => line.level === 'warn' && String(line.msg).startsWith('deleted a complete dump'));
      expect(removal?.msg, backup.stderr).toMatch(new RegExp(`^deleted a complete dump \\(manifest of [-0-9T:.]+Z, ${left.dumpBytes} bytes\\) in ${id} that no state records: a run ended after writing it but before recording it; dumping anew$`));
      expect(scenario.state()).toMatchObject({ phase: Phase.legacyProtected, backup: { dir: id }, attempts: { backup: 2 } });
      expect(readdirSync(volume)).toEqual([id]);
      const restore = await scenario.run(RunnerCommand.restorePhase, onSmallVolume);
      expect(restore.code, restore.stderr).toBe(0);
      expect(scenario.state()!.phase).toBe(Phase.completed);
    } finally {
      spawnSync('umount', [volume]);
    }
  });
});

describe('a target a restore began in, while the state says nothing was migrated', () => {
  it('is never marked ready: restore-phase of NotNeeded and prepare without a state both stop (78), leaving the restoring marker', async () => {
    const scenario = await createScenario(world, { namespace: 'restoring-trace', legacy: false });
    expect((await scenario.run(RunnerCommand.prepare)).code).toBe(0);
    expect(scenario.state()!.phase).toBe(Phase.notNeeded);
    // E.g. a migration whose state ConfigMap was lost, restored from an older copy, began a restore there.
    const other = 'm-20200101-000000-abcdef';
    await writeMarker(scenario.targetSettings(), { status: ReadyMarker.restoring, migrationId: other, owner: TARGET_APP_USER });

    const restore = await scenario.run(RunnerCommand.restorePhase);
    expect(restore.code).toBe(ExitCode.config);
    expect(errorLine(restore)).toMatch(
      new RegExp(`^the target database carries the restoring marker of migration ${other} \\(since [-0-9T:.]+Z\\), but migration m-[-0-9a-f]+ found nothing to migrate \\(fresh install: .*\\): a restore into it began and did not finish. Not marking it ready: `),
    );
    expect((await readMarker(scenario.targetSettings()))?.status).toBe(ReadyMarker.restoring);
    expect(scenario.state()).toMatchObject({ phase: Phase.notNeeded, lastError: { exitCode: ExitCode.config } });
    expect(scenario.state()!.readyMarkerAt).toBeUndefined();

    // The state gone: prepare's decision finds the marker, and no legacy database to migrate from.
    world.server.remove({ apiVersion: 'v1', kind: 'ConfigMap', name: scenario.names.stateConfigMap, namespace: scenario.namespace });
    const prepare = await scenario.run(RunnerCommand.prepare);
    expect(prepare.code).toBe(ExitCode.config);
    expect(errorLine(prepare)).toMatch(new RegExp(`^the target database carries the restoring marker of migration ${other} .*Deciding "fresh install" would start Keycloak on a partly restored database: `));
    expect(scenario.state()).toBeUndefined();
    expect((await readMarker(scenario.targetSettings()))?.status).toBe(ReadyMarker.restoring);
  });
});
