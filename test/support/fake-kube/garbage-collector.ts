/**
 * The garbage collector of kube-controller-manager (pkg/controller/garbagecollector), for the
 * fake: it runs after the changes that give it work, asynchronously (on the event loop's next
 * turn, as the real one reacts to watch events), and handles what the kubernetes.io "Garbage
 * Collection" and "Finalizers" pages describe:
 *
 * - an owner marked with the `orphan` finalizer (DELETE with propagationPolicy Orphan): its
 *   dependents lose their ownerReference to it, then the finalizer goes, and with it the owner
 *   (attemptToOrphan);
 * - an owner marked with `foregroundDeletion` (propagationPolicy Foreground): its dependents are
 *   deleted, and once none whose ownerReference to it has `blockOwnerDeletion: true` is left, the
 *   finalizer goes (processDeletingDependentsItem) — a dependent that takes time to go (its own
 *   finalizers) holds the owner that long;
 * - a dependent none of whose owners is left (they are gone, or waiting for their dependents'
 *   deletion) is deleted: in the foreground when its owner waits for it and it has dependents of
 *   its own, else per its own GC finalizers, else in the background; one with another owner left
 *   only loses the references to the others (attemptToDeleteItem, classifyReferences).
 *
 * Owners are identified by uid. An ownerReference naming a uid this fake never stored is treated
 * as a live owner (the real collector would look the owner up and collect the dependent if absent).
 */
import {
  FOREGROUND_FINALIZER,
  ORPHAN_FINALIZER,
  type DeletePropagation,
  type KubeObject,
  type ObjectStore,
  type OwnerReference,
} from './object-store.js';
import type { ResourceType } from './resource-types.js';

interface Entry {
  readonly resourceType: ResourceType;
  readonly object: KubeObject;
}

/** More steps than this in one run means the collector is looping on something it cannot change. */
const MAX_STEPS_PER_RUN = 100_000;

export class GarbageCollector {
  private scheduled: NodeJS.Immediate | undefined;
  private running = false;
  private holds = 0;
  private stopped = false;
  /** uids of the stored objects marked for deletion: a new dependent of one is work. */
  private readonly deleting = new Set<string>();

  constructor(
    private readonly store: ObjectStore,
    private readonly onError: (error: unknown) => void,
  ) {}

  /**
   * Called after every stored change; a run is scheduled (once per turn of the event loop) only for
   * a change that can give the collector work — an object deleted or marked for deletion, or one
   * referring to an owner that is gone — as the real one reacts only to those (its graph builder
   * queues an item when an owner goes or starts deleting). A run scans every stored object; after
   * each of the rehearsal's thousands of status and lease updates that cost about a minute of CI.
   */
  changed(deleted: boolean, object: KubeObject): void {
    const uid = object.metadata.uid;
    if (uid !== undefined) {
      if (!deleted && object.metadata.deletionTimestamp !== undefined) this.deleting.add(uid);
      else this.deleting.delete(uid);
    }
    if (this.running) return;
    const work =
      deleted ||
      object.metadata.deletionTimestamp !== undefined ||
      (object.metadata.ownerReferences ?? []).some((reference) => this.store.isGone(reference.uid) || this.deleting.has(reference.uid));
    if (work) this.schedule();
  }

