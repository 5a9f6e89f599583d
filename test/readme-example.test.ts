// The README's "use the constructs in your own cdk8s app" example must keep working: it is
// extracted from README.md, run as written (with the import pointed at lib/), and its chart checked.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function readmeExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.split('## Use the constructs in your own cdk8s app')[1];
  const code = section?.match(/```ts\n([\s\S]*?)```/)?.[1];
  if (!code) throw new Error('README.md has no ```ts block under "Use the constructs in your own cdk8s app"');
  return code;
}

describe('README construct example', () => {
  it('runs as written and synthesizes the migration for Argo CD', async () => {
    const code = readmeExample().replace("'./lib/index.js'", JSON.stringify(pathToFileURL(join(ROOT, 'lib', 'index.ts')).href));
    const dir = join(ROOT, '.tmp', 'readme-example');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'example.ts');
    writeFileSync(file, `${code}\nexport { chart };\n`);
    const { chart } = (await import(pathToFileURL(file).href)) as { chart: { toJson(): Array<{ kind: string; metadata: { name: string; annotations?: Record<string, string> } }> } };
    const objects = chart.toJson();
    const restore = objects.find((o) => o.kind === 'Job' && o.metadata.annotations?.['argocd.argoproj.io/hook'] === 'Sync');
    expect(restore?.metadata.name).toBe('idp-migration-restore');
    expect(objects.some((o) => o.kind === 'Cluster')).toBe(true);
    expect(objects.some((o) => o.kind === 'StatefulSet' && o.metadata.name === 'keycloak')).toBe(true);
  });
});
