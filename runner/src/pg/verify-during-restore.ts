/**
 * Checksums (and optionally ANALYZEs) each table on the target as soon as pg_restore reports its
 * data loaded, while pg_restore goes on with other tables' data and the index builds: the
 * verification after the restore then only reads the catalog and the tables left over, instead
 * of scanning the whole database again after pg_restore is done (issue 5: the scan and ANALYZE
 * were 2-3 s of serial work per GiB).
 *
 * Why the early checksum is as strong as a late one: after `finished item N TABLE DATA`, pg_restore
 * has committed that table's COPY, and nothing it does later writes rows (indexes, constraints,
 * triggers, ACLs, comments do not), while nothing else may write to the target during a restore
 * (Keycloak is quiesced; the gate waits for the ready marker). The final verification still lists
 * every table from the catalog (a missing or extra table is still found) and compares everything
 * with the manifest; only the per-table scan is reused.
 *
 * One session, one table at a time, each statement in its own transaction: it never holds a lock
 * on a table while waiting for another, so it cannot deadlock with pg_restore's workers (a
 * checksum's ACCESS SHARE lock only makes an `ADD PRIMARY KEY` on that table wait for the scan;
 * ANALYZE's lock makes it wait for that table's index builds, which gives it their statistics).
 */
import pg from 'pg';
import { silentLogger, type Logger } from '../log.js';
import { connect, qualifiedName, type ConnectionSettings } from './connection.js';
import {
  applySettings,
  checksumTable,
  CONCURRENT_CHECKSUM_SETTINGS,
  largeObjectStats,
  listTables,
  type ChecksumsInProgress,
  type LargeObjectStats,
  type TableStats,
  type TableToChecksum,
} from './manifest.js';

export interface VerifyDuringRestoreOptions {
  readonly target: ConnectionSettings;
  /** Run as this role (SET ROLE) when it differs from the login user, as ANALYZE must. */
  readonly owner?: string;
  /** ANALYZE each table after its checksum. */
  readonly analyze: boolean;
  readonly log?: Logger;
  /** The backup's {@link BackupManifest.checksumAlgorithm}. */
  readonly checksumAlgorithm: string;
  /**
   * Sessions that read the large objects' contents, each its share: pg_restore loads them in one
   * item on one session, often its last, so its other sessions are idle by then and the checksum
   * is what the verification after the restore waits for. @default 1
   */
  readonly largeObjectSessions?: number;
}

/** How long a checksum or ANALYZE waits for a table pg_restore holds (an index build) before moving on. */
const LOCK_WAIT = '100ms';
const LOCK_NOT_AVAILABLE = '55P03';

interface Pending {
  readonly schema: string;
  readonly name: string;
}

/**
 * Works through the tables pg_restore has finished loading, in the order they finished: first
 * every checksum, then (when idle) the ANALYZEs. A table pg_restore holds locked (an index or
 * primary key build) is put back in the queue instead of waited for, so the verifier never idles
 * behind pg_restore. Whatever is left when pg_restore ends is left to the caller (the final
 * verification scans it on several connections; the restore ANALYZEs what remains); the checksum
 * still running then is handed over ({@link handOver}) rather than waited for.
 */
export class TableVerifierDuringRestore {
  /** Checksums by `schema.name`, taken after each table's data was committed. */
  readonly checksums = new Map<string, TableStats>();
  /** `schema.name` of the tables this verifier ANALYZEd. */
  readonly analyzed = new Set<string>();
  /** The large objects' statistics, taken after pg_restore finished every BLOBS item. */
  largeObjects: LargeObjectStats | undefined;
  private largeObjectsPending = false;
  private readonly toChecksum: Pending[] = [];
  private readonly toAnalyze: Pending[] = [];
  private readonly log: Logger;
  private client: pg.Client | undefined;
  /** Sessions besides {@link client}, opened for the large objects' checksum only. */
  private readonly largeObjectClients: pg.Client[] = [];
  private tables: Map<string, TableToChecksum> | undefined;
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly worker: Promise<void>;
  private failure: unknown;
  /** The checksum statement running now, if any (what {@link handOver} hands over). */
  private tableInProgress: { readonly key: string; readonly result: Promise<TableStats | undefined> } | undefined;
  private largeObjectsInProgress: Promise<LargeObjectStats | undefined> | undefined;

  constructor(private readonly options: VerifyDuringRestoreOptions) {
    this.log = options.log ?? silentLogger;
    this.worker = this.run().catch((error: unknown) => {
      // The final verification scans what this one did not: a failure here costs time, not safety.
      this.failure = error;
      this.log.warn('checksums during the restore stopped; the verification after it scans the remaining tables', {
        reason: (error as Error).message,
      });
    });
  }

  /** A table whose data pg_restore committed (`finished item N TABLE DATA`). */
  tableLoaded(schema: string, name: string): void {
    if (this.closed) return;
    this.toChecksum.push({ schema, name });
    this.wake?.();
  }

  /** pg_restore finished every BLOBS item: the large objects are complete (nothing else writes them). */
  largeObjectsLoaded(): void {
    if (this.closed) return;
    this.largeObjectsPending = true;
    this.wake?.();
  }

  /** Stops after the statement in progress (pg_restore ended) and closes the session. */
  async finish(): Promise<void> {
    this.handOver();
    await this.worker;
  }

  /**
   * Takes no new work (pg_restore ended) and returns the checksum still running, without waiting
   * for it: the verification after the restore awaits it while it reads the catalog and scans
   * the other tables, instead of starting only once it is done. The session closes after it.
   */
  handOver(): ChecksumsInProgress {
    this.closed = true;
    this.wake?.();
    const table = this.tableInProgress;
    return {
      tables: new Map(table ? [[table.key, table.result]] : []),
      ...(this.largeObjectsInProgress ? { largeObjects: this.largeObjectsInProgress } : {}),
    };
  }

