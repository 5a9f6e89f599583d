/**
 * Plain (non-unique) indexes built after the target is ready instead of inside the downtime.
 *
 * On Keycloak-shaped data the index builds are most of pg_restore's time after the data load
 * (keycloak 1 GiB, pg_restore -j2 on two cores: 9.6 s with them, 5.4 s without, 4.2 s to build
 * them afterwards), while a plain index over columns only speeds queries up: it decides no write,
 * but for one limit — a btree entry over ~2.7 kB (a third of a page) is refused once the index
 * exists, so a row like that written in between makes the build fail (the error says which index
 * and how to go on; Keycloak's indexed columns are varchar(255) and shorter). So when the runner
 * itself brings Keycloak back (the low-level `restore` and
 * `copy`, the hooks with MIGRATION_RESTORE_REPLICAS=true) the restore leaves these indexes out,
 * the verification checks everything else, the target is marked ready, and the indexes are built
 * from the same verified dump (`pg_restore --use-list` of their items, so every definition is
 * the dump's own) while Keycloak's JVM boots — as the ANALYZE after them.
 *
 * What stays in the restore: primary keys, unique and exclusion constraints, unique indexes (they
 * decide which writes succeed), foreign keys, indexes on expressions or with a predicate (their
 * expressions may fail on rows written in between), any index something else in the dump refers
 * to (a comment on it, a partitioned index and its attachments). (A materialized view's refresh,
 * in the restore, runs without the plain indexes of its tables: slower for a view whose query
 * needs them; Keycloak has none.) A plain `CREATE INDEX` holds
 * a SHARE lock: while one builds, writes to its table wait (reads do not; a write transaction
 * still open makes the build, and the writes after it, wait for it), as long as the build takes —
 * unnoticed by a Keycloak still booting, a stall of the writes to the largest tables (sessions,
 * users) for a Keycloak already serving. The build is transactional: a run killed in it leaves no
 * half-built index, and the next run builds what is missing.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode } from '../../../lib/contract.js';
import { dataError, isRunnerError, RunnerError, type EndpointDescription } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { connect, describeEndpoint, type ConnectionSettings } from './connection.js';
import { restoreToolArgs, restoreToolEnv, takeRestoreLock } from './restore-sessions.js';
import { formatUseList, type TocEntry } from './toc.js';
import { findPgTools, runTool, type PgTools } from './tools.js';
import { verifyBackup } from './verify-backup.js';

/** Logged once the indexes left out are built (the benchmark's runner is complete there). */
export const INDEXES_BUILT_MESSAGE = 'indexes built';

/** An index the restore leaves for after the target is ready. */
export interface DeferredIndex {
  /** Its TOC entry (desc `INDEX`). */
  readonly entry: TocEntry;
  /** `schema.name`, as the object inventory names indexes. */
  readonly id: string;
}

/** The indexes a restore left out, with the TOC they come from (`RestoreResult.deferredIndexes`). */
export interface DeferredIndexPlan {
  readonly dumpDir: string;
  readonly toc: readonly TocEntry[];
  readonly indexes: readonly DeferredIndex[];
}

const HEADER = /^-- Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$/;
/**
 * `CREATE INDEX name ON table USING method (columns) [INCLUDE (columns)] [WITH (options)];` as
 * pg_get_indexdef prints it, with no parenthesis inside the lists: an expression has some.
 */
const CREATE_PLAIN_INDEX = /^CREATE INDEX \S.* ON \S.* USING \w+ \([^()]*\)(?: INCLUDE \([^()]*\))?(?: WITH \([^()]*\))?;$/;
/** What pg_dump may put in an INDEX item besides the CREATE INDEX itself. */
const COMPANION_STATEMENTS = [/^ALTER TABLE .+ CLUSTER ON .+;$/, /^ALTER INDEX .+ ALTER COLUMN \d+ SET STATISTICS -?\d+;$/];

/**
 * Whether the SQL of one INDEX item (as `pg_restore --file` prints it) creates a plain index that
 * can be built later: one single-line `CREATE INDEX` over columns (not UNIQUE, not `ON ONLY` a
 * partitioned table, no expression, no WHERE) and only the statements pg_dump adds to it.
 * Anything else — or anything this cannot tell from one, such as a quoted column name with a parenthesis — stays
 * in the restore.
 */
export function isDeferrableIndexSql(sql: string): boolean {
  const statements = sql
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('--') && !line.startsWith('SET ') && !line.startsWith('SELECT pg_catalog.set_config') && !line.startsWith('\\'));
  const [create, ...rest] = statements;
  if (!create || !CREATE_PLAIN_INDEX.test(create) || create.includes(' ON ONLY ') || create.includes(' WHERE ')) return false;
  return rest.every((statement) => COMPANION_STATEMENTS.some((pattern) => pattern.test(statement)));
}

