// The take-over's pure parts: the immutable-field comparison, the sync-options merge and the
// MIGRATION_WORKLOAD_SPECS parser's bad input (the API side is in bitnami-takeover.test.ts).
import { describe, expect, it } from 'vitest';

import { Env, ExitCode } from '../lib/contract.js';
import { immutableSpecDifferences, parseWorkloadSpecs, withPruneDisabled } from '../runner/src/kube/takeover.js';

describe('immutableSpecDifferences', () => {
  const ours = { selector: { 'app.kubernetes.io/name': 'keycloak', 'app.kubernetes.io/instance': 'keycloak' }, serviceName: 'keycloak-discovery', volumeClaimTemplates: [] };
  it('finds nothing when only the label order differs', () => {
    expect(immutableSpecDifferences({ ...ours, selector: { 'app.kubernetes.io/instance': 'keycloak', 'app.kubernetes.io/name': 'keycloak' } }, ours)).toEqual([]);
  });
  it('names each differing field: Bitnami 25.x selector (part-of), headless serviceName, claim templates', () => {
    const bitnami = { selector: { ...ours.selector, 'app.kubernetes.io/part-of': 'keycloak' }, serviceName: 'keycloak-headless', volumeClaimTemplates: ['data'] };
    const differences = immutableSpecDifferences(bitnami, ours);
    expect(differences).toHaveLength(3);
    expect(differences[0]).toMatch(/^selector .*part-of.* → /);
    expect(differences[1]).toBe('serviceName "keycloak-headless" → "keycloak-discovery"');
    expect(differences[2]).toBe('volumeClaimTemplates ["data"] → []');
  });
});

describe('withPruneDisabled', () => {
  it('adds Prune=false to existing sync options once, replacing another Prune value', () => {
    expect(withPruneDisabled(undefined)).toBe('Prune=false');
    expect(withPruneDisabled('ServerSideApply=true')).toBe('ServerSideApply=true,Prune=false');
    expect(withPruneDisabled('Prune=true, Replace=true')).toBe('Replace=true,Prune=false');
    expect(withPruneDisabled('Prune=false')).toBe('Prune=false');
  });
});

describe('parseWorkloadSpecs bad input', () => {
  const parse = (value: string) => () => parseWorkloadSpecs(value, Env.workloadSpecs);
  it('is empty when unset', () => {
    expect(parseWorkloadSpecs(undefined, Env.workloadSpecs)).toEqual({});
    expect(parseWorkloadSpecs(' ', Env.workloadSpecs)).toEqual({});
  });
  it('fails with a usage error naming the variable and the problem', () => {
    expect(parse('{')).toThrow(/MIGRATION_WORKLOAD_SPECS is not valid JSON/);
    expect(parse('[]')).toThrow(/must be a JSON object keyed by statefulset\/<name>/);
    expect(parse('{"deployment/x":{"selector":{}}}')).toThrow(/invalid key "deployment\/x"/);
    expect(parse('{"statefulset/x":{"selector":{"a":1}}}')).toThrow(/statefulset\/x\.selector must be an object of label strings/);
    expect(parse('{"statefulset/x":{"selector":{},"volumeClaimTemplates":"data"}}')).toThrow(/volumeClaimTemplates must be a list of names/);
    try {
      parse('{')();
    } catch (error) {
      expect((error as { exitCode: number }).exitCode).toBe(ExitCode.usage);
    }
  });
  it('reads a valid value', () => {
    expect(parseWorkloadSpecs('{"statefulset/kc":{"selector":{"a":"b"},"serviceName":"kc-d"}}', Env.workloadSpecs)).toEqual({
      'statefulset/kc': { selector: { a: 'b' }, serviceName: 'kc-d', volumeClaimTemplates: [] },
    });
  });
});
