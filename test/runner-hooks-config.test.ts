// The hook configuration read from a Job's environment, the prepare decision and the backup PVC
// size: pure functions, every bad value named with the value received and the fix.
import { Chart, Testing } from 'cdk8s';
import { describe, expect, it } from 'vitest';
import { Env, ExitCode, MIGRATION_JOB_ENV, RunnerCommand } from '../lib/contract.js';
import { DatabaseMigration } from '../lib/database-migration.js';
import { hookConfigFromEnv } from '../runner/src/config.js';
import { RunnerError } from '../runner/src/errors.js';
import { backupPvcSize } from '../runner/src/phases/backup-volume.js';
import { decidePrepare, type SourceProbe } from '../runner/src/phases/decide.js';
import type { BackupPreflight } from '../runner/src/pg/backup.js';

const BASE: Record<string, string> = {
  [Env.stateConfigMap]: 'kc-migration-state',
  [Env.lockLease]: 'kc-migration-lock',
  [Env.backupPvc]: 'kc-migration-backup',
  [Env.podName]: 'kc-migration-prepare-x1',
};

function failure(env: Record<string, string>): RunnerError {
  try {
    hookConfigFromEnv({ ...BASE, ...env });
  } catch (error) {
    expect(error).toBeInstanceOf(RunnerError);
    return error as RunnerError;
  }
  throw new Error('expected a failure');
}

