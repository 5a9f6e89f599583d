/**
 * A real Pgpool-II in front of a {@link RepmgrCluster}: the process twin of the Bitnami `pgpool`
 * Deployment, configured per shared/reference/local-postgresql-ha-recipe.md — streaming
 * replication mode, load balancing off (Keycloak's Liquibase writes must reach the primary),
 * `failover_on_backend_error=off`, `-n` run in the background by us (pitfall 2), the pid file
 * read without its trailing NUL (pitfall 3), SCRAM through `pool_passwd` TEXT entries.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import pg from 'pg';

import { ensurePostgresDir, freePort, onProcessExit, PGPOOL_SBIN, runAsPostgres, signalPidFile, spawnAsPostgres, waitFor, writePostgresFile } from './postgres-processes.js';
import type { PostgresAccount, RepmgrNode } from './repmgr-cluster.js';

export interface PgpoolOptions {
  /** Directory for configuration, pid file and log (owned by postgres). */
  readonly dir: string;
  readonly backends: readonly Pick<RepmgrNode, 'port' | 'dataDir'>[];
  /** Every user clients may log in as through Pgpool (pool_passwd), with their passwords. */
  readonly users: readonly PostgresAccount[];
  /** User for streaming-replication and health checks (PGPOOL_SR_CHECK_USER). */
  readonly checkUser: PostgresAccount & { readonly database: string };
  /** Admin for pcp (PGPOOL_ADMIN_USERNAME / PASSWORD). */
  readonly admin: PostgresAccount;
  /** PGPOOL_ENABLE_LOAD_BALANCING=yes. @default false (what Keycloak needs) */
  readonly loadBalancing?: boolean;
}

export class Pgpool {
  private forgetExitCleanup: (() => void) | undefined;

  private constructor(
    readonly port: number,
    readonly pcpPort: number,
    private readonly options: PgpoolOptions,
  ) {}

  /** Writes the configuration and starts Pgpool; resolves once every backend is `up`. */
  static async start(options: PgpoolOptions, timeoutMs = 60_000): Promise<Pgpool> {
    const port = await freePort();
    const pcpPort = await freePort();
    const pool = new Pgpool(port, pcpPort, options);
    // A Pgpool pod starts on an empty filesystem: nothing of an earlier pod of the same name (pid
    // file, sockets, pgpool_status with backends it last saw down) may carry over.
    rmSync(options.dir, { recursive: true, force: true });
    pool.forgetExitCleanup = onProcessExit(() => signalPidFile(join(options.dir, 'run', 'pgpool.pid'), 'SIGINT'));
    await pool.launch();
    try {
      await pool.waitUntilBackendsUp(timeoutMs);
    } catch (error) {
      throw new Error(`${(error as Error).message}; Pgpool's log ends:\n${pool.logTail()}`, { cause: error });
    }
    return pool;
  }

  private get runDir(): string {
    return join(this.options.dir, 'run');
  }

