/**
 * The fault matrix of issue 4 as data. Each entry breaks the first v2 deployment in one way,
 * checks what must hold right after (nothing deleted, a clear error, the failure recorded), lets
 * the operator fix the cause, and then the unchanged v2 is deployed again; run-fault-case.ts
 * requires the full migration checks afterwards. Kill points follow the runner's step log lines.
 */
import { expect } from 'vitest';

import {
  compose,
  exitCodesOf,
  ExitCode,
  expectLegacyIntact,
  jobEnv,
  jobLogs,
  jobSpec,
  NAMES,
  Phase,
  readState,
  restoresIn,
  restoringJobSuffix,
  transformShape,
  withoutPermission,
  type FaultCase,
  type FaultContext,
} from './faults.js';
import { findObject, killRunnerWhen, objectsOf, targetDatabase } from './scenario.js';

/** A killed runner holds the Lease until it expires: 5 s (the runner's minimum) keeps the matrix fast. */
const SHORT_LOCK = jobEnv('', 'MIGRATION_LOCK_TTL_SECONDS', '5');

interface KillPoint {
  readonly job: 'prepare' | 'backup' | 'restore';
  readonly label: string;
  /** The log line after which the runner is killed. */
  readonly after: RegExp;
  /** For kills inside a long step: the line that must not have appeared yet when killed. */
  readonly before?: RegExp;
  readonly bulk?: boolean;
  /**
   * The last step of a command is followed only by releasing the Lease and exiting: hold the
   * release (1.5 s of API latency on Lease updates) so that the kill lands before the exit.
   */
  readonly holdLeaseRelease?: boolean;
  /**
   * A short next step (protect: a few API calls) could finish before the kill lands on a loaded
   * machine: hold its first API call (1.5 s of latency) so that the kill lands inside it.
   */
  readonly holdNextStep?: { readonly resource: string; readonly verb: string };
}

export const KILL_POINTS: readonly KillPoint[] = [
  { job: 'prepare', label: 'after the state and Secrets exist, before the backup PVC', after: /created Secret with generated passwords/ },
  { job: 'backup', label: 'after scaling Keycloak down, before Quiesced is recorded', after: /"msg":"scaled workload"/ },
  { job: 'backup', label: 'at the start of the backup step', after: /step backup: starting/ },
  { job: 'backup', label: 'inside pg_dump', after: /"msg":"dumping"/, before: /"msg":"backup complete"/, bulk: true },
  { job: 'backup', label: 'after backup, before verify-backup', after: /step backup: done/ },
  { job: 'backup', label: 'after verify-backup, before protect', after: /step verify-backup: done/, before: /step protect: done/, holdNextStep: { resource: 'persistentvolumes', verb: 'get' } },
  { job: 'backup', label: 'after protect (end of the pre-phase)', after: /step protect: done/, holdLeaseRelease: true },
  { job: 'restore', label: 'after mark-restoring, before pg_restore', after: /step mark-restoring: done/ },
  { job: 'restore', label: 'inside pg_restore', after: /"msg":"restoring"/, before: /"msg":"restore complete"/, bulk: true },
  { job: 'restore', label: 'after restore, before verify-target', after: /step restore: done/ },
  { job: 'restore', label: 'after verify-target, before complete', after: /step verify-target: done/ },
  { job: 'restore', label: 'after the Keycloak hygiene, before unquiesce', after: /Keycloak hygiene done/ },
  { job: 'restore', label: 'after complete (end of the restore phase)', after: /step complete: done/, holdLeaseRelease: true },
];

/**
 * Which tools rehearse a kill point. The runner's own crash tests (test/runner-crash-*.test.ts)
 * kill it at every boundary already; here every boundary runs once under one tool, alternating,
 * and the kills inside pg_dump and pg_restore under both — the whole matrix under both tools
 * would take CI's 2 cores past the suite's 15-minute budget.
 */
function killPointTools(point: KillPoint, index: number): FaultCase['tools'] {
  if (point.bulk) return ['helm', 'argocd'];
  return index % 2 === 0 ? ['helm'] : ['argocd'];
}

/**
 * The Job a kill point's step runs in. Under Argo CD the backup Job restores too
 * (MIGRATION_RESTORE_IN_BACKUP_JOB, the new database being healthy a wave earlier): the restore's
 * steps are killed there, and its retry resumes them.
 */
