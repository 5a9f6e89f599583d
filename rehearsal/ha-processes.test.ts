// The postgresql-ha twin on its own: a real repmgr primary + standby behind a real Pgpool-II,
// SCRAM everywhere. Writes through Pgpool land on the primary and replicate; data survives a stop.
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';

import { Pgpool } from './pgpool.js';
import { makePostgresDir, waitFor } from './postgres-processes.js';
import { RepmgrCluster } from './repmgr-cluster.js';

describe('repmgr primary + standby behind Pgpool-II', () => {
  let cluster: RepmgrCluster | undefined;
  let pool: Pgpool | undefined;
  let baseDir = '';
  afterAll(async () => {
    await pool?.stop();
    await cluster?.stop();
    if (baseDir && !process.env.KEEP) rmSync(baseDir, { recursive: true, force: true });
  });

  const application = { user: 'keycloak', password: 'app-pw.with_odd+chars/=', database: 'keycloak' };

  it('replicates a write made through Pgpool, refuses a wrong password, and keeps data across a restart', async () => {
    baseDir = await makePostgresDir('rehearsal-ha-');
    cluster = await RepmgrCluster.create({
      baseDir,
      superuserPassword: 'super-pw',
      repmgr: { user: 'repmgr', password: 'repmgr-pw', database: 'repmgr' },
      application,
    });
    const ready: string[] = [];
    await cluster.start(2, (node) => ready.push(node.name));
    expect(ready).toEqual(['node0', 'node1']);
    pool = await Pgpool.start({
      dir: `${baseDir}/pgpool`,
      backends: cluster.nodes,
      users: [application, { user: 'postgres', password: 'super-pw' }],
      checkUser: { user: 'repmgr', password: 'repmgr-pw', database: 'repmgr' },
      admin: { user: 'admin', password: 'admin-pw' },
    });
    expect((await pool.showPoolNodes()).map((node) => node.role).sort()).toEqual(['primary', 'standby']);

    const client = new pg.Client({ host: '127.0.0.1', port: pool.port, ...application });
    await client.connect();
    const recovery = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
    expect(recovery.rows[0]!.r).toBe(false);
    await client.query('CREATE TABLE probe (id int PRIMARY KEY, note text)');
    await client.query("INSERT INTO probe VALUES (1, 'through pgpool')");
    await client.end();

    const replicated = await waitFor('the row on the standby', () =>
      cluster!.withNode(1, 'keycloak', async (c) => (await c.query('SELECT note FROM probe')).rows[0]?.note as string | undefined), 10_000);
    expect(replicated).toBe('through pgpool');
    expect(await cluster.withNode(1, 'keycloak', async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r)).toBe(true);

    const wrong = new pg.Client({ host: '127.0.0.1', port: pool.port, ...application, password: 'wrong' });
    await expect(wrong.connect()).rejects.toThrow(/authentication failed/);

    await pool.stop();
    await cluster.stop();
    await cluster.start(2);
    pool = await Pgpool.start({
      dir: `${baseDir}/pgpool`,
      backends: cluster.nodes,
      users: [application],
      checkUser: { user: 'repmgr', password: 'repmgr-pw', database: 'repmgr' },
      admin: { user: 'admin', password: 'admin-pw' },
    });
    const again = new pg.Client({ host: '127.0.0.1', port: pool.port, ...application });
    await again.connect();
    expect((await again.query('SELECT count(*)::int AS n FROM probe')).rows[0].n).toBe(1);
    await again.end();
  });
});
