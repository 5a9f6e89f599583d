/**
 * The Job controller and kubelet of the rehearsal: a Job applied to the fake API runs its pod's
 * container in the runner image (`podman run`, container-runtime.ts) with exactly its
 * container's command/args, environment, volumes and securityContext.
 *
 * Per Job (as batch/v1 does it):
 * - Its ServiceAccount must exist before a pod can be created; the pod waits (Pending) for its
 *   Secrets/ConfigMaps (CreateContainerConfigError) and for its PVCs to be Bound.
 * - The container runs as container-runtime.ts prepares it: volumes as host directories mounted
 *   at their paths (the backup PVC persists across Jobs), env with Service hosts mapped, the
 *   securityContext applied, and a ServiceAccount token whose RBAC the fake API enforces (403
 *   when missing).
 * - `activeDeadlineSeconds` kills the running pod (SIGTERM, SIGKILL after the grace period) and
 *   fails the Job with DeadlineExceeded; a failed pod is retried after a back-off until
 *   `backoffLimit` failures (BackoffLimitExceeded), unless a `podFailurePolicy` rule matches its
 *   exit code first (FailJob: fail at once; Ignore: not counted; Count: counted).
 * - Deleting the Job kills its pod's container (the garbage collector removes the Pod object).
 * Pod logs (stdout+stderr) are kept per pod: {@link JobController.logsOf}.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { FakeKubeApiServer, KubeObject as StoredObject } from '../test/support/fake-kube/index.js';

import { prepareContainer, startContainer, type ClientTools, type ContainerProcess, type PodSpec, type PreparedContainer } from './container-runtime.js';
import { PodConfigError } from './pod-env.js';
import type { ServiceProxies } from './service-proxy.js';
import type { Volumes } from './volumes.js';

export interface PodFailurePolicyRule {
  action: 'FailJob' | 'Ignore' | 'Count' | 'FailIndex';
  onExitCodes?: { containerName?: string; operator: 'In' | 'NotIn'; values: number[] };
  onPodConditions?: { type: string; status?: string }[];
}

/** A started pod's container, handed to fault rules. */
export interface RunningPod {
  readonly jobName: string;
  readonly podName: string;
  /** 1 for the first pod of the Job, 2 for its first retry, ... */
  readonly attempt: number;
  readonly process: ContainerProcess;
  readonly logFile: string;
  /** The environment the container got (after mapping). */
  readonly env: Readonly<Record<string, string>>;
  readonly args: readonly string[];
}

/** One record per pod that ran, for reports and assertions. */
export interface PodRun {
  readonly jobName: string;
  readonly podName: string;
  readonly attempt: number;
  readonly args: readonly string[];
  readonly startedAt: number;
  endedAt?: number;
  exitCode?: number | null;
  signal?: NodeJS.Signals | null;
  readonly logFile: string;
}

export interface JobControllerOptions {
  readonly server: FakeKubeApiServer;
  readonly namespace: string;
  readonly volumes: Volumes;
  readonly proxies: ServiceProxies;
  /** Client tools instead of the image's own (container-runtime.ts HOST_CLIENT_TOOLS). @default - the image's */
  readonly clientTools?: ClientTools;
  /** Directory for pod directories, kubeconfigs and logs. */
  readonly root: string;
  /** A program mounted over the image's bundle (the controller's own tests). @default - the image's bundle */
  readonly runnerBundle?: string;
  /** Base of the retry back-off (Kubernetes: 10 s, doubling). @default 500 */
  readonly backoffBaseMs?: number;
  /** Grace period between SIGTERM and SIGKILL on deadline or deletion. @default 2000 */
  readonly terminationGraceMs?: number;
  /** Called with every started pod: fault rules attach here (e.g. SIGKILL at a step). */
  readonly onPodStarted?: (pod: RunningPod) => void;
}

interface JobState {
  readonly uid: string;
  attempts: number;
  failed: number;
  finished: boolean;
  deadlineTimer?: NodeJS.Timeout;
  current?: { podName: string; process?: ContainerProcess };
  deleted: boolean;
}

