import { ApiObject, Testing } from 'cdk8s';
import { Construct } from 'constructs';
import { describe, expect, it } from 'vitest';
import {
  ArgoAnnotation,
  HelmAnnotation,
  assertGitOpsFlavor,
  hookAnnotations,
  markAsHook,
  readHookPlacement,
  setSyncWave,
} from '../lib/gitops.js';

describe('hookAnnotations', () => {
  it('spells the Helm phases with install and upgrade events, quoted weights and an explicit before-hook-creation; RBAC survives success', () => {
    expect(hookAnnotations('helm', { phase: 'rbac', order: -10, role: 'support' })).toEqual({
      'helm.sh/hook': 'pre-install,pre-upgrade,post-install,post-upgrade',
      'helm.sh/hook-weight': '-10',
      // Not hook-succeeded: Helm ≥ 3.19 would delete it when a later hook fails, under a running Job.
      'helm.sh/hook-delete-policy': 'before-hook-creation',
    });
    expect(hookAnnotations('helm', { phase: 'pre', order: 10, role: 'job' })).toEqual({
      'helm.sh/hook': 'pre-install,pre-upgrade',
      'helm.sh/hook-weight': '10',
      'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded',
    });
    expect(hookAnnotations('helm', { phase: 'sync', order: 0, role: 'job' })[HelmAnnotation.hook]).toBe(
      'post-install,post-upgrade',
    );
  });

  it('spells the Argo CD phases: PreSync, a Sync restore, SyncFail; RBAC survives success', () => {
    expect(hookAnnotations('argocd', { phase: 'rbac', order: -10, role: 'support' })).toEqual({
      'argocd.argoproj.io/hook': 'PreSync',
      'argocd.argoproj.io/sync-wave': '-10',
      'argocd.argoproj.io/hook-delete-policy': 'BeforeHookCreation',
    });
    expect(hookAnnotations('argocd', { phase: 'sync', order: 5, role: 'job' })).toEqual({
      'argocd.argoproj.io/hook': 'Sync',
      'argocd.argoproj.io/sync-wave': '5',
      'argocd.argoproj.io/hook-delete-policy': 'BeforeHookCreation,HookSucceeded',
    });
    expect(hookAnnotations('argocd', { phase: 'sync-failed', order: 0, role: 'job' })[ArgoAnnotation.hook]).toBe('SyncFail');
  });

  it('fails when a Helm hook is asked for the Argo-only sync-failed phase', () => {
    expect(() => hookAnnotations('helm', { phase: 'sync-failed', order: 0, role: 'job' })).toThrow(/only for Argo CD/);
  });

  it('fails when the order is not an integer', () => {
    expect(() => hookAnnotations('argocd', { phase: 'pre', order: 1.5, role: 'job' })).toThrow(/must be an integer.*1\.5/);
  });

  it('fails when the flavor is unknown, naming the accepted values', () => {
    expect(() => assertGitOpsFlavor('flux', 'platform flavor')).toThrow(/'platform flavor' must be one of 'helm', 'argocd', got "flux"/);
  });
});

describe('markAsHook and setSyncWave', () => {
  function tree() {
    const chart = Testing.chart();
    const hooks = new Construct(chart, 'hooks');
    new ApiObject(hooks, 'sa', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'sa' } });
    new ApiObject(new Construct(hooks, 'nested'), 'role', { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'r' } });
    new ApiObject(chart, 'svc', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'svc' } });
    return { chart, hooks };
  }

  it('annotates every ApiObject below the scope, and waves only the ordinary ones (Argo CD)', () => {
    const { chart, hooks } = tree();
    markAsHook(hooks, 'argocd', { phase: 'pre', order: 3, role: 'support' });
    setSyncWave(chart, 'argocd', 7);
    const byName = Object.fromEntries(Testing.synth(chart).map((o) => [o.metadata.name, o.metadata.annotations]));
    expect(byName.sa[ArgoAnnotation.syncWave]).toBe('3');
    expect(byName.r[ArgoAnnotation.hook]).toBe('PreSync');
    expect(byName.svc).toEqual({ [ArgoAnnotation.syncWave]: '7' });
  });

  it('adds no waves with flavor helm (Helm orders only hooks)', () => {
    const { chart } = tree();
    setSyncWave(chart, 'helm', 7);
    expect(Testing.synth(chart).every((o) => o.metadata.annotations === undefined)).toBe(true);
  });

  it('reads back what it wrote', () => {
    expect(readHookPlacement(hookAnnotations('helm', { phase: 'pre', order: 10, role: 'job' }))).toEqual({
      flavor: 'helm',
      hooks: ['pre-install', 'pre-upgrade'],
      order: 10,
      deletePolicies: ['before-hook-creation', 'hook-succeeded'],
    });
    expect(readHookPlacement({ [ArgoAnnotation.syncWave]: '2' })).toBeUndefined();
  });
});
