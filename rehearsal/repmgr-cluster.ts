/**
 * A real repmgr-managed PostgreSQL 15 primary with hot standbys on 127.0.0.1, the process-level
 * twin of the Bitnami `postgresql-repmgr` StatefulSet, following
 * shared/reference/local-postgresql-ha-recipe.md (and its pitfalls: ports only through
 * `pg_ctl -o "-p N"` and `pg_ctl_options` so standby clone and rewind do not copy them; `$BIN/repmgr`
 * rather than Debian's wrapper; SCRAM with a passfile for repmgr and replication).
 *
 * Like the image, the first start of node 0 initialises the cluster with the users the
 * StatefulSet's environment names (POSTGRES_USER/PASSWORD/DB, REPMGR_USERNAME/PASSWORD/DATABASE,
 * the `postgres` superuser password); standbys are cloned from the primary. Data directories
 * live under `baseDir/<node>` and survive {@link RepmgrCluster.stop}: they are the PVCs.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import pg from 'pg';

import { ensurePostgresDir, freePort, PG_BIN, runAsPostgres, waitFor, writePostgresFile } from './postgres-processes.js';

export interface PostgresAccount {
  readonly user: string;
  readonly password: string;
}

export interface RepmgrClusterOptions {
  /** Directory holding every node's data directory ("the PVCs"); kept across stop/start. */
  readonly baseDir: string;
  /** Number of nodes: node 0 is the primary, the others hot standbys. */
  readonly nodes: number;
  /** Password of the `postgres` superuser (POSTGRESQL_POSTGRES_PASSWORD / postgres-password). */
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
  readonly nodes: RepmgrNode[];
  private readonly runDir: string;
  private readonly passFile: string;
  private running = false;

  private constructor(
    private readonly options: RepmgrClusterOptions,
    ports: number[],
  ) {
    if (!Number.isInteger(options.nodes) || options.nodes < 1) {
      throw new Error(`RepmgrCluster 'nodes' must be an integer >= 1, got ${options.nodes}`);
    }
    this.runDir = join(options.baseDir, 'run');
    this.passFile = join(options.baseDir, 'pgpass');
    this.nodes = ports.map((port, index) => ({ index, name: `node${index}`, port, dataDir: join(options.baseDir, `pg${index}`) }));
  }

  /** Prepares the cluster description (allocating ports); nothing runs until {@link start}. */
  static async create(options: RepmgrClusterOptions): Promise<RepmgrCluster> {
    const ports: number[] = [];
    for (let index = 0; index < options.nodes; index++) ports.push(await freePort());
    await ensurePostgresDir(options.baseDir);
    return new RepmgrCluster(options, ports);
  }

  get primary(): RepmgrNode {
    return this.nodes[0]!;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /**
   * Starts every node, initialising the cluster on the first start. `onNodeReady` fires as each
   * node accepts connections (the primary first), so pods can report Ready one by one.
   */
  async start(onNodeReady: (node: RepmgrNode) => void = () => {}): Promise<void> {
    await ensurePostgresDir(this.runDir);
    await writePostgresFile(
      this.passFile,
      // repmgr connects to its database and to `replication`; pg_basebackup uses the latter.
      [`127.0.0.1:*:*:${this.options.repmgr.user}:${escapePass(this.options.repmgr.password)}`].join('\n') + '\n',
    );
    const primary = this.primary;
    if (!existsSync(join(primary.dataDir, 'PG_VERSION'))) await this.initialisePrimary();
    else await this.pgCtlStart(primary);
    this.running = true;
    onNodeReady(primary);
    for (const node of this.nodes.slice(1)) {
      if (!existsSync(join(node.dataDir, 'PG_VERSION'))) await this.cloneStandby(node);
      else await this.pgCtlStart(node);
      onNodeReady(node);
    }
  }

  /** Stops every node (standbys first), keeping the data directories. */
  async stop(): Promise<void> {
    for (const node of [...this.nodes].reverse()) {
      if (existsSync(join(node.dataDir, 'postmaster.pid'))) {
        await runAsPostgres(join(PG_BIN, 'pg_ctl'), ['-D', node.dataDir, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
      }
    }
    this.running = false;
  }

  /** Connects as the superuser to one node (for checks: standby contents, recovery state). */
  async withNode<T>(node: RepmgrNode, database: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ host: '127.0.0.1', port: node.port, user: 'postgres', password: this.options.superuserPassword, database });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }

  /** repmgr's own view (`cluster show --csv`): node id, upstream, status per node. */
  async clusterShow(): Promise<string> {
    return runAsPostgres(join(PG_BIN, 'repmgr'), ['-f', this.repmgrConf(this.primary), 'cluster', 'show'], { env: this.env() });
  }

  private async initialisePrimary(): Promise<void> {
    const node = this.primary;
    const { application, repmgr, superuserPassword } = this.options;
    await runAsPostgres(join(PG_BIN, 'initdb'), ['-D', node.dataDir, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
    await writePostgresFile(
      join(node.dataDir, 'postgresql.auto.conf'),
      [
        // Deliberately no `port`: clones would copy it (recipe pitfall 1).
        `listen_addresses = '127.0.0.1'`,
        `unix_socket_directories = '${this.runDir}'`,
        'wal_level = replica',
        'max_wal_senders = 10',
        'max_replication_slots = 10',
        'wal_keep_size = 128MB',
        'hot_standby = on',
        'wal_log_hints = on',
        `shared_preload_libraries = 'repmgr'`,
        'max_connections = 60',
        'fsync = off',
        `password_encryption = 'scram-sha-256'`,
        '',
      ].join('\n'),
    );
    // Local socket trust is for this harness's own setup; every TCP client (runner, Pgpool,
    // Keycloak stand-in, repmgr) must present a SCRAM password as in the real image.
    await writePostgresFile(
      join(node.dataDir, 'pg_hba.conf'),
      ['local all all trust', 'host all all 127.0.0.1/32 scram-sha-256', 'host replication all 127.0.0.1/32 scram-sha-256', ''].join('\n'),
    );
    await this.pgCtlStart(node);
    const sql = [
      `ALTER USER postgres PASSWORD ${literal(superuserPassword)}`,
      `CREATE USER ${ident(repmgr.user)} SUPERUSER REPLICATION PASSWORD ${literal(repmgr.password)}`,
      `CREATE DATABASE ${ident(repmgr.database)} OWNER ${ident(repmgr.user)}`,
      ...(application.user === 'postgres' ? [] : [`CREATE USER ${ident(application.user)} PASSWORD ${literal(application.password)}`]),
      `CREATE DATABASE ${ident(application.database)} OWNER ${ident(application.user)}`,
    ];
    for (const statement of sql) {
      await runAsPostgres(join(PG_BIN, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', this.runDir, '-p', String(node.port), '-U', 'postgres', '-d', 'postgres', '-c', statement]);
    }
    await this.writeRepmgrConf(node);
    await runAsPostgres(join(PG_BIN, 'repmgr'), ['-f', this.repmgrConf(node), 'primary', 'register'], { env: this.env() });
  }

  private async cloneStandby(node: RepmgrNode): Promise<void> {
    await this.writeRepmgrConf(node);
    const primary = this.primary;
    await runAsPostgres(
      join(PG_BIN, 'repmgr'),
      ['-h', '127.0.0.1', '-p', String(primary.port), '-U', this.options.repmgr.user, '-d', this.options.repmgr.database, '-f', this.repmgrConf(node), 'standby', 'clone', '--fast-checkpoint'],
      { env: this.env() },
    );
    await this.pgCtlStart(node);
    await runAsPostgres(join(PG_BIN, 'repmgr'), ['-f', this.repmgrConf(node), 'standby', 'register'], { env: this.env() });
  }

  private async writeRepmgrConf(node: RepmgrNode): Promise<void> {
    const { repmgr } = this.options;
    await writePostgresFile(
      this.repmgrConf(node),
      [
        `node_id=${node.index + 1}`,
        `node_name='${node.name}'`,
        `conninfo='host=127.0.0.1 port=${node.port} user=${repmgr.user} dbname=${repmgr.database} connect_timeout=2'`,
        `data_directory='${node.dataDir}'`,
        `pg_bindir='${PG_BIN}'`,
        'use_replication_slots=yes',
        `passfile='${this.passFile}'`,
        `pg_ctl_options='-l ${node.dataDir}.log -o "-p ${node.port}"'`,
        '',
      ].join('\n'),
    );
  }

  private repmgrConf(node: RepmgrNode): string {
    return join(this.options.baseDir, `repmgr-${node.name}.conf`);
  }

  private env(): Record<string, string> {
    return { PGPASSFILE: this.passFile };
  }

  private async pgCtlStart(node: RepmgrNode): Promise<void> {
    await runAsPostgres(join(PG_BIN, 'pg_ctl'), ['-D', node.dataDir, '-l', `${node.dataDir}.log`, '-o', `-p ${node.port}`, '-w', '-t', '60', 'start']);
    await waitFor(
      `${node.name} to accept connections on port ${node.port}`,
      async () => {
        await runAsPostgres(join(PG_BIN, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(node.port)]);
        return true;
      },
      30_000,
    );
  }
}

function escapePass(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