export class JobController {
  private readonly jobs = new Map<string, JobState>();
  private readonly unsubscribe: () => void;
  readonly runs: PodRun[] = [];
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly options: JobControllerOptions) {
    mkdirSync(join(options.root, 'pods'), { recursive: true });
    this.unsubscribe = options.server.onChange((event, object) => {
      if (object.kind !== 'Job' || object.metadata.namespace !== options.namespace) return;
      if (event === 'ADDED') this.track(this.startJob(object));
      if (event === 'DELETED') this.jobDeleted(object);
    });
  }

  /** The log of a pod (stdout and stderr interleaved), as `kubectl logs` shows it. */
  logsOf(podName: string): string {
    const run = this.runs.find((r) => r.podName === podName);
    return run ? readFileSync(run.logFile, 'utf8') : '';
  }

  /** All pods a Job ran so far, oldest first. */
  runsOf(jobName: string): PodRun[] {
    return this.runs.filter((run) => run.jobName === jobName);
  }

  /** Kills every running pod and stops reacting. */
  async close(): Promise<void> {
    this.unsubscribe();
    for (const state of this.jobs.values()) {
      state.deleted = true;
      if (state.deadlineTimer) clearTimeout(state.deadlineTimer);
      state.current?.process?.kill('SIGKILL');
    }
    await Promise.allSettled([...this.pending]);
  }

  private track(work: Promise<void>): void {
    this.pending.add(work);
    work.catch((error: unknown) => this.options.server.listenerErrors.push(error)).finally(() => this.pending.delete(work));
  }

  private key(name: string): string {
    return `${this.options.namespace}/${name}`;
  }

  private jobRef(name: string) {
    return { apiVersion: 'batch/v1', kind: 'Job', name, namespace: this.options.namespace };
  }

  private async startJob(job: StoredObject): Promise<void> {
    // The Job controller and the kubelet act after the API write, never inside it: whatever else
    // reacts to the same change (a Secret edited meanwhile) is seen by the pod.
    await new Promise((resolveTick) => setImmediate(resolveTick));
    const state: JobState = { uid: String(job.metadata.uid), attempts: 0, failed: 0, finished: false, deleted: false };
    this.jobs.set(this.key(job.metadata.name), state);
    const spec = job.spec as { activeDeadlineSeconds?: number };
    this.options.server.setStatus(this.jobRef(job.metadata.name), { startTime: new Date().toISOString(), active: 0 });
    if (spec.activeDeadlineSeconds !== undefined) {
      state.deadlineTimer = setTimeout(() => this.deadlineExceeded(job.metadata.name, state, spec.activeDeadlineSeconds!), spec.activeDeadlineSeconds * 1000);
    }
    await this.runAttempts(job, state);
  }

  private stillCurrent(name: string, state: JobState): boolean {
    return !state.deleted && !state.finished && this.jobs.get(this.key(name)) === state;
  }

  private async runAttempts(job: StoredObject, state: JobState): Promise<void> {
    const name = job.metadata.name;
    const spec = job.spec as { backoffLimit?: number; podFailurePolicy?: { rules?: PodFailurePolicyRule[] } };
    const backoffLimit = spec.backoffLimit ?? 6;
    while (this.stillCurrent(name, state)) {
      state.attempts += 1;
      const outcome = await this.runPod(job, state);
      if (!this.stillCurrent(name, state) || outcome === undefined) return;
      if (outcome.exitCode === 0) {
        state.finished = true;
        this.finish(name, state, { succeeded: 1 }, [
          { type: 'SuccessCriteriaMet', status: 'True' },
          { type: 'Complete', status: 'True' },
        ]);
        return;
      }
      const rule = matchPodFailurePolicy(spec.podFailurePolicy?.rules ?? [], outcome.containerName, outcome.exitCode);
      if (rule?.action === 'FailJob') {
        state.failed += 1;
        state.finished = true;
        this.finish(name, state, { failed: state.failed }, [
          {
            type: 'Failed',
            status: 'True',
            reason: 'PodFailurePolicy',
            message: `Container ${outcome.containerName} for pod ${this.options.namespace}/${outcome.podName} failed with exit code ${outcome.exitCode} matching FailJob rule at index ${rule.index}`,
          },
        ]);
        return;
      }
      if (rule?.action !== 'Ignore') state.failed += 1;
      if (state.failed > backoffLimit) {
        state.finished = true;
        this.finish(name, state, { failed: state.failed }, [
          { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' },
        ]);
        return;
      }
      this.options.server.setStatus(this.jobRef(name), { failed: state.failed, active: 0 });
      const delay = (this.options.backoffBaseMs ?? 500) * 2 ** Math.max(0, state.failed - 1);
      await new Promise((resolveDelay) => setTimeout(resolveDelay, delay));
    }
  }

  private finish(name: string, state: JobState, counts: Record<string, number>, conditions: Record<string, string>[]): void {
    if (state.deadlineTimer) clearTimeout(state.deadlineTimer);
    const now = new Date().toISOString();
    if (!this.options.server.get(this.jobRef(name))) return;
    this.options.server.setStatus(this.jobRef(name), {
      ...counts,
      active: 0,
      completionTime: conditions.some((c) => c.type === 'Complete') ? now : undefined,
      conditions: conditions.map((condition) => ({ ...condition, lastProbeTime: now, lastTransitionTime: now })),
    });
  }

  private deadlineExceeded(name: string, state: JobState, seconds: number): void {
    if (!this.stillCurrent(name, state)) return;
    state.finished = true;
    this.terminate(state.current?.process);
    this.finish(name, state, { failed: state.failed + (state.current?.process ? 1 : 0) }, [
      { type: 'Failed', status: 'True', reason: 'DeadlineExceeded', message: `Job was active longer than specified deadline (${seconds}s)` },
    ]);
  }

  private jobDeleted(job: StoredObject): void {
    const state = this.jobs.get(this.key(job.metadata.name));
    if (!state || state.uid !== String(job.metadata.uid)) return;
    state.deleted = true;
    if (state.deadlineTimer) clearTimeout(state.deadlineTimer);
    this.terminate(state.current?.process);
    this.jobs.delete(this.key(job.metadata.name));
  }

  private terminate(child: ContainerProcess | undefined): void {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), this.options.terminationGraceMs ?? 2000);
    child.once('exit', () => clearTimeout(timer));
  }

  /** Creates the pod, waits until it can start, runs it; undefined when the Job went away meanwhile. */
  private async runPod(
    job: StoredObject,
    state: JobState,
  ): Promise<{ exitCode: number; containerName: string; podName: string } | undefined> {
    const { server, namespace } = this.options;
    const name = job.metadata.name;
    const template = (job.spec as { template: { metadata?: { labels?: Record<string, string> }; spec: PodSpec } }).template;
    const podSpec = template.spec;
    const serviceAccountName = podSpec.serviceAccountName ?? 'default';

    // The Job controller cannot create a pod whose ServiceAccount does not exist.
    while (this.stillCurrent(name, state) && !server.get({ apiVersion: 'v1', kind: 'ServiceAccount', name: serviceAccountName, namespace })) {
      if (serviceAccountName === 'default') break;
      await sleep(100);
    }
    if (!this.stillCurrent(name, state)) return undefined;

    const podName = `${name}-${randomBytes(3).toString('hex').slice(0, 5)}`;
    const [pod] = server.seed({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: podName,
        namespace,
        labels: { ...(template.metadata?.labels ?? {}), 'batch.kubernetes.io/job-name': name, 'job-name': name, 'controller-uid': state.uid },
        ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name, uid: state.uid, controller: true, blockOwnerDeletion: true }],
      },
      spec: structuredClone(podSpec),
      status: { phase: 'Pending' },
    });
    state.current = { podName };
    this.options.server.setStatus(this.jobRef(name), { active: 1 });
    const container = podSpec.containers[0]!;
    const podDir = join(this.options.root, 'pods', podName);
    mkdirSync(join(podDir, 'home'), { recursive: true });

    // Wait for what the kubelet needs: bound PVCs and every referenced Secret/ConfigMap key.
    let prepared: PreparedContainer | undefined;
    let lastReason = '';
    while (this.stillCurrent(name, state) && !prepared) {
      try {
        prepared = await prepareContainer(this.options, pod as StoredObject, podSpec, container, podDir);
      } catch (error) {
        if (!(error instanceof PodConfigError)) throw error;
        if (error.message !== lastReason) {
          lastReason = error.message;
          server.setStatus({ apiVersion: 'v1', kind: 'Pod', name: podName, namespace }, { phase: 'Pending', reason: 'CreateContainerConfigError', message: error.message });
        }
        await sleep(100);
      }
    }
    if (!prepared || !this.stillCurrent(name, state)) return undefined;

    const logFile = join(podDir, 'container.log');
    const run: PodRun = { jobName: name, podName, attempt: state.attempts, args: prepared.args, startedAt: Date.now(), logFile };
    this.runs.push(run);
    const child = startContainer({
      name: `${podName}-${container.name}`,
      hostname: podName,
      prepared,
      logFile,
      ...(this.options.runnerBundle ? { bundleOverride: this.options.runnerBundle } : {}),
    });
    state.current = { podName, process: child };
    server.setStatus({ apiVersion: 'v1', kind: 'Pod', name: podName, namespace }, { phase: 'Running', startTime: new Date().toISOString() });
    this.options.onPodStarted?.({ jobName: name, podName, attempt: state.attempts, process: child, logFile, env: prepared.env, args: prepared.args });

    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolveExit) =>
      child.once('exit', (code, sig) => resolveExit([code, sig])),
    );
    run.endedAt = Date.now();
    run.exitCode = exitCode;
    run.signal = signal;
    // A process killed by a signal reports 128 + signal number as its container exit code.
    const containerExit = exitCode ?? 128 + signalNumber(signal);
    if (server.get({ apiVersion: 'v1', kind: 'Pod', name: podName, namespace })) {
      server.setStatus(
        { apiVersion: 'v1', kind: 'Pod', name: podName, namespace },
        {
          phase: containerExit === 0 ? 'Succeeded' : 'Failed',
          containerStatuses: [{ name: container.name, state: { terminated: { exitCode: containerExit, ...(signal ? { signal: signalNumber(signal) } : {}) } } }],
        },
      );
    }
    return { exitCode: containerExit, containerName: container.name, podName };
  }
}

/** The first podFailurePolicy rule matching the exit code, with its index. */
export function matchPodFailurePolicy(
  rules: readonly PodFailurePolicyRule[],
  containerName: string,
  exitCode: number,
): (PodFailurePolicyRule & { index: number }) | undefined {
  for (const [index, rule] of rules.entries()) {
    const onExit = rule.onExitCodes;
    if (!onExit) continue;
    if (onExit.containerName && onExit.containerName !== containerName) continue;
    const listed = onExit.values.includes(exitCode);
    if ((onExit.operator === 'In' && listed) || (onExit.operator === 'NotIn' && !listed && exitCode !== 0)) return { ...rule, index };
  }
  return undefined;
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2 };
  return signal ? numbers[signal] ?? 0 : 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}
