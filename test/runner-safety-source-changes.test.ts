// The cheap "did the source change since the backup?" check on a real server: reads, ANALYZE and
// VACUUM are no change; every kind of write is (rows, TRUNCATE, a sequence, DDL, large objects), and
// so is anything that makes the counters meaningless (a statistics reset, no recorded counters).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareSourceFingerprints, readSourceFingerprint, type SourceFingerprint } from '../runner/src/pg/source-changes.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';

let server: TestPostgres;
let database = 0;

beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

async function withDatabase<T>(fn: (run: (sql: string) => Promise<void>, fingerprint: () => Promise<SourceFingerprint>) => Promise<T>): Promise<T> {
  const name = `changes_${++database}`;
  await server.createDatabase(name);
  const client = new pg.Client(server.settings(name));
  await client.connect();
  try {
    await client.query(`
      CREATE TABLE public.item (id serial PRIMARY KEY, name text);
      CREATE TABLE public.other (id integer PRIMARY KEY);
      CREATE SEQUENCE public.standalone_seq;
      INSERT INTO public.item (name) SELECT 'item ' || g FROM generate_series(1, 50) g;`);
    // Publish this session's counters now, as a session that ends would.
    const flush = async () => {
      await client.query('SELECT pg_stat_force_next_flush()');
      await client.query('SELECT 1');
    };
    await flush();
    return await fn(
      async (sql) => {
        await client.query(sql);
        await flush();
      },
      async () => {
        const reader = new pg.Client(server.settings(name));
        await reader.connect();
        try {
          return await readSourceFingerprint(reader);
        } finally {
          await reader.end();
        }
      },
    );
  } finally {
    await client.end();
  }
}

describe('compareSourceFingerprints on a real server', () => {
  it('reads, ANALYZE and VACUUM are no change', async () => {
    await withDatabase(async (run, fingerprint) => {
      const before = await fingerprint();
      expect(before.trackCounts).toBe(true);
      expect(before.tables.map((table) => table.table)).toEqual(expect.arrayContaining(['public.item', 'public.other', 'pg_catalog.pg_largeobject']));
      await run('SELECT count(*) FROM public.item');
      await run('ANALYZE public.item');
      await run('VACUUM public.item');
      expect(compareSourceFingerprints(before, await fingerprint())).toEqual({ changed: false, writes: 0, summary: 'no writes since the backup' });
    });
  });

  it('counts inserted, updated and deleted rows per table', async () => {
    await withDatabase(async (run, fingerprint) => {
      const before = await fingerprint();
      await run("INSERT INTO public.other SELECT g FROM generate_series(1, 4) g; UPDATE public.item SET name = 'x' WHERE id <= 10; DELETE FROM public.item WHERE id = 50");
      expect(compareSourceFingerprints(before, await fingerprint())).toEqual({
        changed: true,
        writes: 15,
        summary: '11 write(s) to table public.item, 4 to public.other',
      });
    });
  });

  it('a TRUNCATE, a sequence, DDL and a large object are changes too', async () => {
    await withDatabase(async (run, fingerprint) => {
      let before = await fingerprint();
      await run('TRUNCATE public.other');
      expect(compareSourceFingerprints(before, await fingerprint()).summary).toBe('table public.other was truncated or rewritten');

      before = await fingerprint();
      await run("SELECT nextval('public.standalone_seq')");
      expect(compareSourceFingerprints(before, await fingerprint()).summary).toBe('sequence public.standalone_seq moved (unused → 1)');

      before = await fingerprint();
      await run('ALTER TABLE public.other ADD COLUMN note text');
      expect(compareSourceFingerprints(before, await fingerprint()).summary).toBe('its tables or columns were altered');

      before = await fingerprint();
      await run('CREATE TABLE public.added (id integer)');
      expect(compareSourceFingerprints(before, await fingerprint()).summary).toBe('table public.added was created');

      before = await fingerprint();
      await run("SELECT lo_from_bytea(0, 'large object')");
      const lo = compareSourceFingerprints(before, await fingerprint());
      expect(lo.changed).toBe(true);
      expect(lo.summary).toMatch(/pg_catalog\.pg_largeobject/);
    });
  });

  it('a statistics reset, missing counters or track_counts off count as changed', async () => {
    await withDatabase(async (run, fingerprint) => {
      const before = await fingerprint();
      expect(compareSourceFingerprints(undefined, before)).toMatchObject({ changed: true, summary: expect.stringMatching(/recorded no write counters/) });
      expect(compareSourceFingerprints({ ...before, trackCounts: false }, before)).toMatchObject({ changed: true, summary: expect.stringMatching(/track_counts is off/) });
      await run('SELECT pg_stat_reset()');
      expect(compareSourceFingerprints(before, await fingerprint())).toMatchObject({ changed: true, summary: expect.stringMatching(/^its statistics were reset since the backup/) });
    });
  });
});
