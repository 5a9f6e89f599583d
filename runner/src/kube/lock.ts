/**
 * Mutual exclusion between runners with a coordination.k8s.io Lease, the object Kubernetes' own
 * leader election uses. Acquire = create the Lease, or take it over when it is free or expired
 * (renewTime + leaseDurationSeconds in the past), always with create / update-with-resourceVersion
 * so that of two runners racing, the API server lets exactly one write win. The holder renews it
 * while it works and frees it when done, on success and on failure; a runner that dies simply
 * stops renewing and the Lease expires after the TTL.
 *
 * Expiry compares the holder's renewTime with this runner's clock, so it assumes the nodes'
 * clocks agree to well within the TTL (NTP); the TTL (default 60 s) leaves that margin.
 */
import { V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import { Env, ExitCode } from '../../../lib/contract.js';
import { requiredName } from '../env-names.js';
import { RunnerError } from '../errors.js';
import { callApi, isAlreadyExists, isConflict, isNotFound, type KubeContext } from './client.js';

export const DEFAULT_LOCK_TTL_SECONDS = 60;

export interface LockOptions {
  /** Name of the Lease (MIGRATION_LOCK_LEASE). */
  readonly name: string;
  /** Who holds it: the pod name (MIGRATION_POD_NAME). */
  readonly holder: string;
  /** Seconds after the last renewal when others may take the lock over. @default 60 */
  readonly ttlSeconds?: number;
  /** How often the holder renews. @default - a third of the TTL */
  readonly renewIntervalMs?: number;
  /** The clock (tests move it). @default - the system clock */
  readonly now?: () => Date;
}

/** A lock this runner holds. */
export interface HeldLock {
  readonly name: string;
  readonly holder: string;
  /** True once a renewal found the Lease taken by someone else (this runner must stop acting). */
  readonly lost: boolean;
  /** Throws a tempFail RunnerError when the lock was lost; call before irreversible steps. */
  assertHeld(): void;
  /** Stops renewing and frees the Lease if this runner still holds it. Idempotent; never throws. */
  release(): Promise<void>;
}

/** Lock options from MIGRATION_LOCK_LEASE, MIGRATION_POD_NAME and MIGRATION_LOCK_TTL_SECONDS. */
export function lockOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): LockOptions {
  const name = requiredName(env, Env.lockLease, "the migration's Lease");
  const rawTtl = env[Env.lockTtlSeconds];
  let ttlSeconds = DEFAULT_LOCK_TTL_SECONDS;
  if (rawTtl !== undefined && rawTtl !== '') {
    ttlSeconds = Number(rawTtl);
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 5 || ttlSeconds > 3600) {
      throw new RunnerError(`${Env.lockTtlSeconds} must be a whole number of seconds between 5 and 3600, got "${rawTtl}"`, {
        exitCode: ExitCode.usage,
        hint: `unset it for the default of ${DEFAULT_LOCK_TTL_SECONDS}`,
      });
    }
  }
  const holder = env[Env.podName] || `runner-${process.pid}`;
  return { name, holder, ttlSeconds };
}