describe('hookConfigFromEnv', () => {
  it('reads the environment a synthesized Job gets, with defaults for what is only set when configured', () => {
    const objects = Testing.synth(
      (() => {
        const chart = new Chart(Testing.app(), 'c', { namespace: 'kc' });
        new DatabaseMigration(chart, 'm', {
          name: 'kc-migration',
          flavor: 'helm',
          runnerImage: 'r:1',
          namespace: 'kc',
          source: { host: 'legacy', port: 5432, database: 'keycloak', credentials: { username: 'bn_keycloak', secretName: 's', passwordKey: 'p' } },
          target: { host: 'ha', port: 5432, database: 'keycloak', credentials: { username: 'app', secretName: 't', passwordKey: 'p' } },
          workloads: [{ kind: 'StatefulSet', name: 'keycloak' }],
          legacy: { statefulSetName: 'legacy', pvcNames: ['data-legacy-0'] },
          deleteLegacy: 'after-restore',
        });
        return chart;
      })(),
    );
    const job = objects.find((o: any) => o.kind === 'Job' && o.spec.template.spec.containers[0].args[0] === RunnerCommand.backupPhase) as any;
    const env: Record<string, string> = {};
    for (const variable of job.spec.template.spec.containers[0].env) {
      env[variable.name] = variable.value ?? (variable.valueFrom.fieldRef ? `from-${variable.valueFrom.fieldRef.fieldPath}` : 'secret-value');
    }
    env[Env.namespace] = 'kc';
    env[Env.podName] = 'kc-migration-backup-abcde';
    expect(Object.keys(env).sort()).toEqual([...MIGRATION_JOB_ENV[RunnerCommand.backupPhase].always].sort());
    const config = hookConfigFromEnv(env);
    expect(config).toMatchObject({
      stateConfigMap: 'kc-migration-state',
      backupPvc: 'kc-migration-backup',
      backupPvcMinSize: '1Gi',
      backupDir: '/backup',
      workloads: [{ kind: 'statefulset', name: 'keycloak' }],
      restoreReplicas: true,
      legacyStatefulSet: 'legacy',
      legacyPvcs: ['data-legacy-0'],
      deleteLegacy: 'after-restore',
      protectVolumes: true,
      parallelJobs: 2,
      dumpCompression: 0,
      quiesceTimeoutSeconds: 300,
      targetWaitSeconds: 600,
      targetOwner: 'app',
      source: { passwordSet: true, settings: { host: 'legacy', user: 'bn_keycloak', database: 'keycloak' } },
    });
    expect(config.backupPvcSize).toBeUndefined();
  });

  it('scales the workloads back unless MIGRATION_RESTORE_REPLICAS=false (plan and status run by hand keep the old behaviour)', () => {
    expect(hookConfigFromEnv({ ...BASE }).restoreReplicas).toBe(true);
    expect(hookConfigFromEnv({ ...BASE, [Env.restoreReplicas]: 'false' }).restoreReplicas).toBe(false);
  });

  it('treats an unset password as an absent Secret, not an error', () => {
    const config = hookConfigFromEnv({ ...BASE, SOURCE_PGHOST: 'legacy', SOURCE_PGUSER: 'postgres' });
    expect(config.source.passwordSet).toBe(false);
    expect(config.source.settings?.host).toBe('legacy');
    expect(config.target).toEqual({ passwordSet: false });
  });

  it('fails naming the variable, the value and the fix', () => {
    expect(failure({ [Env.stateConfigMap]: '' }).oneLine()).toBe(
      'MIGRATION_STATE_CONFIGMAP is not set: set MIGRATION_STATE_CONFIGMAP to the name of the state ConfigMap (the DatabaseMigration construct sets it)',
    );
    expect(failure({ [Env.deleteLegacy]: 'always' }).oneLine()).toBe(
      'MIGRATION_DELETE_LEGACY must be one of never, after-restore, after-backup, got "always": fix MIGRATION_DELETE_LEGACY, or unset it to never delete the legacy database',
    );
    expect(failure({ [Env.parallelJobs]: '0' }).message).toBe('MIGRATION_PARALLEL_JOBS must be a whole number from 1 to 64, got "0"');
    expect(failure({ [Env.targetWaitSeconds]: '10s' }).message).toBe('MIGRATION_TARGET_WAIT_SECONDS must be a whole number from 1 to 86400, got "10s"');
    expect(failure({ [Env.protectVolumes]: 'maybe' }).message).toBe('MIGRATION_PROTECT_VOLUMES must be true or false, got "maybe"');
    expect(failure({ [Env.restoreReplicas]: 'later' }).message).toBe('MIGRATION_RESTORE_REPLICAS must be true or false, got "later"');
    expect(failure({ [Env.legacyPvcs]: 'data-0,Data_1' }).message).toBe('MIGRATION_LEGACY_PVCS has an invalid name "Data_1" (in "data-0,Data_1")');
    expect(failure({ [Env.backupPvcSize]: '10 GB' }).message).toMatch(/^MIGRATION_BACKUP_PVC_SIZE must be a Kubernetes quantity .*got "10 GB"/);
    expect(failure({ [Env.backupPvcSize]: '512Mi' }).oneLine()).toBe(
      'MIGRATION_BACKUP_PVC_SIZE (512Mi) is smaller than MIGRATION_BACKUP_PVC_MIN_SIZE (1Gi): raise MIGRATION_BACKUP_PVC_SIZE to at least 1Gi, or unset it to let the runner size the volume',
    );
    expect(failure({ [Env.backupDir]: 'backup' }).message).toBe('MIGRATION_BACKUP_DIR must be an absolute path, got "backup"');
    expect(failure({ [Env.workloads]: 'daemonset/x' }).message).toMatch(/^MIGRATION_WORKLOADS has an invalid entry "daemonset\/x"/);
    expect(failure({ [Env.ensureSecrets]: '{' }).message).toMatch(/^MIGRATION_ENSURE_SECRETS is not valid JSON/);
    expect(failure({ [Env.lockTtlSeconds]: '1' }).message).toMatch(/^MIGRATION_LOCK_TTL_SECONDS must be a whole number of seconds between 5 and 3600, got "1"/);
    for (const env of [{ [Env.deleteLegacy]: "x" }, { [Env.parallelJobs]: "x" }] as Record<string, string>[]) expect(failure(env).exitCode).toBe(ExitCode.usage);
  });
});

const preflight: BackupPreflight = {
  server: { major: 15, version: '15.18' },
  dumpTool: { major: 15, version: '15.18' },
  estimatedBytes: 3 * 1024 ** 3,
  databaseBytes: 4 * 1024 ** 3,
};