/**
 * Splits `pg_restore --file=-` output into the SQL of each item, keyed `<type>|<schema>|<name>`
 * as its header comment names it.
 */
export function splitRenderedItems(script: string): Map<string, string> {
  const items = new Map<string, string>();
  let key: string | undefined;
  let lines: string[] = [];
  const flush = () => {
    if (key !== undefined) items.set(key, lines.join('\n'));
  };
  for (const line of script.split('\n')) {
    const header = HEADER.exec(line);
    if (header) {
      flush();
      key = `${header[2]}|${header[3]}|${header[1]}`;
      lines = [];
    } else if (line.startsWith('-- PostgreSQL database dump complete')) {
      flush();
      key = undefined;
    } else if (key !== undefined) {
      lines.push(line);
    }
  }
  flush();
  return items;
}

/**
 * The dump's indexes that may be built after the target is ready (see the module comment),
 * read from `toc` and the dump's own SQL for them (`pg_restore --file=-`, which reads toc.dat
 * only: the caller has checked its digest).
 */
export async function findDeferrableIndexes(tools: PgTools, dumpDir: string, toc: readonly TocEntry[], log: Logger = silentLogger): Promise<DeferredIndex[]> {
  // Left in the restore: an index a comment is on (tagged `INDEX <name>`, the name quoted as SQL
  // when it needs to be, unlike the INDEX item's own tag), and a partition's index an INDEX ATTACH
  // item (tagged with its name) ties to its partitioned parent (itself `ON ONLY`).
  const referenced = new Set([
    ...toc.filter((entry) => entry.desc === 'COMMENT' && entry.tag.startsWith('INDEX ')).map((entry) => `${entry.namespace}|${unquoteIdentifier(entry.tag.slice('INDEX '.length))}`),
    ...toc.filter((entry) => entry.desc === 'INDEX ATTACH').map((entry) => `${entry.namespace}|${entry.tag}`),
  ]);
  const candidates = toc.filter((entry) => entry.desc === 'INDEX' && !referenced.has(`${entry.namespace}|${entry.tag}`));
  if (candidates.length === 0) return [];
  const endpoint: EndpointDescription = { host: 'local', port: 0, user: '-', database: dumpDir };
  const { stdout } = await withUseList(toc, candidates, (listFile) =>
    runTool({
      tool: tools.pgRestore,
      args: ['--file=-', `--use-list=${listFile}`, dumpDir],
      env: { ...process.env, PGPASSWORD: '' },
      endpoint,
      captureStdout: true,
      log,
    }),
  );
  const rendered = splitRenderedItems(stdout);
  return candidates
    .filter((entry) => {
      const sql = rendered.get(`INDEX|${entry.namespace}|${entry.tag}`);
      return sql !== undefined && isDeferrableIndexSql(sql);
    })
    .map((entry) => ({ entry, id: `${entry.namespace}.${entry.tag}` }));
}

/**
 * `schema.name` of the indexes in the backup at `dir` that a restore leaves for later: what a
 * verification after a resumed run (which has no restore result in memory) may find missing.
 */
export async function deferrableIndexIds(dir: string, options: { tools?: PgTools; log?: Logger } = {}): Promise<ReadonlySet<string>> {
  const plan = await readDeferredIndexPlan(dir, options.tools ?? (await findPgTools()), options.log ?? silentLogger);
  return new Set(plan.indexes.map((index) => index.id));
}

/** The backup's deferrable indexes, after checking its files' sizes and toc.dat's digest. */
async function readDeferredIndexPlan(dir: string, tools: PgTools, log: Logger): Promise<DeferredIndexPlan> {
  const backup = await verifyBackup(dir, { tools, log, digests: false, recordedToc: true });
  return { dumpDir: backup.dumpDir, toc: backup.toc, indexes: await findDeferrableIndexes(tools, backup.dumpDir, backup.toc, log) };
}

/** An identifier as pg_dump's fmtId prints it, back to the name: `"Idx ""a"""` is `Idx "a"`. */
export function unquoteIdentifier(identifier: string): string {
  return identifier.length >= 2 && identifier.startsWith('"') && identifier.endsWith('"') ? identifier.slice(1, -1).replaceAll('""', '"') : identifier;
}

/**
 * Runs `fn` with the path of a private temporary use-list of `toc` that selects only `entries`
 * (the others commented out, as `pg_restore --use-list` reads them), removed afterwards.
 */
