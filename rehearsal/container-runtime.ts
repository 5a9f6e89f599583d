/**
 * What the kubelet does before it starts a runner container (a hook Job's or Keycloak's
 * database-gate init container), as local processes can have it:
 *
 * - Volumes → directories: `emptyDir` → a fresh directory per pod; a PVC → its volume's
 *   directory (volumes.ts; the pod waits while the claim is missing or unbound); `configMap` /
 *   `secret` → files. With a pod `fsGroup`, volume directories get that group, group-writable and
 *   setgid, as the kubelet's ownership management does.
 * - Environment per pod-env.ts (Secrets, ConfigMaps, downward API, `$(VAR)`), Service hosts
 *   mapped to the rehearsal's proxies; then any value or argument equal to a mount path or below
 *   one is rewritten to the directory (`MIGRATION_BACKUP_DIR=/backup` → the backup volume's
 *   directory). `PATH` is the image's (PostgreSQL 15 client tools first), `HOME` a per-pod
 *   directory, `TMPDIR` the directory of a `/tmp` mount when there is one, `HOSTNAME` the pod.
 * - Identity: the process runs with the container's (else the pod's) `runAsUser`/`runAsGroup`.
 * - The ServiceAccount token: when `automountServiceAccountToken` (pod, else ServiceAccount,
 *   else true) is on, `KUBECONFIG` names a file with a token of
 *   `system:serviceaccount:<ns>:<sa>` for the fake API, which then enforces exactly the RBAC
 *   objects that exist; otherwise there is no credential at all.
 */
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { FakeKubeApiServer, KubeObject as StoredObject } from '../test/support/fake-kube/index.js';

import { expand, mapServiceHosts, PodConfigError, resolveContainerEnv, type Container, type HostMapping } from './pod-env.js';
import type { ServiceProxies } from './service-proxy.js';
import type { Volumes } from './volumes.js';

/** Client tools first, as in the runner image (pg_dump/pg_restore of major 15 on this machine). */
export const IMAGE_PATH = '/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin';

export interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: { runAsUser?: number; runAsGroup?: number; fsGroup?: number };
  initContainers?: Container[];
  containers: Container[];
  volumes?: {
    name: string;
    emptyDir?: object;
    persistentVolumeClaim?: { claimName: string };
    configMap?: { name: string; optional?: boolean };
    secret?: { secretName: string; optional?: boolean };
  }[];
}

export interface RuntimeContext {
  readonly server: FakeKubeApiServer;
  readonly namespace: string;
  readonly volumes: Volumes;
  readonly proxies: ServiceProxies;
}

export interface PreparedContainer {
  readonly env: Record<string, string>;
  readonly args: string[];
  readonly uid: number;
  readonly gid: number;
  readonly mappings: readonly HostMapping[];
  /** mountPath → directory. */
  readonly mounts: ReadonlyMap<string, string>;
}

/**
 * Prepares `container` of `pod` to run as a local process. Throws {@link PodConfigError} while
 * something it needs is missing (the caller waits and retries, as the kubelet does).
 */
export async function prepareContainer(
  context: RuntimeContext,
  pod: StoredObject,
  podSpec: PodSpec,
  container: Container & { securityContext?: { runAsUser?: number; runAsGroup?: number } },
  podDir: string,
): Promise<PreparedContainer> {
  const { server, namespace } = context;
  const uid = container.securityContext?.runAsUser ?? podSpec.securityContext?.runAsUser ?? 0;
  const gid = container.securityContext?.runAsGroup ?? podSpec.securityContext?.runAsGroup ?? 0;
  const fsGroup = podSpec.securityContext?.fsGroup;
  const mounts = new Map<string, string>();
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
        writeFileSync(join(directory, key), kind === 'Secret' ? Buffer.from(value, 'base64') : value);
      }
      giveToGroup(directory, fsGroup ?? gid, uid);
    } else {
      throw new Error(`pod ${pod.metadata.name}: volume ${volume.name} has a type the rehearsal does not model: ${JSON.stringify(volume)}`);
    }
    mounts.set(mount.mountPath, directory);
  }

  const resolved = resolveContainerEnv(server, pod, container);
  const mappings = await mapServiceHosts(resolved, context.proxies);
  const mapPath = (value: string): string => {
    for (const [mountPath, directory] of mounts) {
      if (value === mountPath) return directory;
      if (value.startsWith(`${mountPath}/`)) return directory + value.slice(mountPath.length);
    }
    return value;
  };
  const env: Record<string, string> = Object.fromEntries(Object.entries(resolved).map(([key, value]) => [key, mapPath(value)]));
  const home = join(podDir, 'home', container.name);
  mkdirSync(home, { recursive: true });
  chownSync(home, uid, gid);
  env.PATH = IMAGE_PATH;
  env.HOME = home;
  env.HOSTNAME = pod.metadata.name;
  if (mounts.has('/tmp')) env.TMPDIR = mounts.get('/tmp')!;

  const serviceAccountName = podSpec.serviceAccountName ?? 'default';
  const serviceAccount = server.get({ apiVersion: 'v1', kind: 'ServiceAccount', name: serviceAccountName, namespace });
  const automount = podSpec.automountServiceAccountToken ?? (serviceAccount?.automountServiceAccountToken as boolean | undefined) ?? true;
  if (automount) {
    const token = server.tokenForServiceAccount(namespace, serviceAccountName);
    const kubeconfig = join(podDir, `kubeconfig-${container.name}`);
    env.KUBECONFIG = server.writeKubeconfig(kubeconfig, token, namespace);
    chownSync(kubeconfig, uid, gid);
  }

  const args = containerArgs(container, resolved).map(mapPath);
  return { env, args, uid, gid, mappings, mounts };
}

/**
 * The runner's argv from the container: without `command` the image's entrypoint (the bundle)
 * gets `args`; a `command` must itself run the bundle with node (anything else cannot be
 * rehearsed, and says so).
 */
export function containerArgs(container: Container, env: Record<string, string>): string[] {
  const args = (container.args ?? []).map((arg) => expand(arg, env));
  if (!container.command || container.command.length === 0) return args;
  const command = container.command.map((part) => expand(part, env));
  const [program, script, ...rest] = command;
  if (program && /(^|\/)node$/.test(program) && script && /runner\.mjs$/.test(script)) return [...rest, ...args];
  throw new Error(
    `container ${container.name} overrides the image command with ${JSON.stringify(container.command)}: the rehearsal can only run the runner bundle ` +
      `(no command, or ["node", "<path>/runner.mjs", ...])`,
  );
}

function giveToGroup(directory: string, group: number, owner?: number): void {
  const current = owner ?? 0;
  chownSync(directory, current, group);
  // rwx for owner and group, setgid so new files keep the group (what fsGroup ownership does).
  chmodSync(directory, 0o2775);
}
