/**
 * A real repmgr-managed PostgreSQL 15 primary with hot standbys on 127.0.0.1, the process-level
 * twin of the Bitnami `postgresql-repmgr` StatefulSet, following
 * shared/reference/local-postgresql-ha-recipe.md (and its pitfalls: ports only through
 * `pg_ctl -o "-p N"` and `pg_ctl_options`; `$BIN/repmgr` rather than Debian's wrapper; SCRAM with
 * a passfile for repmgr and replication).
 *
 * Like the image, node 0's first start initialises the cluster with the users the StatefulSet's
 * environment names (POSTGRES_USER/PASSWORD/DB, REPMGR_USERNAME/PASSWORD/DATABASE, the `postgres`
 * superuser password) and registers it as primary; any other node's first start clones it and
 * registers as a standby. Later starts reuse the data directory (the node's PVC).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import pg from 'pg';

import { ident, literal, PostgresNode } from './postgres-node.js';
import { ensurePostgresDir, freePort, onProcessExit, PG_BIN, runAsPostgres, signalPidFile, spawnAsPostgres, waitFor, writePostgresFile } from './postgres-processes.js';

export interface PostgresAccount {
  readonly user: string;
  readonly password: string;
}

export interface RepmgrClusterOptions {
  /** Directory for repmgr configuration, the passfile and sockets. */
  readonly baseDir: string;
  /** Data directory of node `index` (its PVC). @default `<baseDir>/pg<index>` */
  readonly dataDirOf?: (index: number) => string;
  /** Password of the `postgres` superuser (POSTGRES_POSTGRES_PASSWORD / postgres-password). */
  readonly superuserPassword: string;
  readonly repmgr: PostgresAccount & { readonly database: string };
  /** The application user and its database (POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB). */
  readonly application: PostgresAccount & { readonly database: string };
}

export interface RepmgrNode {
  readonly index: number;
  readonly name: string;
  readonly port: number;
  readonly dataDir: string;
}

export class RepmgrCluster {
  private readonly servers = new Map<number, PostgresNode>();
  /** Nodes whose start routine completed (for node 0: initialised, users created, registered). */
  private readonly up = new Set<number>();
  private readonly runDir: string;
  private readonly passFile: string;

  private constructor(private readonly options: RepmgrClusterOptions) {
    this.runDir = join(options.baseDir, 'run');
    this.passFile = join(options.baseDir, 'pgpass');
  }

  static async create(options: RepmgrClusterOptions): Promise<RepmgrCluster> {
    await ensurePostgresDir(options.baseDir);
    return new RepmgrCluster(options);
  }

  /** Nodes started at least once, by index. */
  get nodes(): RepmgrNode[] {
    return [...this.servers.entries()].sort(([a], [b]) => a - b).map(([index, server]) => this.describe(index, server));
  }

  node(index: number): RepmgrNode | undefined {
    const server = this.servers.get(index);
    return server ? this.describe(index, server) : undefined;
  }

  /** Whether the node finished starting (and is not stopped since). */
  isRunning(index: number): boolean {
    return this.up.has(index) && (this.servers.get(index)?.isRunning() ?? false);
  }

  /** Starts nodes 0..count-1 in order (primary first), calling `onNodeReady` as each comes up. */
  async start(count: number, onNodeReady: (node: RepmgrNode) => void = () => {}): Promise<void> {
    for (let index = 0; index < count; index++) onNodeReady(await this.startNode(index));
  }