  private async launch(): Promise<void> {
    const { dir, backends, users, checkUser, admin } = this.options;
    await ensurePostgresDir(dir);
    await ensurePostgresDir(this.runDir);
    const backendLines = backends.flatMap((backend, index) => [
      `backend_hostname${index} = '127.0.0.1'`,
      `backend_port${index} = ${backend.port}`,
      `backend_weight${index} = 1`,
      `backend_flag${index} = 'ALLOW_TO_FAILOVER'`,
      `backend_data_directory${index} = '${backend.dataDir}'`,
    ]);
    await writePostgresFile(
      join(dir, 'pgpool.conf'),
      [
        `backend_clustering_mode = 'streaming_replication'`,
        `listen_addresses = '127.0.0.1'`,
        `port = ${this.port}`,
        `socket_dir = '${this.runDir}'`,
        `pcp_listen_addresses = '127.0.0.1'`,
        `pcp_port = ${this.pcpPort}`,
        `pcp_socket_dir = '${this.runDir}'`,
        `wd_ipc_socket_dir = '${this.runDir}'`,
        `pid_file_name = '${join(this.runDir, 'pgpool.pid')}'`,
        `logdir = '${this.runDir}'`,
        ...backendLines,
        'enable_pool_hba = on',
        `pool_passwd = '${join(dir, 'pool_passwd')}'`,
        'num_init_children = 16',
        'max_pool = 2',
        `load_balance_mode = ${this.options.loadBalancing ? 'on' : 'off'}`,
        'sr_check_period = 2',
        `sr_check_user = '${checkUser.user}'`,
        `sr_check_password = '${checkUser.password.replace(/'/g, "''")}'`,
        `sr_check_database = '${checkUser.database}'`,
        'health_check_period = 2',
        'health_check_timeout = 5',
        `health_check_user = '${checkUser.user}'`,
        `health_check_password = '${checkUser.password.replace(/'/g, "''")}'`,
        `health_check_database = '${checkUser.database}'`,
        'health_check_max_retries = 1',
        'health_check_retry_delay = 1',
        'connect_timeout = 3000',
        'failover_on_backend_error = off',
        'search_primary_node_timeout = 0',
        `failover_command = 'echo "failover: node %d down, old primary %P"'`,
        'use_watchdog = off',
        'memory_cache_enabled = off',
        // The shared relation cache (enable_shared_relcache, on by default) lives in the query
        // cache's shared memory, which Pgpool (4.1+) allocates at start even with the cache off
        // (Pgpool-II docs, "Shared Memory Requirement": ~128 MB more): 0.8-1.2 s of every start
        // here. A rehearsal's few tables need a few entries.
        'memqcache_total_size = 1MB',
        'memqcache_max_num_cache = 100',
        'ssl = off',
        `log_destination = 'stderr'`,
        'logging_collector = off',
        '',
      ].join('\n'),
    );
    // TEXT-prefixed passwords let Pgpool do SCRAM with the backends on the client's behalf.
    const poolUsers = new Map<string, string>();
    for (const account of [...users, checkUser]) {
      // pool_passwd is `user:password` split at every ':' (measured: a ':' in a TEXT password
      // makes Pgpool answer "authentication failed"); Debian's pgpool2 ships no pg_enc for AES entries.
      if (account.password.includes(':')) {
        throw new Error(
          `the password of '${account.user}' contains ':', which Pgpool-II's pool_passwd TEXT format cannot hold: ` +
            `generate passwords without ':' (e.g. base64url or hex)`,
        );
      }
      poolUsers.set(account.user, account.password);
    }
    await writePostgresFile(join(dir, 'pool_passwd'), [...poolUsers].map(([user, password]) => `${user}:TEXT${password}`).join('\n') + '\n');
    await writePostgresFile(join(dir, 'pool_hba.conf'), ['local all all trust', 'host all all 127.0.0.1/32 scram-sha-256', ''].join('\n'));
    const md5 = (await runAsPostgres(join(PGPOOL_SBIN, 'pg_md5'), [admin.password])).trim();
    await writePostgresFile(join(dir, 'pcp.conf'), `${admin.user}:${md5}\n`);
    spawnAsPostgres(
      join(PGPOOL_SBIN, 'pgpool'),
      ['-n', '-D', '-f', join(dir, 'pgpool.conf'), '-F', join(dir, 'pcp.conf'), '-a', join(dir, 'pool_hba.conf')],
      join(dir, 'pgpool.log'),
    );
  }

  /** Waits until `SHOW pool_nodes` reports every backend `up` (and one of them primary). */
  async waitUntilBackendsUp(timeoutMs: number): Promise<void> {
    await waitFor(
      `Pgpool on port ${this.port} to see ${this.options.backends.length} backends up`,
      async () => {
        const nodes = await this.showPoolNodes();
        return nodes.length === this.options.backends.length && nodes.every((node) => node.status === 'up') && nodes.some((node) => node.role === 'primary');
      },
      timeoutMs,
      200,
    );
  }

  /** Pgpool's view of its backends. */
  async showPoolNodes(): Promise<{ nodeId: string; port: string; status: string; role: string }[]> {
    const client = new pg.Client({ host: '127.0.0.1', port: this.port, user: this.options.checkUser.user, password: this.options.checkUser.password, database: this.options.checkUser.database });
    await client.connect();
    try {
      const result = await client.query<{ node_id: string; port: string; status: string; role: string }>('SHOW pool_nodes');
      return result.rows.map((row) => ({ nodeId: row.node_id, port: row.port, status: row.status, role: row.role }));
    } finally {
      await client.end();
    }
  }

  /** The pid Pgpool wrote (its pid file ends with a NUL byte). */
  pid(): number | undefined {
    try {
      const digits = readFileSync(join(this.runDir, 'pgpool.pid'), 'utf8').replace(/[^0-9]/g, '');
      return digits ? Number(digits) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Stops Pgpool (SIGINT: fast shutdown) and waits for the process to go away. */
  async stop(): Promise<void> {
    this.forgetExitCleanup?.();
    const pid = this.pid();
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGINT');
    } catch {
      return;
    }
    await waitFor(
      `Pgpool pid ${pid} to exit`,
      async () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      },
      15_000,
    ).catch(() => process.kill(pid, 'SIGKILL'));
  }

  /** The tail of Pgpool's log, for error messages. */
  logTail(lines = 20): string {
    try {
      return readFileSync(join(this.options.dir, 'pgpool.log'), 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}
