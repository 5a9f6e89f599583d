/**
 * Restores a verified backup into the target database, idempotently:
 *
 * - the target already holds exactly the backup (statistics and object inventory equal the
 *   manifest) → nothing to do;
 * - it holds a partial restore (a crashed run, or Keycloak that started too early) → drop exactly
 *   the objects a restore creates — owned by the owner, in the schemas the dump contains, large
 *   objects with the dump's OIDs — and restore again; objects of other owners there stop the run;
 * - otherwise restore: `pg_restore --no-owner --no-privileges --role=<owner> --jobs N
 *   --exit-on-error` with a use-list that skips what a fresh CloudNativePG/Bitnami database already
 *   has (the public schema, pre-installed extensions) instead of ignoring errors.
 *
 * A session advisory lock on the target keeps two restores apart; sessions a killed runner's
 * pg_restore left behind are terminated first.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ExitCode, ReadyMarker } from '../../../lib/contract.js';
import { classifyDatabaseError, dataError, RunnerError } from '../errors.js';
import { silentLogger, type Logger, type ProgressEvent, progressEvent } from '../log.js';
import { connect, describeEndpoint, qualifiedName, serverMajorVersion, withClient, type ConnectionSettings } from './connection.js';
import { MANIFEST_FILE, STANDALONE_TYPE_FILTER, type BackupManifest, type ChecksumsInProgress, type LargeObjectStats, type TableStats } from './manifest.js';
import { findDeferrableIndexes, type DeferredIndex, type DeferredIndexPlan } from './deferred-indexes.js';
import { readMarkerWith } from './marker.js';
import { restoreToolArgs, restoreToolEnv, takeRestoreLock } from './restore-sessions.js';
import { formatUseList, largeObjectOids, type TocEntry } from './toc.js';
import { assertRestoreToolReads, assertRestoreToolTargets, findPgTools, runTool, toolVersion, type PgTools } from './tools.js';
import { verifyBackup, verifyBackupFiles } from './verify-backup.js';
import { collectTargetStats, describeDifferences, diffDatabaseStats } from './verify-target.js';
import { DEFAULT_PARALLEL_JOBS, sha256File } from './backup.js';
import { TableVerifierDuringRestore } from './verify-during-restore.js';


export interface RestoreOptions {
  /** Backup directory holding `dump/` and `manifest.json`. */
  readonly dir: string;
  readonly target: ConnectionSettings;
  /** Role that owns every restored object. @default target.user */
  readonly owner?: string;
  /** pg_restore --jobs. @default 2 */
  readonly jobs?: number;
  readonly tools?: PgTools;
  readonly log?: Logger;
  readonly onProgress?: (event: ProgressEvent) => void;
  /** Progress report interval. @default 2000 */
  readonly progressIntervalMs?: number;
  /**
   * Clean and restore even when the target's ready marker says `ready` (and the data differs).
   * @default false: such a target may hold Keycloak's newer writes
   */
  readonly overwriteReady?: boolean;
  /**
   * Checksum each table right after pg_restore loaded it (pg/verify-during-restore.ts), for
   * {@link verifyTarget}'s `checksummedTables`: the scan then overlaps the rest of the restore.
   * Only with jobs > 1 (pg_restore reports finished items only in parallel mode).
   * @default false
   */
  readonly checksumDuringRestore?: boolean;
  /**
   * ANALYZE the restored tables (each right after its checksum when `checksumDuringRestore`; what
   * is left — partitioned tables, materialized views, tables with expression indexes — after
   * pg_restore), so that the caller need not ANALYZE again.
   * @default false
   */
  readonly analyze?: boolean;
  /**
   * Leave the dump's plain (non-unique) indexes out of the restore, for
   * {@link buildDeferredIndexes} to build once the target is ready (pg/deferred-indexes.ts: the
   * caller brings Keycloak back meanwhile). Not with `analyze`, which must follow the indexes.
   * @default false
   */
  readonly deferPlainIndexes?: boolean;
  /**
   * The backup whose files this process digested itself, and when it finished (`copy`, the Argo
   * CD backup Job that also restores: the dump took every file's sha256 as pg_dump finished it).
   * Every dump file's sha256 is recomputed while pg_restore reads the files — a mismatch stops
   * pg_restore and fails the run — unless `<dir>/manifest.json` is that backup's (its sha256) and
   * pg_restore starts at most {@link DIGESTS_TRUSTED_FOR_MS} after: the recomputation guards a
   * backup that sat on its volume (between two processes, or through a wait for the target),
   * and a hand-over inside one process lets none of that happen. The files' presence and sizes and
   * toc.dat's digest are checked either way, before pg_restore starts.
   * @default undefined - recompute every digest
   */
  readonly digestedByThisProcess?: DigestedBackup;
}

