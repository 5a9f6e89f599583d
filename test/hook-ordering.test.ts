// The hook rules of shared/reference/hooks-and-sync-waves.md, asserted on the synthesized output of
// every v2 variant (both GitOps flavors, both HA databases) and on the committed dist/.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  Env,
  MIGRATION_JOB_ENV,
  type MigrationJobCommand,
  NON_RETRIABLE_EXIT_CODES,
  RunnerCommand,
} from '../lib/contract.js';
import { ArgoAnnotation, HelmAnnotation, readHookPlacement } from '../lib/gitops.js';
import { platformConfig, resolvePlatformConfig } from '../lib/platform-config.js';
import {
  type Manifest,
  PLATFORM_VARIANTS,
  projectRoot,
  readManifests,
  synthPlatform,
  variantName,
} from './support/synth.js';

const v2Variants = PLATFORM_VARIANTS.filter((variant) => variant.shape === 'v2');
const helmVariants = v2Variants.filter((variant) => variant.flavor === 'helm');
const argoVariants = v2Variants.filter((variant) => variant.flavor === 'argocd');

const hooksOf = (manifests: Manifest[]) =>
  manifests
    .map((manifest) => ({ manifest, placement: readHookPlacement(manifest.metadata.annotations) }))
    .filter((entry): entry is { manifest: Manifest; placement: NonNullable<typeof entry.placement> } => !!entry.placement);
const isJob = (manifest: Manifest) => manifest.kind === 'Job';
const commandOf = (job: Manifest): string => job.spec.template.spec.containers[0].args[0];

function assertHelmRules(manifests: Manifest[]) {
  const hooks = hooksOf(manifests);
  expect(hooks.length).toBeGreaterThan(0);
  for (const { manifest, placement } of hooks) {
    const name = `${manifest.kind}/${manifest.metadata.name}`;
    expect(placement.flavor, name).toBe('helm');
    expect(manifest.metadata.annotations[HelmAnnotation.weight], `${name} weight is a quoted integer`).toMatch(/^-?\d+$/);
    expect(placement.deletePolicies, name).toContain('before-hook-creation');
    // Failed hooks stay for their logs.
    expect(placement.deletePolicies, name).not.toContain('hook-failed');
    expect(manifest.metadata.annotations[ArgoAnnotation.hook], name).toBeUndefined();
  }
  const jobs = hooks.filter((hook) => isJob(hook.manifest));
  const support = hooks.filter((hook) => !isJob(hook.manifest));
  expect(jobs.map((job) => commandOf(job.manifest)).sort()).toEqual(
    [RunnerCommand.backupPhase, RunnerCommand.prepare, RunnerCommand.restorePhase].sort(),
  );
  expect(support.map((hook) => hook.manifest.kind).sort()).toEqual(
    ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ServiceAccount'].sort(),
  );
  for (const job of jobs) {
    for (const event of job.placement.hooks) {
      for (const rbac of support) {
        // The RBAC must be a hook of every event a Job runs in, at a strictly lower weight
        // (equal weights sort by kind and name: helm/helm#12414).
        expect(rbac.placement.hooks, `${rbac.manifest.kind} runs in ${event}`).toContain(event);
        expect(rbac.placement.order, `${rbac.manifest.kind} weight < ${commandOf(job.manifest)}`).toBeLessThan(job.placement.order);
      }
    }
  }
  const eventsOf = (command: string) => jobs.find((job) => commandOf(job.manifest) === command)!.placement.hooks;
  expect(eventsOf(RunnerCommand.prepare)).toEqual(['pre-install', 'pre-upgrade']);
  expect(eventsOf(RunnerCommand.backupPhase)).toEqual(['pre-install', 'pre-upgrade']);
  expect(eventsOf(RunnerCommand.restorePhase)).toEqual(['post-install', 'post-upgrade']);
  const weightOf = (command: string) => jobs.find((job) => commandOf(job.manifest) === command)!.placement.order;
  expect(weightOf(RunnerCommand.prepare)).toBeLessThan(weightOf(RunnerCommand.backupPhase));
  expect(manifests.some((manifest) => manifest.metadata.annotations?.[ArgoAnnotation.syncWave] !== undefined)).toBe(false);
}