function timeOf(value: Date | string | undefined): number | undefined {
  if (value === undefined || value === null) return undefined;
  // client-node returns MicroTime fields as the raw string it received.
  const ms = new Date(value as unknown as string).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

function microTime(date: Date): V1MicroTime {
  return new V1MicroTime(date.getTime());
}

/** When the Lease stops protecting its holder, or undefined when it is free. */
export function leaseExpiry(lease: V1Lease): Date | undefined {
  const spec = lease.spec ?? {};
  if (!spec.holderIdentity) return undefined;
  const renewed = timeOf(spec.renewTime) ?? timeOf(spec.acquireTime);
  if (renewed === undefined) return undefined;
  return new Date(renewed + (spec.leaseDurationSeconds ?? DEFAULT_LOCK_TTL_SECONDS) * 1000);
}

/**
 * Takes the lock or throws tempFail naming the holder and when its claim expires. Starts
 * renewing in the background; the returned lock must be released.
 */
export async function acquireLock(kube: KubeContext, options: LockOptions): Promise<HeldLock> {
  const now = options.now ?? (() => new Date());
  const ttlSeconds = options.ttlSeconds ?? DEFAULT_LOCK_TTL_SECONDS;
  const namespace = kube.namespace;
  const action = (verb: string) => ({ verb, resource: 'leases', group: 'coordination.k8s.io', namespace, ...(verb === 'create' ? {} : { name: options.name }) });
  const read = async (): Promise<V1Lease | undefined> => {
    try {
      return await callApi(kube, action('get'), () => kube.coordination.readNamespacedLease({ name: options.name, namespace }));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  };

  let lease: V1Lease | undefined;
  for (let attempt = 1; lease === undefined; attempt += 1) {
    if (attempt > 5) {
      throw new RunnerError(`could not take the lock ${options.name}: it changed hands ${attempt - 1} times while trying`, {
        exitCode: ExitCode.tempFail,
        hint: 'another runner is starting at the same time; this Job retries',
      });
    }
    const current = await read();
    const at = now();
    if (!current) {
      try {
        lease = await callApi(kube, action('create'), () =>
          kube.coordination.createNamespacedLease({
            namespace,
            body: {
              metadata: { name: options.name, namespace },
              spec: {
                holderIdentity: options.holder,
                leaseDurationSeconds: ttlSeconds,
                acquireTime: microTime(at),
                renewTime: microTime(at),
                leaseTransitions: 0,
              },
            },
          }),
        );
      } catch (error) {
        if (!isAlreadyExists(error)) throw error;
      }
      continue;
    }
    const expiry = leaseExpiry(current);
    const holder = current.spec?.holderIdentity;
    if (expiry && expiry.getTime() > at.getTime() && holder !== options.holder) {
      throw new RunnerError(
        `the migration lock ${options.name} is held by ${holder} until ${expiry.toISOString()} unless renewed`,
        {
          exitCode: ExitCode.tempFail,
          hint: `another runner is working; this Job retries. If ${holder} is gone, the lock frees itself at ${expiry.toISOString()}`,
        },
      );
    }
    const takeover: V1Lease = {
      ...current,
      spec: {
        ...current.spec,
        holderIdentity: options.holder,
        leaseDurationSeconds: ttlSeconds,
        acquireTime: microTime(at),
        renewTime: microTime(at),
        leaseTransitions: (current.spec?.leaseTransitions ?? 0) + (holder && holder !== options.holder ? 1 : 0),
      },
    };
    try {
      lease = await callApi(kube, action('update'), () =>
        kube.coordination.replaceNamespacedLease({ name: options.name, namespace, body: takeover }),
      );
      if (holder && holder !== options.holder) {
        kube.log.warn('took over an expired migration lock', { lease: options.name, previousHolder: holder });
      }
    } catch (error) {
      if (!isConflict(error)) throw error;
    }
  }

  return startRenewing(kube, options, lease, ttlSeconds, now, read, action);
}

function startRenewing(
  kube: KubeContext,
  options: LockOptions,
  acquired: V1Lease,
  ttlSeconds: number,
  now: () => Date,
  read: () => Promise<V1Lease | undefined>,
  action: (verb: string) => { verb: string; resource: string; group: string; namespace: string; name?: string },
): HeldLock {
  const namespace = kube.namespace;
  let latest = acquired;
  let lost = false;
  let released = false;
  let inFlight: Promise<void> = Promise.resolve();

  const write = async (spec: Partial<NonNullable<V1Lease['spec']>>): Promise<void> => {
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      try {
        latest = await callApi(kube, action('update'), () =>
          kube.coordination.replaceNamespacedLease({
            name: options.name,
            namespace,
            body: { ...latest, spec: { ...latest.spec, ...spec } },
          }),
        );
        return;
      } catch (error) {
        if (!isConflict(error) && !isNotFound(error)) throw error;
        // Someone wrote the Lease: still ours (e.g. a status reader) or taken over?
        const fresh = await read();
        if (!fresh || fresh.spec?.holderIdentity !== options.holder) {
          lost = true;
          kube.log.error('lost the migration lock: another runner took it over', {
            lease: options.name,
            holder: fresh?.spec?.holderIdentity ?? '(none)',
          });
          return;
        }
        latest = fresh;
      }
    }
  };

  const renew = () => {
    inFlight = inFlight
      .then(async () => {
        if (released || lost) return;
        await write({ renewTime: microTime(now()) });
      })
      .catch((error: unknown) => {
        // A failed renewal is not fatal by itself: the Lease is still valid until its TTL runs out.
        kube.log.warn('could not renew the migration lock', { lease: options.name, error: String(error) });
      });
  };
  const timer = setInterval(renew, options.renewIntervalMs ?? Math.max(1000, (ttlSeconds * 1000) / 3));
  timer.unref();

  return {
    name: options.name,
    holder: options.holder,
    get lost() {
      return lost;
    },
    assertHeld() {
      if (lost) {
        throw new RunnerError(`the migration lock ${options.name} was taken over by another runner`, {
          exitCode: ExitCode.tempFail,
          hint: 'this runner stopped before its next step; the other runner continues from the state ConfigMap',
        });
      }
    },
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await inFlight;
      if (lost) return;
      try {
        // Free, not delete: the next runner takes it with one update, and no delete verb is needed.
        await write({ holderIdentity: '', renewTime: microTime(now()), leaseDurationSeconds: 1 });
      } catch (error) {
        kube.log.warn('could not release the migration lock; it expires on its own', {
          lease: options.name,
          ttlSeconds,
          error: String(error),
        });
      }
    },
  };
}

/**
 * Runs `fn` holding the lock and releases it afterwards, whether `fn` succeeds or throws.
 * A runner that cannot get the lock throws tempFail naming the holder.
 */
export async function withLock<T>(kube: KubeContext, options: LockOptions, fn: (lock: HeldLock) => Promise<T>): Promise<T> {
  const lock = await acquireLock(kube, options);
  try {
    return await fn(lock);
  } finally {
    await lock.release();
  }
}
