/**
 * Adopting the legacy database from unambiguous evidence, when the configured names do not reach
 * it: Bitnami's `postgresql` keeps its labels through every name override, `architecture:
 * replication` (`<name>-primary` + `-read`) and `auth.existingSecret`, and its pod spec says which
 * Secret and key hold each password — whatever the chart generation calls the keys.
 *
 * | found                                                        | adopted                         |
 * |--------------------------------------------------------------|---------------------------------|
 * | configured StatefulSet, its password unset (Secret or key    | its pods' Secret + key for      |
 * |   absent: `existingSecret`, the 10.x chart's key names)      |   SOURCE_PGUSER; configured host|
 * | no configured StatefulSet, ONE primary by label              | that StatefulSet, its Service   |
 * |                                                              |   (same name), its pods' Secret |
 * | two primaries by label                                       | none: exit 78 naming them       |
 * | pods reference no Secret for SOURCE_PGUSER                   | none: exit 78 naming the field  |
 * | the Secret lacks the key                                     | none: exit 78 naming the keys   |
 *
 * What is adopted is recorded in the state at decide time ({@link AdoptedLegacy}); every later
 * Job reads the Secret again by name ({@link configWithAdoptedLegacy}) and so uses the same
 * database. Secrets are read by name only, never listed: the name comes from the pod spec.
 */
import type { V1Container, V1PodSpec, V1StatefulSet } from '@kubernetes/client-node';

import { DeleteLegacy, Env, ExitCode } from '../../../lib/contract.js';
import type { HookConfig } from '../config.js';
import { RunnerError } from '../errors.js';
import { callApi, isNotFound, type KubeContext } from '../kube/client.js';
import { serviceAddress } from '../kube/service-address.js';
import { registerSecret } from '../log.js';
import type { AdoptedLegacy, SecretKeyReference } from '../state.js';

export type { AdoptedLegacy, SecretKeyReference } from '../state.js';

/** Password variables of Bitnami's postgresql container, every chart generation. */
const ADMIN_PASSWORD_VARIABLES = ['POSTGRES_POSTGRES_PASSWORD', 'POSTGRESQL_POSTGRES_PASSWORD'] as const;
const USER_PASSWORD_VARIABLES = ['POSTGRES_PASSWORD', 'POSTGRESQL_PASSWORD'] as const;
const USER_NAME_VARIABLES = ['POSTGRES_USER', 'POSTGRESQL_USERNAME', 'POSTGRES_USERNAME'] as const;
const SUPERUSER = 'postgres';

/** Labels a read replica carries (`architecture: replication`'s `-read`, older charts' `slave`). */
const REPLICA_LABEL_VALUES = new Set(['read', 'replica', 'slave', 'secondary']);
const ROLE_LABELS = ['app.kubernetes.io/component', 'role'] as const;

function roleLabels(statefulSet: V1StatefulSet): string[] {
  const sources = [statefulSet.metadata?.labels, statefulSet.spec?.template?.metadata?.labels, statefulSet.spec?.selector?.matchLabels];
  return sources.flatMap((labels) => ROLE_LABELS.map((key) => labels?.[key]).filter((value): value is string => value !== undefined));
}

/** A StatefulSet of the legacy selector that is not a read replica (the primary, or the only one). */
export function isPrimaryCandidate(statefulSet: V1StatefulSet): boolean {
  return !roleLabels(statefulSet).some((value) => REPLICA_LABEL_VALUES.has(value));
}

/** Where a pod finds one password: the Secret + key, and how the pod spec says so. */
export interface PasswordReference extends SecretKeyReference {
  /** e.g. `env POSTGRES_POSTGRES_PASSWORD_FILE → volume postgresql-password`. */
  readonly via: string;
}

function databaseContainer(pod: V1PodSpec | undefined): V1Container | undefined {
  const known = new Set<string>([...ADMIN_PASSWORD_VARIABLES, ...USER_PASSWORD_VARIABLES].flatMap((name) => [name, `${name}_FILE`]));
  return (pod?.containers ?? []).find((container) => (container.env ?? []).some((variable) => known.has(variable.name)));
}

