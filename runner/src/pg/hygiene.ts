/**
 * Keycloak specifics after a verified restore, tolerant of databases that are not Keycloak's:
 *
 * - `ANALYZE`: a restored database has no planner statistics, and Keycloak's first queries would
 *   otherwise run on guesses;
 * - empty `jgroups_ping` (Keycloak 26's JDBC_PING2 table; `jgroupsping` before): the rows name
 *   pods of the old cluster, which new pods would try to join;
 * - release Liquibase's `databasechangeloglock`: a lock held when the dump was taken (a Keycloak
 *   killed during start) would make the new Keycloak wait for it forever.
 */
import pg from 'pg';
import { withClient, qualifiedName, type ConnectionSettings } from './connection.js';
import { silentLogger, type Logger } from '../log.js';

export interface HygieneResult {
  readonly analyzed: boolean;
  /** `schema.table` of each JGroups table emptied, with the number of rows removed. */
  readonly jgroupsRowsDeleted: Readonly<Record<string, number>>;
  /** `schema.table` of each Liquibase lock table released, with the number of rows unlocked. */
  readonly changelogLocksReleased: Readonly<Record<string, number>>;
}

/** Table names Keycloak versions have used for JGroups discovery. */
export const JGROUPS_TABLES = ['jgroups_ping', 'jgroupsping'];
export const CHANGELOG_LOCK_TABLE = 'databasechangeloglock';

async function findTables(client: pg.Client, names: readonly string[]): Promise<Array<{ schema: string; name: string }>> {
  const result = await client.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND lower(c.relname) = ANY($1::text[])
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`,
    [names],
  );
  return result.rows;
}

export interface HygieneOptions {
  readonly owner?: string;
  readonly log?: Logger;
  /** Run ANALYZE as part of the hygiene. @default true (false when the caller ANALYZEs, during the restore or after the target is ready) */
  readonly analyze?: boolean;
}

/** Runs the post-restore hygiene on `target` (as the owner, via SET ROLE when it differs from the user). */
export async function applyKeycloakHygiene(target: ConnectionSettings, options: HygieneOptions = {}): Promise<HygieneResult> {
  const log = options.log ?? silentLogger;
  return withClient(
    target,
    async (client) => {
      if (options.owner && options.owner !== target.user) await client.query(`SET ROLE ${pg.escapeIdentifier(options.owner)}`);
      const jgroupsRowsDeleted: Record<string, number> = {};
      for (const table of await findTables(client, JGROUPS_TABLES)) {
        const result = await client.query(`DELETE FROM ${qualifiedName(table.schema, table.name)}`);
        jgroupsRowsDeleted[`${table.schema}.${table.name}`] = result.rowCount ?? 0;
      }
      const changelogLocksReleased: Record<string, number> = {};
      for (const table of await findTables(client, [CHANGELOG_LOCK_TABLE])) {
        const result = await client.query(
          `UPDATE ${qualifiedName(table.schema, table.name)} SET locked = false, lockgranted = NULL, lockedby = NULL WHERE locked`,
        );
        changelogLocksReleased[`${table.schema}.${table.name}`] = result.rowCount ?? 0;
      }
      // After the changes above, so that their tables' statistics are current too.
      const analyze = options.analyze ?? true;
      if (analyze) await client.query('ANALYZE');
      const result = { analyzed: analyze, jgroupsRowsDeleted, changelogLocksReleased };
      log.info('Keycloak hygiene done', { ...result });
      return result;
    },
    { purpose: 'hygiene', action: 'clean up' },
  );
}
