/**
 * The data shapes the benchmark migrates (issue 13): the same size behaves very differently
 * depending on what it is made of, so the runner is compared with its peers on each.
 *
 * - `keycloak`: Keycloak 26's ~85 tables (generate.ts): many small configuration tables, a few
 *   big per-user and event tables, some large objects; fixed costs per table weigh most here.
 * - `wide`: three wide tables (34 columns of mixed types, ~600 bytes a row) and nothing else:
 *   per-row and per-column costs (COPY parsing, checksums over every column) dominate.
 * - `lob`: a bytea-heavy document table (4-64 KiB values, TOASTed) and large objects
 *   (128-512 KiB): bytes dominate, rows are few, large objects are restored one by one.
 *
 * Every generator fills an empty database server-side (INSERT ... SELECT generate_series) on two
 * connections, builds its indexes afterwards, then VACUUM (ANALYZE) and CHECKPOINT, and
 * reports the same {@link GenerationReport}.
 */
import pg from 'pg';
import {
  connectForGeneration,
  countRows,
  generateKeycloakDatabase,
  sampleCompressionRatio,
  type GenerateConnection,
  type GenerateOptions,
  type GenerationReport,
} from './generate.js';
import { formatBytes } from './size.js';

export interface DataShape {
  /** Id for `--shapes` and database names. */
  readonly id: string;
  /** One line for the results. */
  readonly label: string;
  generate(connection: GenerateConnection, options: GenerateOptions): Promise<GenerationReport>;
}

/** Bumped whenever the wide or lob data changes. */
export const SHAPES_GENERATOR_VERSION = 1;

/**
 * On-disk bytes per row of the wide tables, heap + TOAST + their three indexes, measured with
 * this generator (0.2 GiB: 1.01 × asked; 1 GiB: 1.00 ×).
 */
const WIDE_BYTES_PER_ROW = 905;
/** Share of the rows per wide table: one big, two medium. */
const WIDE_TABLES: ReadonlyArray<readonly [string, number]> = [
  ['sales_order', 0.5],
  ['shipment', 0.3],
  ['invoice', 0.2],
];

/** Average on-disk bytes of a document row (36 KiB of content, mostly incompressible), measured. */
const LOB_DOCUMENT_BYTES = 39 * 1024;
/** Average on-disk bytes of a large object (128-512 KiB of contents), measured. */
const LOB_OBJECT_BYTES = 340 * 1024;

async function withGenerationClients(
  connection: GenerateConnection,
  work: (main: pg.Client, lanes: readonly pg.Client[]) => Promise<void>,
): Promise<void> {
  const main = await connectForGeneration(connection);
  const lanes: pg.Client[] = [];
  try {
    const existing = await main.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'`,
    );
    if (existing.rows[0]!.n > 0) {
      throw new Error(`database '${connection.database}' already has ${existing.rows[0]!.n} tables in schema public; the generator needs an empty database`);
    }
    for (let i = 0; i < 2; i += 1) {
      const lane = await connectForGeneration(connection);
      lanes.push(lane);
      await lane.query(`SET synchronous_commit = off; SET maintenance_work_mem = '256MB'`);
    }
    await work(main, lanes);
  } finally {
    for (const lane of lanes) await lane.end().catch(() => undefined);
    await main.end();
  }
}