function jobOfStep(point: KillPoint, tool: FaultContext['tool']): KillPoint['job'] {
  return point.job === 'restore' ? (restoringJobSuffix(tool).slice(1) as KillPoint['job']) : point.job;
}

function killCase(point: KillPoint, index: number): FaultCase {
  let killer: { killed: () => boolean } | undefined;
  let releaseLatency: (() => void) | undefined;
  return {
    name:
      point.job === 'restore'
        ? `runner killed in the restore (restore Job; under Argo CD the backup Job) ${point.label}, then the Job's retry resumes`
        : `runner killed in the ${point.job} Job ${point.label}, then the Job's retry resumes`,
    tools: killPointTools(point, index),
    always: SHORT_LOCK,
    bulk: point.bulk,
    arm: ({ rehearsal, tool }) => {
      killer = killRunnerWhen(rehearsal, `-${jobOfStep(point, tool)}`, (_pod, line) => point.after.test(line));
      if (point.holdLeaseRelease) releaseLatency = rehearsal.server.addLatency(1500, { resource: 'leases', verb: 'update' });
      if (point.holdNextStep) releaseLatency = rehearsal.server.addLatency(1500, point.holdNextStep);
    },
    firstAttempt: 'succeeds',
    afterFirst: (context) => {
      releaseLatency?.();
      expect(killer?.killed()).toBe(true);
      const job = jobOfStep(point, context.tool);
      const runs = context.rehearsal.jobs.runs.filter((run) => run.jobName.endsWith(`-${job}`));
      expect(runs[0]?.signal).toBe('SIGKILL');
      expect(runs.at(-1)?.exitCode).toBe(0);
      if (point.before) {
        // The kill really happened inside the step: the killed pod never reached its end.
        expect(context.rehearsal.jobs.logsOf(runs[0]!.podName)).not.toMatch(point.before);
      }
      if (job !== point.job) {
        // The backup Job's retry finished the restore; there is no restore Job.
        expect(context.rehearsal.jobs.logsOf(runs.at(-1)!.podName)).toMatch(/step complete: done/);
        expect(exitCodesOf(context, '-restore')).toEqual([]);
      }
    },
  };
}

/** Makes the Pgpool Service unreachable once the pre-phase is done (the restore's target). */
function blockTargetDuringRestore({ rehearsal }: FaultContext): void {
  rehearsal.proxies.block(targetDatabase(rehearsal).appService);
}

/** Every runner kill point, as fault cases. */
export const KILL_CASES: readonly FaultCase[] = KILL_POINTS.map(killCase);