/** A backup whose files' sha256 this process computed from the files on the volume. */
export interface DigestedBackup {
  /** sha256 of its manifest.json (what the state ConfigMap records). */
  readonly manifestSha256: string;
  /** When the last file's digest was taken (Date.now()). */
  readonly digestedAt: number;
}

/**
 * How long after this process digested a backup's files a restore may still use those digests
 * instead of reading every file again: a hand-over inside one process (protecting the legacy
 * volumes, the target's checks) takes about a second; a target that was not ready at once makes
 * the backup sit on its volume for as long as the wait, and that backup is digested again.
 */
export const DIGESTS_TRUSTED_FOR_MS = 60_000;

/**
 * Whether `dir` holds the backup this process digested, recently enough: see
 * {@link RestoreOptions.digestedByThisProcess}. Says why not, for the log.
 */
async function digestsOfThisProcess(dir: string, digested: DigestedBackup | undefined): Promise<{ trusted: boolean; why: string }> {
  if (!digested) return { trusted: false, why: 'the backup was not digested by this process' };
  const ageMs = Date.now() - digested.digestedAt;
  if (ageMs > DIGESTS_TRUSTED_FOR_MS) return { trusted: false, why: `this process digested the files ${Math.round(ageMs / 1000)} s ago` };
  if ((await sha256File(join(dir, MANIFEST_FILE))) !== digested.manifestSha256) return { trusted: false, why: 'the manifest is not the one of the backup this process digested' };
  return { trusted: true, why: `taken ${ageMs} ms before` };
}

export type RestoreAction = 'restored' | 'already-restored';

export interface RestoreResult {
  readonly action: RestoreAction;
  readonly manifest: BackupManifest;
  /** What a partial restore left and this run removed (empty when the target was clean). */
  readonly cleaned: readonly string[];
  /** Bytes of table data restored. */
  readonly bytes: number;
  readonly durationMs: number;
  /** With `checksumDuringRestore`: the tables checksummed after their data was restored, by `schema.name`. */
  readonly checksummedTables: ReadonlyMap<string, TableStats>;
  /** With `checksumDuringRestore`: the large objects' statistics, taken after pg_restore loaded them (if it had time). */
  readonly checksummedLargeObjects?: LargeObjectStats;
  /**
   * With `checksumDuringRestore`: the checksum the verifier was still taking when pg_restore ended,
   * for {@link verifyTarget} to await instead of waiting for it here (not with `analyze`, which
   * waits for the verifier's ANALYZEs).
   */
  readonly checksumsInProgress?: ChecksumsInProgress;
  /** Whether the restored database was ANALYZEd (`analyze`, and not already restored). */
  readonly analyzed: boolean;
  /**
   * `schema.name` of the indexes left for {@link buildDeferredIndexes} (`deferPlainIndexes`): the
   * verification must not miss them, and the caller builds them once the target is ready.
   */
  readonly indexesBuiltLater: ReadonlySet<string>;
  /** The same, with the TOC entries {@link buildDeferredIndexes} restores them from. */
  readonly deferredIndexes: DeferredIndexPlan;
}

/** What the target holds in the dump's schemas. */
export interface TargetInventory {
  /** Schemas of the dump that exist in the target, with their owners. */
  readonly existingSchemas: ReadonlyMap<string, string>;
  /**
   * The comment of each existing schema of the dump, as the manifest records comments
   * (`schema <name>: md5(<comment>)`), with the description it starts with.
   */
  readonly schemaComments: ReadonlyMap<string, { readonly description: string; readonly comment?: string }>;
  /** Extensions installed in the target. */
  readonly extensions: ReadonlySet<string>;
  /**
   * Relations, routines and types (enums, domains, ranges, stand-alone composites: what
   * {@link dropRestoredObjects} drops) in the dump's schemas, not extension members.
   */
  readonly objectCount: number;
  /** Large objects with OIDs the dump holds. */
  readonly largeObjects: readonly number[];
}

