// The generated Helm chart passes the real helm binary's strict lint and renders, for the default
// configuration (what dist/ holds) and for the other shapes and database flavors.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { synthesizePlatform } from '../main.js';
import type { PlatformConfig } from '../lib/platform-config.js';
import { runHelm } from './support/helm.js';
import { listFiles, readManifests } from './support/synth.js';

const workDir = mkdtempSync(join(tmpdir(), 'helm-chart-test-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

const configs: Array<[string, PlatformConfig]> = [
  ['default (v2, repmgr)', {}],
  ['v2, cloudnative-pg', { database: { flavor: 'cloudnative-pg' } }],
  ['v1', { shape: 'v1' }],
];

describe.each(configs)('helm chart: %s', (label, config) => {
  const outdir = join(workDir, label.replace(/\W+/g, '-'));
  const { helmChartDir } = synthesizePlatform(outdir, config);

  it('is laid out as cdk8s synth --format helm lays it out, with a deliberate name and SemVer version', () => {
    expect(listFiles(helmChartDir)).toEqual(['Chart.yaml', 'README.md', 'templates/keycloak.k8s.yaml']);
    const chart = parse(readFileSync(join(helmChartDir, 'Chart.yaml'), 'utf8'));
    expect(Object.keys(chart)).toEqual(['apiVersion', 'name', 'version', 'description', 'type']);
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'keycloak-platform', version: '0.1.0', type: 'application' });
  });

  it('passes helm lint --strict without a warning or error', () => {
    const result = runHelm(['lint', '--strict', helmChartDir]);
    const output = `${result.stdout}\n${result.stderr}`;
    expect(result.status, output).toBe(0);
    expect(output, output).not.toMatch(/\[(WARNING|ERROR)\]/);
    expect(output).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('renders with helm template to exactly the synthesized objects, hooks included', () => {
    const result = runHelm(['template', 'keycloak', helmChartDir, '--namespace', 'keycloak']);
    expect(result.status, result.stderr).toBe(0);
    const rendered = parseAllDocuments(result.stdout)
      .map((document) => document.toJS())
      .filter((object) => object !== null);
    const synthesized = readManifests(join(helmChartDir, 'templates', 'keycloak.k8s.yaml'));
    const key = (object: any) => `${object.kind}/${object.metadata.name}`;
    expect(rendered.map(key).sort()).toEqual(synthesized.map(key).sort());
    // helm template leaves the objects as written (no template syntax in the manifests).
    const byKey = new Map(rendered.map((object) => [key(object), object]));
    for (const object of synthesized) expect(byKey.get(key(object)), key(object)).toEqual(object);
  });
});

describe('helm lint', () => {
  it('fails when the chart is broken (the check can fail)', () => {
    const outdir = join(workDir, 'broken');
    const { helmChartDir } = synthesizePlatform(outdir, {});
    const chartYaml = join(helmChartDir, 'Chart.yaml');
    // A chart version that is not SemVer: helm refuses it.
    writeFileSync(chartYaml, readFileSync(chartYaml, 'utf8').replace('version: 0.1.0', 'version: one'));
    const result = runHelm(['lint', '--strict', helmChartDir]);
    expect(result.status).not.toBe(0);
    expect(`${result.stdout}${result.stderr}`).toMatch(/version/);
  });
});
