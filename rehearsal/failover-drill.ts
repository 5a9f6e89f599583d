/**
 * Failover drills after a completed migration: while a writer that behaves like Keycloak's
 * connection pool keeps writing through the application's Service, the target loses its primary
 * (CloudNativePG: a switchover; repmgr: the primary killed, repmgr promotes the standby, Pgpool
 * fails over). The drill measures what the application sees:
 *
 * - every acknowledged write is on the new primary and on the standbys afterwards (none lost);
 * - the write outage: the longest gap between two acknowledged writes from the fault on;
 * - writes that reached a read-only server (SQLSTATE 25006, the symptom of bitnami/charts#23219:
 *   a pool still connected to a demoted node) — there must be none.
 *
 * The writer models what Keycloak's JDBC driver and pool (pgjdbc + Agroal) do with the connection
 * Keycloak is configured with: one pooled connection to `KC_DB_URL_HOST:KC_DB_URL_PORT`, discarded
 * and re-opened after an error; with `targetServerType=primary` in `KC_DB_URL_PROPERTIES` a new
 * connection is accepted only if `SHOW transaction_read_only` is `off` (pgjdbc's check).
 */
import pg from 'pg';

import { withClient, type Connection } from './checks.js';
import type { SynthesizedShape } from './harness.js';
import type { Rehearsal } from './harness.js';
import { appConnection, findObject, NAMES, targetDatabase, targetNodes } from './scenario.js';

/** What one drill measured (reported in the rehearsal summary). */
export interface FailoverMeasurement {
  readonly flavor: string;
  /** Acknowledged writes during the drill. */
  readonly acknowledged: number;
  /** Acknowledged writes missing afterwards (must be 0). */
  readonly lost: number;
  /** Longest time without an acknowledged write, from the fault on (ms). */
  readonly outageMs: number;
  /** Writes that reached a read-only server (must be 0). */
  readonly readOnlyWrites: number;
  /** Distinct errors the writer saw (connection refused, terminated, ...). */
  readonly errors: readonly string[];
}

declare module 'vitest' {
  interface TaskMeta {
    failover?: FailoverMeasurement;
  }
}

const TABLE = 'rehearsal_failover_drill';

/** Keycloak's JDBC URL properties (KC_DB_URL_PROPERTIES) from the synthesized StatefulSet. */
export function keycloakJdbcProperties(shape: SynthesizedShape): URLSearchParams {
  const statefulSet = findObject(shape, 'StatefulSet', NAMES.keycloak);
  const containers = (statefulSet.spec as { template: { spec: { containers: { env?: { name: string; value?: string }[] }[] } } }).template.spec.containers;
  const value = containers[0]?.env?.find((variable) => variable.name === 'KC_DB_URL_PROPERTIES')?.value ?? '';
  // Keycloak appends the value to the JDBC URL: `?a=b&c=d` or `;a=b` style both reduce to pairs.
  return new URLSearchParams(value.replace(/^[?;]/, '').replace(/;/g, '&'));
}

export class KeycloakLikeWriter {
  private stopped = false;
  private client: pg.Client | undefined;
  private loop: Promise<void> | undefined;
  private next = 1;
  /** Acknowledged writes: id and when the commit was acknowledged (ms). */
  readonly acknowledged: { id: number; at: number }[] = [];
  readonly errors: { at: number; code?: string; message: string }[] = [];

  constructor(
    private readonly connection: () => Promise<Connection>,
    private readonly requirePrimary: boolean,
    private readonly intervalMs = 50,
  ) {}

