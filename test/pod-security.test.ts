// Every pod of every variant (Jobs, StatefulSets, Deployments, their init containers) passes the
// Pod Security "restricted" profile and gives every container requests and a memory limit.
import { describe, expect, it } from 'vitest';
import { restrictedProfileViolations } from '../lib/pod-security.js';
import { PLATFORM_VARIANTS, type Manifest, podSpecsOf, synthPlatform, variantName } from './support/synth.js';

describe.each(PLATFORM_VARIANTS.map((variant) => [variantName(variant), variant] as const))('pod security: %s', (_, variant) => {
  const manifests = synthPlatform(variant);
  const pods = podSpecsOf(manifests);

  it('finds the workloads it must check', () => {
    const kinds = new Set(pods.map((pod) => pod.owner.split('/')[0]));
    expect(kinds.has('StatefulSet')).toBe(true);
    if (variant.shape === 'v2') expect(kinds.has('Job')).toBe(true);
    if (variant.shape === 'v2' && variant.database === 'repmgr') expect(kinds.has('Deployment')).toBe(true);
  });

  it('runs every pod under the restricted profile with resources on every container', () => {
    const violations = pods.flatMap(({ owner, podSpec }) =>
      restrictedProfileViolations(podSpec).map((violation) => `${owner}: ${violation}`),
    );
    expect(violations).toEqual([]);
  });

  it('mounts only what "restricted" allows, and API tokens only where the runner needs them', () => {
    for (const { owner, podSpec } of pods) {
      const token = podSpec.automountServiceAccountToken;
      if (owner.startsWith('Job/')) expect(token, owner).toBe(true);
      else expect(token, `${owner} needs no Kubernetes API access`).toBe(false);
    }
  });

  it('checks init containers too (the Keycloak database gate in v2)', () => {
    const keycloak = pods.find((pod) => pod.owner === 'StatefulSet/keycloak')!;
    const init = keycloak.podSpec.initContainers ?? [];
    expect(init.map((c: Manifest) => c.name)).toEqual(variant.shape === 'v2' ? ['database-gate'] : []);
  });
});

describe('the pod walk', () => {
  it('fails when a container breaks the profile (the check can fail)', () => {
    const manifests = synthPlatform(PLATFORM_VARIANTS.find((v) => v.shape === 'v2' && v.flavor === 'helm')!);
    const job = manifests.find((m) => m.kind === 'Job')!;
    delete job.spec.template.spec.containers[0].securityContext.capabilities;
    delete job.spec.template.spec.containers[0].resources;
    const violations = podSpecsOf([job]).flatMap(({ podSpec }) => restrictedProfileViolations(podSpec));
    expect(violations).toEqual([
      'container runner does not drop ALL capabilities',
      'container runner has no cpu and memory requests',
      'container runner has no memory limit',
    ]);
  });

  it('fails when a workload has no pod spec', () => {
    expect(() => podSpecsOf([{ kind: 'Deployment', metadata: { name: 'x' }, spec: {} }])).toThrow(/Deployment\/x has no pod spec/);
  });
});