/**
 * Whether a COMMENT ON SCHEMA of the dump may be skipped: the schema exists and already has the
 * comment the manifest records, or the manifest records none for it (`public`, whose comment
 * pg_dump 11-14 emits although only its owner — not the restoring user — may set it). A schema that
 * exists without the backup's comment — a restore killed between CREATE SCHEMA and COMMENT, or a
 * schema created beforehand — gets the comment set.
 */
function schemaCommentInPlace(manifest: BackupManifest, inventory: TargetInventory, schema: string): boolean {
  const existing = inventory.schemaComments.get(schema);
  if (!existing) return false;
  const recorded = manifest.stats.objects.comments.filter((comment) => comment.startsWith(`${existing.description}: `));
  return recorded.length === 0 || (existing.comment !== undefined && recorded.includes(existing.comment));
}

function oidInDump(oid: number, dumpOids: { oids: ReadonlySet<number>; ranges: ReadonlyArray<[number, number]> }): boolean {
  return dumpOids.oids.has(oid) || dumpOids.ranges.some(([from, to]) => oid >= from && oid <= to);
}

export async function inspectTarget(client: pg.Client, manifest: BackupManifest, toc: readonly TocEntry[]): Promise<TargetInventory> {
  const schemas = [...manifest.stats.schemas];
  const existing = await client.query<{ nspname: string; owner: string; description: string; comment_md5: string | null }>(
    `SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner) AS owner,
            pg_catalog.pg_describe_object('pg_catalog.pg_namespace'::regclass, n.oid, 0) AS description, md5(d.description) AS comment_md5
       FROM pg_catalog.pg_namespace n
       LEFT JOIN pg_catalog.pg_description d ON d.classoid = 'pg_catalog.pg_namespace'::regclass AND d.objoid = n.oid AND d.objsubid = 0
      WHERE n.nspname = ANY($1::text[])`,
    [schemas],
  );
  const extensions = await client.query<{ extname: string }>('SELECT extname FROM pg_catalog.pg_extension');
  const objects = await client.query<{ count: string }>(
    `
    WITH s AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::text[]))
    SELECT (
      (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relnamespace IN (SELECT oid FROM s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))
    + (SELECT count(*) FROM pg_catalog.pg_proc p WHERE p.pronamespace IN (SELECT oid FROM s)
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'))
    + (SELECT count(*) FROM pg_catalog.pg_type t WHERE t.typnamespace IN (SELECT oid FROM s)
         AND ${STANDALONE_TYPE_FILTER}
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'))
    )::text AS count`,
    [schemas],
  );
  const dumpOids = largeObjectOids(toc);
  const dumpOidSet = { oids: new Set(dumpOids.oids), ranges: dumpOids.ranges };
  const los = await client.query<{ oid: number }>('SELECT oid::bigint AS oid FROM pg_catalog.pg_largeobject_metadata');
  return {
    existingSchemas: new Map(existing.rows.map((row) => [row.nspname, row.owner])),
    schemaComments: new Map(
      existing.rows.map((row) => [row.nspname, { description: row.description, comment: row.comment_md5 === null ? undefined : `${row.description}: ${row.comment_md5}` }]),
    ),
    extensions: new Set(extensions.rows.map((row) => row.extname)),
    objectCount: Number(objects.rows[0]!.count),
    largeObjects: los.rows.map((row) => Number(row.oid)).filter((oid) => oidInDump(oid, dumpOidSet)),
  };
}

/**
 * Refuses (data error, nothing dropped) when the dump's schemas in the target hold relations of
 * another owner: the restore may only ever remove what a restore as `owner` created.
 */
