import { Chart, Testing } from 'cdk8s';
import { describe, expect, it } from 'vitest';
import { BACKUP_MOUNT_PATH, Env, NON_RETRIABLE_EXIT_CODES, RunnerCommand } from '../lib/contract.js';
import { DatabaseMigration, type DatabaseMigrationProps } from '../lib/database-migration.js';
import type { GitOpsFlavor } from '../lib/gitops.js';
import { Keycloak } from '../lib/keycloak.js';
import { PostgresHa } from '../lib/postgres-ha.js';

function props(overrides: Partial<DatabaseMigrationProps> = {}): DatabaseMigrationProps {
  return {
    name: 'app-migration',
    flavor: 'helm',
    runnerImage: 'ghcr.io/example/runner:1.2.3',
    source: {
      host: 'app-postgresql',
      port: 5432,
      database: 'app',
      credentials: { username: 'app', secretName: 'app-postgresql', passwordKey: 'password' },
      adminCredentials: { username: 'postgres', secretName: 'app-postgresql', passwordKey: 'postgres-password' },
    },
    target: {
      host: 'app-db-rw',
      port: 5432,
      database: 'app',
      credentials: { username: 'app', secretName: 'app-db-app', passwordKey: 'password' },
    },
    workloads: [
      { kind: 'StatefulSet', name: 'app-web' },
      { kind: 'Deployment', name: 'app-worker' },
    ],
    legacy: { statefulSetName: 'app-postgresql', pvcNames: ['data-app-postgresql-0'] },
    ensureSecrets: [{ name: 'app-db-app', keys: ['password'] }],
    // No database or workload constructs in these charts (flavor 'argocd' requires the props).
    targetConstructs: [],
    workloadConstructs: [],
    ...overrides,
  };
}

function synth(overrides: Partial<DatabaseMigrationProps> = {}, namespace = 'apps') {
  const app = Testing.app();
  const chart = new Chart(app, 'test', { namespace });
  new DatabaseMigration(chart, 'migration', props(overrides));
  return Testing.synth(chart);
}

const jobOf = (objects: any[], command: string) =>
  objects.find((o) => o.kind === 'Job' && o.spec.template.spec.containers[0].args[0] === command);

