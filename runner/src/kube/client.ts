/**
 * The runner's connection to the Kubernetes API: the KubeConfig (KUBECONFIG or the in-cluster
 * ServiceAccount, via client-node's `loadFromDefault`), the typed API clients, the namespace, and
 * `callApi`, through which every request goes so that a failure becomes one clear RunnerError:
 *
 * | API answer                         | error reason   | exit code          |
 * |------------------------------------|----------------|--------------------|
 * | 403 Forbidden                      | Forbidden      | noPermission (77)  |
 * | 401 Unauthorized                   | Unauthorized   | noPermission (77)  |
 * | 404 NotFound                       | NotFound       | usage (64)         |
 * | 409 AlreadyExists                  | AlreadyExists  | tempFail (75)      |
 * | 409 Conflict (stale resourceVersion) | Conflict     | tempFail (75)      |
 * | 422 Invalid, 400 BadRequest        | Invalid        | usage (64)         |
 * | 429, 5xx, connection refused/reset | Unavailable    | unavailable (69), after bounded retries |
 *
 * Callers that expect NotFound, AlreadyExists or Conflict test for them with `isNotFound` & co.
 */
import {
  ApiException,
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type ConfigurationOptions,
} from '@kubernetes/client-node';
import { Env, ExitCode, type ExitCodeValue } from '../../../lib/contract.js';
import { RunnerError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';

/** What a request tried to do, in RBAC terms, for error messages. */
/** Whether client-node's classes the runner calls are there (`--version` says so). */
export function kubeClientLoaded(): boolean {
  return [KubeConfig, CoreV1Api, AppsV1Api, CoordinationV1Api].every((value) => typeof value === 'function');
}

export interface ApiAction {
  /** RBAC verb: get, list, create, update, patch, delete. */
  readonly verb: string;
  /** Plural resource, with `/subresource` when there is one: `statefulsets/scale`. */
  readonly resource: string;
  /** API group; '' (the default) for core. */
  readonly group?: string;
  readonly name?: string;
  /** Undefined for cluster-scoped resources such as PersistentVolumes. */
  readonly namespace?: string;
}

export type KubeErrorReason =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Forbidden'
  | 'Unauthorized'
  | 'Invalid'
  | 'Unavailable'
  | 'Unexpected';

/** The parts of a Kubernetes `Status` body the runner reads. */
export interface KubeStatus {
  readonly message?: string;
  readonly reason?: string;
  readonly code?: number;
  readonly details?: { name?: string; group?: string; kind?: string };
}

/** A failed API call: a RunnerError whose exit code follows the table above. */
export class KubeApiError extends RunnerError {
  constructor(
    message: string,
    options: { exitCode: ExitCodeValue; hint?: string; cause?: unknown },
    readonly reason: KubeErrorReason,
    readonly action: ApiAction,
    readonly statusCode: number | undefined,
    readonly status: KubeStatus | undefined,
  ) {
    super(message, options);
    this.name = 'KubeApiError';
  }
}

export function isKubeApiError(error: unknown, reason?: KubeErrorReason): error is KubeApiError {
  return error instanceof KubeApiError && (reason === undefined || error.reason === reason);
}
export const isNotFound = (error: unknown): error is KubeApiError => isKubeApiError(error, 'NotFound');
export const isAlreadyExists = (error: unknown): error is KubeApiError => isKubeApiError(error, 'AlreadyExists');
export const isConflict = (error: unknown): error is KubeApiError => isKubeApiError(error, 'Conflict');

/** How often `callApi` retries a transient failure (429, 5xx, connection errors). */
export interface RetryPolicy {
  /** Attempts in all, the first included. @default 4 */
  readonly attempts: number;
  /** Delay before the first retry; doubled after each. @default 500 */
  readonly baseDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 4, baseDelayMs: 500 };

export interface KubeContext {
  readonly kubeConfig: KubeConfig;
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly coordination: CoordinationV1Api;
  /** The namespace of everything the runner touches (MIGRATION_NAMESPACE). */
  readonly namespace: string;
  readonly log: Logger;
  readonly retry: RetryPolicy;
}

export interface KubeContextOptions {
  /** @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** @default - `loadFromDefault()`: KUBECONFIG, ~/.kube/config, or the in-cluster ServiceAccount */
  readonly kubeConfig?: KubeConfig;
  /** @default - a logger on stderr */
  readonly log?: Logger;
  /** @default DEFAULT_RETRY_POLICY */
  readonly retry?: RetryPolicy;
}

/**
 * Loads the KubeConfig and builds the API clients. The namespace comes from MIGRATION_NAMESPACE
 * (set from the downward API in the hook Jobs); when unset, the kubeconfig context's namespace is
 * used so that `status` and `plan` work from a workstation.
 */
export function createKubeContext(options: KubeContextOptions = {}): KubeContext {
  const env = options.env ?? process.env;
  const kubeConfig = options.kubeConfig ?? loadDefaultKubeConfig();
  const contextNamespace = kubeConfig.getContextObject(kubeConfig.getCurrentContext())?.namespace;
  const namespace = env[Env.namespace] || contextNamespace;
  if (!namespace) {
    throw new RunnerError(`${Env.namespace} is not set and the kubeconfig context names no namespace`, {
      exitCode: ExitCode.usage,
      hint: `set ${Env.namespace} to the namespace of the release (the hook Jobs set it from metadata.namespace)`,
    });
  }
  return {
    kubeConfig,
    core: kubeConfig.makeApiClient(CoreV1Api),
    apps: kubeConfig.makeApiClient(AppsV1Api),
    coordination: kubeConfig.makeApiClient(CoordinationV1Api),
    namespace,
    log: options.log ?? createLogger({ env }),
    retry: options.retry ?? DEFAULT_RETRY_POLICY,
  };
}

function loadDefaultKubeConfig(): KubeConfig {
  const kubeConfig = new KubeConfig();
  try {
    kubeConfig.loadFromDefault();
  } catch (cause) {
    throw new RunnerError('cannot load a Kubernetes configuration', {
      exitCode: ExitCode.usage,
      hint: 'run inside a pod with a ServiceAccount token, or set KUBECONFIG to a readable kubeconfig file',
      cause,
    });
  }
  return kubeConfig;
}

/** Request options that send a JSON merge patch (client-node defaults to JSON patch). */
export function mergePatchOptions(): ConfigurationOptions {
  return setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
}

/** Options for a JSON patch (RFC 6902: `test` operations make it conditional). */
export function jsonPatchOptions(): ConfigurationOptions {
  return setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
}

/** Node's network error codes meaning the API server cannot be reached right now. */
const NETWORK_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE']);

function parseStatus(body: unknown): KubeStatus | undefined {
  if (typeof body === 'object' && body !== null) return body as KubeStatus;
  if (typeof body !== 'string' || body.length === 0) return undefined;
  try {
    const parsed: unknown = JSON.parse(body);
    return typeof parsed === 'object' && parsed !== null ? (parsed as KubeStatus) : undefined;
  } catch {
    return undefined;
  }
}

/** `statefulsets/scale "keycloak" (apps) in namespace kc` */
export function describeAction(action: ApiAction): string {
  const name = action.name ? ` "${action.name}"` : '';
  const group = action.group ? ` (API group ${action.group})` : '';
  const scope = action.namespace ? ` in namespace ${action.namespace}` : ' (cluster-scoped)';
  return `${action.resource}${name}${group}${scope}`;
}

/** The ServiceAccount the API server says made the request, from its Forbidden message. */
function serviceAccountFrom(status: KubeStatus | undefined): string | undefined {
  const match = /User "system:serviceaccount:([^:"]+):([^"]+)"/.exec(status?.message ?? '');
  return match ? `${match[1]}/${match[2]}` : undefined;
}

function networkCode(error: unknown): string | undefined {
  for (let current: unknown = error, depth = 0; current && depth < 5; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) return code;
    const errno = (current as { errno?: unknown }).errno;
    if (typeof errno === 'string' && NETWORK_ERROR_CODES.has(errno)) return errno;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Classifies a client-node failure; a RunnerError passes through unchanged. */
export function toKubeError(error: unknown, action: ApiAction): RunnerError {
  if (error instanceof RunnerError) return error;
  const what = describeAction(action);
  if (error instanceof ApiException) {
    const code = error.code as number;
    const status = parseStatus(error.body);
    const serverSays = status?.message ? `: ${status.message}` : '';
    const make = (reason: KubeErrorReason, exitCode: ExitCodeValue, message: string, hint?: string) =>
      new KubeApiError(message, hint === undefined ? { exitCode, cause: error } : { exitCode, hint, cause: error }, reason, action, code, status);
    if (code === 403) {
      const account = serviceAccountFrom(status);
      const who = account ? `ServiceAccount ${account}` : "the runner's ServiceAccount";
      const where = action.namespace ? 'the migration Role' : 'the migration ClusterRole';
      return make(
        'Forbidden',
        ExitCode.noPermission,
        `Kubernetes RBAC denied ${action.verb} on ${what}`,
        `grant "${action.verb}" on "${action.resource}" (apiGroups: ["${action.group ?? ''}"]) to ${who} in ${where}`,
      );
    }
    if (code === 401) {
      return make(
        'Unauthorized',
        ExitCode.noPermission,
        `the Kubernetes API server rejected the runner's credentials while trying to ${action.verb} ${what}`,
        'check that the Job runs with automountServiceAccountToken: true, or that KUBECONFIG holds a valid token',
      );
    }
    if (code === 404) {
      return make('NotFound', ExitCode.usage, `${what} not found`, 'check the name in the migration configuration');
    }
    if (code === 409) {
      return status?.reason === 'AlreadyExists'
        ? make('AlreadyExists', ExitCode.tempFail, `${what} already exists`)
        : make('Conflict', ExitCode.tempFail, `${what} was changed by someone else while the runner updated it`, 'run again: the runner re-reads and re-decides');
    }
    if (code === 400 || code === 422) {
      return make('Invalid', ExitCode.usage, `the API server rejected ${action.verb} on ${what}${serverSays}`, 'check the names and sizes in the migration configuration');
    }
    if (code === 429 || code >= 500) {
      return make('Unavailable', ExitCode.unavailable, `the Kubernetes API server answered ${code} to ${action.verb} on ${what}${serverSays}`, 'retry: the API server is overloaded or restarting');
    }
    return make('Unexpected', ExitCode.unexpected, `the Kubernetes API server answered ${code} to ${action.verb} on ${what}${serverSays}`);
  }
  const network = networkCode(error);
  if (network) {
    return new KubeApiError(
      `cannot reach the Kubernetes API server (${network}) to ${action.verb} ${what}`,
      { exitCode: ExitCode.unavailable, hint: 'check KUBERNETES_SERVICE_HOST/PORT (or the kubeconfig server) and that the API server is up', cause: error },
      'Unavailable',
      action,
      undefined,
      undefined,
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new KubeApiError(`${action.verb} ${what} failed: ${message}`, { exitCode: ExitCode.unexpected, cause: error }, 'Unexpected', action, undefined, undefined);
}

/**
 * Runs one API request, retrying transient failures (429, 5xx, connection errors) with
 * exponential backoff, and turns any failure into a RunnerError naming the action. Requests
 * retried here must be safe to repeat: reads, updates guarded by resourceVersion, scale patches,
 * deletes (the caller accepts NotFound), creates (the caller accepts AlreadyExists).
 */
export async function callApi<T>(kube: Pick<KubeContext, 'retry' | 'log'>, action: ApiAction, request: () => Promise<T>): Promise<T> {
  const { attempts, baseDelayMs } = kube.retry;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await request();
    } catch (error) {
      const classified = toKubeError(error, action);
      if (!isKubeApiError(classified, 'Unavailable') || attempt >= attempts) throw classified;
      const delayMs = baseDelayMs * 2 ** (attempt - 1);
      kube.log.warn('Kubernetes API call failed, retrying', { action: describeAction(action), verb: action.verb, attempt, delayMs, error: classified.message });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
