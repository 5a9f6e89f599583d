/**
 * The ways to move the database that the benchmark compares, each as the exact commands a person
 * (or a hook Job) would run. Every contender copies the source database into an existing, empty
 * target database; the benchmark checks the result independently afterwards.
 */
import { join } from 'node:path';
import { TARGET_READY_MESSAGE } from '../runner/src/commands/restore.js';
import { INDEXES_BUILT_MESSAGE } from '../runner/src/pg/deferred-indexes.js';
import type { DatabaseEndpoint, DatabaseSnapshot } from './verify-copy.js';

export interface ContenderContext {
  readonly source: DatabaseEndpoint;
  readonly target: DatabaseEndpoint;
  /** Parallel jobs for the tools that take them (pg_dump/pg_restore -j, pgcopydb --table-jobs). */
  readonly jobs: number;
  /** An empty directory of this run, for dumps and work files; removed afterwards. */
  readonly workDir: string;
  readonly repositoryRoot: string;
  /** Directory of pg_dump, pg_restore and psql. */
  readonly pgBinDir: string;
}

/** One process to run: argv, extra environment, and whether stdout is worth keeping. */
export interface Step {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /**
   * A line of the step's stderr from which on the application could be serving again: the
   * contender's wall time (the downtime it causes) ends there, while the rest of the step (work
   * that runs while the application starts) still counts in its CPU, memory and writes, and the
   * next contender waits for it. Only on the last step.
   */
  readonly downtimeEndsAt?: RegExp;
  /**
   * A line after {@link downtimeEndsAt} from which on the copy holds everything the peers' copies
   * hold when they end (the runner's plain indexes, built after "target ready"): reported beside
   * the wall time, for the comparison of the whole work. Only with downtimeEndsAt.
   */
  readonly completeAt?: RegExp;
  /**
   * Work done while the application still runs (before it is stopped): its time is not in the
   * contender's wall time (the downtime), its CPU, memory and writes still count. Only on leading
   * steps.
   */
  readonly beforeDowntime?: boolean;
}

export interface Contender {
  /** Short id for flags and file names. */
  readonly id: string;
  /** Name in the results table. */
  readonly label: string;
  /** True for the project's own runner (targets are ratios of it to the others). */
  readonly isRunner: boolean;
  /** The steps, run one after the other; the time counts from the first start to the last exit. */
  steps(context: ContenderContext): Step[];
  /** Where this contender leaves its on-disk copy of the data, to measure (undefined: none). */
  dumpDir?(context: ContenderContext): string;
  /** What the target must hold, from what the source holds, when the contender changes data on purpose. */
  expectedTarget?(source: DatabaseSnapshot): DatabaseSnapshot;
}

function libpqEnv(endpoint: DatabaseEndpoint, prefix = 'PG'): Record<string, string> {
  return {
    [`${prefix}HOST`]: endpoint.host,
    [`${prefix}PORT`]: String(endpoint.port),
    [`${prefix}USER`]: endpoint.user,
    [`${prefix}PASSWORD`]: endpoint.password ?? '',
    [`${prefix}DATABASE`]: endpoint.database,
  };
}

function uri(endpoint: DatabaseEndpoint): string {
  const password = endpoint.password ? `:${encodeURIComponent(endpoint.password)}` : '';
  return `postgres://${encodeURIComponent(endpoint.user)}${password}@${endpoint.host}:${endpoint.port}/${encodeURIComponent(endpoint.database)}`;
}

/**
 * The runner from the command line: the source's checksums while the application still runs
 * (checksum-source, before the downtime), then the backup (dump, manifest, verify; the checksums
 * of the tables proven unchanged are reused) and the restore (restore, verify, hygiene; its
 * downtime ends at "target ready", before the ANALYZE that runs while Keycloak starts).
 *
 * `runner` runs backup and restore in one process (`copy`), as the Argo CD backup Job does by
 * default (MIGRATION_RESTORE_IN_BACKUP_JOB): the restore takes the files' digests from the backup
 * just taken. `runner-two-jobs` runs them as two processes (`backup`, then `restore`), as Helm's
 * pre- and post-upgrade Jobs do: one more node start, and the restore digests every file again.
 */