/** The failures an operator has to fix, the concurrency and the RBAC cases. */
export const FAILURE_CASES: readonly FaultCase[] = [
  {
    name: 'restore Job fails: target unreachable; the operator makes it reachable and upgrades again',
    tools: ['helm', 'argocd'],
    always: SHORT_LOCK,
    transform: jobEnv(restoresIn, 'MIGRATION_TARGET_WAIT_SECONDS', '1'),
    arm: blockTargetDuringRestore,
    firstAttempt: 'fails',
    afterFirst: async (context, result) => {
      const restoring = restoringJobSuffix(context.tool);
      expect(result.error?.message).toMatch(new RegExp(`keycloak-migration${restoring}`));
      // Retriable (unavailable, or tempFail for "not writable within the wait"): the Job retried.
      const codes = exitCodesOf(context, restoring);
      expect(codes.length).toBe(2);
      expect(codes.every((code) => code === ExitCode.unavailable || code === ExitCode.tempFail)).toBe(true);
      const { state } = readState(context.rehearsal);
      expect(state?.lastError?.message).toBeTruthy();
      if (context.tool === 'argocd') expect(jobLogs(context, '-record-failure')).toMatch(/recorded the failed sync/);
      expect(context.rehearsal.workloads.keycloakWrites.filter((w) => w.host === targetDatabase(context.rehearsal).appService)).toEqual([]);
    },
    fix: ({ rehearsal }) => rehearsal.proxies.unblock(targetDatabase(rehearsal).appService),
  },
  {
    name: 'restore Job fails: wrong target password (Secret changed after the database was initialised); the operator restores it',
    tools: ['helm', 'argocd'],
    always: SHORT_LOCK,
    // A wrong password must fail at once; should it be mistaken for "not ready yet", a short wait
    // keeps the failure quick (and the exit code check below names it).
    transform: jobEnv(restoresIn, 'MIGRATION_TARGET_WAIT_SECONDS', '10'),
    arm: (context) => {
      const { rehearsal } = context;
      // Just before the Job that restores (under Argo CD the backup Job), the Secret drifts from
      // the password the database holds.
      const restoring = restoringJobSuffix(context.tool);
      const stop = rehearsal.server.onChange((event, object) => {
        if (event !== 'ADDED' || object.kind !== 'Job' || !object.metadata.name.endsWith(restoring)) return;
        stop();
        const { secret: name, key } = targetDatabase(rehearsal).runnerPassword;
        const secret = rehearsal.server.get({ apiVersion: 'v1', kind: 'Secret', name, namespace: rehearsal.namespace })!;
        originalPassword.set(context, rehearsal.secretValue(name, key)!);
        rehearsal.server.upsert({ ...secret, data: { ...(secret.data as object), [key]: Buffer.from('drifted-password').toString('base64') } });
      });
    },
    firstAttempt: 'fails',
    afterFirst: (context) => {
      // Non-retriable: the podFailurePolicy fails the Job after one pod.
      const restoring = restoringJobSuffix(context.tool);
      expect(exitCodesOf(context, restoring)).toEqual([ExitCode.noPermission]);
      expect(jobLogs(context, restoring)).toMatch(/password|authentication/i);
      expect(jobLogs(context, restoring)).not.toContain('drifted-password');
    },
    fix: (context) => {
      const { rehearsal } = context;
      const { secret: name, key } = targetDatabase(rehearsal).runnerPassword;
      const secret = rehearsal.server.get({ apiVersion: 'v1', kind: 'Secret', name, namespace: rehearsal.namespace })!;
      rehearsal.server.upsert({ ...secret, data: { ...(secret.data as object), [key]: Buffer.from(originalPassword.get(context)!).toString('base64') } });
    },
  },
  {
    name: 'restore Job fails: activeDeadlineSeconds exceeded while the target is unreachable; the operator fixes the target and upgrades again',
    tools: ['helm', 'argocd'],
    always: SHORT_LOCK,
    // The restore Job's deadline passes in its wait for the target; the Argo CD backup Job, which
    // backs up first, gets the time for that.
    transform: compose(jobSpec('-restore', { activeDeadlineSeconds: 4 }), jobSpec((job) => job.metadata.name.endsWith('-backup') && restoresIn(job), { activeDeadlineSeconds: 25 })),
    arm: blockTargetDuringRestore,
    firstAttempt: 'fails',
    afterFirst: (context, result) => {
      // The tool names the failed Job (helm 4: "status: Failed"); the Job says why.
      const name = `keycloak-migration${restoringJobSuffix(context.tool)}`;
      expect(result.error?.message).toMatch(new RegExp(name));
      const { rehearsal } = context;
      const job = rehearsal.server.get({ apiVersion: 'batch/v1', kind: 'Job', name, namespace: rehearsal.namespace });
      const failed = ((job?.status as { conditions?: { type: string; status: string; reason?: string }[] } | undefined)?.conditions ?? []).find((c) => c.type === 'Failed');
      expect(failed).toMatchObject({ status: 'True', reason: 'DeadlineExceeded' });
      // It passed in the wait for the target, after the verified backup (not inside the dump).
      expect(readState(rehearsal).state?.history.map((entry) => entry.phase)).toContain(Phase.legacyProtected);
      expect(jobLogs(context, restoringJobSuffix(context.tool))).toMatch(/waiting for the target to accept writes/);
      expect(rehearsal.workloads.keycloakWrites.filter((w) => w.host === targetDatabase(rehearsal).appService)).toEqual([]);
    },
    fix: ({ rehearsal }) => rehearsal.proxies.unblock(targetDatabase(rehearsal).appService),
  },
  {
    name: 'two pre-phase Jobs started together: one acts, the other waits or finds the work done',
    tools: ['helm', 'argocd'],
    always: SHORT_LOCK,
    arm: async ({ rehearsal, tool }) => {
      const v2 = transformShape(rehearsal.synthesize('v2'), SHORT_LOCK);
      const objects = objectsOf(v2, tool);
      for (const object of objects.filter((o) => ['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind))) {
        await rehearsal.cluster.apply(object);
      }
      // The pre-phase Jobs alone: the Argo CD backup Job, which restores too, does only its
      // backup here (the new database is not applied in this case).
      const prePhaseOnly = jobEnv('-backup', 'MIGRATION_RESTORE_IN_BACKUP_JOB', 'false');
      for (const step of ['-prepare', '-backup']) {
        const job = prePhaseOnly(objects.find((o) => o.kind === 'Job' && o.metadata.name.endsWith(step))!);
        const twins = ['a', 'b'].map((suffix) => ({ ...structuredClone(job), metadata: { ...job.metadata, name: `${job.metadata.name}-${suffix}`, annotations: {} } }));
        await Promise.all(twins.map((twin) => rehearsal.cluster.create(twin)));
        await Promise.all(twins.map((twin) => rehearsal.waitReady(twin, 120_000)));
      }
      const { state } = readState(rehearsal);
      const phases = state!.history.map((entry) => entry.phase);
      expect(new Set(phases).size).toBe(phases.length);
      expect(phases).toContain(Phase.legacyProtected);
    },
    firstAttempt: 'succeeds',
  },
  {
    name: 'backup volume too small: stops before anything is deleted; Keycloak can be scaled back; a larger volume converges',
    tools: ['helm', 'argocd'],
    v2Config: { migration: { backupSize: '1Mi', backupMinSize: '1Mi' } },
    always: SHORT_LOCK,
    bulk: true,
    firstAttempt: 'fails',
    afterFirst: async (context) => {
      const { rehearsal } = context;
      expect(exitCodesOf(context, '-backup').at(-1) ?? exitCodesOf(context, '-prepare').at(-1)).toBe(ExitCode.config);
      // The error names the variable, its value, what is needed and the fix.
      expect(`${jobLogs(context, '-prepare')}${jobLogs(context, '-backup')}`).toMatch(/MIGRATION_BACKUP_PVC_SIZE is 1Mi but .* needs .*raise/);
      await expectLegacyIntact(context);
      // The operator scales Keycloak back up: it runs on the untouched legacy database.
      const keycloak = findObject(context.v1, 'StatefulSet', NAMES.keycloak);
      const live = rehearsal.cluster.get(keycloak)!;
      rehearsal.server.upsert({ ...live, spec: { ...(live.spec as object), replicas: 2 } });
      await rehearsal.waitReady(keycloak, 60_000);
    },
    fix: async ({ rehearsal }) => {
      // The recovery the README documents: delete the too small backup PVC, configure a larger one.
      await rehearsal.cluster.delete({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: NAMES.backupPvc } });
    },
    fixConfig: { migration: { backupSize: '64Mi', backupMinSize: '1Mi' } },
  },
  {
    name: 'missing RBAC permission (patch statefulsets/scale): a clear error naming verb and resource, nothing deleted',
    tools: ['helm', 'argocd'],
    always: SHORT_LOCK,
    transform: compose(withoutPermission('statefulsets/scale', 'patch')),
    firstAttempt: 'fails',
    afterFirst: async (context) => {
      // prepare stops nothing; the backup Job's quiesce is the first scale.
      expect(exitCodesOf(context, '-prepare')).toEqual([0]);
      expect(exitCodesOf(context, '-backup')).toEqual([ExitCode.noPermission]);
      const logs = jobLogs(context, '-backup');
      expect(logs).toMatch(/patch/);
      expect(logs).toMatch(/statefulsets\/scale/);
      await expectLegacyIntact(context);
      // Keycloak was never stopped: it still runs v1 on the legacy database.
      const keycloak = findObject(context.v1, 'StatefulSet', NAMES.keycloak);
      const v1Replicas = (keycloak.spec as { replicas: number }).replicas;
      expect(v1Replicas).toBeGreaterThan(0);
      expect((context.rehearsal.cluster.get(keycloak)!.spec as { replicas: number }).replicas).toBe(v1Replicas);
    },
  },
];

const originalPassword = new WeakMap<FaultContext, string>();