function assertArgoRules(manifests: Manifest[], waves = resolvePlatformConfig().syncWaves) {
  const hooks = hooksOf(manifests);
  for (const { manifest, placement } of hooks) {
    const name = `${manifest.kind}/${manifest.metadata.name}`;
    expect(placement.flavor, name).toBe('argocd');
    expect(placement.deletePolicies, name).toContain('BeforeHookCreation');
    expect(placement.deletePolicies, name).not.toContain('HookFailed');
    expect(placement.hooks, `${name}: PostSync waits for healthy workloads and would deadlock`).not.toContain('PostSync');
    expect(manifest.metadata.annotations[HelmAnnotation.hook], name).toBeUndefined();
  }
  const jobs = hooks.filter((hook) => isJob(hook.manifest));
  const support = hooks.filter((hook) => !isJob(hook.manifest));
  const job = (command: string) => jobs.find((entry) => commandOf(entry.manifest) === command)!;
  expect(job(RunnerCommand.prepare).placement.hooks).toEqual(['PreSync']);
  // The backup stops Keycloak in the Sync phase, after the new database's wave: its start-up is
  // not in the downtime.
  expect(job(RunnerCommand.backupPhase).placement.hooks).toEqual(['Sync']);
  // By default the backup Job restores too (MIGRATION_RESTORE_IN_BACKUP_JOB) and there is no
  // restore Job; with migration.restoreInBackupJob false, a restore Job in a wave of its own.
  const restoreJob = jobs.find((entry) => commandOf(entry.manifest) === RunnerCommand.restorePhase);
  const backupEnv = job(RunnerCommand.backupPhase).manifest.spec.template.spec.containers[0].env as Array<{ name: string; value?: string }>;
  expect(backupEnv.find((variable) => variable.name === Env.restoreInBackupJob)?.value).toBe(restoreJob ? undefined : 'true');
  if (restoreJob) expect(restoreJob.placement.hooks).toEqual(['Sync']);
  expect(job(RunnerCommand.recordFailure).placement.hooks).toEqual(['SyncFail']);
  for (const rbac of support) {
    expect(rbac.placement.hooks).toEqual(['PreSync']);
    // The Sync backup and restore and the SyncFail recorder run later in the same sync with the
    // same ServiceAccount: the RBAC must not be deleted when PreSync succeeds.
    expect(rbac.placement.deletePolicies).toEqual(['BeforeHookCreation']);
    expect(rbac.placement.order).toBeLessThan(job(RunnerCommand.prepare).placement.order);
  }

  // Ordinary resources: every one has a wave; the database's waves < backup < restore (with the
  // NetworkPolicies; without a restore Job they come with Keycloak) < Keycloak's waves, and the
  // backup below 0, where Argo CD prunes the objects without a wave (the Bitnami release taken over).
  const ordinary = manifests.filter((manifest) => readHookPlacement(manifest.metadata.annotations) === undefined);
  const waveOf = (manifest: Manifest) => Number(manifest.metadata.annotations?.[ArgoAnnotation.syncWave]);
  for (const manifest of ordinary) expect(Number.isInteger(waveOf(manifest)), manifest.metadata.name).toBe(true);
  const isKeycloak = (manifest: Manifest) => manifest.metadata.labels?.['app.kubernetes.io/name'] === 'keycloak';
  const isPolicy = (manifest: Manifest) => manifest.kind === 'NetworkPolicy';
  const databaseWaves = ordinary.filter((manifest) => !isKeycloak(manifest) && !isPolicy(manifest)).map(waveOf);
  const keycloakWaves = ordinary.filter((manifest) => isKeycloak(manifest) && !isPolicy(manifest)).map(waveOf);
  expect(databaseWaves.length).toBeGreaterThan(0);
  expect(keycloakWaves.length).toBeGreaterThan(0);
  const backupWave = job(RunnerCommand.backupPhase).placement.order;
  expect(Math.max(...databaseWaves)).toBeLessThan(backupWave);
  expect(backupWave).toBeLessThan(0);
  expect(backupWave).toBe(waves.backup);
  if (restoreJob) {
    const restoreWave = restoreJob.placement.order;
    expect(backupWave).toBeLessThan(restoreWave);
    expect(restoreWave).toBeLessThan(Math.min(...keycloakWaves));
    for (const policy of ordinary.filter(isPolicy)) expect(waveOf(policy), policy.metadata.name).toBe(restoreWave);
    expect(restoreWave).toBe(waves.restore);
  } else {
    // Nothing between the restore (in the backup Job) and Keycloak's wave.
    expect(backupWave).toBeLessThan(Math.min(...keycloakWaves));
    for (const policy of ordinary.filter(isPolicy)) expect(waveOf(policy), policy.metadata.name).toBe(waves.keycloak);
    expect(ordinary.map(waveOf).filter((wave) => wave > backupWave && wave < waves.keycloak)).toEqual([]);
  }
}