/** The Secret + key behind a file path of the container (mount → volume → items or file name). */
function secretBehindFile(pod: V1PodSpec, container: V1Container, path: string): SecretKeyReference | undefined {
  const mounts = [...(container.volumeMounts ?? [])].sort((a, b) => b.mountPath.length - a.mountPath.length);
  for (const mount of mounts) {
    const base = mount.mountPath.endsWith('/') ? mount.mountPath : `${mount.mountPath}/`;
    // A file mounted by itself (subPath) is at the mount path; a directory's files below it.
    if (path !== mount.mountPath && !path.startsWith(base)) continue;
    const relative = [mount.subPath, path === mount.mountPath ? '' : path.slice(base.length)].filter(Boolean).join('/');
    if (!relative) continue;
    const volume = (pod.volumes ?? []).find((candidate) => candidate.name === mount.name);
    const sources = volume?.secret?.secretName
      ? [{ name: volume.secret.secretName, items: volume.secret.items }]
      : (volume?.projected?.sources ?? []).flatMap((source) => (source.secret?.name ? [{ name: source.secret.name, items: source.secret.items }] : []));
    for (const source of sources) {
      if (source.items) {
        const item = source.items.find((candidate) => candidate.path === relative);
        if (item) return { name: source.name, key: item.key };
      } else if (!relative.includes('/')) {
        return { name: source.name, key: relative };
      }
    }
    return undefined;
  }
  return undefined;
}

/**
 * The Secret + key holding `user`'s password in the database pod's spec: the superuser's
 * variables for `postgres`, the application user's when `user` is the one the pod creates.
 * Undefined when the spec holds none (a literal value, or no such variable).
 */
export function passwordReference(pod: V1PodSpec | undefined, user: string): PasswordReference | undefined {
  const container = databaseContainer(pod);
  if (!pod || !container) return undefined;
  const env = container.env ?? [];
  const literal = (name: string) => env.find((variable) => variable.name === name)?.value;
  const appUser = USER_NAME_VARIABLES.map(literal).find((value) => value !== undefined) ?? SUPERUSER;
  // With `auth.username` postgres (or none) the chart sets only POSTGRES_PASSWORD, the superuser's.
  const variables =
    user === SUPERUSER ? [...ADMIN_PASSWORD_VARIABLES, ...(appUser === SUPERUSER ? USER_PASSWORD_VARIABLES : [])] : user === appUser ? USER_PASSWORD_VARIABLES : [];
  for (const name of variables) {
    const ref = env.find((variable) => variable.name === name)?.valueFrom?.secretKeyRef;
    if (ref?.name) return { name: ref.name, key: ref.key, via: `env ${name} (secretKeyRef)` };
    const file = literal(`${name}_FILE`);
    const behind = file ? secretBehindFile(pod, container, file) : undefined;
    if (behind) return { ...behind, via: `env ${name}_FILE=${file}` };
  }
  return undefined;
}

/** GETs the Secret by name and returns the key's value; a missing Secret or key is a 78 naming what is there. */
export async function readSecretKey(kube: KubeContext, ref: SecretKeyReference, purpose: string): Promise<string> {
  const { namespace } = kube;
  let data: Record<string, string>;
  try {
    const secret = await callApi(kube, { verb: 'get', resource: 'secrets', name: ref.name, namespace }, () => kube.core.readNamespacedSecret({ name: ref.name, namespace }));
    data = secret.data ?? {};
  } catch (error) {
    if (!isNotFound(error)) throw error;
    throw new RunnerError(`${purpose}: Secret ${ref.name} does not exist`, {
      exitCode: ExitCode.config,
      hint: `create Secret ${ref.name} with key ${ref.key} (the database pods read it), or point legacyDatabase.secretName / passwordKey at the Secret that holds the password`,
    });
  }
  const encoded = data[ref.key];
  if (encoded === undefined) {
    // Key names only: the values are passwords.
    throw new RunnerError(`${purpose}: Secret ${ref.name} has no key ${ref.key} (keys present: ${Object.keys(data).sort().join(', ') || 'none'})`, {
      exitCode: ExitCode.config,
      hint: `set the platform config's legacyDatabase.secretName and passwordKey / adminPasswordKey to the Secret and key holding the password; then upgrade again. Nothing was changed`,
    });
  }
  const value = Buffer.from(encoded, 'base64').toString('utf8');
  registerSecret(value);
  return value;
}

