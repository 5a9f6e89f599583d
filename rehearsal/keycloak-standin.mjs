// A stand-in for Keycloak 26's start-up database traffic, run as the main container of each
// Keycloak pod (after the real database-gate init container passed). It reads exactly Keycloak's
// KC_DB_* variables and does what Keycloak does first against PostgreSQL:
// - an empty database gets Liquibase's bookkeeping tables and the JGroups table (Keycloak would
//   create its whole schema: on a fresh install that is right, during a migration it is the
//   disaster the gate exists to prevent);
// - Liquibase takes and releases `databasechangeloglock` (a write, every start);
// - JGroups JDBC_PING registers this member in `jgroups_ping`.
// It prints one JSON line per event on stdout: {"event":"first-write","at":<ms>,"created":bool},
// {"event":"ready","httpPort":<port>}, and heartbeats until SIGTERM. Any database error exits 1
// (the kubelet restarts the container). It answers HTTP on an OS-chosen port (what the Keycloak
// Service forwards to): 200 while its database connection works, 503 otherwise.
// With STANDIN_WRITE_INTERVAL_MS it also writes, as a busy Keycloak does, one row every interval
// into public.rehearsal_keycloak_writes and prints {"event":"write","at":<ms>,"id":...} once the
// commit is acknowledged: the rehearsal measures the write outage and checks no accepted write is
// lost. A failed write ends the process (exit 1), and the kubelet restarts it.
import { createServer } from 'node:http';

import pg from 'pg';

const env = process.env;
for (const name of ['KC_DB_URL_HOST', 'KC_DB_URL_PORT', 'KC_DB_URL_DATABASE', 'KC_DB_USERNAME', 'KC_DB_PASSWORD']) {
  if (!env[name]) {
    console.error(JSON.stringify({ event: 'error', message: `${name} is not set` }));
    process.exit(1);
  }
}
if (env.KC_DB !== 'postgres') {
  console.error(JSON.stringify({ event: 'error', message: `KC_DB must be postgres, got ${JSON.stringify(env.KC_DB)}` }));
  process.exit(1);
}
const schema = env.KC_DB_SCHEMA || 'public';
const member = env.HOSTNAME || 'keycloak-0';
const say = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

const client = new pg.Client({
  host: env.KC_DB_URL_HOST,
  port: Number(env.KC_DB_URL_PORT),
  database: env.KC_DB_URL_DATABASE,
  user: env.KC_DB_USERNAME,
  password: env.KC_DB_PASSWORD,
  connectionTimeoutMillis: 5000,
});

let stopping = false;
let healthy = false;
process.on('SIGTERM', () => {
  stopping = true;
  client.end().finally(() => process.exit(0));
});

const http = createServer((request, response) => {
  response.writeHead(healthy ? 200 : 503, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ member, status: healthy ? 'UP' : 'DOWN' }));
});
const httpPort = await new Promise((resolve) => http.listen(0, '127.0.0.1', () => resolve(http.address().port)));
http.unref();
const writeInterval = Number(env.STANDIN_WRITE_INTERVAL_MS || 0);
/** How long a member waits for another one's Liquibase lock (Liquibase's own default is 5 minutes). */
const LOCK_WAIT_MS = 10_000;
let writeSequence = 0;

try {
  await client.connect();
  const q = (text, values) => client.query(text, values);
  const exists = (await q(`SELECT to_regclass($1) IS NOT NULL AS present`, [`${schema}.databasechangeloglock`])).rows[0].present;
  const firstWriteAt = Date.now();
  let created = false;
  if (!exists) {
    created = true;
    await q('BEGIN');
    await q(`CREATE TABLE ${schema}.databasechangeloglock (id integer PRIMARY KEY, locked boolean NOT NULL, lockgranted timestamp, lockedby varchar(255))`);
    await q(`INSERT INTO ${schema}.databasechangeloglock VALUES (1, false, NULL, NULL)`);
    await q(`CREATE TABLE ${schema}.databasechangelog (id varchar(255) NOT NULL, author varchar(255) NOT NULL, filename varchar(255) NOT NULL,
      dateexecuted timestamp NOT NULL, orderexecuted integer NOT NULL, exectype varchar(10) NOT NULL, md5sum varchar(35),
      description varchar(255), comments varchar(255), tag varchar(255), liquibase varchar(20), contexts varchar(255),
      labels varchar(255), deployment_id varchar(10))`);
    await q(`CREATE TABLE ${schema}.jgroups_ping (address varchar(200) PRIMARY KEY, name varchar(200), cluster_name varchar(200) NOT NULL,
      ip varchar(200) NOT NULL, coord boolean)`);
    await q(`INSERT INTO ${schema}.databasechangelog VALUES ('standin-1', 'rehearsal', 'META-INF/jpa-changelog-26.0.0.xml', now(), 1, 'EXECUTED',
      NULL, 'created by the Keycloak stand-in on an empty database', NULL, NULL, '4.29.1', NULL, NULL, NULL)`);
    await q('COMMIT');
  }
  // Liquibase: acquire the change-log lock, find nothing to do, release it. Like Liquibase, wait
  // while another member holds it (two pods starting together); a lock still held after that is
  // the stale one a restore must release.
  const lockDeadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    const locked = await q(
      `UPDATE ${schema}.databasechangeloglock SET locked = true, lockgranted = now(), lockedby = $1 WHERE id = 1 AND locked = false`,
      [member],
    );
    if (locked.rowCount === 1) break;
    if (Date.now() > lockDeadline) {
      throw new Error('databasechangeloglock is held by someone else (Keycloak would wait forever: release it after a restore)');
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await q(`UPDATE ${schema}.databasechangeloglock SET locked = false, lockgranted = NULL, lockedby = NULL WHERE id = 1`);
  say({ event: 'first-write', at: firstWriteAt, created });
  await q(
    `INSERT INTO ${schema}.jgroups_ping (address, name, cluster_name, ip, coord) VALUES ($1, $2, 'ISPN', '127.0.0.1:7800', false)
       ON CONFLICT (address) DO UPDATE SET name = EXCLUDED.name`,
    [`uuid-${member}`, member],
  );
  if (writeInterval > 0) {
    await q(`CREATE TABLE IF NOT EXISTS ${schema}.rehearsal_keycloak_writes (id varchar(64) PRIMARY KEY, pod varchar(64) NOT NULL, at timestamptz NOT NULL)`);
  }
  healthy = true;
  say({ event: 'ready', at: Date.now(), httpPort });
  while (!stopping) {
    await new Promise((resolve) => setTimeout(resolve, writeInterval > 0 ? writeInterval : 1000));
    if (stopping) break;
    if (writeInterval > 0) {
      const id = `${member}-${process.pid}-${++writeSequence}`;
      await q(`INSERT INTO ${schema}.rehearsal_keycloak_writes (id, pod, at) VALUES ($1, $2, now())`, [id, member]);
      say({ event: 'write', at: Date.now(), id });
    } else {
      await q('SELECT 1');
    }
  }
} catch (error) {
  if (!stopping) {
    console.error(JSON.stringify({ event: 'error', message: error instanceof Error ? error.message : String(error) }));
    process.exit(1);
  }
}
