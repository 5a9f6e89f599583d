// The legacy database around its deletion and after the migration, through the fake API server
// (the legacy database itself is a closed port or an unset password). The runner stops, saying
// what it found, when a legacy database that is back cannot be compared with the backup; it
// refuses to delete a claim whose disk it did not set to Retain; and a run that dies between
// deleting the legacy objects and recording it resumes with the retained volumes on record.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteLegacy, Env, ExitCode, Phase, RunnerCommand } from '../lib/contract.js';
import { createLogger } from '../runner/src/log.js';
import { createHookContext, newMigrationId, type HookContext } from '../runner/src/phases/context.js';
import { protectLegacyStep } from '../runner/src/phases/protect-legacy.js';
import { reuseOrSupersedeBackup } from '../runner/src/phases/source-freshness.js';
import { runBackupPhase } from '../runner/src/commands/backup-phase.js';
import { MANIFEST_FILE, MANIFEST_FORMAT_VERSION, ROW_CHECKSUM_ALGORITHM } from '../runner/src/pg/manifest.js';
import { advance, parseState, serializeState, newMigrationState, type MigrationState } from '../runner/src/state.js';
import { startFakeKubeApiServer, type FakeKubeApiServer } from './support/fake-kube/index.js';
import { fakeRunnerKube } from './support/fake-kube/runner-kube-context.js';

const STATE = 'kc-migration-state';
const LEGACY = 'legacy-postgresql';
const CLAIM = 'data-legacy-postgresql-0';
let server: FakeKubeApiServer;
let root: string;

beforeAll(async () => {
  server = await startFakeKubeApiServer();
  root = mkdtempSync(join(tmpdir(), 'runner-safety-legacy-'));
});
afterAll(async () => {
  await server?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** The legacy StatefulSet (its pods read Secret legacy-postgresql) and its claim, bound to a PV under reclaimPolicy Delete. */
function seedLegacy(namespace: string): void {
  server.seed(
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: LEGACY, namespace },
      spec: {
        replicas: 1,
        serviceName: LEGACY,
        selector: { matchLabels: { app: LEGACY } },
        template: {
          metadata: { labels: { app: LEGACY } },
          spec: { containers: [{ name: 'postgresql', image: 'postgres:15', env: [{ name: 'POSTGRES_PASSWORD', valueFrom: { secretKeyRef: { name: LEGACY, key: 'password' } } }] }] },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: `pv-${namespace}` },
      spec: {
        capacity: { storage: '8Gi' },
        accessModes: ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Delete',
        hostPath: { path: `/tmp/${namespace}` },
        claimRef: { namespace, name: CLAIM },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: CLAIM, namespace },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '8Gi' } }, volumeName: `pv-${namespace}` },
      status: { phase: 'Bound', capacity: { storage: '8Gi' } },
    },
  );
}

function legacyObjects(namespace: string) {
  const pv = server.get({ apiVersion: 'v1', kind: 'PersistentVolume', name: `pv-${namespace}` });
  return {
    statefulSet: server.get({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: LEGACY, namespace }) !== undefined,
    pvc: server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: CLAIM, namespace }) !== undefined,
    pvReclaimPolicy: (pv?.spec as { persistentVolumeReclaimPolicy?: string } | undefined)?.persistentVolumeReclaimPolicy,
  };
}

/** A migration that verified its backup `<id>` (a manifest on disk in `backupDir`), optionally advanced further. */
function migrationAt(phase: (typeof Phase)[keyof typeof Phase], backupDir: string, changes: Partial<MigrationState> = {}): MigrationState {
  const id = newMigrationId();
  let state = newMigrationState(id);
  for (const next of [Phase.quiesced, Phase.backedUp, Phase.backupVerified, Phase.legacyProtected, Phase.restoring, Phase.restored, Phase.verified, Phase.completed]) {
    const backup = { dir: id, manifestSha256: 'a'.repeat(64), bytes: 1, tableCount: 1, rows: 1 };
    state = advance(state, next, undefined, next === Phase.backedUp ? { changes: { backup } } : {});
    if (next === phase) break;
  }
  mkdirSync(join(backupDir, id), { recursive: true });
  writeFileSync(join(backupDir, id, MANIFEST_FILE), JSON.stringify({ formatVersion: MANIFEST_FORMAT_VERSION, checksumAlgorithm: ROW_CHECKSUM_ALGORITHM, stats: {}, files: [] }));
  return { ...state, ...changes };
}

function seedState(namespace: string, state: MigrationState): void {
  server.seed({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: STATE, namespace }, data: serializeState(state) });
}

