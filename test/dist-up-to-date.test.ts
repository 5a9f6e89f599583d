// dist/ is committed: it must be exactly what `npm run synth` writes from the code beside it.
// Runs main.ts as cdk8s synth does (a child process with CDK8S_OUTDIR), so this also proves that
// main.ts writes where CDK8S_OUTDIR says and nowhere else.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listFiles, projectRoot, runMainInto } from './support/synth.js';

const workDir = mkdtempSync(join(tmpdir(), 'dist-up-to-date-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

/** Files that differ between two trees: missing on either side or with other content. */
function differences(expectedDir: string, actualDir: string): string[] {
  const expected = existsSync(expectedDir) ? listFiles(expectedDir) : [];
  const actual = listFiles(actualDir);
  const problems: string[] = [];
  for (const file of actual) {
    if (!expected.includes(file)) problems.push(`${file}: missing from dist/`);
    else if (readFileSync(join(expectedDir, file), 'utf8') !== readFileSync(join(actualDir, file), 'utf8')) {
      problems.push(`${file}: content differs`);
    }
  }
  for (const file of expected) if (!actual.includes(file)) problems.push(`${file}: in dist/ but no longer synthesized`);
  return problems;
}

describe('dist/', () => {
  it('is up to date: run `npm run synth` and commit dist/ when this fails', () => {
    const outdir = join(workDir, 'fresh');
    runMainInto(outdir);
    expect(listFiles(outdir).length).toBeGreaterThan(0);
    const problems = differences(join(projectRoot, 'dist'), outdir);
    expect(problems, `dist/ is stale:\n  ${problems.join('\n  ')}\nrun \`npm run synth\` and commit dist/`).toEqual([]);
  });

  it('is deterministic: a second synthesis writes the same bytes', () => {
    const second = join(workDir, 'second');
    runMainInto(second);
    expect(differences(join(workDir, 'fresh'), second)).toEqual([]);
  });

  it('reports the files that differ (the check can fail)', () => {
    const outdir = join(workDir, 'compare');
    cpSync(join(projectRoot, 'dist'), outdir, { recursive: true });
    writeFileSync(join(outdir, 'argocd', 'keycloak.k8s.yaml'), 'changed');
    writeFileSync(join(outdir, 'argocd', 'extra.k8s.yaml'), 'new');
    expect(differences(join(projectRoot, 'dist'), outdir)).toEqual([
      'argocd/extra.k8s.yaml: missing from dist/',
      'argocd/keycloak.k8s.yaml: content differs',
    ]);
  });
});
