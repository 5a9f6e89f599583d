/**
 * Once a migration is Completed, the backup volume keeps exactly one backup of it: the one the
 * target was restored and verified from (with the retained legacy volume, the last copy of the
 * legacy data). Older backup directories the runner itself left there are deleted:
 *
 * - backups of this migration that a newer one superseded (the legacy database changed after them,
 *   see source-freshness.ts), recorded in the state;
 * - abandoned partial dumps (no manifest.json: a dump that never finished, e.g. of a migration
 *   whose state was deleted to start over);
 * - complete backups of earlier migrations of the same source database (same host, port and
 *   database in the manifest, taken before the completed backup).
 *
 * Only a directory in the runner's own layout is ever deleted: named like a migration id
 * (`m-YYYYMMDD-HHMMSS-xxxxxx`, optionally `.N`), holding nothing but `dump/`, `.dump.partial/`,
 * `manifest.json` and its temporary file, the dump directories holding nothing but pg_dump's
 * directory-format files. Anything else on the volume is left alone.
 */
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isRunnerError } from '../errors.js';
import { MANIFEST_TMP_FILE, PARTIAL_DUMP_DIRECTORY } from '../pg/backup.js';
import { DUMP_DIRECTORY, MANIFEST_FILE, type BackupManifest } from '../pg/manifest.js';
import type { MigrationState } from '../state.js';
import type { Logger } from '../log.js';

/** A directory name the runner gives a backup: the migration id (newMigrationId), optionally `.N`. */
export const RUNNER_BACKUP_DIR_NAME = /^m-\d{8}-\d{6}-[0-9a-f]{6}(\.\d+)?$/;
const RUNNER_BACKUP_ENTRIES = new Set([DUMP_DIRECTORY, PARTIAL_DUMP_DIRECTORY, MANIFEST_FILE, MANIFEST_TMP_FILE]);
/** pg_dump --format=directory: toc.dat, <dumpId>.dat per table, blob_<oid>.dat per large object (compressed: .gz/.lz4/.zst), blobs TOCs. */
const PG_DUMP_FILE = /^(toc\.dat|(\d+|blob_\d+)\.dat(\.gz|\.lz4|\.zst)?|blobs(_\d+)?\.toc)$/;

export interface PrunableBackup {
  /** Directory name on the backup volume. */
  readonly dir: string;
  readonly why: string;
}

/** Whether `path` is a directory holding only what pg_dump -Fd writes. */
async function isDumpDirectory(path: string): Promise<boolean> {
  const entries = await readdir(path, { withFileTypes: true });
  return entries.every((entry) => entry.isFile() && PG_DUMP_FILE.test(entry.name));
}

/** The backup's manifest when `path` is in the runner's layout (null: layout, but no manifest); undefined: not the runner's. */
async function runnerLayout(path: string): Promise<BackupManifest | null | undefined> {
  if (!(await stat(path)).isDirectory()) return undefined;
  const entries = await readdir(path, { withFileTypes: true });
  if (entries.length === 0) return undefined;
  for (const entry of entries) {
    if (!RUNNER_BACKUP_ENTRIES.has(entry.name)) return undefined;
    const isDirectory = entry.name === DUMP_DIRECTORY || entry.name === PARTIAL_DUMP_DIRECTORY;
    if (isDirectory !== entry.isDirectory() || (!isDirectory && !entry.isFile())) return undefined;
    if (isDirectory && !(await isDumpDirectory(join(path, entry.name)))) return undefined;
  }
  if (!entries.some((entry) => entry.name === MANIFEST_FILE)) return null;
  try {
    return JSON.parse(await readFile(join(path, MANIFEST_FILE), 'utf8')) as BackupManifest;
  } catch {
    // A manifest that is not ours (or damaged): not provably the runner's, so not deleted.
    return undefined;
  }
}

function sameSource(a: BackupManifest, b: BackupManifest): boolean {
  return a.source?.host === b.source?.host && a.source?.port === b.source?.port && a.source?.database === b.source?.database;
}