function storedState(namespace: string): MigrationState {
  return parseState(server.get({ apiVersion: 'v1', kind: 'ConfigMap', name: STATE, namespace })!.data as Record<string, string>, STATE);
}

/** A backup-phase Job's context in `namespace`: the legacy database at a closed port, with `env` on top. */
function hookContext(namespace: string, env: Record<string, string | undefined> = {}): HookContext {
  const { kube } = fakeRunnerKube(server, { namespace });
  const full: Record<string, string | undefined> = {
    [Env.stateConfigMap]: STATE,
    [Env.lockLease]: 'kc-migration-lock',
    [Env.backupPvc]: 'kc-migration-backup',
    [Env.podName]: `backup-${namespace}`,
    [Env.backupDir]: join(root, namespace),
    [Env.legacyStatefulSet]: LEGACY,
    [Env.legacyPvcs]: CLAIM,
    [Env.deleteLegacy]: DeleteLegacy.never,
    [Env.protectVolumes]: 'true',
    [Env.sourceHost]: '127.0.0.1',
    [Env.sourcePort]: '1',
    SOURCE_PGUSER: 'postgres',
    [Env.sourcePassword]: 'legacy-password',
    ...env,
  };
  const defined = Object.fromEntries(Object.entries(full).filter(([, value]) => value !== undefined)) as Record<string, string>;
  return createHookContext(RunnerCommand.backupPhase, { env: defined, kube, log: createLogger({ format: 'json', level: 'error', env: {} }) });
}

describe('a Completed migration whose legacy StatefulSet is back (a rollback)', () => {
  it('stops (69, the Job retries) while its database does not answer, and (78) while its password Secret is missing, naming the way to go on', async () => {
    const namespace = 'back-unanswering';
    seedLegacy(namespace);
    const completed = migrationAt(Phase.completed, join(root, namespace));
    seedState(namespace, completed);
    const accept = `${Env.acceptLegacyChangesOf}=${completed.migrationId}`;

    await expect(runBackupPhase(hookContext(namespace))).rejects.toThrow(
      expect.objectContaining({
        exitCode: ExitCode.unavailable,
        message: expect.stringMatching(new RegExp(`^cannot tell whether the legacy database changed after migration ${completed.migrationId} completed \\(its StatefulSet ${LEGACY} exists again: a rollback\\?; nothing was changed\\): cannot reach PostgreSQL at 127\\.0\\.0\\.1:1`)),
        hint: expect.stringMatching(new RegExp(`^start the legacy database \\(StatefulSet ${LEGACY}\\).*the Job retries; or, to go on without comparing .*set ${accept} `)),
      }),
    );
    await expect(runBackupPhase(hookContext(namespace, { [Env.sourcePassword]: undefined }))).rejects.toThrow(
      expect.objectContaining({
        exitCode: ExitCode.config,
        message: expect.stringContaining(`the legacy StatefulSet ${LEGACY} exists but SOURCE_PGPASSWORD is unset (its Secret does not exist)`),
        hint: expect.stringMatching(new RegExp(`the Job reads SOURCE_PGPASSWORD from .*the legacy pods read Secret ${LEGACY}.*set ${accept} `)),
      }),
    );
    expect(storedState(namespace)).toMatchObject({ phase: Phase.completed, lastError: { exitCode: ExitCode.config } });
    expect(legacyObjects(namespace)).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Delete' });

    // The documented way on: accepted, nothing is compared.
    expect(await runBackupPhase(hookContext(namespace, { [Env.acceptLegacyChangesOf]: completed.migrationId }))).toBe(0);
    // Kept but scaled to 0 (stopped, e.g. Argo CD without prune): nothing serves on it, every sync goes on.
    const statefulSet = { apiVersion: 'apps/v1', kind: 'StatefulSet', name: LEGACY, namespace };
    server.upsert({ ...server.get(statefulSet)!, spec: { ...(server.get(statefulSet)!.spec as object), replicas: 0 } });
    expect(await runBackupPhase(hookContext(namespace))).toBe(0);
    expect(await runBackupPhase(hookContext(namespace, { [Env.sourcePassword]: undefined }))).toBe(0);
    // Gone again (the upgrade deleted it): nothing to compare either.
    server.remove({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: LEGACY, namespace });
    expect(await runBackupPhase(hookContext(namespace))).toBe(0);
  });
});

