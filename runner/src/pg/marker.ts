/**
 * The ready marker in the target database (contract {@link ReadyMarker}): one row in
 * `kc_migration.ready_marker` saying whether the data is in place (`ready`) or a restore is under
 * way (`restoring`), for which migration, and since when.
 *
 * Keycloak's gate (an init container) reads it with Keycloak's own database credentials, so
 * Keycloak's pods need no Kubernetes API access. The schema is excluded from dumps and statistics
 * and never touched by the restore's clean-up.
 */
import pg from 'pg';
import { ReadyMarker } from '../../../lib/contract.js';
import { withClient, type ConnectionSettings } from './connection.js';

export type MarkerStatus = typeof ReadyMarker.ready | typeof ReadyMarker.restoring;

export interface ReadyMarkerRow {
  readonly status: MarkerStatus;
  readonly migrationId: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

const TABLE = `${pg.escapeIdentifier(ReadyMarker.schema)}.${pg.escapeIdentifier(ReadyMarker.table)}`;

/** Reads the marker on an open client; undefined when the schema, table or row does not exist. */
export async function readMarkerWith(client: pg.Client): Promise<ReadyMarkerRow | undefined> {
  const exists = await client.query<{ found: string | null }>('SELECT to_regclass($1)::text AS found', [
    `${ReadyMarker.schema}.${ReadyMarker.table}`,
  ]);
  if (!exists.rows[0]?.found) return undefined;
  const result = await client.query<{ status: MarkerStatus; migration_id: string; created_at: Date; updated_at: Date }>(
    `SELECT status, migration_id, created_at, updated_at FROM ${TABLE} WHERE id = 1`,
  );
  const row = result.rows[0];
  if (!row) return undefined;
  return { status: row.status, migrationId: row.migration_id, createdAt: row.created_at, updatedAt: row.updated_at };
}

/** Reads the marker of the database `settings` point at (the gate's check). */
export function readMarker(settings: ConnectionSettings): Promise<ReadyMarkerRow | undefined> {
  return withClient(settings, readMarkerWith, { purpose: 'gate', action: 'read the ready marker of' });
}

/** True when the marker says `ready` (for any migration, or for `migrationId` when given). */
export async function isMarkedReady(settings: ConnectionSettings, migrationId?: string): Promise<boolean> {
  const marker = await readMarker(settings);
  return marker?.status === ReadyMarker.ready && (migrationId === undefined || marker.migrationId === migrationId);
}

export interface WriteMarkerOptions {
  readonly status: MarkerStatus;
  readonly migrationId: string;
  /**
   * Role that should own the marker schema and table (so that Keycloak's user can read it and a
   * later restore as that owner can update it). @default the connecting user
   */
  readonly owner?: string;
}

/** Creates the marker schema/table if needed and upserts the single row; runs as `owner` when given. */
export async function writeMarkerWith(client: pg.Client, options: WriteMarkerOptions): Promise<ReadyMarkerRow> {
  await client.query('BEGIN');
  try {
    if (options.owner) await client.query(`SET LOCAL ROLE ${pg.escapeIdentifier(options.owner)}`);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(ReadyMarker.schema)}`);
    await client.query(`
      CREATE TABLE IF NOT EXISTS ${TABLE} (
        id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
        status text NOT NULL CHECK (status IN ('${ReadyMarker.restoring}', '${ReadyMarker.ready}')),
        migration_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now())`);
    await client.query(
      `COMMENT ON TABLE ${TABLE} IS 'Written by the Keycloak PostgreSQL migration runner: Keycloak starts once status is ready.'`,
    );
    const result = await client.query<{ status: MarkerStatus; migration_id: string; created_at: Date; updated_at: Date }>(
      `INSERT INTO ${TABLE} (id, status, migration_id) VALUES (1, $1, $2)
       ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, migration_id = EXCLUDED.migration_id, updated_at = now()
       RETURNING status, migration_id, created_at, updated_at`,
      [options.status, options.migrationId],
    );
    await client.query('COMMIT');
    const row = result.rows[0]!;
    return { status: row.status, migrationId: row.migration_id, createdAt: row.created_at, updatedAt: row.updated_at };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** Writes the marker into the database `settings` point at. */
export function writeMarker(settings: ConnectionSettings, options: WriteMarkerOptions): Promise<ReadyMarkerRow> {
  return withClient(settings, (client) => writeMarkerWith(client, options), { purpose: 'marker', action: 'write the ready marker into' });
}