/** VACUUM (FREEZE, ANALYZE), CHECKPOINT, then the report every shape gives. */
async function finishGeneration(
  connection: GenerateConnection,
  shape: string,
  options: GenerateOptions,
  started: number,
  extra: { largeObjects: number },
): Promise<GenerationReport> {
  const client = await connectForGeneration(connection);
  try {
    options.log?.(`  data and indexes in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    // Sets the hint bits once, so the first round does not pay for writing them (without FREEZE:
    // freezing WAL-logs every page again, ~10 s per GiB of documents for nothing the rounds need).
    await client.query('VACUUM (ANALYZE)');
    await client.query('CHECKPOINT');
    const size = await client.query<{ bytes: string }>('SELECT pg_database_size(current_database())::bigint AS bytes');
    const rowCounts = await countRows(client);
    const report: GenerationReport = {
      generatorVersion: SHAPES_GENERATOR_VERSION,
      shape,
      targetBytes: options.targetBytes,
      databaseBytes: Number(size.rows[0]!.bytes),
      users: 0,
      tables: Object.keys(rowCounts).length,
      largeObjects: extra.largeObjects,
      rowCounts,
      sampleGzipRatio: await sampleCompressionRatio(client),
      seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
    };
    options.log?.(`generated ${formatBytes(report.databaseBytes)} (asked ${formatBytes(options.targetBytes)}) in ${report.seconds} s`);
    return report;
  } finally {
    await client.end();
  }
}

/** Splits 1..total into `parts` contiguous ranges. */
function ranges(total: number, parts: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const step = Math.ceil(total / parts);
  for (let from = 1; from <= total; from += step) out.push([from, Math.min(total, from + step - 1)]);
  return out;
}

/** Runs the statements on the lanes, each lane taking the next statement. */
async function runOnLanes(lanes: readonly pg.Client[], statements: readonly string[]): Promise<void> {
  const queue = [...statements];
  await Promise.all(lanes.map(async (lane) => {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) await lane.query(next);
  }));
}

function wideTableDdl(name: string): string {
  return `CREATE TABLE public.${name} (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    external_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz,
    status varchar(20) NOT NULL,
    customer_name varchar(100),
    customer_email varchar(255),
    street varchar(120),
    city varchar(60),
    country char(2),
    reference varchar(64),
    note text,
    quantity integer,
    line_count integer,
    warehouse_id integer,
    carrier_id integer,
    priority smallint,
    version bigint,
    tenant_id bigint,
    batch_id bigint,
    net_amount numeric(12, 2),
    tax_amount numeric(12, 2),
    gross_amount numeric(12, 2),
    discount numeric(5, 2),
    paid boolean,
    archived boolean,
    shipped_on date,
    due_on date,
    weight_kg real,
    volume_m3 double precision,
    attributes jsonb,
    tags text[],
    signature bytea,
    checksum varchar(32)
  )`;
}

function wideInsert(name: string, from: number, to: number): string {
  return `INSERT INTO public.${name} (external_id, created_at, updated_at, status, customer_name, customer_email, street, city, country,
      reference, note, quantity, line_count, warehouse_id, carrier_id, priority, version, tenant_id, batch_id, net_amount, tax_amount,
      gross_amount, discount, paid, archived, shipped_on, due_on, weight_kg, volume_m3, attributes, tags, signature, checksum)
    SELECT md5(n::text || '${name}')::uuid, t, t + (n % 97) * interval '1 hour',
      (ARRAY['new','paid','packed','shipped','delivered','returned'])[1 + n % 6],
      (ARRAY['Anna','Ben','Chloé','David','Elif','Farid','Greta','Hiro'])[1 + n % 8] || ' ' ||
        (ARRAY['Müller','Schmidt','García','Nakamura','Okafor','Rossi','Dubois'])[1 + n % 7],
      'customer' || n || '@example.com', (n % 900 + 1) || ' ' || (ARRAY['Main St','High St','Park Ave','Bahnhofstr.'])[1 + n % 4],
      (ARRAY['Berlin','Lyon','Osaka','Lagos','Porto','Austin'])[1 + n % 6], (ARRAY['DE','FR','JP','NG','PT','US'])[1 + n % 6],
      'REF-' || upper(substr(h, 1, 16)), 'Handled by ' || substr(h, 17, 8) || '; ' || repeat('note ', n % 20) || repeat(h, 6),
      n % 50, n % 12 + 1, n % 40, n % 9, (n % 5)::smallint, n, n % 1000, n / 1000,
      (n % 100000) / 100.0, (n % 19000) / 100.0, (n % 119000) / 100.0, (n % 30) / 1.0, n % 3 <> 0, n % 11 = 0,
      t::date, t::date + 30, (n % 5000) / 10.0, (n % 7000) / 1000.0,
      jsonb_build_object('channel', (ARRAY['web','app','partner'])[1 + n % 3], 'campaign', 'c' || n % 40, 'hash', h,
        'items', jsonb_build_array(n % 100, n % 37, n % 11)),
      ARRAY['t' || n % 10, 't' || n % 7], decode(md5(h), 'hex') || decode(h, 'hex'), h
    FROM (SELECT n, md5(random()::text) AS h, timestamptz '2023-01-01' + n * interval '7 seconds' AS t
            FROM generate_series(${from}, ${to}) n) s`;
}

/** Three wide tables, nothing else: per-row and per-column costs dominate. */
export const wideShape: DataShape = {
  id: 'wide',
  label: 'wide: 3 tables of 34 mixed columns',
  async generate(connection, options) {
    const started = performance.now();
    const rows = Math.max(3000, Math.round(options.targetBytes / WIDE_BYTES_PER_ROW));
    await withGenerationClients(connection, async (main, lanes) => {
      options.log?.(`generating ${rows} wide rows in ${WIDE_TABLES.length} tables`);
      for (const [name] of WIDE_TABLES) await main.query(wideTableDdl(name));
      const inserts = WIDE_TABLES.flatMap(([name, share]) =>
        ranges(Math.round(rows * share), 2).map(([from, to]) => wideInsert(name, from, to)),
      );
      await runOnLanes(lanes, inserts);
      options.log?.(`  rows in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      await runOnLanes(lanes, WIDE_TABLES.flatMap(([name]) => [
        `CREATE UNIQUE INDEX ${name}_external_id ON public.${name} (external_id)`,
        `CREATE INDEX ${name}_created_at ON public.${name} (created_at)`,
      ]));
    });
    return finishGeneration(connection, 'wide', options, started, { largeObjects: 0 });
  },
};