  /** Why the verifier stopped early, if it did. */
  get error(): unknown {
    return this.failure;
  }

  private async idle(ms?: number): Promise<void> {
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      if (ms !== undefined) setTimeout(resolve, ms).unref();
    });
    this.wake = undefined;
  }

  private async run(): Promise<void> {
    try {
      // Consecutive tables found locked: when the whole queue is, wait a little before retrying.
      let lockedInARow = 0;
      while (!this.closed) {
        if (this.toChecksum.length === 0 && this.largeObjectsPending) {
          this.largeObjectsPending = false;
          const started = Date.now();
          const checksum = (async () => {
            const clients = await this.largeObjectSessions();
            // Each in a transaction: an object the user may not read is skipped in a savepoint.
            // Transactions of their own, not one snapshot: nothing writes large objects any more.
            await Promise.all(clients.map((client) => client.query('BEGIN')));
            try {
              const stats = await largeObjectStats(clients, this.options.checksumAlgorithm);
              // No checksum (a share could not be read: a lock wait, or no permission) is not a
              // result to keep: the verification after the restore reads them itself, without a
              // lock timeout, and only its own "not readable" stands.
              if (stats.checksum === null) {
                this.log.debug('large objects not checksummed during the restore: left to the verification after it', { count: stats.count });
                return undefined;
              }
              this.largeObjects = stats;
              this.log.debug('large objects checksummed during the restore', { count: stats.count, sessions: clients.length, ms: Date.now() - started });
              return stats;
            } catch (error) {
              if ((error as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw error;
              // Left to the verification after the restore.
              return undefined;
            } finally {
              // After an error the transaction is aborted: COMMIT then rolls it back.
              await Promise.all(clients.map((client) => client.query('COMMIT')));
            }
          })();
          // Whoever it is handed over to reads the large objects itself if this fails.
          this.largeObjectsInProgress = checksum.catch(() => undefined);
          try {
            await checksum;
          } finally {
            this.largeObjectsInProgress = undefined;
          }
          continue;
        }
        const queue = this.toChecksum.length > 0 ? this.toChecksum : this.options.analyze ? this.toAnalyze : [];
        if (queue.length === 0) {
          await this.idle();
          continue;
        }
        if (lockedInARow >= this.toChecksum.length + this.toAnalyze.length) {
          lockedInARow = 0;
          await this.idle(100);
          if (this.closed) break;
        }
        const table = queue.shift()!;
        const key = `${table.schema}.${table.name}`;
        const client = await this.session();
        const started = Date.now();
        try {
          // The catalog once, when the first table is loaded: pg_restore creates every table
          // (pre-data) before it loads any data. Without sizes: they would lock every table,
          // waiting for those pg_restore is still loading.
          this.tables ??= new Map((await listTables(client, { sizes: false })).map((entry) => [`${entry.schema}.${entry.name}`, entry]));
          const entry = this.tables.get(key);
          if (!entry) continue;
          if (queue === this.toChecksum) {
            // Handed over while connecting or listing: the verification after the restore scans it.
            if (this.closed) break;
            const checksum = checksumTable(client, entry, this.options.checksumAlgorithm);
            // Whoever it is handed over to scans the table itself if this fails (a lock wait, an error).
            this.tableInProgress = { key, result: checksum.catch(() => undefined) };
            let stats: TableStats;
            try {
              stats = await checksum;
            } finally {
              this.tableInProgress = undefined;
            }
            this.checksums.set(key, stats);
            this.toAnalyze.push(table);
            this.log.debug('checksummed during the restore', { table: key, rows: stats.rows, ms: Date.now() - started });
          } else {
            await client.query(`ANALYZE ${qualifiedName(table.schema, table.name)}`);
            this.analyzed.add(key);
            this.log.debug('analyzed during the restore', { table: key, ms: Date.now() - started });
          }
          lockedInARow = 0;
        } catch (error) {
          if ((error as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw error;
          queue.push(table);
          lockedInARow += 1;
        }
      }
    } finally {
      await Promise.all([this.client, ...this.largeObjectClients].map((client) => client?.end().catch(() => undefined)));
    }
  }

  private async session(): Promise<pg.Client> {
    this.client ??= await this.openSession();
    return this.client;
  }

  /** {@link session} and as many more as `largeObjectSessions` asks for (opened side by side). */
  private async largeObjectSessions(): Promise<pg.Client[]> {
    const more = Math.max(1, this.options.largeObjectSessions ?? 1) - 1 - this.largeObjectClients.length;
    const opening = await Promise.allSettled([this.session(), ...Array.from({ length: Math.max(0, more) }, () => this.openSession())]);
    // Kept before anything is thrown, so that run() closes every session that did open.
    for (const opened of opening.slice(1)) if (opened.status === 'fulfilled') this.largeObjectClients.push(opened.value);
    const failed = opening.find((opened) => opened.status === 'rejected');
    if (failed) throw failed.reason;
    return [this.client!, ...this.largeObjectClients];
  }

  private async openSession(): Promise<pg.Client> {
    const client = await connect(this.options.target, { purpose: 'verify-restored', action: 'verify' });
    await client.query('SET search_path = pg_catalog');
    await client.query(`SET lock_timeout = '${LOCK_WAIT}'`);
    // Session-wide: each checksum runs in a transaction of its own.
    await applySettings(client, CONCURRENT_CHECKSUM_SETTINGS, { local: false });
    if (this.options.owner && this.options.owner !== this.options.target.user) {
      await client.query(`SET ROLE ${pg.escapeIdentifier(this.options.owner)}`);
    }
    return client;
  }
}