/** The directories under `backupRoot` that a Completed `state` makes obsolete (see the module comment). */
export async function findPrunableBackups(backupRoot: string, state: MigrationState): Promise<PrunableBackup[]> {
  const kept = state.backup?.dir;
  if (!kept) return [];
  const keptManifest = await runnerLayout(join(backupRoot, kept)).catch(() => undefined);
  const superseded = new Map((state.supersededBackups ?? []).map((backup) => [backup.dir, backup]));
  const prunable: PrunableBackup[] = [];
  for (const entry of await readdir(backupRoot, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name === kept || !RUNNER_BACKUP_DIR_NAME.test(entry.name)) continue;
    const manifest = await runnerLayout(join(backupRoot, entry.name)).catch(() => undefined);
    if (manifest === undefined) continue;
    const record = superseded.get(entry.name);
    if (record) prunable.push({ dir: entry.name, why: `superseded at ${record.phase}: ${record.reason}` });
    else if (manifest === null) prunable.push({ dir: entry.name, why: 'an unfinished dump (no manifest)' });
    else if (keptManifest && sameSource(manifest, keptManifest) && manifest.createdAt < keptManifest.createdAt) {
      prunable.push({ dir: entry.name, why: `an older backup of the same database (taken ${manifest.createdAt})` });
    }
  }
  return prunable.sort((a, b) => a.dir.localeCompare(b.dir));
}

/** Deletes what {@link findPrunableBackups} finds; best effort (a failure is logged, never fatal). */
export async function pruneBackups(backupRoot: string, state: MigrationState, log: Logger): Promise<PrunableBackup[]> {
  let prunable: PrunableBackup[];
  try {
    prunable = await findPrunableBackups(backupRoot, state);
  } catch (error) {
    log.warn('could not look for old backups to delete', { dir: backupRoot, error: isRunnerError(error) ? error.oneLine() : String(error) });
    return [];
  }
  const removed: PrunableBackup[] = [];
  for (const backup of prunable) {
    try {
      await rm(join(backupRoot, backup.dir), { recursive: true, force: true });
      log.info(`deleted old backup ${backup.dir}: ${backup.why}`, { kept: state.backup?.dir });
      removed.push(backup);
    } catch (error) {
      log.warn(`could not delete old backup ${backup.dir}`, { error: String(error) });
    }
  }
  return removed;
}

/**
 * Deletes what a run left in `<backupRoot>/<dirName>` before it could record it (runner layout
 * only), and returns what that was; undefined when there was nothing. The dump step calls it while
 * the state records no backup: a dump that completed (manifest written) but whose BackedUp record
 * never landed (the pod died, the deadline hit, the API was down) is useless — the state cannot
 * vouch for it — yet on a volume sized for one backup it would leave no room for the new dump,
 * which goes into the same directory and replaces it only once complete.
 */
export async function removeUnrecordedDump(backupRoot: string, dirName: string, log: Logger): Promise<string | undefined> {
  const path = join(backupRoot, dirName);
  const layout = await runnerLayout(path).catch(() => undefined);
  if (layout === undefined) return undefined;
  const what = layout === null ? 'an unfinished dump (no manifest)' : `a complete dump (manifest of ${layout.createdAt}, ${layout.dumpBytes} bytes)`;
  await rm(path, { recursive: true, force: true });
  log.warn(`deleted ${what} in ${dirName} that no state records: a run ended after writing it but before recording it; dumping anew`, { dir: dirName });
  return what;
}

/**
 * Deletes this migration's superseded backups (runner layout only) and returns their names. For
 * a backup volume that cannot hold a new backup next to the stale one: the stale one is useless,
 * the legacy database that moved on from it holds all its data and more (a backup is never
 * superseded once the runner deleted the legacy database).
 */
export async function removeSupersededBackups(backupRoot: string, state: MigrationState, log: Logger): Promise<string[]> {
  const removed: string[] = [];
  for (const backup of state.supersededBackups ?? []) {
    if (backup.dir === state.backup?.dir || !RUNNER_BACKUP_DIR_NAME.test(backup.dir)) continue;
    const path = join(backupRoot, backup.dir);
    const layout = await runnerLayout(path).catch(() => undefined);
    if (layout === undefined) continue;
    await rm(path, { recursive: true, force: true });
    log.warn(`deleted superseded backup ${backup.dir} to make room for the new one`, { reason: backup.reason });
    removed.push(backup.dir);
  }
  return removed;
}
