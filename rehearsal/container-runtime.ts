/**
 * The kubelet and container runtime of the rehearsal for runner containers (each hook Job's
 * container and Keycloak's database-gate init container): a real `podman run` of the runner image
 * (`npm run image`; scripts/build-image.ts), as the kubelet would have containerd run it.
 *
 * - Volumes → host directories mounted at their `mountPath` (`readOnly` → `:ro`, `subPath`):
 *   `emptyDir` → a fresh directory per pod; a PVC → its volume's directory (volumes.ts; the pod
 *   waits while the claim is missing or unbound); `configMap` / `secret` → files. With a pod
 *   `fsGroup`, volume directories get that group, group-writable and setgid (the kubelet's
 *   ownership management), and the container gets it as a supplementary group.
 * - Environment per pod-env.ts (Secrets, ConfigMaps, downward API, `$(VAR)`) with Service hosts
 *   mapped to the rehearsal's proxies (the containers share the host's network, so 127.0.0.1
 *   reaches them); nothing else is rewritten: paths are the manifest's, inside the container.
 * - securityContext (container over pod): runAsUser/runAsGroup (`--user`; else the image's USER),
 *   runAsNonRoot (refused with the kubelet's message when the user is 0), readOnlyRootFilesystem
 *   (`--read-only`, without podman's extra tmpfs mounts: only the pod's volumes are writable),
 *   capabilities drop/add, allowPrivilegeEscalation false (`no-new-privileges`), seccompProfile
 *   RuntimeDefault (podman's default profile; unset or Unconfined → unconfined, the kubelet's
 *   default).
 * - The ServiceAccount token as a real pod gets it: when `automountServiceAccountToken` (pod,
 *   else ServiceAccount, else true) is on, `token`, `ca.crt` and `namespace` at
 *   /var/run/secrets/kubernetes.io/serviceaccount and KUBERNETES_SERVICE_HOST/PORT naming an HTTPS
 *   front of the fake API server, so client-node's in-cluster configuration is what the runner
 *   uses. The token is of `system:serviceaccount:<ns>:<sa>`; the fake API enforces exactly the RBAC
 *   objects that exist. Otherwise there is no credential at all.
 * - `command` replaces the image's ENTRYPOINT, `args` its CMD, as in Kubernetes.
 * - One deliberate addition when the context names {@link ClientTools} (a PostgreSQL 15 target):
 *   this machine's 15 client tools, mounted read-only, and PG_BINDIR naming them (unless the
 *   manifest sets it).
 * - Stopping: {@link ContainerProcess.kill} is `podman kill --signal`; the runner is PID 1, so a
 *   signal it does not handle is ignored, as in a pod.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { chmodSync, chownSync, closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { apiServerTlsFront, type FakeKubeApiServer, type KubeObject as StoredObject } from '../test/support/fake-kube/index.js';

import { ensureRunnerImage, formatImageSize } from '../scripts/build-image.js';

import { expand, mapServiceHosts, PodConfigError, resolveContainerEnv, type Container, type HostMapping } from './pod-env.js';
import { onProcessExit } from './postgres-processes.js';
import type { ServiceProxies } from './service-proxy.js';
import type { Volumes } from './volumes.js';

/** Where a pod's ServiceAccount credentials are mounted (client-node's in-cluster paths). */
export const SERVICE_ACCOUNT_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';
/** The image's numeric USER (runner/Dockerfile), used when no securityContext names a user. */
const IMAGE_USER = { uid: 65532, gid: 65532 };
/**
 * This machine's PostgreSQL 15 client tools, for a rehearsal whose new database is 15 (the repmgr
 * flavor: Debian bookworm packages repmgr for 15 only). The image's pg_restore 17 cannot restore
 * into an older server — every restore begins with `SET transaction_timeout = 0`, a PostgreSQL 17
 * setting pg_restore emits whatever the server, which 15 rejects — so those runner containers get
 * them mounted read-only and PG_BINDIR naming them (the trixie image carries every library they
 * link). A rehearsal into PostgreSQL 17 (CloudNativePG, the product's default) runs the image's own
 * tools, as a cluster does.
 */
export const HOST_CLIENT_TOOLS: ClientTools = { hostPath: '/usr/lib/postgresql/15', binDir: '/usr/lib/postgresql/15/bin' };

/** Client tools mounted into the runner containers instead of the image's own. */
export interface ClientTools {
  readonly hostPath: string;
  readonly binDir: string;
}

