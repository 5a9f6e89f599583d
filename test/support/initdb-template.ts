/**
 * A fresh data directory without running initdb every time: initdb runs once per server binary
 * and initdb arguments into a template under the temp directory, and every later server of the
 * same kind gets a copy (`cp -a`, ~0.1 s instead of ~0.9 s of initdb's CPU — the suites start a
 * few hundred servers on CI's two cores).
 *
 * A copy is what initdb would have written, byte for byte, except that every copy shares the
 * template's system identifier (pg_control): like a standby cloned with pg_basebackup. Nothing
 * the tests exercise compares the identifiers of two independent servers. Options that initdb
 * would bake in per server (the superuser's password) are left out of the template and applied
 * by the caller once the server runs.
 *
 * The template's key covers the binary (path, size, modification time) and the arguments, so a
 * reinstalled or different PostgreSQL gets its own template. Concurrent test processes may build
 * the same template at once: each builds in its own directory and renames it into place; the
 * loser discards its copy and uses the winner's (a rename is atomic, so a template directory is
 * complete whenever it exists).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface InitdbFromTemplateOptions {
  /** The directory of the server's `initdb` and `postgres`. */
  readonly binDir: string;
  /** initdb's arguments besides `-D` (no per-server secrets such as `--pwfile`). */
  readonly initdbArgs: readonly string[];
  /** Where the new data directory goes; created if missing, must be empty if present. */
  readonly dataDir: string;
  /** The uid and gid of the `postgres` user, who owns data directories. */
  readonly owner: { readonly uid: number; readonly gid: number };
  /** Runs `initdb` as `postgres` with these arguments (the caller's way of dropping root). */
  readonly runInitdbAsPostgres: (initdb: string, args: readonly string[]) => void;
}

const TEMPLATES_ROOT = join(tmpdir(), 'kc-initdb-templates');

/** Fills `dataDir` with a copy of the template for this binary and these arguments (built first if missing). */
export function initdbFromTemplate(options: InitdbFromTemplateOptions): void {
  const template = ensureTemplate(options);
  mkdirSync(options.dataDir, { recursive: true });
  // `src/.`: the contents, into a directory that may already exist (a volume's mount point).
  execFileSync('cp', ['-a', `${template}/.`, options.dataDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  chownSync(options.dataDir, options.owner.uid, options.owner.gid);
  chmodSync(options.dataDir, 0o700);
}

function templateKey(options: InitdbFromTemplateOptions): string {
  const postgres = statSync(join(options.binDir, 'postgres'));
  return createHash('sha256')
    .update(JSON.stringify({ binDir: options.binDir, size: postgres.size, mtimeMs: postgres.mtimeMs, args: options.initdbArgs }))
    .digest('hex')
    .slice(0, 24);
}

function ensureTemplate(options: InitdbFromTemplateOptions): string {
  const template = join(TEMPLATES_ROOT, templateKey(options));
  if (existsSync(template)) return template;
  mkdirSync(TEMPLATES_ROOT, { recursive: true });
  const building = mkdtempSync(`${template}.building-`);
  try {
    chownSync(building, options.owner.uid, options.owner.gid);
    chmodSync(building, 0o700);
    const dataDir = join(building, 'data');
    options.runInitdbAsPostgres(join(options.binDir, 'initdb'), ['-D', dataDir, ...options.initdbArgs]);
    try {
      renameSync(dataDir, template);
    } catch (error) {
      // Another process renamed its template into place first: use that one.
      if (!existsSync(template)) throw error;
    }
  } finally {
    rmSync(building, { recursive: true, force: true });
  }
  return template;
}