  /** Stops every node, standbys first, keeping the data. */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    for (const index of [...this.servers.keys()].sort((a, b) => b - a)) await this.stopNode(index, mode);
  }

  /** Starts one node: initialises the primary or clones a standby on the first start. */
  async startNode(index: number): Promise<RepmgrNode> {
    const server = await this.server(index);
    await writePostgresFile(this.passFile, `127.0.0.1:*:*:${this.options.repmgr.user}:${escapePass(this.options.repmgr.password)}\n`);
    await ensurePostgresDir(this.runDir);
    if (server.isInitialised()) {
      await server.start();
    } else if (index === 0) {
      await this.initialisePrimary(server);
    } else {
      // A standby is cloned from a registered primary, as the image's entrypoint waits for one.
      await waitFor(`the primary (node 0) before cloning node ${index}`, async () => this.isRunning(0), 120_000, 200);
      await this.cloneStandby(index, server);
    }
    this.up.add(index);
    return this.describe(index, server);
  }

  async stopNode(index: number, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    this.up.delete(index);
    await this.stopDaemon(index);
    await this.servers.get(index)?.stop(mode);
  }

  /** The node's server dies at once (immediate shutdown: no checkpoint, clients cut off), as when its pod is killed. */
  async killNode(index: number): Promise<void> {
    this.up.delete(index);
    await this.stopDaemon(index);
    await this.servers.get(index)?.stop('immediate');
  }

  /**
   * Starts repmgrd on a node, as the postgresql-repmgr image runs it beside PostgreSQL, with
   * automatic failover: when its upstream stays unreachable for `reconnectAttempts` ×
   * `reconnectInterval` seconds (REPMGR_RECONNECT_ATTEMPTS / _INTERVAL), a standby promotes itself
   * (`repmgr standby promote`). Resolves once the daemon monitors its upstream.
   */
  async startDaemon(index: number, settings: { reconnectAttempts: number; reconnectInterval: number; connectTimeout: number }): Promise<void> {
    const server = this.servers.get(index);
    if (!server || !this.isRunning(index)) throw new Error(`repmgr node ${index} is not running: no repmgrd without its server`);
    const conf = this.repmgrConf(index);
    await this.writeRepmgrConf(index, server, [
      `failover='automatic'`,
      `promote_command='${join(PG_BIN, 'repmgr')} standby promote -f ${conf} --log-to-file'`,
      `follow_command='${join(PG_BIN, 'repmgr')} standby follow -f ${conf} --log-to-file --upstream-node-id=%n'`,
      `reconnect_attempts=${settings.reconnectAttempts}`,
      `reconnect_interval=${settings.reconnectInterval}`,
      `connection_check_type='ping'`,
      'monitor_interval_secs=1',
      'primary_visibility_consensus=false',
      `log_file='${this.daemonLog(index)}'`,
      `repmgrd_pid_file='${join(this.runDir, `repmgrd-${index}.pid`)}'`,
    ]);
    spawnAsPostgres(join(PG_BIN, 'repmgrd'), ['-f', conf, '--daemonize=false'], `${this.daemonLog(index)}.out`, this.env());
    this.daemons.set(index, onProcessExit(() => this.signalDaemon(index)));
    await waitFor(`repmgrd on node ${index} to monitor its upstream`, async () => {
      const log = existsSync(this.daemonLog(index)) ? readFileSync(this.daemonLog(index), 'utf8') : '';
      return /monitoring (connection to )?upstream node|monitoring cluster primary/.test(log);
    }, 30_000, 100);
  }

  /** repmgrd's log of a node (for failure messages). */
  daemonLog(index: number): string {
    return join(this.options.baseDir, `repmgrd-node${index}.log`);
  }

  /** Running repmgrd daemons, by node, with what forgets their clean-up at exit. */
  private readonly daemons = new Map<number, () => void>();

  private async stopDaemon(index: number): Promise<void> {
    const forget = this.daemons.get(index);
    if (!forget) return;
    this.daemons.delete(index);
    forget();
    this.signalDaemon(index);
  }

  private signalDaemon(index: number): void {
    try {
      signalPidFile(join(this.runDir, `repmgrd-${index}.pid`), 'SIGTERM');
    } catch {
      // No pid file: the daemon never started or has exited.
    }
  }

  /** Connects as the superuser to one node (for checks: standby contents, recovery state). */
  async withNode<T>(index: number, database: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
    const server = this.servers.get(index);
    if (!server) throw new Error(`repmgr node ${index} was never started`);
    const client = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'postgres', password: this.options.superuserPassword, database });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }

  /** repmgr's own view of the cluster. */
  async clusterShow(): Promise<string> {
    return runAsPostgres(join(PG_BIN, 'repmgr'), ['-f', this.repmgrConf(0), 'cluster', 'show'], { env: this.env() });
  }

  private async server(index: number): Promise<PostgresNode> {
    let server = this.servers.get(index);
    if (!server) {
      server = new PostgresNode({
        dataDir: this.options.dataDirOf?.(index) ?? join(this.options.baseDir, `pg${index}`),
        port: await freePort(),
        socketDir: this.runDir,
        settings: [
          'wal_level = replica',
          'max_wal_senders = 10',
          'max_replication_slots = 10',
          'wal_keep_size = 128MB',
          'hot_standby = on',
          'wal_log_hints = on',
          `shared_preload_libraries = 'repmgr'`,
        ],
      });
      this.servers.set(index, server);
    }
    return server;
  }

  private describe(index: number, server: PostgresNode): RepmgrNode {
    return { index, name: `node${index}`, port: server.port, dataDir: server.dataDir };
  }

  private async initialisePrimary(server: PostgresNode): Promise<void> {
    const { application, repmgr, superuserPassword } = this.options;
    await server.initialise();
    await server.start();
    await server.superuserSql([
      `ALTER USER postgres PASSWORD ${literal(superuserPassword)}`,
      `CREATE USER ${ident(repmgr.user)} SUPERUSER REPLICATION PASSWORD ${literal(repmgr.password)}`,
      `CREATE DATABASE ${ident(repmgr.database)} OWNER ${ident(repmgr.user)}`,
      ...(application.user === 'postgres' ? [] : [`CREATE USER ${ident(application.user)} PASSWORD ${literal(application.password)}`]),
      `CREATE DATABASE ${ident(application.database)} OWNER ${ident(application.user)}`,
    ]);
    await this.writeRepmgrConf(0, server);
    await runAsPostgres(join(PG_BIN, 'repmgr'), ['-f', this.repmgrConf(0), 'primary', 'register'], { env: this.env() });
  }

  private async cloneStandby(index: number, server: PostgresNode): Promise<void> {
    const primary = this.servers.get(0)!;
    await this.writeRepmgrConf(index, server);
    await runAsPostgres(
      join(PG_BIN, 'repmgr'),
      ['-h', '127.0.0.1', '-p', String(primary.port), '-U', this.options.repmgr.user, '-d', this.options.repmgr.database, '-f', this.repmgrConf(index), 'standby', 'clone', '--fast-checkpoint'],
      { env: this.env() },
    );
    await server.start();
    await runAsPostgres(join(PG_BIN, 'repmgr'), ['-f', this.repmgrConf(index), 'standby', 'register'], { env: this.env() });
  }

  private async writeRepmgrConf(index: number, server: PostgresNode, extra: readonly string[] = []): Promise<void> {
    const { repmgr } = this.options;
    await writePostgresFile(
      this.repmgrConf(index),
      [
        `node_id=${index + 1}`,
        `node_name='node${index}'`,
        `conninfo='host=127.0.0.1 port=${server.port} user=${repmgr.user} dbname=${repmgr.database} connect_timeout=2'`,
        `data_directory='${server.dataDir}'`,
        `pg_bindir='${PG_BIN}'`,
        'use_replication_slots=yes',
        `passfile='${this.passFile}'`,
        `pg_ctl_options='-l ${server.logFile} -o "-p ${server.port}"'`,
        ...extra,
        '',
      ].join('\n'),
    );
  }

  private repmgrConf(index: number): string {
    return join(this.options.baseDir, `repmgr-node${index}.conf`);
  }

  private env(): Record<string, string> {
    return { PGPASSFILE: this.passFile };
  }
}

function escapePass(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}