/** Where the image's entrypoint finds the bundle: a test program can be mounted over it. */
const IMAGE_BUNDLE_PATH = '/opt/runner/runner.mjs';

export interface SecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
}

export interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: SecurityContext & { fsGroup?: number; supplementalGroups?: number[] };
  initContainers?: RunnerContainer[];
  containers: RunnerContainer[];
  volumes?: {
    name: string;
    emptyDir?: object;
    persistentVolumeClaim?: { claimName: string };
    configMap?: { name: string; optional?: boolean };
    secret?: { secretName: string; optional?: boolean };
  }[];
}

export type RunnerContainer = Container & { securityContext?: SecurityContext; workingDir?: string };

export interface RuntimeContext {
  readonly server: FakeKubeApiServer;
  readonly namespace: string;
  readonly volumes: Volumes;
  readonly proxies: ServiceProxies;
  /** Client tools instead of the image's own (see {@link HOST_CLIENT_TOOLS}). @default - the image's */
  readonly clientTools?: ClientTools;
}

export interface VolumeMount {
  readonly hostPath: string;
  readonly containerPath: string;
  readonly readOnly: boolean;
}

export interface PreparedContainer {
  /** The container's environment exactly as resolved (Service hosts mapped), plus the API server's. */
  readonly env: Record<string, string>;
  /** `command` with `$(VAR)` expanded: replaces the image's ENTRYPOINT when set. */
  readonly command?: string[];
  /** `args` with `$(VAR)` expanded. */
  readonly args: string[];
  readonly uid: number;
  readonly gid: number;
  readonly supplementaryGroups: readonly number[];
  readonly mappings: readonly HostMapping[];
  readonly mounts: readonly VolumeMount[];
  /** podman flags for the securityContext. */
  readonly securityOptions: readonly string[];
  readonly workingDir?: string;
}

/**
 * Prepares `container` of `pod`. Throws {@link PodConfigError} while something it needs is
 * missing (the caller waits and retries, as the kubelet does).
 */