export type AdoptionProbe =
  | { readonly status: 'none'; readonly reason: string }
  | { readonly status: 'adopted'; readonly adopted: AdoptedLegacy; readonly config: HookConfig }
  | { readonly status: 'refused'; readonly error: RunnerError };

/** What probeLegacyDatabase found that adoption works from. */
export interface AdoptionEvidence {
  /** The configured StatefulSet's pod spec, when it exists. */
  readonly configuredPodSpec?: V1PodSpec;
  readonly configuredExists: boolean;
  /** StatefulSets matching MIGRATION_LEGACY_SELECTOR (configured one excluded). */
  readonly labelled: readonly V1StatefulSet[];
  /** PVC names matching MIGRATION_LEGACY_SELECTOR. */
  readonly labelledClaims: readonly string[];
}

const FIELD_HINT = `or name the database in the platform config: legacyDatabase.name (${Env.legacyStatefulSet}), secretName, passwordKey / adminPasswordKey`;

function refused(message: string, hint: string): AdoptionProbe {
  return { status: 'refused', error: new RunnerError(message, { exitCode: ExitCode.config, hint: `${hint}. Nothing was changed` }) };
}

function servicePort(ports: readonly { name?: string; port: number }[]): number | undefined {
  return ports.find((port) => port.name === 'tcp-postgresql')?.port ?? (ports.length === 1 ? ports[0]!.port : ports.find((port) => port.port === 5432)?.port);
}

/**
 * Decides what to adopt, reading the Service and the password Secret by name. `none` when the
 * configured names are complete (their StatefulSet exists and the password is set) or nothing
 * matches the labels; the decision then is today's (decide.ts).
 */
export async function probeAdoption(kube: KubeContext, config: HookConfig, evidence: AdoptionEvidence): Promise<AdoptionProbe> {
  const settings = config.source.settings;
  if (!settings) return { status: 'none', reason: `${Env.sourceHost} is not set` };
  const user = settings.user;
  if (evidence.configuredExists) {
    if (config.source.passwordSet) return { status: 'none', reason: 'the configured names are complete' };
    const statefulSet = config.legacyStatefulSet!;
    const ref = passwordReference(evidence.configuredPodSpec, user);
    if (!ref) return { status: 'none', reason: `the pods of ${statefulSet} reference no Secret for ${user}'s password` };
    const adopted: AdoptedLegacy = {
      statefulSet,
      passwordSecret: { name: ref.name, key: ref.key },
      pvcs: [],
      evidence: `configured StatefulSet ${statefulSet}; ${user}'s password from Secret ${ref.name} key ${ref.key} (${ref.via}), the configured Secret holding none`,
    };
    return adoptedWith(kube, config, adopted);
  }
  const candidates = evidence.labelled.filter(isPrimaryCandidate);
  if (candidates.length === 0) return { status: 'none', reason: 'no primary StatefulSet matches the legacy labels' };
  const names = candidates.map((candidate) => candidate.metadata?.name ?? '');
  if (candidates.length > 1) {
    return refused(
      `the configured legacy StatefulSet ${config.legacyStatefulSet ?? '(none)'} does not exist and ${candidates.length} primary StatefulSets carry the legacy labels (${config.legacySelector}): ${names.join(', ')}; the runner adopts only one`,
      `set the platform config's legacyDatabase.name (${Env.legacyStatefulSet}) to the one holding Keycloak's data, and secretName / passwordKey to its Secret`,
    );
  }
  const statefulSet = candidates[0]!;
  const name = names[0]!;
  if (config.deleteLegacy !== DeleteLegacy.never) {
    return refused(
      `the legacy database was found by its labels as StatefulSet ${name}, but ${Env.deleteLegacy}=${config.deleteLegacy} deletes only configured names (the Role grants delete on those only)`,
      `set the platform config's legacyDatabase.name to ${name}, or migration deleteLegacy to never`,
    );
  }
  const ref = passwordReference(statefulSet.spec?.template?.spec, user);
  if (!ref) {
    return refused(
      `the legacy database was found by its labels as StatefulSet ${name}, but its pod spec references no Secret for ${user}'s password (${[...(user === SUPERUSER ? ADMIN_PASSWORD_VARIABLES : USER_PASSWORD_VARIABLES)].join(' / ')}[_FILE])`,
      `set the platform config's legacyDatabase.name, secretName and passwordKey / adminPasswordKey (${FIELD_HINT})`,
    );
  }
  const { namespace } = kube;
  let ports: { name?: string; port: number }[];
  try {
    const service = await callApi(kube, { verb: 'get', resource: 'services', name, namespace }, () => kube.core.readNamespacedService({ name, namespace }));
    ports = service.spec?.ports ?? [];
  } catch (error) {
    if (!isNotFound(error)) throw error;
    return refused(
      `the legacy database was found by its labels as StatefulSet ${name}, but there is no Service ${name} to reach it (Bitnami names the Service after the StatefulSet)`,
      `set the platform config's legacyDatabase.name to the database's Service and StatefulSet (${FIELD_HINT})`,
    );
  }
  const port = servicePort(ports);
  if (port === undefined) {
    return refused(
      `Service ${name} of the adopted legacy database exposes ports ${ports.map((p) => `${p.name ?? '?'}:${p.port}`).join(', ') || 'none'}, none of them tcp-postgresql or 5432`,
      `set the platform config's legacyDatabase.name (${FIELD_HINT})`,
    );
  }
  const templates = (statefulSet.spec?.volumeClaimTemplates ?? []).map((template) => `${template.metadata?.name ?? ''}-${name}-`);
  const pvcs = evidence.labelledClaims.filter((claim) => templates.some((prefix) => claim.startsWith(prefix) && /^\d+$/.test(claim.slice(prefix.length))));
  const adopted: AdoptedLegacy = {
    statefulSet: name,
    service: { name, port },
    passwordSecret: { name: ref.name, key: ref.key },
    pvcs,
    evidence: `the one primary StatefulSet with labels ${config.legacySelector} (configured ${config.legacyStatefulSet ?? 'none'} does not exist); Service ${name}:${port}; ${user}'s password from Secret ${ref.name} key ${ref.key} (${ref.via})`,
  };
  return adoptedWith(kube, config, adopted);
}

