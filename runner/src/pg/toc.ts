/**
 * The table of contents of a directory-format dump, as `pg_restore --list` prints it:
 *
 *     3602; 0 16631 TABLE DATA public binary_blob kc
 *     3608; 2613 16668 BLOB - 16668 kc
 *
 * i.e. `dumpId; catalogTableOid oid DESC namespace tag owner`. The restore edits this list (to
 * skip objects the target already has, such as the public schema) and feeds it back with
 * `pg_restore --use-list`; progress counts finished entries.
 */
import type { EndpointDescription } from '../errors.js';
import { runTool, type PgTools } from './tools.js';
import type { Logger } from '../log.js';

export interface TocEntry {
  readonly dumpId: number;
  readonly desc: string;
  /** `-` when the object has no schema. */
  readonly namespace: string;
  readonly tag: string;
  readonly owner: string;
  /** The line as printed, to write back into a use-list. */
  readonly line: string;
}

/** Descriptions made of several words, longest first so that prefixes do not win. */
const MULTI_WORD_DESCS = [
  'PUBLICATION TABLES IN SCHEMA',
  'TEXT SEARCH CONFIGURATION',
  'TEXT SEARCH DICTIONARY',
  'MATERIALIZED VIEW DATA',
  'TEXT SEARCH TEMPLATE',
  'FOREIGN DATA WRAPPER',
  'TEXT SEARCH PARSER',
  'PROCEDURAL LANGUAGE',
  'DATABASE PROPERTIES',
  'SEQUENCE OWNED BY',
  'PUBLICATION TABLE',
  'MATERIALIZED VIEW',
  'CHECK CONSTRAINT',
  'OPERATOR FAMILY',
  'OPERATOR CLASS',
  'FOREIGN SERVER',
  'FOREIGN TABLE',
  'BLOB METADATA',
  'EVENT TRIGGER',
  'FK CONSTRAINT',
  'ACCESS METHOD',
  'INDEX ATTACH',
  'LARGE OBJECT',
  'ROW SECURITY',
  'SEQUENCE SET',
  'TABLE ATTACH',
  'USER MAPPING',
  'DEFAULT ACL',
  'TABLE DATA',
];

const ENTRY_LINE = /^(\d+); (\d+) (\d+) (.*)$/;

export function parseTocLine(line: string): TocEntry | undefined {
  const match = ENTRY_LINE.exec(line);
  if (!match) return undefined;
  const afterOids = match[4]!;
  const desc = MULTI_WORD_DESCS.find((candidate) => afterOids.startsWith(`${candidate} `)) ?? afterOids.split(' ')[0]!;
  const rest = afterOids.slice(desc.length + 1);
  const namespaceEnd = rest.indexOf(' ');
  const namespace = namespaceEnd < 0 ? rest : rest.slice(0, namespaceEnd);
  const tagAndOwner = namespaceEnd < 0 ? '' : rest.slice(namespaceEnd + 1);
  const ownerStart = tagAndOwner.lastIndexOf(' ');
  const tag = ownerStart < 0 ? tagAndOwner : tagAndOwner.slice(0, ownerStart);
  const owner = ownerStart < 0 ? '' : tagAndOwner.slice(ownerStart + 1);
  return { dumpId: Number(match[1]), desc, namespace, tag, owner, line };
}

/** Parses `pg_restore --list` output; comment lines (`;`) are skipped. */
export function parseToc(listing: string): TocEntry[] {
  return listing
    .split('\n')
    .filter((line) => line && !line.startsWith(';'))
    .map(parseTocLine)
    .filter((entry): entry is TocEntry => entry !== undefined);
}

/** `pg_restore --list <dumpDir>`, parsed. */
export async function readToc(tools: PgTools, dumpDir: string, log?: Logger): Promise<{ entries: TocEntry[]; listing: string }> {
  const endpoint: EndpointDescription = { host: 'local', port: 0, user: '-', database: dumpDir };
  const { stdout } = await runTool({
    tool: tools.pgRestore,
    args: ['--list', dumpDir],
    env: { ...process.env, PGPASSWORD: '' },
    endpoint,
    captureStdout: true,
    log,
  });
  return { entries: parseToc(stdout), listing: stdout };
}

/** OIDs of the large objects the dump holds (`BLOB - <oid>`, or `BLOB METADATA` ranges from pg_dump 17). */
export function largeObjectOids(entries: readonly TocEntry[]): { oids: number[]; ranges: Array<[number, number]> } {
  const oids: number[] = [];
  const ranges: Array<[number, number]> = [];
  for (const entry of entries) {
    if (entry.desc === 'BLOB' && /^\d+$/.test(entry.tag)) oids.push(Number(entry.tag));
    if (entry.desc === 'BLOB METADATA') {
      const range = /^(\d+)\.\.(\d+)$/.exec(entry.tag);
      if (range) ranges.push([Number(range[1]), Number(range[2])]);
      else if (/^\d+$/.test(entry.tag)) oids.push(Number(entry.tag));
    }
  }
  return { oids, ranges };
}

/** A use-list: the given entries as pg_restore printed them, the skipped ones commented out. */
export function formatUseList(entries: readonly TocEntry[], skip: (entry: TocEntry) => boolean): string {
  return `${entries.map((entry) => (skip(entry) ? `;${entry.line}` : entry.line)).join('\n')}\n`;
}