export async function prepareContainer(
  context: RuntimeContext,
  pod: StoredObject,
  podSpec: PodSpec,
  container: RunnerContainer,
  podDir: string,
): Promise<PreparedContainer> {
  const { server, namespace } = context;
  const podSecurity = podSpec.securityContext ?? {};
  const security: SecurityContext = { ...podSecurity, ...(container.securityContext ?? {}) };
  const uid = security.runAsUser ?? IMAGE_USER.uid;
  const gid = security.runAsGroup ?? (security.runAsUser === undefined ? IMAGE_USER.gid : 0);
  if (security.runAsNonRoot && uid === 0) {
    throw new Error(`pod ${pod.metadata.name}: container ${container.name} has runAsNonRoot and image will run as root`);
  }
  const fsGroup = podSecurity.fsGroup;
  const supplementaryGroups = [...(fsGroup !== undefined ? [fsGroup] : []), ...(podSecurity.supplementalGroups ?? [])];

  const mounts: VolumeMount[] = [];
  for (const mount of container.volumeMounts ?? []) {
    const volume = (podSpec.volumes ?? []).find((v) => v.name === mount.name);
    if (!volume) throw new Error(`pod ${pod.metadata.name}: volumeMount ${mount.name} names no volume`);
    let directory: string;
    if (volume.emptyDir) {
      directory = join(podDir, 'volumes', volume.name);
      mkdirSync(directory, { recursive: true });
      giveToGroup(directory, fsGroup ?? gid, uid);
    } else if (volume.persistentVolumeClaim) {
      const claimDir = context.volumes.directoryOfClaim(volume.persistentVolumeClaim.claimName);
      if (!claimDir) throw new PodConfigError(`persistentvolumeclaim "${volume.persistentVolumeClaim.claimName}" not found or not bound`);
      directory = claimDir;
      if (fsGroup !== undefined) giveToGroup(directory, fsGroup);
    } else if (volume.configMap || volume.secret) {
      directory = join(podDir, 'volumes', volume.name);
      mkdirSync(directory, { recursive: true });
      const kind = volume.configMap ? 'ConfigMap' : 'Secret';
      const sourceName = volume.configMap?.name ?? volume.secret!.secretName;
      const object = server.get({ apiVersion: 'v1', kind, name: sourceName, namespace });
      const optional = volume.configMap?.optional ?? volume.secret?.optional ?? false;
      if (!object && !optional) throw new PodConfigError(`${kind.toLowerCase()} "${sourceName}" not found (volume ${volume.name})`);
      for (const [key, value] of Object.entries((object?.data ?? {}) as Record<string, string>)) {
        writeFileSync(join(directory, key), kind === 'Secret' ? Buffer.from(value, 'base64') : value, { mode: 0o644 });
      }
      giveToGroup(directory, fsGroup ?? gid, 0);
    } else {
      throw new Error(`pod ${pod.metadata.name}: volume ${volume.name} has a type the rehearsal does not model: ${JSON.stringify(volume)}`);
    }
    const hostPath = mount.subPath ? join(directory, mount.subPath) : directory;
    if (mount.subPath) mkdirSync(hostPath, { recursive: true });
    mounts.push({ hostPath, containerPath: mount.mountPath, readOnly: mount.readOnly ?? false });
  }

  const resolved = resolveContainerEnv(server, pod, container);
  const mappings = await mapServiceHosts(resolved, context.proxies);
  const env: Record<string, string> = {};

  const serviceAccountName = podSpec.serviceAccountName ?? 'default';
  const serviceAccount = server.get({ apiVersion: 'v1', kind: 'ServiceAccount', name: serviceAccountName, namespace });
  const automount = podSpec.automountServiceAccountToken ?? (serviceAccount?.automountServiceAccountToken as boolean | undefined) ?? true;
  if (automount) {
    const front = await apiServerTlsFront(server);
    // What the kubelet puts into every pod's environment for the `kubernetes` Service.
    env.KUBERNETES_SERVICE_HOST = front.host;
    env.KUBERNETES_SERVICE_PORT = String(front.port);
    env.KUBERNETES_SERVICE_PORT_HTTPS = String(front.port);
    const credentials = join(podDir, `serviceaccount-${container.name}`);
    mkdirSync(credentials, { recursive: true, mode: 0o755 });
    writeFileSync(join(credentials, 'token'), server.tokenForServiceAccount(namespace, serviceAccountName), { mode: 0o644 });
    writeFileSync(join(credentials, 'ca.crt'), front.caCertificate, { mode: 0o644 });
    writeFileSync(join(credentials, 'namespace'), namespace, { mode: 0o644 });
    mounts.push({ hostPath: credentials, containerPath: SERVICE_ACCOUNT_MOUNT, readOnly: true });
  }
  Object.assign(env, resolved);
  if (env.PG_BINDIR === undefined && context.clientTools) {
    env.PG_BINDIR = context.clientTools.binDir;
    mounts.push({ hostPath: context.clientTools.hostPath, containerPath: context.clientTools.hostPath, readOnly: true });
  }

  const command = container.command && container.command.length > 0 ? container.command.map((part) => expand(part, resolved)) : undefined;
  const args = (container.args ?? []).map((arg) => expand(arg, resolved));
  return {
    env,
    ...(command ? { command } : {}),
    args,
    uid,
    gid,
    supplementaryGroups,
    mappings,
    mounts,
    securityOptions: securityOptions(security),
    ...(container.workingDir ? { workingDir: container.workingDir } : {}),
  };
}

/** podman's flags for a (merged pod + container) securityContext. */
export function securityOptions(security: SecurityContext): string[] {
  const options: string[] = [];
  if (security.privileged) options.push('--privileged');
  if (security.readOnlyRootFilesystem) options.push('--read-only', '--read-only-tmpfs=false');
  for (const capability of security.capabilities?.drop ?? []) options.push(`--cap-drop=${capability}`);
  for (const capability of security.capabilities?.add ?? []) options.push(`--cap-add=${capability}`);
  if (security.allowPrivilegeEscalation === false) options.push('--security-opt', 'no-new-privileges');
  const seccomp = security.seccompProfile?.type;
  if (seccomp === 'Localhost') throw new Error('seccompProfile Localhost is not modelled by the rehearsal');
  if (seccomp !== 'RuntimeDefault') options.push('--security-opt', 'seccomp=unconfined');
  return options;
}

export interface StartContainerOptions {
  /** Unique among running containers; a random suffix is added. */
  readonly name: string;
  readonly hostname: string;
  readonly prepared: PreparedContainer;
  /** stdout and stderr of the container (and podman's own errors), appended. */
  readonly logFile: string;
  /** @default runnerImage() */
  readonly image?: string;
  /** A host file mounted over the image's bundle (a stand-in program for the Job controller's own tests). */
  readonly bundleOverride?: string;
}

