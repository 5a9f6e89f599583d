/**
 * One PostgreSQL server process on a data directory the rehearsal's volumes own: initialise it
 * once, start it on a fixed port, stop it keeping the data (a pod going away leaves its PVC).
 * Ports go through `pg_ctl -o "-p N"` only, never postgresql.conf, so that a standby cloned from
 * this directory does not inherit them (local-postgresql-ha-recipe.md, pitfall 1).
 *
 * Used for the legacy Bitnami `postgresql` StatefulSet and for each repmgr node. (H3's
 * `startPostgres` creates and deletes its own temporary directory, which cannot model a volume
 * that outlives the pod.)
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { initdbFromTemplate } from '../test/support/initdb-template.js';

import { ensurePostgresDir, onProcessExit, PG_BIN, postgresUser, runAsPostgres, runAsPostgresSync, signalPidFile, waitFor, writePostgresFile } from './postgres-processes.js';

export interface PostgresNodeOptions {
  readonly dataDir: string;
  readonly port: number;
  /** Unix socket directory (also where the harness connects with local trust). */
  readonly socketDir: string;
  /** Server binaries. @default PG_BIN (Debian's 15) */
  readonly binDir?: string;
  /** Lines appended to postgresql.auto.conf at initialisation. */
  readonly settings?: readonly string[];
}

export class PostgresNode {
  private forgetExitCleanup: (() => void) | undefined;

  constructor(readonly options: PostgresNodeOptions) {}

  get port(): number {
    return this.options.port;
  }

  get dataDir(): string {
    return this.options.dataDir;
  }

  get binDir(): string {
    return this.options.binDir ?? PG_BIN;
  }

  get logFile(): string {
    return `${this.options.dataDir}.log`;
  }

  isInitialised(): boolean {
    return existsSync(join(this.options.dataDir, 'PG_VERSION'));
  }

  isRunning(): boolean {
    return existsSync(join(this.options.dataDir, 'postmaster.pid'));
  }

  /**
   * initdb (a copy of a template: test/support/initdb-template.ts) with trust on the local socket
   * (for this harness) and SCRAM for every TCP client, as the Bitnami images configure their servers.
   */
  async initialise(): Promise<void> {
    await ensurePostgresDir(this.options.socketDir);
    initdbFromTemplate({
      binDir: this.binDir,
      initdbArgs: ['-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C'],
      dataDir: this.options.dataDir,
      owner: await postgresUser(),
      runInitdbAsPostgres: runAsPostgresSync,
    });
    await writePostgresFile(
      join(this.options.dataDir, 'postgresql.auto.conf'),
      [
        `listen_addresses = '127.0.0.1'`,
        `unix_socket_directories = '${this.options.socketDir}'`,
        'fsync = off',
        'max_connections = 60',
        `password_encryption = 'scram-sha-256'`,
        ...(this.options.settings ?? []),
        '',
      ].join('\n'),
    );
    await writePostgresFile(
      join(this.options.dataDir, 'pg_hba.conf'),
      ['local all all trust', 'host all all 127.0.0.1/32 scram-sha-256', 'host replication all 127.0.0.1/32 scram-sha-256', ''].join('\n'),
    );
  }

  async start(): Promise<void> {
    await ensurePostgresDir(this.options.socketDir);
    await runAsPostgres(join(this.binDir, 'pg_ctl'), ['-D', this.options.dataDir, '-l', this.logFile, '-o', `-p ${this.options.port}`, '-w', '-t', '60', 'start']).catch((error: Error) => {
      // pg_ctl only says "Examine the log output"; the reason is in the server's log.
      throw new Error(`${error.message}\n${this.logFile} ends with:\n${this.logTail()}`, { cause: error });
    });
    await waitFor(
      `PostgreSQL on port ${this.options.port} to accept connections`,
      async () => {
        await runAsPostgres(join(PG_BIN, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(this.options.port)]);
        return true;
      },
      30_000,
    );
    // Immediate shutdown (SIGQUIT) if the test process dies without stopping us.
    this.forgetExitCleanup ??= onProcessExit(() => signalPidFile(join(this.options.dataDir, 'postmaster.pid'), 'SIGQUIT'));
  }

  private logTail(lines = 8): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).map((line) => `  ${line}`).join('\n');
    } catch (error) {
      return `  (unreadable: ${(error as Error).message})`;
    }
  }

  /** Fast shutdown, keeping the data directory. */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    this.forgetExitCleanup?.();
    this.forgetExitCleanup = undefined;
    if (!this.isRunning()) return;
    await runAsPostgres(join(this.binDir, 'pg_ctl'), ['-D', this.options.dataDir, '-m', mode, '-w', 'stop']).catch(() => undefined);
  }

  /** Runs SQL statements as the superuser over the local socket (trust), stopping at the first error. */
  async superuserSql(statements: readonly string[], database = 'postgres'): Promise<void> {
    if (statements.length === 0) return;
    // One psql: each -c is sent on its own, outside any transaction block (CREATE DATABASE
    // needs that), and ON_ERROR_STOP ends the run at the first failing one.
    await runAsPostgres(join(PG_BIN, 'psql'), [
      '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', this.options.socketDir, '-p', String(this.options.port), '-U', 'postgres', '-d', database,
      ...statements.flatMap((statement) => ['-c', statement]),
    ]);
  }
}

export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