describe('DatabaseMigration objects', () => {
  it('synthesizes RBAC and Jobs but never the backup PVC, the state ConfigMap or the Lease', () => {
    for (const flavor of ['helm', 'argocd'] as GitOpsFlavor[]) {
      const kinds = synth({ flavor }).map((o) => o.kind).sort();
      expect(kinds).not.toContain('PersistentVolumeClaim');
      expect(kinds).not.toContain('ConfigMap');
      expect(kinds).not.toContain('Lease');
      // Argo CD: prepare, backup (which restores too) and the SyncFail recorder; Helm: prepare, backup, restore.
      expect(kinds.filter((k) => k === 'Job')).toHaveLength(3);
    }
  });

  it('limits every nameable verb to resourceNames', () => {
    const role = synth().find((o) => o.kind === 'Role');
    for (const rule of role.rules) {
      const nameless = rule.verbs.every((verb: string) => verb === 'create' || verb === 'list');
      const events = rule.resources.includes('events');
      if (!nameless && !events) expect(rule.resourceNames, JSON.stringify(rule)).toBeDefined();
    }
    const namesFor = (resource: string, verb: string) =>
      role.rules
        .filter((r: any) => r.resources.includes(resource) && r.verbs.includes(verb))
        .flatMap((r: any) => r.resourceNames ?? ['*']);
    expect(namesFor('configmaps', 'update')).toEqual(['app-migration-state']);
    expect(namesFor('leases', 'update')).toEqual(['app-migration-lock']);
    expect(namesFor('persistentvolumeclaims', 'get')).toEqual(['app-migration-backup', 'data-app-postgresql-0']);
    expect(namesFor('statefulsets/scale', 'patch')).toEqual(['app-web']);
    expect(namesFor('deployments/scale', 'patch')).toEqual(['app-worker']);
    expect(namesFor('secrets', 'get')).toEqual(['app-db-app']);
    expect(namesFor('pods', 'list')).toEqual(['*']);
    // Deleting anything legacy is only granted when configured.
    expect(namesFor('persistentvolumeclaims', 'delete')).toEqual([]);
    expect(namesFor('statefulsets', 'delete')).toEqual([]);
  });

  it('grants delete on exactly the legacy StatefulSet and PVCs when deleteLegacy is on', () => {
    const role = synth({ deleteLegacy: 'after-restore' }).find((o) => o.kind === 'Role');
    const deletes = role.rules.filter((r: any) => r.verbs.includes('delete') && !r.resources.includes('leases'));
    expect(deletes.map((r: any) => [r.resources[0], r.resourceNames])).toEqual([
      ['persistentvolumeclaims', ['data-app-postgresql-0']],
      ['statefulsets', ['app-postgresql']],
    ]);
  });

  it('taking over another chart: delete on exactly the replaceable StatefulSet, get/patch on exactly the kept Secrets, both in the Jobs\' env', () => {
    const immutableSpec = { selector: { 'app.kubernetes.io/name': 'web' }, serviceName: 'app-web-discovery', volumeClaimTemplates: [] };
    const objects = synth({
      workloads: [{ kind: 'StatefulSet', name: 'app-web', immutableSpec }, { kind: 'Deployment', name: 'app-worker' }],
      keepSecrets: ['app-postgresql', 'app-admin'],
    });
    const role = objects.find((o) => o.kind === 'Role');
    const deletes = role.rules.filter((r: any) => r.verbs.includes('delete') && !r.resources.includes('leases'));
    expect(deletes).toEqual([{ apiGroups: ['apps'], resources: ['statefulsets'], resourceNames: ['app-web'], verbs: ['delete'] }]);
    const secretRules = role.rules.filter((r: any) => r.resources.includes('secrets') && r.verbs.includes('patch'));
    expect(secretRules).toEqual([{ apiGroups: [''], resources: ['secrets'], resourceNames: ['app-postgresql', 'app-admin'], verbs: ['get', 'patch'] }]);
    expect(role.rules.some((r: any) => r.resources.includes('secrets') && r.verbs.includes('list'))).toBe(false);
    const env = jobOf(objects, RunnerCommand.prepare).spec.template.spec.containers[0].env;
    expect(env.find((e: any) => e.name === Env.workloadSpecs).value).toBe(JSON.stringify({ 'statefulset/app-web': immutableSpec }));
    expect(env.find((e: any) => e.name === Env.keepSecrets).value).toBe('app-postgresql,app-admin');
    // Without them: neither the permissions nor the variables.
    const plain = synth();
    expect(jobOf(plain, RunnerCommand.prepare).spec.template.spec.containers[0].env.map((e: any) => e.name)).not.toContain(Env.workloadSpecs);
    expect(plain.find((o) => o.kind === 'Role').rules.some((r: any) => r.resources.includes('secrets') && r.verbs.includes('patch'))).toBe(false);
  });

  it('a workload found by its labels: list/get/patch of that kind and its scale without names, get/create of Secrets for the copies, the selector in the Jobs\' env', () => {
    const discovery = { labels: { 'app.kubernetes.io/instance': 'app', 'app.kubernetes.io/component': 'web' }, secretCopies: [{ key: 'admin-password', to: 'app-web' }] };
    const objects = synth({ workloads: [{ kind: 'StatefulSet', name: 'app-web', discovery }, { kind: 'Deployment', name: 'app-worker' }] });
    const role = objects.find((o) => o.kind === 'Role');
    const unnamed = role.rules.filter((r: any) => r.resourceNames === undefined && r.apiGroups.includes('apps'));
    expect(unnamed).toEqual([
      { apiGroups: ['apps'], resources: ['statefulsets'], verbs: ['list', 'get', 'patch'] },
      { apiGroups: ['apps'], resources: ['statefulsets/scale'], verbs: ['get', 'update', 'patch'] },
    ]);
    // Deployments stay limited to their names: only the StatefulSet is found by labels.
    expect(role.rules.filter((r: any) => r.resources.includes('deployments/scale'))).toEqual([
      { apiGroups: ['apps'], resources: ['deployments/scale'], resourceNames: ['app-worker'], verbs: ['get', 'update', 'patch'] },
    ]);
    expect(role.rules).toContainEqual({ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create'] });
    // Never a list of Secrets, nor an update or patch of any Secret not named.
    expect(role.rules.some((r: any) => r.resources.includes('secrets') && (r.verbs.includes('list') || (r.verbs.includes('patch') && !r.resourceNames)))).toBe(false);
    const env = jobOf(objects, RunnerCommand.prepare).spec.template.spec.containers[0].env;
    expect(JSON.parse(env.find((e: any) => e.name === Env.workloadDiscovery).value)).toEqual({
      'statefulset/app-web': { selector: 'app.kubernetes.io/instance=app,app.kubernetes.io/component=web', secretCopies: [{ key: 'admin-password', to: 'app-web' }] },
    });
    // Without it: by name only.
    const plain = synth();
    expect(plain.find((o) => o.kind === 'Role').rules.some((r: any) => r.resources.includes('statefulsets/scale') && !r.resourceNames)).toBe(false);
    expect(jobOf(plain, RunnerCommand.prepare).spec.template.spec.containers[0].env.map((e: any) => e.name)).not.toContain(Env.workloadDiscovery);
  });

  it('fails when a discovery names no label, an invalid label value, or an invalid Secret copy', () => {
    const workload = (discovery: unknown) => ({ workloads: [{ kind: 'StatefulSet' as const, name: 'app-web', discovery: discovery as never }] });
    expect(() => synth(workload({ labels: {} }))).toThrow(/workloads\[0\]\.discovery\.labels must name at least one label .*: omit discovery to find the workload by name only/);
    expect(() => synth(workload({ labels: { app: 'not valid!' } }))).toThrow(/workloads\[0\]\.discovery\.labels\['app'\]/);
    expect(() => synth(workload({ labels: { app: 'web' }, secretCopies: [{ key: 'admin password', to: 'x' }] }))).toThrow(/discovery\.secretCopies\[0\]\.key/);
    expect(() => synth(workload({ labels: { app: 'web' }, secretCopies: [{ key: 'k', to: 'Bad_Name' }] }))).toThrow(/discovery\.secretCopies\[0\]\.to/);
  });

  it('binds a ClusterRole limited to get/patch of persistentvolumes, without a namespace, only when protecting volumes', () => {
    const objects = synth();
    const clusterRole = objects.find((o) => o.kind === 'ClusterRole');
    expect(clusterRole.metadata.name).toBe('apps-app-migration-protect-volumes');
    expect(clusterRole.metadata.namespace).toBeUndefined();
    expect(clusterRole.rules).toEqual([{ apiGroups: [''], resources: ['persistentvolumes'], verbs: ['get', 'patch'] }]);
    const binding = objects.find((o) => o.kind === 'ClusterRoleBinding');
    expect(binding.metadata.namespace).toBeUndefined();
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'app-migration', namespace: 'apps' }]);
    expect(jobOf(objects, 'prepare').spec.template.spec.containers[0].env).toContainEqual({ name: Env.protectVolumes, value: 'true' });

    const without = synth({ protectVolumes: false });
    expect(without.some((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding')).toBe(false);
    expect(jobOf(without, 'prepare').spec.template.spec.containers[0].env).toContainEqual({ name: Env.protectVolumes, value: 'false' });
  });

  it('runs the runner commands with the backup PVC mounted only where the dump lives', () => {
    const objects = synth({ flavor: 'argocd', restoreInBackupJob: false });
    const mounts = (command: string) => {
      const pod = jobOf(objects, command).spec.template.spec;
      return {
        mounts: pod.containers[0].volumeMounts.map((m: any) => m.mountPath),
        claims: pod.volumes.filter((v: any) => v.persistentVolumeClaim).map((v: any) => v.persistentVolumeClaim.claimName),
      };
    };
    expect(mounts(RunnerCommand.prepare)).toEqual({ mounts: ['/tmp'], claims: [] });
    expect(mounts(RunnerCommand.backupPhase)).toEqual({ mounts: ['/tmp', BACKUP_MOUNT_PATH], claims: ['app-migration-backup'] });
    expect(mounts(RunnerCommand.restorePhase)).toEqual({ mounts: ['/tmp', BACKUP_MOUNT_PATH], claims: ['app-migration-backup'] });
    expect(mounts(RunnerCommand.recordFailure)).toEqual({ mounts: ['/tmp'], claims: [] });
  });

  it('passes passwords only through secretKeyRef, and only the restore insists on the target Secret', () => {
    const objects = synth({ flavor: 'argocd' });
    for (const command of Object.values(RunnerCommand)) {
      const job = jobOf(objects, command);
      if (!job) continue;
      const env: any[] = job.spec.template.spec.containers[0].env;
      for (const variable of env) {
        if (/PASSWORD/.test(variable.name)) expect(variable.value, `${command} ${variable.name}`).toBeUndefined();
      }
      // The Job that restores (under Argo CD the backup Job) insists: its pod waits for the Secret.
      const targetPassword = env.find((v) => v.name === Env.targetPassword).valueFrom.secretKeyRef;
      expect(targetPassword).toEqual({ name: 'app-db-app', key: 'password', optional: command !== RunnerCommand.backupPhase });
      const sourcePassword = env.find((v) => v.name === Env.sourcePassword).valueFrom.secretKeyRef;
      // The superuser dumps: it can read every object.
      expect(sourcePassword).toEqual({ name: 'app-postgresql', key: 'postgres-password', optional: true });
      expect(env.find((v) => v.name === Env.sourceUser).value).toBe('postgres');
      expect(env.find((v) => v.name === Env.targetOwner).value).toBe('app');
    }
  });

  it('writes the workloads, legacy names, ensured Secrets and backup sizing the runner reads', () => {
    const env = Object.fromEntries(
      jobOf(synth({ backup: { size: '20Gi', minSize: '2Gi', storageClassName: 'fast' } }), RunnerCommand.prepare)
        .spec.template.spec.containers[0].env.map((v: any) => [v.name, v.value ?? v.valueFrom]),
    );
    expect(env[Env.workloads]).toBe('statefulset/app-web,deployment/app-worker');
    expect(env[Env.legacyStatefulSet]).toBe('app-postgresql');
    expect(env[Env.legacyPvcs]).toBe('data-app-postgresql-0');
    expect(env[Env.deleteLegacy]).toBe('never');
    expect(JSON.parse(env[Env.ensureSecrets])).toEqual([{ name: 'app-db-app', keys: ['password'] }]);
    expect(env[Env.backupPvcSize]).toBe('20Gi');
    expect(env[Env.backupPvcMinSize]).toBe('2Gi');
    expect(env[Env.backupStorageClass]).toBe('fast');
    expect(env[Env.backupDir]).toBeUndefined();
    expect(env[Env.namespace]).toEqual({ fieldRef: { fieldPath: 'metadata.namespace' } });
    expect(env[Env.podName]).toEqual({ fieldRef: { fieldPath: 'metadata.name' } });
  });

  it('scales the workloads back from the restore hook under Helm only, unless told otherwise', () => {
    const restoreReplicasOf = (overrides: Partial<DatabaseMigrationProps>) =>
      synth(overrides)
        .filter((o: any) => o.kind === 'Job')
        .map((job: any) => job.spec.template.spec.containers[0].env.find((v: any) => v.name === Env.restoreReplicas)?.value);
    expect(restoreReplicasOf({ flavor: 'helm' })).toEqual(['true', 'true', 'true']);
    // Argo CD: the restore Sync hook runs before the workloads' wave applies their new template.
    expect(restoreReplicasOf({ flavor: 'argocd' })).toEqual(['false', 'false', 'false']);
    expect(restoreReplicasOf({ flavor: 'argocd', restoreInBackupJob: false })).toEqual(['false', 'false', 'false', 'false']);
    expect(restoreReplicasOf({ flavor: 'argocd', restoreReplicas: true })).toEqual(['true', 'true', 'true']);
    expect(restoreReplicasOf({ flavor: 'helm', restoreReplicas: false })).toEqual(['false', 'false', 'false']);
  });

  it('builds the plain indexes after the ready marker unless told otherwise: the variable only when false', () => {
    const indexesAfterReadyOf = (overrides: Partial<DatabaseMigrationProps>) =>
      synth(overrides)
        .filter((o: any) => o.kind === 'Job')
        .map((job: any) => job.spec.template.spec.containers[0].env.find((v: any) => v.name === Env.indexesAfterReady)?.value);
    expect(indexesAfterReadyOf({ flavor: 'helm' })).toEqual([undefined, undefined, undefined]);
    expect(indexesAfterReadyOf({ flavor: 'helm', indexesAfterReady: true })).toEqual([undefined, undefined, undefined]);
    expect(indexesAfterReadyOf({ flavor: 'helm', indexesAfterReady: false })).toEqual(['false', 'false', 'false']);
    expect(indexesAfterReadyOf({ flavor: 'argocd', indexesAfterReady: false })).toEqual(['false', 'false', 'false']);
    expect(() => synth({ flavor: 'helm', indexesAfterReady: 'no' as unknown as boolean })).toThrow(/DatabaseMigration indexesAfterReady must be true or false, got "no"/);
    // Where the GitOps tool starts Keycloak after the Job, the setting could do nothing: said so.
    expect(() => synth({ flavor: 'argocd', indexesAfterReady: true })).toThrow(
      /DatabaseMigration indexesAfterReady is true with restoreReplicas false: .* leave indexesAfterReady unset, or set restoreReplicas: true/,
    );
    expect(indexesAfterReadyOf({ flavor: 'argocd', restoreReplicas: true, indexesAfterReady: true })).toEqual([undefined, undefined, undefined]);
  });

  it('lets the backup Job restore under Argo CD only: on by default there, refused with Helm', () => {
    const restoreInBackupJobOf = (overrides: Partial<DatabaseMigrationProps>) =>
      Object.fromEntries(
        synth(overrides)
          .filter((o: any) => o.kind === 'Job')
          .map((job: any) => [job.spec.template.spec.containers[0].args[0], job.spec.template.spec.containers[0].env.find((v: any) => v.name === Env.restoreInBackupJob)?.value]),
      );
    // Argo CD applies the new database (healthy) at the target's wave, before the backup's: the
    // backup Job restores too and there is no restore Job. Every Job gets the setting, as every
    // other one (plan and status read the Jobs' environment); only backup-phase acts on it.
    expect(restoreInBackupJobOf({ flavor: 'argocd' })).toEqual({
      [RunnerCommand.prepare]: 'true',
      [RunnerCommand.backupPhase]: 'true',
      [RunnerCommand.recordFailure]: 'true',
    });
    expect(restoreInBackupJobOf({ flavor: 'argocd', restoreInBackupJob: false })).toEqual({
      [RunnerCommand.prepare]: undefined,
      [RunnerCommand.backupPhase]: undefined,
      [RunnerCommand.restorePhase]: undefined,
      [RunnerCommand.recordFailure]: undefined,
    });
    expect(Object.values(restoreInBackupJobOf({ flavor: 'helm' }))).toEqual([undefined, undefined, undefined]);
    expect(Object.values(restoreInBackupJobOf({ flavor: 'helm', restoreInBackupJob: false }))).toEqual([undefined, undefined, undefined]);
    expect(() => synth({ flavor: 'helm', restoreInBackupJob: true })).toThrow(
      /DatabaseMigration restoreInBackupJob is true with flavor helm: Helm applies the new database only after the pre-upgrade hooks.*leave restoreInBackupJob unset \(or false\) with flavor helm/,
    );
    expect(() => synth({ flavor: 'argocd', restoreInBackupJob: 'yes' as unknown as boolean })).toThrow(/DatabaseMigration restoreInBackupJob must be true or false, got "yes"/);
  });

  it('gives the Job that restores the target Secret as required, and the backup Job that also restores a deadline for each', () => {
    const jobsOf = (overrides: Partial<DatabaseMigrationProps>) =>
      Object.fromEntries(
        synth({ activeDeadlineSeconds: 1000, ...overrides })
          .filter((o: any) => o.kind === 'Job')
          .map((job: any) => {
            const target = job.spec.template.spec.containers[0].env.find((v: any) => v.name === Env.targetPassword).valueFrom.secretKeyRef;
            return [job.spec.template.spec.containers[0].args[0], { targetSecretOptional: target.optional, deadline: job.spec.activeDeadlineSeconds }];
          }),
      );
    // Helm's pre-upgrade backup runs before the new database (and its Secret) exists.
    for (const layout of [{ flavor: 'helm' as const }, { flavor: 'argocd' as const, restoreInBackupJob: false }]) {
      const jobs = jobsOf(layout);
      expect(jobs[RunnerCommand.backupPhase], JSON.stringify(layout)).toEqual({ targetSecretOptional: true, deadline: 1000 });
      expect(jobs[RunnerCommand.restorePhase], JSON.stringify(layout)).toEqual({ targetSecretOptional: false, deadline: 1000 });
    }
    const oneJob = jobsOf({ flavor: 'argocd' });
    expect(oneJob[RunnerCommand.backupPhase]).toEqual({ targetSecretOptional: false, deadline: 2000 });
    expect(oneJob[RunnerCommand.prepare]).toEqual({ targetSecretOptional: true, deadline: 1000 });
  });

  it('needs the restore wave only when there is a restore Job', () => {
    const migrationOf = (overrides: Partial<DatabaseMigrationProps>) => {
      const chart = new Chart(Testing.app(), 'test', { namespace: 'apps' });
      return new DatabaseMigration(chart, 'migration', props({ flavor: 'argocd', targetConstructs: [], workloadConstructs: [], ...overrides }));
    };
    expect(migrationOf({}).restoreSyncWave).toBeUndefined();
    expect(migrationOf({ restoreInBackupJob: false }).restoreSyncWave).toBe(-20);
    // Backup and workloads a wave apart: fine when the backup Job restores, no room for a restore Job otherwise.
    const adjacent = { syncWaves: { backup: -11, workloads: -10 } };
    expect(migrationOf(adjacent).backupSyncWave).toBe(-11);
    expect(() => migrationOf({ ...adjacent, restoreInBackupJob: false })).toThrow(/DatabaseMigration syncWaves.restore must be strictly between the backup's wave and the workloads' wave \(backup -11 < restore < workloads -10\), got -20/);
    expect(() => migrationOf({ syncWaves: { backup: -10, workloads: -10 } })).toThrow(/DatabaseMigration syncWaves.workloads must be above the backup's wave \(backup -10 < workloads\), got -10: the backup Job restores/);
  });

  it('passes acceptLegacyChangesOf to every Job only when set, and rejects what is not a migration id', () => {
    const acceptedOf = (overrides: Partial<DatabaseMigrationProps>) =>
      synth(overrides)
        .filter((o: any) => o.kind === 'Job')
        .map((job: any) => job.spec.template.spec.containers[0].env.find((v: any) => v.name === Env.acceptLegacyChangesOf)?.value);
    expect(acceptedOf({ flavor: 'helm' })).toEqual([undefined, undefined, undefined]);
    expect(acceptedOf({ flavor: 'helm', acceptLegacyChangesOf: 'm-20261125-031500-a1b2c3' })).toEqual(Array(3).fill('m-20261125-031500-a1b2c3'));
    expect(() => synth({ acceptLegacyChangesOf: 'm-1' })).toThrow(/DatabaseMigration acceptLegacyChangesOf must be a migration id like m-20261125-031500-a1b2c3, got "m-1"/);
  });

  it("mounts each side's CA into every Job and names it; an explicit sslMode overrides the connection's", () => {
    const base = props();
    const objects = synth({
      source: { ...base.source, tls: { sslMode: 'verify-full', caSecret: { secretName: 'legacy-ca' } } },
      target: { ...base.target, tls: { sslMode: 'require' } },
      sslMode: { source: 'verify-ca' },
    });
    const jobs = objects.filter((o: any) => o.kind === 'Job');
    expect(jobs.length).toBeGreaterThan(0);
    for (const job of jobs) {
      const pod = job.spec.template.spec;
      const env = Object.fromEntries(pod.containers[0].env.map((v: any) => [v.name, v.value]));
      expect(env).toMatchObject({ [Env.sourceSslMode]: 'verify-ca', [Env.sourceSslRootCert]: '/etc/migration-tls/source/ca.crt', [Env.targetSslMode]: 'require' });
      expect(env).not.toHaveProperty(Env.targetSslRootCert);
      expect(pod.volumes).toContainEqual({ name: 'source-ca', secret: { secretName: 'legacy-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }], defaultMode: 0o444 } });
      expect(pod.containers[0].volumeMounts).toContainEqual({ name: 'source-ca', mountPath: '/etc/migration-tls/source', readOnly: true });
    }
    expect(() => synth({ target: { ...base.target, tls: { sslMode: 'verify-full' } } })).toThrow(
      /^DatabaseMigration target.tls.sslMode verify-full verifies the server's certificate, but DatabaseMigration target.tls.caSecret is not set/,
    );
  });

  it('merges and sorts ensured Secrets so the committed JSON is stable', () => {
    const env = jobOf(
      synth({
        ensureSecrets: [
          { name: 'b', keys: ['y', 'x'] },
          { name: 'a', keys: ['k'] },
          { name: 'b', keys: ['x', 'z'] },
        ],
      }),
      RunnerCommand.prepare,
    ).spec.template.spec.containers[0].env;
    expect(env.find((v: any) => v.name === Env.ensureSecrets).value).toBe(
      '[{"name":"a","keys":["k"]},{"name":"b","keys":["x","y","z"]}]',
    );
  });

  it('bounds each Job: Never restarts, small backoff, deadline, TTL in minutes, FailJob on non-retriable codes', () => {
    const job = jobOf(synth({ activeDeadlineSeconds: 7200, ttlMinutesAfterFinished: 90 }), RunnerCommand.backupPhase);
    expect(job.spec).toMatchObject({ backoffLimit: 1, activeDeadlineSeconds: 7200, ttlSecondsAfterFinished: 5400 });
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
    expect(job.spec.template.spec.automountServiceAccountToken).toBe(true);
    expect(job.spec.template.spec.serviceAccountName).toBe('app-migration');
    expect(job.spec.podFailurePolicy.rules[0]).toMatchObject({
      action: 'FailJob',
      onExitCodes: { containerName: 'runner', operator: 'In', values: [...NON_RETRIABLE_EXIT_CODES] },
    });
    expect(job.spec.podFailurePolicy.rules[1]).toEqual({
      action: 'Ignore',
      onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }],
    });
  });
});

describe('DatabaseMigration sync waves of the database and the workloads (Argo CD)', () => {
  const stack = (flavor: GitOpsFlavor, overrides: Partial<DatabaseMigrationProps> = {}) => {
    const chart = new Chart(Testing.app(), 'test', { namespace: 'apps' });
    const database = new PostgresHa(chart, 'db', { release: 'app' });
    const keycloak = new Keycloak(chart, 'kc', { database: database.connection });
    new DatabaseMigration(chart, 'migration', props({ flavor, targetConstructs: [database], workloadConstructs: [keycloak], ...overrides }));
    return Testing.synth(chart);
  };
  const waveOf = (object: any) => object.metadata.annotations?.['argocd.argoproj.io/sync-wave'];

  it('puts the target wave on every object of the database, the workloads wave on the workloads, and waits for both before and after the hooks', () => {
    const objects = stack('argocd', { syncWaves: { target: -50, workloads: -5 } });
    const ordinary = objects.filter((o) => o.metadata.annotations?.['argocd.argoproj.io/hook'] === undefined);
    const database = ordinary.filter((o) => o.metadata.name.startsWith('app-postgresql-ha'));
    const keycloak = ordinary.filter((o) => o.metadata.labels?.['app.kubernetes.io/name'] === 'keycloak');
    expect(database.map((o) => o.kind)).toContain('StatefulSet');
    expect(keycloak.map((o) => o.kind)).toContain('StatefulSet');
    expect(new Set(database.map(waveOf))).toEqual(new Set(['-50']));
    expect(new Set(keycloak.map(waveOf))).toEqual(new Set(['-5']));
    const hookWaves = objects.filter((o) => o.kind === 'Job').map((o) => Number(waveOf(o)));
    expect(Math.min(...hookWaves.filter((wave) => wave < 0))).toBeGreaterThan(-50);
    expect(Math.max(...hookWaves.filter((wave) => wave < 0))).toBeLessThan(-5);
  });

  it('puts no wave anywhere with flavor helm', () => {
    expect(stack('helm').filter((o) => waveOf(o) !== undefined)).toEqual([]);
  });

  it('fails with flavor argocd when the database or the workloads constructs are not given, naming the prop, the wave and the fix', () => {
    expect(() => stack('argocd', { targetConstructs: undefined })).toThrow(
      /targetConstructs is not set \(flavor 'argocd'\): without syncWaves.target \(-40\).*wave 0, after the backup hook that restores \(wave -30\).*pass the constructs \(e.g. \[db\]\), or \[\] if you set argocd.argoproj.io\/sync-wave on them yourself/,
    );
    expect(() => stack('argocd', { workloadConstructs: undefined })).toThrow(/workloadConstructs is not set \(flavor 'argocd'\): without syncWaves.workloads \(-10\)/);
    expect(() => stack('helm', { targetConstructs: undefined, workloadConstructs: undefined })).not.toThrow();
  });
});

describe('DatabaseMigration bad input', () => {
  it('fails when its namespace differs from its chart\'s, where its ServiceAccount and Jobs are created', () => {
    expect(() => synth({ namespace: 'other' }, 'apps')).toThrow(
      /namespace is "other" but its chart's namespace is "apps": .*leave 'namespace' unset, or set it to "apps"/,
    );
    expect(() => synth({ namespace: 'apps' }, 'apps')).not.toThrow();
  });

  it('fails when the restore wave is not strictly between the backup and the workloads', () => {
    expect(() => synth({ syncWaves: { target: -5, backup: -2, restore: 10, workloads: 10 } })).toThrow(
      /syncWaves.restore must be strictly between.*got 10/,
    );
    expect(() => synth({ syncWaves: { restore: -35 } })).toThrow(/backup -30 < restore < workloads -10/);
  });

  it('fails when the backup wave is not above the target and below 0, where Argo CD prunes the source', () => {
    expect(() => synth({ syncWaves: { target: 0, backup: 2, restore: 5, workloads: 10 } })).toThrow(
      /syncWaves.backup must be above the target database's wave and below 0 \(target 0 < backup < 0\), got 2: .*prunes the objects without a wave/,
    );
    expect(() => synth({ syncWaves: { backup: -45 } })).toThrow(/target -40 < backup < 0\), got -45/);
  });

  it('fails when the fixed backup size is below the configured minimum', () => {
    expect(() => synth({ backup: { size: '500Mi', minSize: '1Gi' } })).toThrow(
      /backup.size "500Mi" is smaller than backup.minSize "1Gi"/,
    );
  });

  it('fails when a size is malformed', () => {
    expect(() => synth({ backup: { size: '10 GB' } })).toThrow(/backup.size must be a Kubernetes quantity.*"10 GB"/);
  });

  it('fails when the name is too long for the Job names derived from it', () => {
    expect(() => synth({ name: 'a'.repeat(49) })).toThrow(/name must be at most 48 characters.*record-failure/);
  });

  it('fails when a workload\'s immutableSpec is on a Deployment or has no selector, or a kept Secret name is invalid', () => {
    const spec = { selector: { app: 'web' }, volumeClaimTemplates: [] };
    expect(() => synth({ workloads: [{ kind: 'Deployment', name: 'app-worker', immutableSpec: spec }] })).toThrow(
      /workloads\[0\]\.immutableSpec applies to StatefulSets only, got kind Deployment: remove it/,
    );
    expect(() => synth({ workloads: [{ kind: 'StatefulSet', name: 'app-web', immutableSpec: { selector: {}, volumeClaimTemplates: [] } }] })).toThrow(
      /workloads\[0\]\.immutableSpec\.selector must hold the StatefulSet's matchLabels, got \{\}/,
    );
    expect(() => synth({ keepSecrets: ['Bad_Name'] })).toThrow(/keepSecrets\[0\]/);
  });

  it('fails when the name is not a DNS label', () => {
    expect(() => synth({ name: 'App_Migration' })).toThrow(/DatabaseMigration name must be a DNS-1123 label/);
  });

  it('fails when the runner image has no tag or digest', () => {
    expect(() => synth({ runnerImage: 'ghcr.io/example/runner' })).toThrow(/runnerImage.*neither a tag nor a digest/);
  });

  it('fails when the target reuses legacy names and deletion before the upgrade is not allowed', () => {
    const colliding = { targetObjectNames: [{ kind: 'StatefulSet', name: 'app-postgresql' }] };
    expect(() => synth(colliding)).toThrow(/StatefulSet\/app-postgresql.*deleteLegacy is 'never'.*after-backup/);
    expect(() => synth({ ...colliding, deleteLegacy: 'after-restore' })).toThrow(/deleteLegacy is 'after-restore'/);
    expect(() => synth({ ...colliding, deleteLegacy: 'after-backup' })).not.toThrow();
  });

  it('fails when the Job deadline does not exceed the waits inside it', () => {
    expect(() => synth({ activeDeadlineSeconds: 600, targetWaitSeconds: 600 })).toThrow(
      /activeDeadlineSeconds \(600\) must exceed the longest wait/,
    );
  });

  it('fails when a workload kind is unknown', () => {
    expect(() => synth({ workloads: [{ kind: 'DaemonSet' as 'Deployment', name: 'x' }] })).toThrow(
      /workloads\[0\].kind must be 'StatefulSet' or 'Deployment', got "DaemonSet"/,
    );
  });

  it('fails when volumes are protected but no namespace is known for the ClusterRoleBinding', () => {
    const chart = Testing.chart();
    expect(() => new DatabaseMigration(chart, 'm', props())).toThrow(/namespace is required when protectVolumes is true/);
  });

  it('fails when deleteLegacy is not one of the runner modes', () => {
    expect(() => synth({ deleteLegacy: 'always' as 'never' })).toThrow(/deleteLegacy must be one of never, after-restore, after-backup/);
  });

  it('fails when restoreReplicas is not a boolean', () => {
    expect(() => synth({ restoreReplicas: 'yes' as unknown as boolean })).toThrow(/DatabaseMigration restoreReplicas must be true or false, got "yes"/);
  });

  it('fails when an ensured Secret lists no keys', () => {
    expect(() => synth({ ensureSecrets: [{ name: 'x', keys: [] }] })).toThrow(/ensureSecrets\[0\].keys must list at least one key/);
  });
});
