// Manifest reading and the tools' ordering rules, on small hand-written manifests whose expected
// order follows the Helm and gitops-engine source (see lifecycle.ts). The synthesized charts are
// covered by the scenario tests.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';

import { ArgoApplication, argoSyncPlan, helmHookOrder, helmResourceOrder, type ClusterOps } from './lifecycle.js';
import { classifyArgoObjects, classifyHelmObjects, readArgoManifests, readHelmChart, type KubeObject } from './manifests.js';

function object(kind: string, name: string, annotations?: Record<string, string>): KubeObject {
  return { apiVersion: kind === 'Job' ? 'batch/v1' : 'v1', kind, metadata: { name, ...(annotations ? { annotations } : {}) } };
}

const workDir = mkdtempSync(join(tmpdir(), 'rehearsal-ordering-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

describe('Helm', () => {
  it('sorts hooks by weight, then by name even across kinds (helm/helm#12414)', () => {
    const chart = classifyHelmObjects('x', [
      object('Job', 'restore', { 'helm.sh/hook': 'post-upgrade', 'helm.sh/hook-weight': '0' }),
      object('Job', 'b-backup', { 'helm.sh/hook': 'pre-install,pre-upgrade', 'helm.sh/hook-weight': '10' }),
      object('ServiceAccount', 'z-runner', { 'helm.sh/hook': 'pre-upgrade', 'helm.sh/hook-weight': '0' }),
      object('Job', 'a-prepare', { 'helm.sh/hook': 'pre-upgrade', 'helm.sh/hook-weight': '0' }),
      object('Role', 'runner', { 'helm.sh/hook': 'pre-upgrade', 'helm.sh/hook-weight': '-10' }),
    ]);
    expect(helmHookOrder(chart.hooks, 'pre-upgrade').map((hook) => hook.object.metadata.name)).toEqual([
      'runner',
      'a-prepare',
      'z-runner',
      'b-backup',
    ]);
    expect(helmHookOrder(chart.hooks, 'pre-install').map((hook) => hook.object.metadata.name)).toEqual(['b-backup']);
    expect(helmHookOrder(chart.hooks, 'post-upgrade').map((hook) => hook.object.metadata.name)).toEqual(['restore']);
  });

  it('drops a resource whose hook names an unknown event, as Helm does silently', () => {
    const chart = classifyHelmObjects('x', [object('Job', 'typo', { 'helm.sh/hook': 'pre-upgrade,post-updgrade' })]);
    expect(chart.hooks).toEqual([]);
    expect(chart.resources).toEqual([]);
    expect(chart.skipped[0]!.reason).toContain('post-updgrade');
  });

  it('applies before-hook-creation only when the delete policy annotation is absent', () => {
    const chart = classifyHelmObjects('x', [
      object('Job', 'implicit', { 'helm.sh/hook': 'pre-upgrade' }),
      object('Job', 'explicit', { 'helm.sh/hook': 'pre-upgrade', 'helm.sh/hook-delete-policy': 'hook-succeeded' }),
    ]);
    expect(chart.hooks.map((hook) => hook.deletePolicies)).toEqual([['before-hook-creation'], ['hook-succeeded']]);
  });

  it('creates release resources in install order', () => {
    const ordered = helmResourceOrder([
      object('StatefulSet', 'db'),
      object('Service', 'db'),
      object('Secret', 'db'),
      object('PodDisruptionBudget', 'db'),
      object('Cluster', 'cnpg'),
    ]);
    expect(ordered.map((o) => o.kind)).toEqual(['PodDisruptionBudget', 'Secret', 'Service', 'StatefulSet', 'Cluster']);
  });

  it('renders a chart with the real helm binary and classifies its documents', () => {
    const chartDir = join(workDir, 'chart');
    mkdirSync(join(chartDir, 'templates'), { recursive: true });
    writeFileSync(join(chartDir, 'Chart.yaml'), 'apiVersion: v2\nname: probe\nversion: 1.0.0\n');
    writeFileSync(
      join(chartDir, 'templates', 'all.k8s.yaml'),
      [
        stringify(object('ConfigMap', 'plain')),
        stringify(object('Job', 'migrate', { 'helm.sh/hook': 'pre-upgrade', 'helm.sh/hook-weight': '5' })),
      ].join('---\n'),
    );
    const chart = readHelmChart(chartDir, { releaseName: 'probe', namespace: 'ns' });
    expect(chart.resources.map((o) => o.metadata.name)).toEqual(['plain']);
    expect(chart.hooks.map((h) => [h.object.metadata.name, h.weight])).toEqual([['migrate', 5]]);
  });

  it('fails when helm rejects the chart, with helm\'s message', () => {
    const chartDir = join(workDir, 'broken');
    mkdirSync(join(chartDir, 'templates'), { recursive: true });
    writeFileSync(join(chartDir, 'Chart.yaml'), 'apiVersion: v2\nname: broken\n');
    expect(() => readHelmChart(chartDir, { releaseName: 'r', namespace: 'ns' })).toThrow(/helm template .* failed.*version/i);
  });
});

describe('Argo CD', () => {
  it('maps Helm hooks and weights when no Argo CD hook is given, and lets an explicit one win', () => {
    const manifests = classifyArgoObjects('x', [
      object('Job', 'helm-pre', { 'helm.sh/hook': 'pre-install,pre-upgrade', 'helm.sh/hook-weight': '3', 'helm.sh/hook-delete-policy': 'hook-succeeded' }),
      object('Job', 'both', { 'helm.sh/hook': 'post-upgrade', 'argocd.argoproj.io/hook': 'Sync', 'argocd.argoproj.io/sync-wave': '7' }),
      object('Job', 'rollback', { 'helm.sh/hook': 'pre-rollback' }),
      object('Job', 'skipped', { 'argocd.argoproj.io/hook': 'Skip' }),
      object('ConfigMap', 'plain', { 'argocd.argoproj.io/sync-wave': '-1' }),
    ]);
    expect(manifests.hooks.map((h) => [h.object.metadata.name, h.types, h.wave, h.deletePolicies])).toEqual([
      ['helm-pre', ['PreSync'], 3, ['HookSucceeded']],
      ['both', ['Sync'], 7, ['BeforeHookCreation']],
    ]);
    expect(manifests.resources.map((r) => [r.object.metadata.name, r.wave])).toEqual([['plain', -1]]);
    expect(manifests.skipped.map((s) => s.object.metadata.name)).toEqual(['rollback', 'skipped']);
  });

  it('plans PreSync by wave, then Sync waves mixing resources and Sync hooks by kind and name, then PostSync', () => {
    const manifests = classifyArgoObjects('x', [
      object('StatefulSet', 'keycloak', { 'argocd.argoproj.io/sync-wave': '20' }),
      object('Job', 'restore', { 'argocd.argoproj.io/hook': 'Sync', 'argocd.argoproj.io/sync-wave': '10' }),
      object('StatefulSet', 'pg-ha', { 'argocd.argoproj.io/sync-wave': '0' }),
      object('Secret', 'pg-ha', { 'argocd.argoproj.io/sync-wave': '0' }),
      object('Job', 'backup', { 'argocd.argoproj.io/hook': 'PreSync', 'argocd.argoproj.io/sync-wave': '10' }),
      object('Job', 'prepare', { 'argocd.argoproj.io/hook': 'PreSync', 'argocd.argoproj.io/sync-wave': '0' }),
      object('Role', 'runner', { 'argocd.argoproj.io/hook': 'PreSync', 'argocd.argoproj.io/sync-wave': '-10' }),
      object('Job', 'record', { 'argocd.argoproj.io/hook': 'SyncFail' }),
      object('Job', 'after', { 'argocd.argoproj.io/hook': 'PostSync' }),
    ]);
    const plan = argoSyncPlan(manifests);
    const names = plan.phases.map((phase) => [phase.phase, phase.waves.map((w) => [w.wave, w.tasks.map((t) => `${t.object.kind}/${t.object.metadata.name}`)])]);
    expect(names).toEqual([
      ['PreSync', [[-10, ['Role/runner']], [0, ['Job/prepare']], [10, ['Job/backup']]]],
      ['Sync', [[0, ['Secret/pg-ha', 'StatefulSet/pg-ha']], [10, ['Job/restore']], [20, ['StatefulSet/keycloak']]]],
      ['PostSync', [[0, ['Job/after']]]],
    ]);
    expect(plan.syncFail.waves.flatMap((w) => w.tasks.map((t) => t.object.metadata.name))).toEqual(['record']);
  });

  it('pauses between waves from each wave\'s apply, alongside the wait for its health, and not after the final wave', async () => {
    // gitops-engine calls Argo CD's delayBetweenSyncWaves right after runTasks applied a wave
    // (sync_context.go), and it sleeps unless finalWave (controller/sync.go): a wave that needs
    // longer than the pause loses nothing to it.
    const readyAfterMs: Record<string, number> = { slow: 600, quick: 0, last: 0 };
    const cluster: ClusterOps = {
      get: () => undefined,
      create: async () => undefined,
      apply: async () => 'created',
      serverSideApply: async () => 'created',
      delete: async () => false,
      waitReady: (object) => new Promise((resolve) => setTimeout(resolve, readyAfterMs[object.metadata.name] ?? 0)),
      unserved: () => [],
    };
    const manifests = classifyArgoObjects('x', [
      object('ConfigMap', 'slow', { 'argocd.argoproj.io/sync-wave': '1' }),
      object('ConfigMap', 'quick', { 'argocd.argoproj.io/sync-wave': '2' }),
      object('ConfigMap', 'last', { 'argocd.argoproj.io/sync-wave': '3' }),
    ]);
    const started = Date.now();
    const result = await new ArgoApplication(cluster, { waveDelayMs: 300 }).sync(manifests);
    const ended = Date.now();
    expect(result.ok).toBe(true);
    const waveStart = (wave: number) => result.events.find((event) => event.action === 'wave' && event.target === `Sync ${wave}`)!.at;
    // Wave 1 is not done before its object is ready (600 ms), and the 300 ms pause ran meanwhile
    // (a pause after the wave would make it 900 ms).
    expect(waveStart(2) - waveStart(1)).toBeGreaterThanOrEqual(590);
    expect(waveStart(2) - waveStart(1)).toBeLessThan(850);
    // Wave 2 is ready at once: the pause is what it costs.
    expect(waveStart(3) - waveStart(2)).toBeGreaterThanOrEqual(290);
    // No pause after the final wave.
    expect(ended - waveStart(3)).toBeLessThan(250);
    expect(ended - started).toBeLessThan(1_400);
  });

  it('reads every manifest file of a directory, recursively and in name order', () => {
    const dir = join(workDir, 'argo');
    mkdirSync(join(dir, 'nested'), { recursive: true });
    writeFileSync(join(dir, 'b.k8s.yaml'), [stringify(object('ConfigMap', 'b1')), stringify(object('ConfigMap', 'b2'))].join('---\n'));
    writeFileSync(join(dir, 'nested', 'c.yaml'), stringify(object('ConfigMap', 'c')));
    writeFileSync(join(dir, 'a.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [object('ConfigMap', 'a')] }));
    writeFileSync(join(dir, 'README.md'), '# not a manifest');
    expect(readArgoManifests(dir).resources.map((r) => r.object.metadata.name)).toEqual(['a', 'b1', 'b2', 'c']);
  });

  it('fails when a document is not a Kubernetes object, naming the file', () => {
    const dir = join(workDir, 'argo-bad');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'bad.yaml'), 'kind: ConfigMap\nmetadata: {}\n');
    expect(() => readArgoManifests(dir)).toThrow(/bad\.yaml: every object needs apiVersion, kind and metadata\.name/);
  });
});