describe('backupPvcSize', () => {
  const config = hookConfigFromEnv(BASE);
  it('sizes from pg_database_size with 25% headroom, never below the minimum', () => {
    expect(backupPvcSize(config, preflight)).toBe('5Gi');
    expect(backupPvcSize(config, { ...preflight, estimatedBytes: 1000, databaseBytes: 2000 })).toBe('1Gi');
    expect(backupPvcSize(config, undefined)).toBe('1Gi');
  });
  it('keeps a configured size that holds the dump, and refuses one that cannot (78, before anything changes)', () => {
    expect(backupPvcSize(hookConfigFromEnv({ ...BASE, [Env.backupPvcSize]: '20Gi' }), preflight)).toBe('20Gi');
    try {
      backupPvcSize(hookConfigFromEnv({ ...BASE, [Env.backupPvcSize]: '2Gi' }), preflight);
      throw new Error('expected a failure');
    } catch (error) {
      expect((error as RunnerError).exitCode).toBe(ExitCode.config);
      expect((error as RunnerError).oneLine()).toBe(
        'MIGRATION_BACKUP_PVC_SIZE is 2Gi but the dump of the source needs about 3.2 GB: raise MIGRATION_BACKUP_PVC_SIZE to at least 4Gi, or unset it to let the runner size the volume; nothing was changed',
      );
    }
  });
});

describe('decidePrepare', () => {
  const reachable: SourceProbe = { status: 'reachable', preflight };
  const absent: SourceProbe = { status: 'absent', reason: 'SOURCE_PGPASSWORD is unset (its Secret does not exist)' };
  const noMarker = { status: 'reachable' } as const;
  const ready = { status: 'reachable', marker: { status: 'ready', migrationId: 'm-1', createdAt: new Date(0), updatedAt: new Date(0) } } as const;

  it('NotNeeded when the target already holds the data, whatever the source', () => {
    expect(decidePrepare({ name: 'legacy', exists: true }, ready, reachable)).toMatchObject({ kind: 'not-needed', targetReady: true, reason: expect.stringContaining('migration m-1') });
  });
  it('migrates when the source is reachable', () => {
    expect(decidePrepare({ name: 'legacy', exists: false }, noMarker, reachable)).toMatchObject({ kind: 'migrate' });
  });
  it('NotNeeded on a fresh install, saying why', () => {
    expect(decidePrepare({ name: 'legacy', exists: false }, { status: 'absent', reason: 'x' }, absent)).toEqual({
      kind: 'not-needed',
      targetReady: false,
      reason: 'fresh install: no legacy StatefulSet legacy and no source database (SOURCE_PGPASSWORD is unset (its Secret does not exist))',
    });
  });
  it('fails (78) when the target carries a restoring marker and nothing answers to migrate from: a restore began there and no state records it', () => {
    const restoring = { status: 'reachable', marker: { status: 'restoring', migrationId: 'm-2', createdAt: new Date(0), updatedAt: new Date(0) } } as const;
    expect(() => decidePrepare({ name: 'legacy', exists: false, traces: [] }, restoring, absent)).toThrow(
      expect.objectContaining({
        exitCode: ExitCode.config,
        message: expect.stringMatching(/^the target database carries the restoring marker of migration m-2 \(since 1970-01-01T00:00:00\.000Z\): a restore into it began and did not finish, .*Deciding "fresh install" would start Keycloak on a partly restored database$/),
        hint: expect.stringContaining('drop and recreate it empty'),
      }),
    );
    // A source that answers: a new migration restores over the partial one.
    expect(decidePrepare({ name: 'legacy', exists: false }, restoring, reachable)).toMatchObject({ kind: 'migrate' });
  });
  it('fails retriably when the legacy StatefulSet exists but its database does not answer, and passes on a source error', () => {
    expect(() => decidePrepare({ name: 'legacy', exists: true }, noMarker, absent)).toThrow(/legacy StatefulSet legacy exists but its database is not reachable/);
    const error = new RunnerError('authentication failed for user postgres', { exitCode: ExitCode.noPermission });
    expect(() => decidePrepare({ name: 'legacy', exists: true }, noMarker, { status: 'error', error })).toThrow(error);
  });
});