  /**
   * Stops the collector until the returned function is called (for tests that look at an object
   * while it is terminating, as they could in a cluster whose collector is slow or busy).
   */
  hold(): () => void {
    this.holds += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds -= 1;
      this.schedule();
    };
  }

  stop(): void {
    this.stopped = true;
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
  }

  private schedule(): void {
    if (this.stopped || this.scheduled || this.holds > 0) return;
    this.scheduled = setImmediate(() => {
      this.scheduled = undefined;
      this.run();
    });
  }

  private run(): void {
    if (this.stopped || this.holds > 0) return;
    this.running = true;
    try {
      for (let steps = 0; steps < MAX_STEPS_PER_RUN; steps += 1) {
        if (!this.step()) return;
      }
      this.onError(new Error('the fake garbage collector did not settle'));
    } catch (error) {
      this.onError(error);
    } finally {
      this.running = false;
    }
  }

  /** Does one thing the collector has to do; false when there is nothing left. */
  private step(): boolean {
    const byUid = new Map<string, Entry>();
    const dependents = new Map<string, Entry[]>();
    for (const entry of this.store.storedEntries()) {
      const uid = entry.object.metadata.uid;
      if (uid) byUid.set(uid, entry);
      for (const ownerUid of new Set((entry.object.metadata.ownerReferences ?? []).map((reference) => reference.uid))) {
        const list = dependents.get(ownerUid) ?? [];
        list.push(entry);
        dependents.set(ownerUid, list);
      }
    }

    for (const [uid, owner] of byUid) {
      const { metadata } = owner.object;
      if (metadata.deletionTimestamp === undefined) continue;
      const finalizers = metadata.finalizers ?? [];
      if (finalizers.includes(ORPHAN_FINALIZER)) {
        for (const dependent of dependents.get(uid) ?? []) this.dropReferences(dependent, (reference) => reference.uid === uid);
        this.removeFinalizer(owner, ORPHAN_FINALIZER);
        return true;
      }
      if (finalizers.includes(FOREGROUND_FINALIZER)) {
        const blocking = (dependents.get(uid) ?? []).filter((dependent) =>
          (dependent.object.metadata.ownerReferences ?? []).some((reference) => reference.uid === uid && reference.blockOwnerDeletion === true),
        );
        if (blocking.length === 0) {
          this.removeFinalizer(owner, FOREGROUND_FINALIZER);
          return true;
        }
      }
    }

    for (const dependent of byUid.values()) {
      const { metadata } = dependent.object;
      const references = metadata.ownerReferences ?? [];
      // Being deleted is a one-way trip: the collector waits for the end (attemptToDeleteItem).
      if (references.length === 0 || metadata.deletionTimestamp !== undefined) continue;
      let solid = 0;
      const dangling = new Set<string>();
      const waiting = new Set<string>();
      for (const reference of references) {
        const owner = byUid.get(reference.uid);
        if (!owner) {
          if (this.store.isGone(reference.uid)) dangling.add(reference.uid);
          else solid += 1;
        } else if (owner.object.metadata.deletionTimestamp !== undefined && (owner.object.metadata.finalizers ?? []).includes(FOREGROUND_FINALIZER)) {
          waiting.add(reference.uid);
        } else {
          solid += 1;
        }
      }
      if (dangling.size === 0 && waiting.size === 0) continue;
      if (solid > 0) {
        // Another owner is left: only the references to the gone and the deleting ones go.
        this.dropReferences(dependent, (reference) => dangling.has(reference.uid) || waiting.has(reference.uid));
        return true;
      }
      const finalizers = metadata.finalizers ?? [];
      const hasDependents = (dependents.get(metadata.uid ?? '') ?? []).length > 0;
      const propagation: DeletePropagation =
        waiting.size > 0 && hasDependents
          ? 'Foreground'
          : finalizers.includes(ORPHAN_FINALIZER)
            ? 'Orphan'
            : finalizers.includes(FOREGROUND_FINALIZER)
              ? 'Foreground'
              : 'Background';
      this.store.delete(dependent.resourceType, metadata.namespace, metadata.name, { propagation, expectedUid: metadata.uid as string });
      return true;
    }
    return false;
  }

  private dropReferences(entry: Entry, drop: (reference: OwnerReference) => boolean): void {
    const object = structuredClone(entry.object);
    const remaining = (object.metadata.ownerReferences ?? []).filter((reference) => !drop(reference));
    if (remaining.length === (object.metadata.ownerReferences ?? []).length) return;
    if (remaining.length > 0) object.metadata.ownerReferences = remaining;
    else delete object.metadata.ownerReferences;
    this.store.update(entry.resourceType, object);
  }

  private removeFinalizer(entry: Entry, finalizer: string): void {
    const object = structuredClone(entry.object);
    object.metadata.finalizers = (object.metadata.finalizers ?? []).filter((name) => name !== finalizer);
    this.store.update(entry.resourceType, object);
  }
}