export async function assertNothingForeignInTheWay(client: pg.Client, inventory: TargetInventory, owner: string): Promise<void> {
  const schemas = [...inventory.existingSchemas.keys()];
  const foreign = await client.query<{ id: string }>(
    `
    WITH s AS (SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::text[]))
    SELECT s.nspname || '.' || c.relname || ' (' || pg_catalog.pg_get_userbyid(c.relowner) || ')' AS id
      FROM pg_catalog.pg_class c JOIN s ON s.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND pg_catalog.pg_get_userbyid(c.relowner) <> $2
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
     ORDER BY 1`,
    [schemas, owner],
  );
  if (foreign.rows.length > 0) {
    throw dataError(
      `the target database holds objects not owned by ${owner} in the schemas the backup restores: ${foreign.rows
        .slice(0, 10)
        .map((row) => row.id)
        .join(', ')}`,
      'restore into an empty database (a fresh CloudNativePG/postgresql-ha database), or remove those objects; nothing was dropped',
    );
  }
}

/**
 * Drops what a partial restore created: in each schema of the dump, the extensions, relations,
 * routines and types owned by `owner`; schemas (other than `public`) owned by `owner` once empty;
 * large objects owned by `owner` whose OIDs the dump holds. Refuses (data error) when objects of
 * another owner are in the way. Never drops anything outside the current database.
 */