describe('a backup on record and a legacy StatefulSet that exists', () => {
  it('stops with 78 naming SOURCE_PGPASSWORD when its Secret is missing (waiting does not create it), 69 while the database does not answer', async () => {
    const namespace = 'reuse-no-password';
    seedLegacy(namespace);
    const state = migrationAt(Phase.legacyProtected, join(root, namespace));
    const withoutPassword = hookContext(namespace, { [Env.sourcePassword]: undefined });
    withoutPassword.state = state;
    await expect(reuseOrSupersedeBackup(withoutPassword)).rejects.toThrow(
      expect.objectContaining({
        exitCode: ExitCode.config,
        message: `cannot tell whether the legacy database changed after backup ${state.migrationId}: the legacy StatefulSet ${LEGACY} exists but SOURCE_PGPASSWORD is unset (its Secret does not exist)`,
        hint: expect.stringContaining(`create the Secret the Job reads SOURCE_PGPASSWORD from (platform config legacyDatabase.secretName and passwordKey), or point them at the one holding the password; the legacy pods read Secret ${LEGACY}; then run the upgrade again`),
      }),
    );
    const unanswering = hookContext(namespace);
    unanswering.state = state;
    await expect(reuseOrSupersedeBackup(unanswering)).rejects.toThrow(expect.objectContaining({ exitCode: ExitCode.unavailable, hint: expect.stringContaining('the Job retries') }));
  });
});

describe('deleting the legacy database', () => {
  it('fails when a deletion is configured but the PV of a bound legacy claim was not set to Retain (MIGRATION_PROTECT_VOLUMES=false): 78, nothing deleted', async () => {
    for (const deleteLegacy of [DeleteLegacy.afterBackup, DeleteLegacy.afterRestore]) {
      const namespace = `unprotected-${deleteLegacy}`;
      seedLegacy(namespace);
      const state = migrationAt(Phase.backupVerified, join(root, namespace));
      seedState(namespace, state);
      const ctx = hookContext(namespace, { [Env.deleteLegacy]: deleteLegacy, [Env.protectVolumes]: 'false' });
      ctx.state = state;
      await expect(protectLegacyStep(ctx)).rejects.toThrow(
        expect.objectContaining({
          exitCode: ExitCode.config,
          message: `MIGRATION_DELETE_LEGACY=${deleteLegacy} would delete legacy PVC ${CLAIM} (PersistentVolume pv-${namespace}), but the runner has not set its PersistentVolume to Retain (MIGRATION_PROTECT_VOLUMES=false): under reclaimPolicy Delete that destroys the disk. Nothing was deleted`,
          hint: expect.stringMatching(/^set MIGRATION_PROTECT_VOLUMES=true .*, or MIGRATION_DELETE_LEGACY=never/),
        }),
      );
      expect(legacyObjects(namespace), deleteLegacy).toEqual({ statefulSet: true, pvc: true, pvReclaimPolicy: 'Delete' });
      expect(storedState(namespace)).toMatchObject({ phase: Phase.backupVerified, legacyDeleted: false });
    }
  });

  it('a run that dies after deleting and before recording LegacyProtected resumes with the retained PVs and their previous policy on record', async () => {
    const namespace = 'deleted-unrecorded';
    seedLegacy(namespace);
    const state = migrationAt(Phase.backupVerified, join(root, namespace));
    seedState(namespace, state);
    const env = { [Env.deleteLegacy]: DeleteLegacy.afterBackup };
    // The API goes away right after the claim is deleted: the phase is never recorded.
    server.holdRequest({ verb: 'delete', resource: 'persistentvolumeclaims', namespace }, async () => {
      server.injectFault({ verb: 'update', resource: 'configmaps', name: STATE, namespace, status: 503, times: 100 });
    });
    const first = hookContext(namespace, env);
    first.state = state;
    await expect(protectLegacyStep(first)).rejects.toThrow(/503|unavailable|injected fault/i);
    server.clearFaults();
    expect(legacyObjects(namespace)).toEqual({ statefulSet: false, pvc: false, pvReclaimPolicy: 'Retain' });
    expect(storedState(namespace).phase).toBe(Phase.backupVerified);

    // The Job's next pod: the claims are gone, yet the record of what was retained is not.
    const again = hookContext(namespace, env);
    again.state = storedState(namespace);
    await protectLegacyStep(again);
    expect(storedState(namespace)).toMatchObject({
      phase: Phase.legacyProtected,
      legacyDeleted: true,
      protectedVolumes: [{ pvc: CLAIM, pv: `pv-${namespace}`, previousReclaimPolicy: 'Delete' }],
    });
  });
});