/** Starts the container with `podman run`; it runs until it exits or is killed. */
export function startContainer(options: StartContainerOptions): ContainerProcess {
  const { prepared } = options;
  const name = `rehearsal-${options.name}-${randomBytes(3).toString('hex')}`.slice(0, 250);
  const argv = [
    'run', '--rm', '--pull=never', '--name', name, '--network=host', '--hostname', options.hostname,
    // Output goes to the attached client, i.e. the log file; podman keeps no second copy.
    '--log-driver=none',
    '--user', `${prepared.uid}:${prepared.gid}`,
    ...prepared.supplementaryGroups.flatMap((group) => ['--group-add', String(group)]),
    ...prepared.securityOptions,
    ...prepared.mounts.flatMap((mount) => ['-v', `${mount.hostPath}:${mount.containerPath}${mount.readOnly ? ':ro' : ''}`]),
    ...(options.bundleOverride ? ['-v', `${options.bundleOverride}:${IMAGE_BUNDLE_PATH}:ro`] : []),
    ...Object.entries(prepared.env).flatMap(([key, value]) => ['-e', `${key}=${value}`]),
    ...(prepared.workingDir ? ['--workdir', prepared.workingDir] : []),
    ...(prepared.command ? ['--entrypoint', JSON.stringify(prepared.command)] : []),
    options.image ?? runnerImage(),
    ...prepared.args,
  ];
  const logFd = openSync(options.logFile, 'a');
  const client = spawn('podman', argv, { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  return new ContainerProcess(name, client);
}

/**
 * A running container, shaped like the ChildProcess the rehearsal's callers know: `kill(signal)`
 * (delivered by `podman kill` to the container's PID 1), `exitCode`/`signalCode` once it ended,
 * an `exit` event. A container that exits with 128 + n after the rehearsal sent it signal n
 * reports that signal, as a killed process would.
 */
export class ContainerProcess extends EventEmitter {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  private readonly signalsSent = new Set<NodeJS.Signals>();
  private ended = false;
  private readonly forgetExitCleanup: () => void;

  constructor(
    readonly containerName: string,
    client: ChildProcess,
  ) {
    super();
    // A test process that dies must not leave containers behind.
    this.forgetExitCleanup = onProcessExit(() => {
      spawnSync('podman', ['rm', '--force', '--time', '0', containerName], { stdio: 'ignore' });
    });
    client.once('exit', (code, signal) => {
      this.ended = true;
      this.forgetExitCleanup();
      const killedBy = [...this.signalsSent].find((sent) => code === 128 + SIGNAL_NUMBERS[sent]!);
      if (killedBy) this.signalCode = killedBy;
      else this.exitCode = code ?? 128 + (signal ? SIGNAL_NUMBERS[signal] ?? 0 : 0);
      this.emit('exit', this.exitCode, this.signalCode);
    });
  }

  /** Sends `signal` to the container; retried while podman is still creating it. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.ended) return false;
    this.signalsSent.add(signal);
    const attempt = (): void => {
      if (this.ended) return;
      const killer = spawn('podman', ['kill', '--signal', signal, this.containerName], { stdio: 'ignore' });
      killer.once('exit', (code) => {
        if (code !== 0 && !this.ended) setTimeout(attempt, 100);
      });
    };
    attempt();
    return true;
  }
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

let imageReference: string | undefined;

/**
 * The runner image of the current sources: REHEARSAL_RUNNER_IMAGE (set by the rehearsal's global
 * set-up, which builds it), else {@link ensureRunnerImage} in this process.
 */
export function runnerImage(): string {
  imageReference ??= process.env.REHEARSAL_RUNNER_IMAGE || ensureRunnerImage().reference;
  return imageReference;
}

/** `<reference> (<size>)` for reports. */
export function describeRunnerImage(reference: string): string {
  const size = Number(execFileSync('podman', ['image', 'inspect', '--format', '{{.Size}}', reference], { encoding: 'utf8' }).trim());
  return `${reference} (${formatImageSize(size)})`;
}

function giveToGroup(directory: string, group: number, owner?: number): void {
  const current = owner ?? 0;
  chownSync(directory, current, group);
  // rwx for owner and group, setgid so new files keep the group (what fsGroup ownership does).
  chmodSync(directory, 0o2775);
}