function assertJobContract(manifests: Manifest[]) {
  const jobs = manifests.filter(isJob);
  expect(jobs.length).toBeGreaterThan(0);
  const knownEnv = new Set<string>(Object.values(Env));
  for (const job of jobs) {
    const command = commandOf(job) as MigrationJobCommand;
    const name = `Job/${job.metadata.name} (${command})`;
    const contract = MIGRATION_JOB_ENV[command];
    expect(contract, `${name} runs a migration hook command`).toBeDefined();
    const pod = job.spec.template.spec;
    expect(pod.containers).toHaveLength(1);
    expect(pod.containers[0].args).toEqual([command]);
    const names: string[] = pod.containers[0].env.map((variable: any) => variable.name);
    expect(new Set(names).size, `${name} sets no variable twice`).toBe(names.length);
    for (const variable of names) {
      expect(knownEnv.has(variable), `${name} sets ${variable}, which is not in Env`).toBe(true);
      expect(
        [...contract.always, ...contract.whenConfigured].includes(variable as never),
        `${name} sets ${variable}, which MIGRATION_JOB_ENV does not list for ${command}`,
      ).toBe(true);
    }
    for (const required of contract.always) expect(names, `${name} must set ${required}`).toContain(required);
    const policy = job.spec.podFailurePolicy.rules.find((rule: any) => rule.action === 'FailJob');
    expect(policy.onExitCodes.values).toEqual([...NON_RETRIABLE_EXIT_CODES].sort((a, b) => a - b));
    expect(policy.onExitCodes.operator).toBe('In');
    expect(pod.restartPolicy).toBe('Never');
    expect(job.spec.backoffLimit).toBeLessThanOrEqual(3);
    expect(job.spec.activeDeadlineSeconds).toBeGreaterThan(0);
    expect(job.spec.ttlSecondsAfterFinished % 60, 'TTL is whole minutes').toBe(0);
    expect(job.spec.ttlSecondsAfterFinished).toBeGreaterThanOrEqual(60);
  }
}

function assertNothingCreatedAtRunTimeIsSynthesized(manifests: Manifest[]) {
  // The backup PVC, the state ConfigMap and the Lease are the runner's: as hooks they would be
  // deleted and recreated (argo-cd#3837); as ordinary resources Helm/Argo CD would own them.
  for (const kind of ['PersistentVolumeClaim', 'ConfigMap', 'Lease']) {
    expect(manifests.filter((manifest) => manifest.kind === kind).map((m) => m.metadata.name)).toEqual([]);
  }
}

/**
 * Who brings the quiesced workloads back. Under Argo CD the restore hook runs before Keycloak's
 * wave applies its new (gated) template, so it must leave the replicas to Argo CD (scaling the old
 * template up would write to the legacy database), which is safe only because Keycloak's manifest
 * carries `replicas`. Under Helm the new template is already applied, and the hook scales back.
 */
function assertReplicaRestoration(manifests: Manifest[], flavor: 'helm' | 'argocd') {
  // The Job that restores: the restore Job, or under Argo CD by default the backup Job.
  const restore =
    manifests.find((manifest) => isJob(manifest) && commandOf(manifest) === RunnerCommand.restorePhase) ??
    manifests.find((manifest) => isJob(manifest) && commandOf(manifest) === RunnerCommand.backupPhase)!;
  const env = restore.spec.template.spec.containers[0].env as Array<{ name: string; value?: string }>;
  expect(env.find((variable) => variable.name === Env.restoreReplicas)?.value).toBe(flavor === 'helm' ? 'true' : 'false');
  const keycloak = manifests.find((manifest) => manifest.kind === 'StatefulSet' && manifest.metadata.labels?.['app.kubernetes.io/name'] === 'keycloak')!;
  expect(keycloak, 'Keycloak StatefulSet').toBeDefined();
  expect(keycloak.spec.replicas, "Keycloak's manifest carries the replicas the GitOps tool re-applies").toBeGreaterThan(0);
}