export async function dropRestoredObjects(
  client: pg.Client,
  manifest: BackupManifest,
  inventory: TargetInventory,
  owner: string,
  log: Logger = silentLogger,
): Promise<string[]> {
  const schemas = [...inventory.existingSchemas.keys()];
  await assertNothingForeignInTheWay(client, inventory, owner);

  const dropped: string[] = [];
  await client.query('BEGIN');
  try {
    // Extensions first: their members cannot be dropped one by one.
    const manifestExtensions = manifest.stats.extensions.map((extension) => extension.name);
    const extensions = await client.query<{ extname: string }>(
      `SELECT e.extname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = ANY($1::text[]) AND n.nspname = ANY($2::text[]) AND pg_catalog.pg_get_userbyid(e.extowner) = $3`,
      [manifestExtensions, schemas, owner],
    );
    for (const row of extensions.rows) {
      await client.query(`DROP EXTENSION IF EXISTS ${pg.escapeIdentifier(row.extname)} CASCADE`);
      dropped.push(`extension ${row.extname}`);
    }

    const relations = await client.query<{ schema: string; name: string; relkind: string }>(
      `SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND pg_catalog.pg_get_userbyid(c.relowner) = $2 AND NOT c.relispartition
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY CASE c.relkind WHEN 'v' THEN 0 WHEN 'm' THEN 1 WHEN 'p' THEN 2 WHEN 'r' THEN 3 ELSE 4 END`,
      [schemas, owner],
    );
    const dropKeyword: Record<string, string> = { r: 'TABLE', p: 'TABLE', v: 'VIEW', m: 'MATERIALIZED VIEW', S: 'SEQUENCE', f: 'FOREIGN TABLE' };
    for (const row of relations.rows) {
      await client.query(`DROP ${dropKeyword[row.relkind]} IF EXISTS ${qualifiedName(row.schema, row.name)} CASCADE`);
      dropped.push(`${dropKeyword[row.relkind]!.toLowerCase()} ${row.schema}.${row.name}`);
    }

    const routines = await client.query<{ signature: string }>(
      `SELECT p.oid::pg_catalog.regprocedure::text AS signature
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY($1::text[]) AND pg_catalog.pg_get_userbyid(p.proowner) = $2
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`,
      [schemas, owner],
    );
    for (const row of routines.rows) {
      // regprocedure text is already quoted and qualified (search_path is set to pg_catalog below).
      await client.query(`DROP ROUTINE IF EXISTS ${row.signature} CASCADE`);
      dropped.push(`routine ${row.signature}`);
    }

    const types = await client.query<{ schema: string; name: string; typtype: string }>(
      `SELECT n.nspname AS schema, t.typname AS name, t.typtype::text AS typtype
         FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = ANY($1::text[]) AND pg_catalog.pg_get_userbyid(t.typowner) = $2
          AND ${STANDALONE_TYPE_FILTER}
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')`,
      [schemas, owner],
    );
    for (const row of types.rows) {
      await client.query(`DROP ${row.typtype === 'd' ? 'DOMAIN' : 'TYPE'} IF EXISTS ${qualifiedName(row.schema, row.name)} CASCADE`);
      dropped.push(`type ${row.schema}.${row.name}`);
    }

    for (const [schema, schemaOwner] of inventory.existingSchemas) {
      if (schema === 'public' || schemaOwner !== owner) continue;
      // RESTRICT: a schema still holding someone else's object is left alone.
      await client.query('SAVEPOINT drop_schema');
      try {
        await client.query(`DROP SCHEMA ${pg.escapeIdentifier(schema)}`);
        await client.query('RELEASE SAVEPOINT drop_schema');
        dropped.push(`schema ${schema}`);
      } catch (error) {
        await client.query('ROLLBACK TO SAVEPOINT drop_schema');
        log.warn('schema not dropped: not empty', { schema, reason: (error as Error).message });
      }
    }

    if (inventory.largeObjects.length > 0) {
      const owned = await client.query<{ oid: string }>(
        `SELECT oid::bigint::text AS oid FROM pg_catalog.pg_largeobject_metadata WHERE oid::bigint = ANY($1::bigint[]) AND pg_catalog.pg_get_userbyid(lomowner) = $2`,
        [inventory.largeObjects, owner],
      );
      if (owned.rows.length < inventory.largeObjects.length) {
        throw dataError(
          `the target holds large objects with the backup's OIDs that ${owner} does not own (${inventory.largeObjects.length - owned.rows.length} of them)`,
          'remove them as a superuser (lo_unlink) or restore into an empty database; nothing was dropped',
        );
      }
      await client.query('SELECT pg_catalog.lo_unlink(oid::oid) FROM unnest($1::bigint[]) AS oid', [owned.rows.map((row) => row.oid)]);
      dropped.push(`${owned.rows.length} large object(s)`);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
  return dropped;
}


/**
 * Bytes of the dump's data by TOC entry: `<dumpId>.dat[.gz]` for table data; the large objects'
 * `blob_<oid>.dat` files all belong to the BLOBS entry (or entries).
 */
function dataBytesByEntry(manifest: BackupManifest, toc: readonly TocEntry[]): Map<number, number> {
  const sizes = new Map<number, number>();
  let blobBytes = 0;
  for (const file of manifest.files) {
    const match = /^(\d+)\.dat(\.gz)?$/.exec(file.path);
    if (match) sizes.set(Number(match[1]), file.bytes);
    else if (/^blob_\d+\.dat(\.gz)?$/.test(file.path)) blobBytes += file.bytes;
  }
  const blobEntries = toc.filter((entry) => entry.desc === 'BLOBS');
  for (const entry of blobEntries) sizes.set(entry.dumpId, (sizes.get(entry.dumpId) ?? 0) + blobBytes / blobEntries.length);
  return sizes;
}

/**
 * ANALYZE what the verifier during the restore did not: every user table, partitioned table and
 * materialized view it did not analyze (serial mode, a table it had no time for, partitioned parents,
 * materialized views refreshed at the end), and again those with expression indexes (their
 * statistics need the index, which pg_restore may have built after the table's ANALYZE).
 *
 * On `jobs` sessions, largest relation first: pg_restore has exited, so its cores are free, and
 * ANALYZE of a wide table is seconds of CPU (34 columns, 200 MB: ~1 s each) that one session would
 * run one after the other. With an empty `analyzed`, every restored relation: the ANALYZE the
 * runner takes after the target is ready (ANALYZE changes no data).
 */
export async function analyzeRemaining(
  target: ConnectionSettings,
  owner: string,
  analyzed: ReadonlySet<string>,
  options: { jobs: number; log: Logger },
): Promise<void> {
  const started = Date.now();
  const remaining = await withClient(
    target,
    async (client) => {
      const relations = await client.query<{ schema: string; name: string; expression_index: boolean }>(
        `SELECT n.nspname AS schema, c.relname AS name,
                EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indexprs IS NOT NULL) AS expression_index
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'm') AND pg_catalog.pg_get_userbyid(c.relowner) = $1
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${ReadyMarker.schema}') AND n.nspname NOT LIKE 'pg\\_%'
          ORDER BY pg_catalog.pg_total_relation_size(c.oid) DESC, 1, 2`,
        [owner],
      );
      return relations.rows.filter((row) => row.expression_index || !analyzed.has(`${row.schema}.${row.name}`));
    },
    { purpose: 'analyze', action: 'analyze' },
  );
  if (remaining.length === 0) return;
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(options.jobs, remaining.length)) }, () =>
      withClient(
        target,
        async (client) => {
          // As the owner (like hygiene's ANALYZE): a non-superuser login may not analyze its tables otherwise.
          if (owner !== target.user) await client.query(`SET ROLE ${pg.escapeIdentifier(owner)}`);
          while (next < remaining.length) {
            const relation = remaining[next++]!;
            await client.query(`ANALYZE ${qualifiedName(relation.schema, relation.name)}`);
          }
        },
        { purpose: 'analyze', action: 'analyze' },
      ),
    ),
  );
  options.log.debug('analyzed after the restore', { relations: remaining.length, sessions: Math.min(options.jobs, remaining.length), ms: Date.now() - started });
}