async function withUseList<T>(toc: readonly TocEntry[], entries: readonly TocEntry[], fn: (listFile: string) => Promise<T>): Promise<T> {
  const chosen = new Set(entries.map((entry) => entry.dumpId));
  const workDir = await mkdtemp(join(tmpdir(), 'kc-indexes-'));
  try {
    const listFile = join(workDir, 'use-list.txt');
    await writeFile(listFile, formatUseList(toc, (entry) => !chosen.has(entry.dumpId)), { mode: 0o600 });
    return await fn(listFile);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

export interface BuildDeferredIndexesOptions {
  /** The backup directory (manifest.json and dump/). */
  readonly dir: string;
  readonly target: ConnectionSettings;
  /** Role pg_restore sets (`--role`): the owner of the restored tables. */
  readonly owner: string;
  /** pg_restore --jobs. */
  readonly jobs: number;
  readonly tools?: PgTools;
  readonly log?: Logger;
  /**
   * What the restore of this process left out (it checked toc.dat's digest before pg_restore read
   * it, seconds ago). @default - read from the backup again: its files' sizes and toc.dat's digest
   * checked, the deferrable indexes found again
   */
  readonly plan?: DeferredIndexPlan;
}

export interface BuildDeferredIndexesResult {
  /** `schema.name` of the indexes built now; empty when the target had them all. */
  readonly built: readonly string[];
  readonly durationMs: number;
}

/**
 * Builds the dump's deferrable indexes the target lacks, from the dump (idempotent: the ones
 * present are skipped, so a run killed in the middle is finished by the next), then checks that
 * every one of them exists. Holds the restore's lock meanwhile, so it never runs beside a restore.
 */
export async function buildDeferredIndexes(options: BuildDeferredIndexesOptions): Promise<BuildDeferredIndexesResult> {
  const started = Date.now();
  const log = options.log ?? silentLogger;
  const tools = options.tools ?? (await findPgTools());
  const endpoint = describeEndpoint(options.target);
  const plan = options.plan ?? (await readDeferredIndexPlan(options.dir, tools, log));
  const deferrable = plan.indexes;
  if (deferrable.length === 0) return { built: [], durationMs: Date.now() - started };
  const control = await connect(options.target, { purpose: 'build-indexes', action: 'build indexes in' });
  try {
    await takeRestoreLock(control, endpoint, log);
    const present = async () =>
      new Set(
        (
          await control.query<{ id: string }>(
            `SELECT n.nspname || '.' || c.relname AS id
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind = 'i'`,
          )
        ).rows.map((row) => row.id),
      );
    const existing = await present();
    const missing = deferrable.filter((index) => !existing.has(index.id));
    if (missing.length === 0) return { built: [], durationMs: Date.now() - started };
    log.info('building the indexes left for after the restore', { indexes: missing.length, jobs: options.jobs });
    await withUseList(plan.toc, missing.map((index) => index.entry), (listFile) =>
      runTool({
        tool: tools.pgRestore,
        args: restoreToolArgs({ jobs: options.jobs, owner: options.owner, listFile, database: options.target.database, dumpDir: plan.dumpDir }),
        env: restoreToolEnv(options.target, true),
        endpoint,
        log,
      }).catch((error: unknown) => {
        // After the ready marker Keycloak may be serving: say that the data is in place, and how
        // to finish by hand if the cause cannot be removed.
        const cause = error instanceof Error ? error.message : String(error);
        const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        const lines = missing.map((index) => `${escape(index.entry.namespace)} ${escape(index.entry.tag)}`).join('|');
        throw new RunnerError(`building the plain index(es) ${missing.map((index) => index.id).join(', ')} after the target was ready failed: ${cause}`, {
          exitCode: isRunnerError(error) ? error.exitCode : ExitCode.unexpected,
          hint:
            'the data is restored and verified, and Keycloak may be using it; remove the cause named above and run again (restore-phase resumes at its complete step and builds what is missing), ' +
            `or build them by hand: pg_restore --list ${plan.dumpDir} | grep -E ' INDEX (${lines}) ' > indexes.txt, then pg_restore --use-list=indexes.txt --dbname=<target> ${plan.dumpDir}`,
          cause: error,
        });
      }),
    );
    const after = await present();
    const stillMissing = missing.filter((index) => !after.has(index.id)).map((index) => index.id);
    if (stillMissing.length > 0) {
      throw dataError(
        `pg_restore ended without error but ${stillMissing.length} index(es) are still missing on ${endpoint.host}:${endpoint.port}/${endpoint.database}: ${stillMissing.slice(0, 10).join(', ')}`,
        'run the migration again: it builds the missing indexes from the backup',
      );
    }
    const built = missing.map((index) => index.id);
    log.info(INDEXES_BUILT_MESSAGE, { indexes: built.length, durationMs: Date.now() - started });
    return { built, durationMs: Date.now() - started };
  } finally {
    await control.end().catch(() => undefined);
  }
}