  static async prepare(connection: Connection): Promise<void> {
    await withClient(connection, (client) => client.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`));
  }

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.client?.end().catch(() => undefined);
  }

  /** Resolves once a write was acknowledged after `since` (ms). */
  async writtenAfter(since: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const write = this.acknowledged.find((entry) => entry.at > since);
      if (write) return write.at;
      if (Date.now() > deadline) {
        const last = this.errors.at(-1);
        throw new Error(`no write acknowledged within ${timeoutMs} ms of the fault${last ? `; the last error: ${last.message}` : ''}`);
      }
      await sleep(20);
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        this.client ??= await this.open();
        const id = this.next++;
        await this.client.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [id]);
        this.acknowledged.push({ id, at: Date.now() });
      } catch (error) {
        const { code, message } = error as { code?: string; message: string };
        this.errors.push({ at: Date.now(), code, message });
        // The pool discards a broken connection and opens a new one for the next request.
        const broken = this.client;
        this.client = undefined;
        await broken?.end().catch(() => undefined);
      }
      await sleep(this.intervalMs);
    }
  }

  private async open(): Promise<pg.Client> {
    const client = new pg.Client({ ...(await this.connection()), connectionTimeoutMillis: 2000 });
    // An error on an idle connection (the server went away) surfaces at the next query instead.
    client.on('error', () => undefined);
    await client.connect();
    if (this.requirePrimary) {
      const readOnly = (await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only')).rows[0]!.transaction_read_only;
      if (readOnly !== 'off') {
        await client.end();
        throw new Error('targetServerType=primary: the server is read-only, connection refused by the driver');
      }
    }
    return client;
  }
}

/**
 * Runs `fault` while the writer writes, waits for writes to resume, and measures. Throws with every
 * problem when a write was lost or reached a read-only server, or when writes did not resume
 * within `boundMs`.
 */
export async function failoverDrill(rehearsal: Rehearsal, v2: SynthesizedShape, fault: () => Promise<void>, boundMs: number): Promise<FailoverMeasurement> {
  const app = await appConnection(rehearsal);
  await KeycloakLikeWriter.prepare(app);
  const requirePrimary = keycloakJdbcProperties(v2).get('targetServerType') === 'primary';
  const primaryBefore = (await targetNodes(rehearsal)).find((node) => node.primary)?.name;
  const writer = new KeycloakLikeWriter(() => appConnection(rehearsal), requirePrimary);
  writer.start();
  let outageMs = 0;
  try {
    await writer.writtenAfter(Date.now(), 10_000);
    await sleep(500);
    const faultAt = Date.now();
    await fault();
    // Keep writing a while after the first write on the new primary, so that a pool still
    // pointing at the old node would show it.
    await writer.writtenAfter(Date.now(), boundMs);
    await sleep(2000);
    const acknowledged = writer.acknowledged.filter((entry) => entry.at >= faultAt - 1000).map((entry) => entry.at);
    const lastBefore = writer.acknowledged.filter((entry) => entry.at < faultAt).at(-1)?.at ?? faultAt;
    let previous = lastBefore;
    for (const at of acknowledged.filter((at) => at >= lastBefore)) {
      outageMs = Math.max(outageMs, at - previous);
      previous = at;
    }
  } finally {
    await writer.stop();
  }

  const ids = writer.acknowledged.map((entry) => entry.id);
  const problems: string[] = [];
  let lost = 0;
  const nodes = await targetNodes(rehearsal);
  const primaries = nodes.filter((node) => node.primary);
  if (primaries.length !== 1) problems.push(`after the failover ${primaries.length} servers are primary`);
  // The writes after the fault must have gone to a promoted standby, not to the old primary back again.
  if (primaries[0]?.name === primaryBefore) problems.push(`${primaryBefore} is still the primary: nothing failed over`);
  for (const node of nodes) {
    // A standby replays asynchronously: give it a moment to have every acknowledged write.
    const deadline = Date.now() + 15_000;
    let missing: number[];
    for (;;) {
      const present = new Set(await withClient(node.connection, async (client) => (await client.query<{ id: number }>(`SELECT id FROM ${TABLE}`)).rows.map((row) => row.id)));
      missing = ids.filter((id) => !present.has(id));
      if (missing.length === 0 || Date.now() > deadline) break;
      await sleep(250);
    }
    if (missing.length > 0) problems.push(`${node.name} (${node.primary ? 'primary' : 'standby'}) lacks ${missing.length} acknowledged write(s), e.g. ${missing.slice(0, 5).join(', ')}`);
    if (node.primary) lost = missing.length;
  }
  const readOnlyWrites = writer.errors.filter((error) => error.code === '25006').length;
  if (readOnlyWrites > 0) problems.push(`${readOnlyWrites} write(s) reached a read-only server through ${targetDatabase(rehearsal).appService}`);
  if (outageMs > boundMs) problems.push(`writes stopped for ${outageMs} ms, more than the bound of ${boundMs} ms`);
  const measurement: FailoverMeasurement = {
    flavor: targetDatabase(rehearsal).flavor,
    acknowledged: ids.length,
    lost,
    outageMs,
    readOnlyWrites,
    errors: [...new Set(writer.errors.map((error) => `${error.code ?? 'error'}: ${error.message}`))],
  };
  if (problems.length > 0) throw new Error(`failover drill (${measurement.flavor}): ${problems.join('; ')}\nmeasured: ${JSON.stringify(measurement)}`);
  return measurement;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