async function adoptedWith(kube: KubeContext, config: HookConfig, adopted: AdoptedLegacy): Promise<AdoptionProbe> {
  try {
    return { status: 'adopted', adopted, config: await configWithAdoptedLegacy(kube, config, adopted, { strict: true }) };
  } catch (error) {
    if (error instanceof RunnerError && error.exitCode === ExitCode.config) return { status: 'refused', error };
    throw error;
  }
}

/**
 * The configuration every phase uses once a database is adopted: the source's host and port
 * from its Service (through {@link serviceAddress}), the password read by name from the Secret its
 * pods reference, and its StatefulSet and PVCs as the legacy objects to protect.
 *
 * `strict` (at decide time): a missing Secret or key fails (78, naming the keys present). Later,
 * it means what an unset SOURCE_PGPASSWORD means (its optional Secret is gone): the phases that
 * need the source say so, and a finished migration does not need it.
 */
export async function configWithAdoptedLegacy(kube: KubeContext, config: HookConfig, adopted: AdoptedLegacy, options: { strict?: boolean } = {}): Promise<HookConfig> {
  const settings = config.source.settings;
  if (!settings) return config;
  let password = settings.password;
  if (adopted.passwordSecret) {
    try {
      password = await readSecretKey(kube, adopted.passwordSecret, `the password of the legacy database ${adopted.statefulSet}`);
    } catch (error) {
      if (options.strict || !(error instanceof RunnerError) || error.exitCode !== ExitCode.config) throw error;
      kube.log.warn('the adopted legacy database\'s password Secret is gone: treated as an unset source password', { reason: error.message });
      password = undefined;
    }
  }
  const address = adopted.service ? serviceAddress(config.serviceAddresses, adopted.service.name, adopted.service.port) : undefined;
  return {
    ...config,
    source: {
      settings: { ...settings, ...(address ? { host: address.host, port: address.port } : {}), password },
      passwordSet: password !== undefined && password !== '',
    },
    legacyStatefulSet: adopted.statefulSet,
    legacyPvcs: [...new Set([...config.legacyPvcs, ...adopted.pvcs])],
  };
}
