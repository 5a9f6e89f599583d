/**
 * A hot standby cloned from a running primary, as `pg_basebackup -R -X stream` makes it, for the
 * server packages that ship without pg_basebackup: the embedded 11, 13, 16 and 17 carry `initdb`,
 * `pg_ctl` and `postgres` only, and Debian's pg_basebackup 15 cannot stream from a newer server.
 *
 * It is PostgreSQL's documented low-level base backup
 * (https://www.postgresql.org/docs/17/continuous-archiving.html#BACKUP-LOWLEVEL-BASE-BACKUP):
 * `pg_backup_start` (before 15: `pg_start_backup(…, exclusive => false)`) in a session that stays
 * open, a copy of the data directory without the files the documentation says to leave out,
 * `pg_backup_stop`'s label written as `backup_label` into the copy; then the standby settings
 * (`standby.signal` and `primary_conninfo`; `recovery.conf` before 12). The standby fetches the WAL
 * from the backup's start over streaming replication (the primary keeps it: `wal_keep_size`).
 */
import { existsSync } from 'node:fs';
import { copyFile, lstat, mkdir, readdir, readFile, readlink, symlink } from 'node:fs/promises';
import { join } from 'node:path';

import pg from 'pg';

import { chownToPostgres, writePostgresFile } from './postgres-processes.js';

/** The running primary, reached as the superuser over its local socket (trust). */
export interface ClonePrimary {
  readonly dataDir: string;
  readonly socketDir: string;
  readonly port: number;
}

/** Directories whose contents a base backup leaves out (the directories themselves are kept). */
const EMPTIED = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);
/** Files a base backup leaves out. */
const LEFT_OUT = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'standby.signal', 'recovery.signal', 'recovery.conf']);

/** True when `binDir` has its own pg_basebackup (then use it: it is what the images run). */
export function hasPgBasebackup(binDir: string): boolean {
  return existsSync(join(binDir, 'pg_basebackup'));
}

/**
 * Clones `primary` into the empty (or absent) `targetDataDir` and configures it to stream from
 * `primaryConninfo` (a libpq connection string with a replication user).
 */
export async function cloneStandby(primary: ClonePrimary, targetDataDir: string, primaryConninfo: string): Promise<void> {
  const client = new pg.Client({ host: primary.socketDir, port: primary.port, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    const versionNumber = Number((await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]!.v);
    if (versionNumber >= 150000) await client.query(`SELECT pg_backup_start('rehearsal clone', true)`);
    else await client.query(`SELECT pg_start_backup('rehearsal clone', true, false)`);
    await copyDataDirectory(primary.dataDir, targetDataDir);
    const stop =
      versionNumber >= 150000
        ? await client.query<{ labelfile: string }>(`SELECT labelfile FROM pg_backup_stop(false)`)
        : await client.query<{ labelfile: string }>(`SELECT labelfile FROM pg_stop_backup(false, false)`);
    await writePostgresFile(join(targetDataDir, 'backup_label'), stop.rows[0]!.labelfile);
    const conninfo = `primary_conninfo = '${primaryConninfo.replace(/'/g, "''")}'`;
    if (versionNumber >= 120000) {
      await writePostgresFile(join(targetDataDir, 'standby.signal'), '');
      const autoConf = await readFile(join(targetDataDir, 'postgresql.auto.conf'), 'utf8');
      const kept = autoConf.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('primary_conninfo'));
      await writePostgresFile(join(targetDataDir, 'postgresql.auto.conf'), [...kept, conninfo, ''].join('\n'));
    } else {
      await writePostgresFile(join(targetDataDir, 'recovery.conf'), [`standby_mode = 'on'`, conninfo, `recovery_target_timeline = 'latest'`, ''].join('\n'));
    }
  } finally {
    await client.end();
  }
}

/** A copy that tolerates files the running server removes meanwhile (temporary files, stats). */
async function copyDataDirectory(from: string, to: string, top = true): Promise<void> {
  await mkdir(to, { recursive: true, mode: 0o700 });
  await chownToPostgres(to);
  for (const entry of await readdir(from, { withFileTypes: true })) {
    if (top && LEFT_OUT.has(entry.name)) continue;
    if (entry.name.startsWith('pgsql_tmp')) continue;
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    try {
      if (entry.isDirectory()) {
        if (top && EMPTIED.has(entry.name)) {
          await mkdir(target, { mode: 0o700 });
          await chownToPostgres(target);
          if (entry.name === 'pg_wal') {
            await mkdir(join(target, 'archive_status'), { mode: 0o700 });
            await chownToPostgres(join(target, 'archive_status'));
          }
        } else {
          await copyDataDirectory(source, target, false);
        }
      } else if (entry.isSymbolicLink()) {
        await symlink(await readlink(source), target);
      } else {
        await copyFile(source, target);
        const { mode } = await lstat(source);
        await chownToPostgres(target, mode & 0o777);
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}
