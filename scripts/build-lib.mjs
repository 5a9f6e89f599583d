// Compiles the construct library (lib/) twice, so that both module systems load it natively:
// build/esm (ES modules, for tsx and plain node) and build/cjs (CommonJS, for cdk8s init's
// typescript-app: ts-node and jest), each with its .d.ts. A package.json in each folder tells Node
// which module system the .js files there use, whatever the root package says.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const builds = [
  { project: 'tsconfig.build.json', outDir: 'build/esm', type: 'module' },
  { project: 'tsconfig.build-cjs.json', outDir: 'build/cjs', type: 'commonjs' },
];

rmSync(join(root, 'build'), { recursive: true, force: true });
for (const { project, outDir, type } of builds) {
  execFileSync(process.execPath, [tsc, '-p', join(root, project)], { cwd: root, stdio: 'inherit' });
  mkdirSync(join(root, outDir), { recursive: true });
  writeFileSync(join(root, outDir, 'package.json'), `${JSON.stringify({ type }, null, 2)}\n`);
}
console.log(`construct library: ${builds.map((b) => b.outDir).join(', ')}`);
