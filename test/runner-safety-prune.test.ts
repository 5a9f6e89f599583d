// Old backups must not pile up on the backup volume: once a migration is Completed, the runner keeps
// the backup it restored and verified, and deletes only directories in its own layout that are
// superseded, unfinished, or older backups of the same database — never anything else.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Phase, RunnerCommand } from '../lib/contract.js';
import { silentLogger } from '../runner/src/log.js';
import { findPrunableBackups, pruneBackups } from '../runner/src/phases/prune-backups.js';
import { advance, newMigrationState, startStep, type MigrationState } from '../runner/src/state.js';
import { createScenario, startWorld, type World } from './support/runner-hooks-harness.js';

const ID = 'm-20260101-120000-aaaaaa';
let root: string;

function backupDir(name: string, options: { manifest?: { host: string; database: string; createdAt: string }; partial?: boolean; extra?: string; nested?: boolean } = {}): void {
  const dir = join(root, name);
  const dump = join(dir, options.partial ? '.dump.partial' : 'dump');
  mkdirSync(dump, { recursive: true });
  writeFileSync(join(dump, 'toc.dat'), 'toc');
  writeFileSync(join(dump, '3001.dat'), 'rows');
  writeFileSync(join(dump, 'blob_16400.dat'), 'large object');
  writeFileSync(join(dump, 'blobs.toc'), '16400 blob_16400.dat');
  if (options.nested) mkdirSync(join(dump, 'nested'));
  if (options.manifest) {
    const { host, database, createdAt } = options.manifest;
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ formatVersion: 1, createdAt, source: { host, port: 5432, database } }));
  }
  if (options.extra) writeFileSync(join(dir, options.extra), 'someone else');
}

function completedState(): MigrationState {
  let state = newMigrationState(ID, new Date('2026-01-01T12:00:00Z'));
  state = advance(startStep(state, 'backup'), Phase.backedUp, 'dump', {
    changes: {
      backup: { dir: `${ID}.2`, manifestSha256: 'b'.repeat(64), bytes: 10, tableCount: 1, rows: 1 },
      supersededBackups: [{ dir: ID, manifestSha256: 'a'.repeat(64), phase: Phase.restored, reason: '7 write(s) to table audit.admin_event', at: '2026-01-02T00:00:00Z' }],
    },
  });
  return state;
}

describe('findPrunableBackups / pruneBackups', () => {
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'kc-prune-'));
  });
  afterEach(() => {
    for (const entry of readdirSync(root)) rmSync(join(root, entry), { recursive: true, force: true });
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('deletes the superseded, the unfinished and older backups of the same database, keeps everything else', async () => {
    const source = { host: 'legacy', database: 'keycloak' };
    backupDir(`${ID}.2`, { manifest: { ...source, createdAt: '2026-01-02T01:00:00Z' } });
    backupDir(ID, { manifest: { ...source, createdAt: '2026-01-01T12:05:00Z' } });
    backupDir('m-20251201-100000-bbbbbb', { partial: true });
    backupDir('m-20251101-100000-cccccc', { manifest: { ...source, createdAt: '2025-11-01T10:05:00Z' } });
    // Kept: another database's backup, a newer backup, directories not (only) in the runner's layout.
    backupDir('m-20251101-100000-dddddd', { manifest: { host: 'other', database: 'keycloak', createdAt: '2025-11-01T10:05:00Z' } });
    backupDir('m-20270101-100000-ffffff', { manifest: { ...source, createdAt: '2027-01-01T10:05:00Z' } });
    backupDir('m-20251001-100000-eeeeee', { manifest: { ...source, createdAt: '2025-10-01T10:05:00Z' }, extra: 'notes.txt' });
    backupDir('m-20250901-100000-999999', { partial: true, nested: true });
    backupDir('manual-backup', { partial: true });
    mkdirSync(join(root, 'lost+found'));
    writeFileSync(join(root, 'README'), 'hands off');
    mkdirSync(join(root, 'm-20250801-100000-888888'));

    const state = completedState();
    expect(await findPrunableBackups(root, state)).toEqual([
      { dir: 'm-20251101-100000-cccccc', why: 'an older backup of the same database (taken 2025-11-01T10:05:00Z)' },
      { dir: 'm-20251201-100000-bbbbbb', why: 'an unfinished dump (no manifest)' },
      { dir: ID, why: 'superseded at Restored: 7 write(s) to table audit.admin_event' },
    ]);
    const removed = await pruneBackups(root, state, silentLogger);
    expect(removed.map((backup) => backup.dir)).toEqual(['m-20251101-100000-cccccc', 'm-20251201-100000-bbbbbb', ID]);
    expect(readdirSync(root).sort()).toEqual(
      [
        `${ID}.2`,
        'README',
        'lost+found',
        'm-20250801-100000-888888',
        'm-20250901-100000-999999',
        'm-20251001-100000-eeeeee',
        'm-20251101-100000-dddddd',
        'm-20270101-100000-ffffff',
        'manual-backup',
      ].sort(),
    );
    expect(existsSync(join(root, `${ID}.2`, 'dump', 'toc.dat'))).toBe(true);
  });

  it('deletes nothing without a recorded backup', async () => {
    backupDir('m-20251201-100000-bbbbbb', { partial: true });
    expect(await findPrunableBackups(root, newMigrationState(ID))).toEqual([]);
  });
});

describe('restore-phase prunes old backups when it completes', () => {
  let world: World;
  beforeAll(async () => {
    world = await startWorld({ users: 10 });
  });
  afterAll(async () => {
    await world?.stop();
  });

  it('keeps the verified backup and what is not the runner\'s, deletes an abandoned partial dump', async () => {
    const scenario = await createScenario(world, { namespace: 'prune' });
    const abandoned = join(scenario.backupDir, 'm-20200101-000000-abcdef', '.dump.partial');
    mkdirSync(abandoned, { recursive: true });
    writeFileSync(join(abandoned, 'toc.dat'), 'partial');
    mkdirSync(join(scenario.backupDir, 'keep-me', 'dump'), { recursive: true });
    writeFileSync(join(scenario.backupDir, 'keep-me', 'dump', 'toc.dat'), 'not the runner\'s');

    const [, , restore] = await scenario.migrate();
    const state = scenario.state()!;
    expect(state.phase).toBe(Phase.completed);
    expect(readdirSync(scenario.backupDir).sort()).toEqual(['keep-me', state.migrationId].sort());
    expect(state.history.at(-1)?.detail).toMatch(/; deleted old backup\(s\) m-20200101-000000-abcdef$/);
    expect(restore!.lines.some((line) => line.msg === 'deleted old backup m-20200101-000000-abcdef: an unfinished dump (no manifest)')).toBe(true);

    // Completed: later syncs touch nothing on the volume.
    expect((await scenario.run(RunnerCommand.restorePhase)).code).toBe(0);
    expect(readdirSync(scenario.backupDir).sort()).toEqual(['keep-me', state.migrationId].sort());
  });
});
