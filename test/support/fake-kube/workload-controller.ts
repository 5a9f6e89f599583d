/**
 * A stand-in for the StatefulSet and Deployment controllers plus the kubelet: keeps one Pod per
 * desired replica (named `<sts>-<ordinal>` for StatefulSets), labelled from the pod template and
 * owned by the workload, marks them Running, removes surplus Pods (highest ordinal first) after an
 * optional termination delay, and reports `status.replicas` / `readyReplicas`; a workload being
 * deleted (deletionTimestamp) is left to the garbage collector. Harnesses hook
 * `onPodStarted` / `onPodStopping` to start and stop the real processes behind the Pods.
 */
import type { FakeKubeApiServer, KubeObject } from './server.js';

export interface WorkloadControllerOptions {
  /** Milliseconds between a scale-down and the Pod's disappearance (graceful termination). @default 0 */
  terminationDelayMs?: number;
  /** Called after a Pod was created for a workload. */
  onPodStarted?: (pod: KubeObject, workload: KubeObject) => void | Promise<void>;
  /** Called before a Pod is removed; awaited, so a harness can stop the process behind it. */
  onPodStopping?: (pod: KubeObject) => void | Promise<void>;
}

export interface WorkloadController {
  /** Resolves once no reconciliation or termination is in flight. */
  settled(): Promise<void>;
  stop(): void;
}

const WORKLOAD_KINDS = new Set(['StatefulSet', 'Deployment']);

function podsOf(server: FakeKubeApiServer, workload: KubeObject): KubeObject[] {
  return server
    .list('v1', 'Pod', workload.metadata.namespace)
    .filter((pod) => (pod.metadata.ownerReferences ?? []).some((reference) => reference.uid === workload.metadata.uid));
}

function ordinalOf(pod: KubeObject): number {
  const match = /-(\d+)$/.exec(pod.metadata.name);
  return match ? Number(match[1]) : 0;
}

export function startWorkloadController(server: FakeKubeApiServer, options: WorkloadControllerOptions = {}): WorkloadController {
  const inFlight = new Set<Promise<void>>();
  const terminating = new Set<string>();
  let stopped = false;

  const track = (work: Promise<void>): void => {
    inFlight.add(work);
    work.catch((error: unknown) => server.listenerErrors.push(error)).finally(() => inFlight.delete(work));
  };

  const terminate = async (pod: KubeObject): Promise<void> => {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    if (terminating.has(key)) return;
    terminating.add(key);
    try {
      await options.onPodStopping?.(pod);
      if (options.terminationDelayMs) await new Promise((resolve) => setTimeout(resolve, options.terminationDelayMs));
      server.remove({ apiVersion: 'v1', kind: 'Pod', name: pod.metadata.name, namespace: pod.metadata.namespace });
    } finally {
      terminating.delete(key);
    }
  };

  // One reconciliation at a time per workload, as a controller's work queue guarantees.
  const queues = new Map<string, Promise<void>>();
  const enqueue = (reference: { kind: string; name: string; namespace?: string }): void => {
    const key = `${reference.kind}/${reference.namespace}/${reference.name}`;
    const next = (queues.get(key) ?? Promise.resolve()).catch(() => undefined).then(() => reconcile(reference));
    queues.set(key, next);
    track(next);
  };

  const reconcile = async (reference: { kind: string; name: string; namespace?: string }): Promise<void> => {
    if (stopped) return;
    const workload = server.get({ apiVersion: 'apps/v1', ...reference });
    if (!workload) return;
    if (workload.metadata.deletionTimestamp !== undefined) {
      // A workload being deleted gets no new Pods and loses none to a scale-down: only its status
      // follows the garbage collector's deletions (StatefulSet controller: "If the StatefulSet is
      // being deleted, don't do anything other than updating status"; the ReplicaSet and
      // Deployment controllers alike).
      const count = podsOf(server, workload).length;
      server.setStatus({ apiVersion: 'apps/v1', ...reference }, { replicas: count, readyReplicas: count, availableReplicas: count });
      return;
    }
    const spec = (workload.spec ?? {}) as { replicas?: number; template?: { metadata?: { labels?: Record<string, string> } } };
    const desired = spec.replicas ?? 1;
    const pods = podsOf(server, workload).sort((a, b) => ordinalOf(a) - ordinalOf(b));
    const live = pods.filter((pod) => !terminating.has(`${pod.metadata.namespace}/${pod.metadata.name}`));
    for (const pod of live.slice(desired).reverse()) await terminate(pod);
    const existingNames = new Set(pods.map((pod) => pod.metadata.name));
    for (let ordinal = 0, created = live.length; created < desired; ordinal += 1) {
      const name =
        workload.kind === 'StatefulSet' ? `${workload.metadata.name}-${ordinal}` : `${workload.metadata.name}-pod-${ordinal}`;
      if (existingNames.has(name)) continue;
      const [pod] = server.seed({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name,
          namespace: workload.metadata.namespace,
          labels: { ...(spec.template?.metadata?.labels ?? {}) },
          ownerReferences: [
            {
              apiVersion: 'apps/v1',
              kind: workload.kind as string,
              name: workload.metadata.name,
              uid: workload.metadata.uid as string,
              controller: true,
              blockOwnerDeletion: true,
            },
          ],
        },
        spec: (workload.spec as { template?: { spec?: unknown } }).template?.spec ?? {},
        status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
      });
      created += 1;
      await options.onPodStarted?.(pod as KubeObject, workload);
    }
    const current = server.get({ apiVersion: 'apps/v1', ...reference });
    if (!current) return;
    const count = podsOf(server, current).length;
    server.setStatus(
      { apiVersion: 'apps/v1', ...reference },
      { replicas: count, readyReplicas: count, availableReplicas: count, observedGeneration: current.metadata.generation },
    );
  };

  const unsubscribe = server.onChange((event, object, info) => {
    if (stopped) return;
    if (event === 'DELETED' && object.kind === 'Pod') {
      // A deleted Pod changes its owner's status; StatefulSets also recreate it if still desired.
      for (const owner of object.metadata.ownerReferences ?? []) {
        if (WORKLOAD_KINDS.has(owner.kind)) {
          enqueue({ kind: owner.kind, name: owner.name, namespace: object.metadata.namespace });
        }
      }
      return;
    }
    if (event === 'DELETED' || !WORKLOAD_KINDS.has(object.kind ?? '')) return;
    // The controller's own status writes need no reaction.
    if (event === 'MODIFIED' && info.subresource === 'status') return;
    enqueue({ kind: object.kind as string, name: object.metadata.name, namespace: object.metadata.namespace });
  });

  return {
    async settled() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },
    stop() {
      stopped = true;
      unsubscribe();
    },
  };
}