/** Restores `<dir>` into the target; see the module comment. */
export async function restoreDatabase(options: RestoreOptions): Promise<RestoreResult> {
  const log = options.log ?? silentLogger;
  const started = Date.now();
  const owner = options.owner ?? options.target.user;
  const jobs = options.jobs ?? DEFAULT_PARALLEL_JOBS;
  const endpoint = describeEndpoint(options.target);
  const tools = options.tools ?? (await findPgTools());
  // The structure now (manifest, sizes, TOC); the sha256 of every file concurrently with
  // pg_restore below, which reads the same files: a mismatch stops pg_restore and fails the run
  // before anything is verified or marked ready (unless this process digested them: digestedByThisProcess).
  //
  // The backup's checks, `pg_restore --version` and the connection to the target run side by side:
  // each is tens of milliseconds of the downtime. A backup that fails its checks still stops the
  // run before anything is read from or written to the target (the connection is closed unused).
  const restoreToolVersion = toolVersion(tools.pgRestore);
  const controlConnection = connect(options.target, { purpose: 'restore-control', action: 'restore into' });
  // Awaited below; until then a rejection must not count as unhandled.
  restoreToolVersion.catch(() => undefined);
  controlConnection.catch(() => undefined);
  let backup: Awaited<ReturnType<typeof verifyBackup>>;
  try {
    backup = await verifyBackup(options.dir, { tools, log, digests: false, recordedToc: true });
    assertRestoreToolReads(backup.manifest.pgDump, await restoreToolVersion);
  } catch (error) {
    void controlConnection.then((client) => client.end()).catch(() => undefined);
    throw error;
  }
  const manifest = backup.manifest;
  const deferring =
    options.deferPlainIndexes && !options.analyze ? findDeferrableIndexes(tools, backup.dumpDir, backup.toc, log) : Promise.resolve([] as DeferredIndex[]);
  deferring.catch(() => undefined);
  const ownDigests = await digestsOfThisProcess(options.dir, options.digestedByThisProcess);

  const control = await controlConnection;
  try {
    await takeRestoreLock(control, endpoint, log);
    const target = await serverMajorVersion(control);
    assertRestoreToolTargets(target, await toolVersion(tools.pgRestore), endpoint);
    const ownerExists = await control.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [owner]);
    if (ownerExists.rows.length === 0) {
      throw new RunnerError(`the owner role ${owner} does not exist on ${endpoint.host}:${endpoint.port}`, {
        exitCode: ExitCode.usage,
        hint: 'set TARGET_OWNER to the application user of the target database',
      });
    }

    const deferred = await deferring;
    const indexesBuiltLater: ReadonlySet<string> = new Set(deferred.map((index) => index.id));
    const deferredIndexes: DeferredIndexPlan = { dumpDir: backup.dumpDir, toc: backup.toc, indexes: deferred };
    let inventory = await inspectTarget(control, manifest, backup.toc);
    let cleaned: string[] = [];
    if (inventory.objectCount > 0 || inventory.largeObjects.length > 0) {
      await assertNothingForeignInTheWay(control, inventory, owner);
      const stats = await collectTargetStats(options.target, { jobs, log, checksumAlgorithm: manifest.checksumAlgorithm });
      const differences = diffDatabaseStats(manifest.stats, stats, { log, indexesBuiltLater });
      if (differences.length === 0) {
        log.info('the target already holds exactly this backup: nothing to restore', { tables: stats.tables.length });
        return {
          action: 'already-restored',
          manifest,
          cleaned: [],
          bytes: 0,
          durationMs: Date.now() - started,
          checksummedTables: new Map(),
          analyzed: false,
          indexesBuiltLater,
          deferredIndexes,
        };
      }
      const marker = await readMarkerWith(control);
      if (marker?.status === ReadyMarker.ready && !options.overwriteReady) {
        throw dataError(
          `the target ${endpoint.host}:${endpoint.port}/${endpoint.database} is marked ready (migration ${marker.migrationId}, ${marker.updatedAt.toISOString()}) but differs from the backup: ${describeDifferences(differences, 5)}`,
          'Keycloak may have written to it since; refusing to clean it. Restore into an empty database, or remove the kc_migration schema deliberately to allow it',
        );
      }
      log.warn('the target holds a partial or different restore: cleaning it before restoring', {
        differences: describeDifferences(differences, 5),
      });
      await control.query('SET search_path = pg_catalog');
      cleaned = await dropRestoredObjects(control, manifest, inventory, owner, log);
      log.info('cleaned the partial restore', { dropped: cleaned.length });
      inventory = await inspectTarget(control, manifest, backup.toc);
    }

    // Skip what the target already has instead of ignoring pg_restore's errors about it.
    const skip = (entry: TocEntry): boolean => {
      if (entry.desc === 'SCHEMA' && inventory.existingSchemas.has(entry.tag)) return true;
      if (entry.desc === 'COMMENT' && entry.namespace === '-' && entry.tag.startsWith('SCHEMA ')) {
        return schemaCommentInPlace(manifest, inventory, entry.tag.slice('SCHEMA '.length));
      }
      if (entry.desc === 'EXTENSION' && inventory.extensions.has(entry.tag)) return true;
      if (entry.desc === 'COMMENT' && entry.namespace === '-' && entry.tag.startsWith('EXTENSION ')) {
        return inventory.extensions.has(entry.tag.slice('EXTENSION '.length));
      }
      return false;
    };
    const skipped = backup.toc.filter(skip).map((entry) => `${entry.desc} ${entry.tag}`);
    const deferredIds = new Set(deferred.map((index) => index.entry.dumpId));
    const workDir = await mkdtemp(join(tmpdir(), 'kc-restore-'));
    const listFile = join(workDir, 'use-list.txt');
    await writeFile(listFile, formatUseList(backup.toc, (entry) => skip(entry) || deferredIds.has(entry.dumpId)), { mode: 0o600 });

    const sizes = dataBytesByEntry(manifest, backup.toc);
    const totalBytes = [...sizes.values()].reduce((sum, size) => sum + size, 0);
    const totalItems = backup.toc.length - skipped.length - deferredIds.size;
    const dataIdByTable = new Map(
      backup.toc.filter((entry) => entry.desc === 'TABLE DATA').map((entry) => [`${entry.namespace}.${entry.tag}`, entry.dumpId]),
    );
    let bytesDone = 0;
    let itemsDone = 0;
    const counted = new Set<number>();
    const countItem = (dumpId: number) => {
      if (counted.has(dumpId)) return;
      counted.add(dumpId);
      itemsDone += 1;
      bytesDone += sizes.get(dumpId) ?? 0;
    };
    const onProgress = options.onProgress ?? ((event: ProgressEvent) => log.progress(event));
    const restoreStarted = Date.now();
    const report = (finished: boolean) =>
      onProgress(progressEvent('restore', { bytes: bytesDone, items: itemsDone }, { totalBytes, totalItems }, Date.now() - restoreStarted, finished));
    const timer = setInterval(() => report(false), options.progressIntervalMs ?? 2000);
    timer.unref();

    log.info('restoring', {
      target: `${endpoint.host}:${endpoint.port}/${endpoint.database}`,
      targetVersion: target.version,
      owner,
      jobs,
      bytes: totalBytes,
      skipped: skipped.length ? skipped : undefined,
      indexesAfterReady: deferred.length || undefined,
      digests: ownDigests.trusted ? 'taken by this process from these files' : 'recomputed during the restore',
      ...(options.digestedByThisProcess ? { digestsWhy: ownDigests.why } : {}),
    });
    const digestCheck = ownDigests.trusted ? Promise.resolve() : verifyBackupFiles(options.dir, manifest, { digests: true });
    const stopRestore = new AbortController();
    digestCheck.catch(() => stopRestore.abort());
    const verifier =
      options.checksumDuringRestore && jobs > 1
        ? new TableVerifierDuringRestore({
            target: options.target,
            owner,
            analyze: options.analyze ?? false,
            log,
            checksumAlgorithm: manifest.checksumAlgorithm,
            largeObjectSessions: jobs,
          })
        : undefined;
    const tocById = new Map(backup.toc.map((entry) => [entry.dumpId, entry]));
    // pg_dump 17 splits the large objects' data into several BLOBS items.
    const blobItems = backup.toc.filter((entry) => entry.desc === 'BLOBS' && !skip(entry)).length;
    let blobItemsDone = 0;
    let restored = false;
    let checksumsInProgress: ChecksumsInProgress | undefined;
    try {
      await runTool({
        signal: stopRestore.signal,
        tool: tools.pgRestore,
        args: restoreToolArgs({ jobs, owner, listFile, database: options.target.database, dumpDir: backup.dumpDir, verbose: true }),
        env: restoreToolEnv(options.target),
        endpoint,
        log,
        onStderrLine: (line) => {
          // Parallel mode: "finished item 3602 TABLE DATA public binary_blob"; serial mode:
          // "processing data for table "public.binary_blob"" (then the next line finishes it).
          const finished = /finished item (\d+)/.exec(line);
          if (finished) {
            const dumpId = Number(finished[1]);
            countItem(dumpId);
            const entry = tocById.get(dumpId);
            if (verifier && entry?.desc === 'TABLE DATA') verifier.tableLoaded(entry.namespace, entry.tag);
            if (verifier && entry?.desc === 'BLOBS' && ++blobItemsDone === blobItems) verifier.largeObjectsLoaded();
          }
          const serial = /processing data for table "(.+)"/.exec(line);
          if (serial) {
            const dumpId = dataIdByTable.get(serial[1]!);
            if (dumpId !== undefined) countItem(dumpId);
          }
        },
      });
      await digestCheck;
      restored = true;
    } catch (error) {
      // A damaged backup explains a failed pg_restore better than pg_restore's own message.
      await digestCheck;
      throw error;
    } finally {
      clearInterval(timer);
      // pg_restore has ended: the verifier takes no new table. The checksum it is still taking
      // goes to the verification after the restore, which reads the catalog and scans the other
      // tables meanwhile (the last table loaded is often the largest: waiting for its checksum
      // here, then connecting, left the cores idle). A failed restore, or one that ANALYZEs
      // next, waits for it.
      if (verifier && restored && !options.analyze) checksumsInProgress = verifier.handOver();
      else await verifier?.finish();
      await rm(workDir, { recursive: true, force: true });
    }
    const analyzedDuringRestore: ReadonlySet<string> = verifier?.analyzed ?? new Set();
    if (options.analyze) await analyzeRemaining(options.target, owner, analyzedDuringRestore, { jobs, log });
    bytesDone = totalBytes;
    itemsDone = totalItems;
    report(true);
    log.info('restore complete', { bytes: totalBytes, tables: manifest.stats.tables.length, durationMs: Date.now() - started });
    return {
      action: 'restored',
      manifest,
      cleaned,
      bytes: totalBytes,
      durationMs: Date.now() - started,
      checksummedTables: verifier?.checksums ?? new Map(),
      ...(verifier?.largeObjects ? { checksummedLargeObjects: verifier.largeObjects } : {}),
      ...(checksumsInProgress ? { checksumsInProgress } : {}),
      analyzed: options.analyze ?? false,
      indexesBuiltLater,
      deferredIndexes,
    };
  } catch (error) {
    throw classifyDatabaseError(error, endpoint, 'restore into');
  } finally {
    await control.end().catch(() => undefined);
  }
}

