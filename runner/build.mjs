// Bundles the runner into ES modules that run with plain `node` and no node_modules:
// runner/dist/runner.mjs (git-ignored), the image's entrypoint, and runner/dist/chunks/*.mjs, the
// parts it imports when a command needs them.
//
// Split, not one file: V8 parses every byte of a module it loads, and 2.5 of the 2.9 MB are the
// Kubernetes client, which the data commands (backup, restore, verify) and Keycloak's database gate
// never use; each of their starts parsed it anyway (~0.2 s of a ~0.33 s start here). Chunk names
// carry a hash of their contents, and runner.mjs imports them by those names. (Import client-node
// by name only: a namespace import keeps all of its 5.4 MB, see main.ts printVersion.)
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const runnerDir = dirname(fileURLToPath(import.meta.url));
const repositoryRoot = join(runnerDir, '..');
const packageJson = JSON.parse(await readFile(join(repositoryRoot, 'package.json'), 'utf8'));
const outdir = join(runnerDir, 'dist');
const chunksDir = join(outdir, 'chunks');
const entry = join(outdir, 'runner.mjs');
await mkdir(chunksDir, { recursive: true });

const result = await build({
  entryPoints: { runner: join(runnerDir, 'src', 'main.ts') },
  outdir,
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // CommonJS dependencies (pg and friends) call require() for Node built-ins; an ES module has no
  // require, so give each output file one (the banner goes on every chunk).
  banner: {
    js: [
      '#!/usr/bin/env node',
      "import { createRequire as __runnerCreateRequire } from 'node:module';",
      'const require = __runnerCreateRequire(import.meta.url);',
    ].join('\n'),
  },
  // pg loads pg-native only when asked for (`pg.native`); the runner never does.
  external: ['pg-native'],
  define: { RUNNER_VERSION: JSON.stringify(packageJson.version) },
  sourcemap: false,
  // Whitespace and syntax only: comments go (some are non-ASCII, which made V8 hold the whole
  // 15.8 MB source as a two-byte string) and the output shrinks to ~6 MB: ~34 MB less resident
  // memory and ~0.1 s less start-up per run. Identifiers stay, so stack traces stay readable.
  minifyWhitespace: true,
  minifySyntax: true,
  minifyIdentifiers: false,
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
  // Written below through renames, chunks first and runner.mjs last: tests run the bundle while
  // others rebuild it (the image build, runner-bundle.test.ts), and must never read a half-written
  // file or a runner.mjs whose chunks are not there yet.
  write: false,
});

const written = new Set();
const outputs = [...result.outputFiles].sort((a, b) => (a.path === entry ? 1 : b.path === entry ? -1 : 0));
for (const file of outputs) {
  const partial = `${file.path}.${process.pid}.partial`;
  // Executable: the package's bins (npx, the kubectl plugin) point at runner.mjs.
  await writeFile(partial, file.contents, { mode: 0o755 });
  await rename(partial, file.path);
  written.add(file.path);
}
// Chunks of earlier builds go at once, so that dist/ (what the image and the package ship) is exactly
// this build. Rebuilding the same sources writes the same names: only a rebuild after a change of the
// sources, while a process of the old build is still starting, could take a chunk from under it.
for (const name of await readdir(chunksDir)) {
  const path = join(chunksDir, name);
  if (!written.has(path)) await rm(path, { force: true });
}
const bytes = Object.values(result.metafile.outputs).reduce((sum, output) => sum + output.bytes, 0);
const entryBytes = result.outputFiles.find((file) => file.path === entry)?.contents.length ?? 0;
console.log(`runner bundle: ${entry} (${(entryBytes / 1e3).toFixed(1)} kB) and ${result.outputFiles.length - 1} chunk(s) in ${chunksDir} (${(bytes / 1e6).toFixed(1)} MB in all)`);