describe.each(helmVariants.map((variant) => [variantName(variant), variant] as const))('Helm hooks: %s', (_, variant) => {
  const manifests = synthPlatform(variant);
  it('orders RBAC before the Jobs of every event, with before-hook-creation and failed Jobs kept', () => assertHelmRules(manifests));
  it('gives every Job the command, env contract and podFailurePolicy of the runner', () => assertJobContract(manifests));
  it('synthesizes neither the backup PVC nor the state ConfigMap nor the Lease', () =>
    assertNothingCreatedAtRunTimeIsSynthesized(manifests));
  it('lets the post-upgrade restore scale Keycloak back (its new template is already applied)', () =>
    assertReplicaRestoration(manifests, 'helm'));
});

describe.each(argoVariants.map((variant) => [variantName(variant), variant] as const))('Argo CD hooks: %s', (_, variant) => {
  const manifests = synthPlatform(variant);
  it('runs RBAC and prepare as PreSync, the backup and the restore as Sync hooks between database and Keycloak, and a SyncFail recorder', () =>
    assertArgoRules(manifests));
  it('puts every ordinary resource below wave 0, where what v2 drops without a wave is pruned after Keycloak is healthy', () => {
    const ordinary = manifests.filter((manifest) => readHookPlacement(manifest.metadata.annotations) === undefined);
    for (const manifest of ordinary) {
      expect(Number(manifest.metadata.annotations[ArgoAnnotation.syncWave]), `${manifest.kind}/${manifest.metadata.name}`).toBeLessThan(0);
    }
  });
  it('gives every Job the command, env contract and podFailurePolicy of the runner', () => assertJobContract(manifests));
  it('synthesizes neither the backup PVC nor the state ConfigMap nor the Lease', () =>
    assertNothingCreatedAtRunTimeIsSynthesized(manifests));
  it("leaves Keycloak's replicas to its own wave (scaling up from the restore hook would start the old template)", () =>
    assertReplicaRestoration(manifests, 'argocd'));
  it('moves the backup and the restore with the configured waves', () => {
    const waves = { database: -5, backup: -1, restore: 1, keycloak: 3 };
    assertArgoRules(synthPlatform(variant, { syncWaves: waves }), waves);
    const withRestoreJob = synthPlatform(variant, { syncWaves: waves, migration: { restoreInBackupJob: false } });
    expect(withRestoreJob.some((manifest) => isJob(manifest) && commandOf(manifest) === RunnerCommand.restorePhase)).toBe(true);
    assertArgoRules(withRestoreJob, waves);
  });
});

describe('committed dist/', () => {
  const chartName = resolvePlatformConfig(platformConfig).helmChart.name;
  const readAll = (dir: string, files: string[]) => files.flatMap((file) => readManifests(join(dir, file)));
  it('follows the Helm rules', () => {
    const dir = join(projectRoot, 'dist', 'helm', chartName, 'templates');
    const manifests = readAll(dir, ['keycloak.k8s.yaml']);
    assertHelmRules(manifests);
    assertJobContract(manifests);
    assertNothingCreatedAtRunTimeIsSynthesized(manifests);
    assertReplicaRestoration(manifests, 'helm');
  });
  it('follows the Argo CD rules', () => {
    const manifests = readAll(join(projectRoot, 'dist', 'argocd'), ['keycloak.k8s.yaml']);
    assertArgoRules(manifests);
    assertJobContract(manifests);
    assertNothingCreatedAtRunTimeIsSynthesized(manifests);
    assertReplicaRestoration(manifests, 'argocd');
  });
});

describe('the v1 shape', () => {
  it('has no hooks at all (nothing to migrate from)', () => {
    for (const variant of PLATFORM_VARIANTS.filter((v) => v.shape === 'v1')) {
      expect(hooksOf(synthPlatform(variant))).toEqual([]);
    }
  });
});