/** Documents with bytea contents and large-object attachments: bytes dominate, rows are few. */
export const lobShape: DataShape = {
  id: 'lob',
  label: 'lob: bytea documents + large objects',
  async generate(connection, options) {
    const started = performance.now();
    const documents = Math.max(200, Math.round((options.targetBytes * 0.5) / LOB_DOCUMENT_BYTES));
    const objects = Math.max(20, Math.round((options.targetBytes * 0.5) / LOB_OBJECT_BYTES));
    await withGenerationClients(connection, async (main, lanes) => {
      options.log?.(`generating ${documents} documents and ${objects} large objects`);
      await main.query('CREATE EXTENSION IF NOT EXISTS pgcrypto');
      await main.query(`
        CREATE TABLE public.document (
          id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
          owner_id varchar(36) NOT NULL,
          name varchar(255) NOT NULL,
          mime_type varchar(64) NOT NULL,
          created_at timestamptz NOT NULL,
          content bytea NOT NULL
        );
        CREATE TABLE public.attachment (
          id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
          document_id bigint NOT NULL,
          file_name varchar(255) NOT NULL,
          content_oid oid NOT NULL
        )`);
      // Contents: three quarters random (images, signed blobs), one quarter repeated text.
      const documentInsert = (from: number, to: number) => `
        INSERT INTO public.document (owner_id, name, mime_type, created_at, content)
        SELECT md5('owner' || n % 5000)::uuid::text, 'document-' || n || '.pdf',
          (ARRAY['application/pdf','image/png','application/xml'])[1 + n % 3], timestamptz '2023-01-01' + n * interval '1 minute',
          (SELECT string_agg(gen_random_bytes(1024), ''::bytea) FROM generate_series(1, 3 * (1 + n % 16)))
            || convert_to(repeat('<p>' || md5(n::text) || '</p>', 25 * (1 + n % 16)), 'UTF8')
        FROM generate_series(${from}, ${to}) n`;
      const objectInsert = (from: number, to: number) => `
        INSERT INTO public.attachment (document_id, file_name, content_oid)
        SELECT 1 + n % ${documents}, 'attachment-' || n || '.bin',
          lo_from_bytea(0, (SELECT string_agg(gen_random_bytes(1024), ''::bytea) FROM generate_series(1, 96 + (n % 8) * 48))
                           || convert_to(repeat('<row id="' || n || '"/>', 1500 + (n % 8) * 500), 'UTF8'))
        FROM generate_series(${from}, ${to}) n`;
      await runOnLanes(lanes, [
        ...ranges(documents, 2).map(([from, to]) => documentInsert(from, to)),
        ...ranges(objects, 2).map(([from, to]) => objectInsert(from, to)),
      ]);
      await runOnLanes(lanes, [
        'CREATE INDEX document_owner ON public.document (owner_id)',
        'ALTER TABLE public.attachment ADD CONSTRAINT attachment_document_fk FOREIGN KEY (document_id) REFERENCES public.document (id)',
      ]);
      await main.query(`SELECT setval(pg_get_serial_sequence('public.document', 'id'), ${documents})`);
      await main.query(`SELECT setval(pg_get_serial_sequence('public.attachment', 'id'), ${objects})`);
      await main.query('DROP EXTENSION pgcrypto');
    });
    return finishGeneration(connection, 'lob', options, started, { largeObjects: objects });
  },
};

export const keycloakShape: DataShape = {
  id: 'keycloak',
  label: 'keycloak: ~85 tables, Keycloak 26-shaped',
  generate: (connection, options) => generateKeycloakDatabase(connection, options),
};

export const ALL_SHAPES: readonly DataShape[] = [wideShape, keycloakShape, lobShape];