function runnerContender(id: string, label: string, layout: 'one-process' | 'two-processes'): Contender {
  return {
    id,
    label,
    isRunner: true,
    steps(context) {
      const bundle = join(context.repositoryRoot, 'runner', 'dist', 'runner.mjs');
      const dir = join(context.workDir, 'backup');
      const common = { MIGRATION_PARALLEL_JOBS: String(context.jobs), MIGRATION_LOG_FORMAT: 'json', PG_BINDIR: context.pgBinDir };
      const source = prefixed('SOURCE', context.source);
      const target = prefixed('TARGET', context.target);
      // Verified, hygiene applied: Keycloak may start; the plain indexes and the ANALYZE after it
      // run while Keycloak boots. The indexes' end (or, with none left out, the ready line) is where
      // the target holds all a peer's copy holds.
      const downtimeEndsAt = new RegExp(`"msg":"${TARGET_READY_MESSAGE}"`);
      // (A ready line counts only once whole: a chunk may end before its indexesStillToBuild.)
      const completeAt = new RegExp(`"msg":"${INDEXES_BUILT_MESSAGE}"|"msg":"${TARGET_READY_MESSAGE}"(?![^\\n]*"indexesStillToBuild")[^\\n]*\\n`);
      const checksumSource: Step = { argv: ['node', bundle, 'checksum-source', '--dir', dir], env: { ...common, ...source }, beforeDowntime: true };
      if (layout === 'one-process') {
        return [checksumSource, { argv: ['node', bundle, 'copy', '--dir', dir], env: { ...common, ...source, ...target }, downtimeEndsAt, completeAt }];
      }
      return [
        checksumSource,
        { argv: ['node', bundle, 'backup', '--dir', dir], env: { ...common, ...source } },
        { argv: ['node', bundle, 'restore', '--dir', dir], env: { ...common, ...target }, downtimeEndsAt, completeAt },
      ];
    },
    dumpDir: (context) => join(context.workDir, 'backup'),
    // The runner's post-restore hygiene empties Keycloak's JGroups discovery table on purpose: its
    // rows name pods of the old cluster (runner/src/pg/hygiene.ts).
    expectedTarget: (source) => ({
      ...source,
      rowCounts: Object.fromEntries(
        Object.entries(source.rowCounts).map(([table, rows]) => [table, /\.(jgroups_ping|jgroupsping)$/.test(table) ? 0 : rows]),
      ),
    }),
  };
}

/** The runner as the Argo CD backup Job runs it (the default layout there): the headline's runner. */
export const runnerOneProcessContender = runnerContender('runner', 'runner: backup + verify + restore + verify', 'one-process');

/** The runner as Helm's two hook Jobs run it; on request (`--contenders runner,runner-two-jobs`). */
export const runnerTwoProcessesContender = runnerContender('runner-two-jobs', 'runner in two processes (backup, then restore)', 'two-processes');

function prefixed(prefix: 'SOURCE' | 'TARGET', endpoint: DatabaseEndpoint): Record<string, string> {
  const env = libpqEnv(endpoint, 'PG');
  return Object.fromEntries(Object.entries(env).map(([name, value]) => [`${prefix}_${name}`, value]));
}

/** What a hand-written hook script does most often: a plain SQL dump piped into psql. */
export const dumpPipePsqlContender: Contender = {
  id: 'pipe',
  label: 'pg_dump | psql',
  isRunner: false,
  steps(context) {
    const pgDump = join(context.pgBinDir, 'pg_dump');
    const psql = join(context.pgBinDir, 'psql');
    // Passwords go through PGPASSWORD of each side, as a script would with two Secrets.
    const script =
      `set -o pipefail; PGPASSWORD="$SRC_PASSWORD" ${pgDump} -h ${context.source.host} -p ${context.source.port} ` +
      `-U ${context.source.user} ${context.source.database} | PGPASSWORD="$DST_PASSWORD" ${psql} -X -q -v ON_ERROR_STOP=1 ` +
      `-h ${context.target.host} -p ${context.target.port} -U ${context.target.user} -d ${context.target.database} > /dev/null`;
    return [
      {
        argv: ['bash', '-c', script],
        env: { SRC_PASSWORD: context.source.password ?? '', DST_PASSWORD: context.target.password ?? '' },
      },
    ];
  },
};

function directoryDumpContender(id: string, label: string, compress: number | undefined): Contender {
  return {
    id,
    label,
    isRunner: false,
    steps(context) {
      const dir = join(context.workDir, 'dump');
      const compression = compress === undefined ? [] : [`-Z${compress}`];
      return [
        {
          argv: [join(context.pgBinDir, 'pg_dump'), '-Fd', `-j${context.jobs}`, ...compression, '-f', dir],
          env: libpqEnv(context.source),
        },
        {
          argv: [join(context.pgBinDir, 'pg_restore'), `-j${context.jobs}`, '-d', context.target.database, dir],
          env: libpqEnv(context.target),
        },
      ];
    },
    dumpDir: (context) => join(context.workDir, 'dump'),
  };
}

/** `pg_dump -Fd -j N` + `pg_restore -j N` with pg_dump's default compression (gzip level 6). */
export const directoryDumpDefaultContender = directoryDumpContender('fd-gzip', 'pg_dump -Fd -jN + pg_restore -jN (default gzip)', undefined);

/** The same uncompressed: the fastest dump-to-disk a script can do with the stock tools. */
export const directoryDumpZ0Contender = directoryDumpContender('fd-z0', 'pg_dump -Fd -jN -Z0 + pg_restore -jN', 0);

/** pgcopydb: COPY streamed between the servers, indexes built concurrently, no dump on disk. */
export const pgcopydbContender: Contender = {
  id: 'pgcopydb',
  label: 'pgcopydb clone',
  isRunner: false,
  steps(context) {
    return [
      {
        argv: [
          'pgcopydb', 'clone', '--source', uri(context.source), '--target', uri(context.target),
          '--dir', join(context.workDir, 'pgcopydb'), '--table-jobs', String(context.jobs), '--index-jobs', String(context.jobs),
        ],
        env: { PGCOPYDB_LOG_LEVEL: 'warn', PATH: `${context.pgBinDir}:${process.env.PATH ?? ''}` },
      },
    ];
  },
};

export const ALL_CONTENDERS: readonly Contender[] = [
  runnerOneProcessContender,
  runnerTwoProcessesContender,
  dumpPipePsqlContender,
  directoryDumpZ0Contender,
  directoryDumpDefaultContender,
  pgcopydbContender,
];
