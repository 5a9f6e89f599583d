import type { DatabaseConnection } from './database-connection.js';
import { MIGRATION_ID_PATTERN } from './contract.js';

/**
 * Validators shared by every construct. Each throws an Error that names the field, the value
 * received and how to fix it, so that a bad prop fails at synth time instead of at apply time
 * (or worse, as a pod that never starts).
 */

/** Longest Kubernetes name that must also be a DNS label (pod host names, Service names). */
export const MAX_DNS_LABEL_LENGTH = 63;

/** Longest DNS subdomain name (ConfigMaps, Secrets, PVCs, most objects). */
export const MAX_DNS_SUBDOMAIN_LENGTH = 253;

/**
 * Longest StatefulSet name that works in practice. The controller labels every pod with
 * `controller-revision-hash: <name>-<hash of up to 10 characters>`, and a label value may hold
 * at most 63 characters: 63 - 1 - 10 = 52. A longer name is accepted by the API server but the
 * pods are never created (kubernetes/kubernetes#64023).
 */
export const MAX_STATEFULSET_NAME_LENGTH = 52;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;
const POSTGRES_IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function requireString(field: string, value: unknown): string {
  if (typeof value !== 'string') {
    throw new Error(`${field} must be a string, got ${show(value)} (${typeof value})`);
  }
  return value;
}

/**
 * A DNS-1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric, at most
 * 63 characters. Required for names that become host names (pods, namespaces).
 */
export function validateDnsLabel(field: string, value: string): string {
  requireString(field, value);
  if (value.length === 0 || value.length > MAX_DNS_LABEL_LENGTH || !DNS_LABEL.test(value)) {
    throw new Error(
      `${field} must be a DNS-1123 label (1-${MAX_DNS_LABEL_LENGTH} characters of a-z, 0-9 and '-', ` +
        `starting and ending with a letter or digit), got ${show(value)} (${value.length} characters): ` +
        `use lower case and replace '_' and '.' with '-'`,
    );
  }
  return value;
}

/**
 * A DNS-1035 label: like a DNS-1123 label but starting with a letter. Service names must be one
 * (a release called `1kc` cannot have a Service `1kc-postgresql`).
 */
export function validateServiceName(field: string, value: string): string {
  validateDnsLabel(field, value);
  if (!DNS_1035_LABEL.test(value)) {
    throw new Error(
      `${field} is used as a Service name, which must start with a letter (DNS-1035), got ${show(value)}: ` +
        `prefix it with a letter`,
    );
  }
  return value;
}

/** A DNS-1123 subdomain (Secrets, ConfigMaps, PVCs): labels joined by '.', at most 253 characters. */
export function validateDnsSubdomain(field: string, value: string): string {
  requireString(field, value);
  if (value.length === 0 || value.length > MAX_DNS_SUBDOMAIN_LENGTH || !DNS_SUBDOMAIN.test(value)) {
    throw new Error(
      `${field} must be a DNS-1123 subdomain (1-${MAX_DNS_SUBDOMAIN_LENGTH} characters of a-z, 0-9, '-' and '.', ` +
        `each part starting and ending with a letter or digit), got ${show(value)}: use lower case and '-'`,
    );
  }
  return value;
}

/**
 * A StatefulSet name: a DNS-1123 label of at most {@link MAX_STATEFULSET_NAME_LENGTH} characters,
 * because pod names append `-<ordinal>` and the controller-revision-hash label appends
 * `-<10 characters>` to it and must stay within 63.
 */
export function validateStatefulSetName(field: string, value: string): string {
  validateDnsLabel(field, value);
  if (value.length > MAX_STATEFULSET_NAME_LENGTH) {
    throw new Error(
      `${field} is used as a StatefulSet name and must be at most ${MAX_STATEFULSET_NAME_LENGTH} characters, ` +
        `got ${show(value)} (${value.length} characters): the StatefulSet controller labels each pod with ` +
        `'controller-revision-hash: <name>-<10-character hash>', a label value holds at most 63 characters, ` +
        `and pods of a longer name are never created; choose a shorter release or name`,
    );
  }
  return value;
}

/** A label value: at most 63 characters of alphanumerics, '-', '_' and '.', alphanumeric at both ends. */
export function validateLabelValue(field: string, value: string): string {
  requireString(field, value);
  if (value.length > MAX_DNS_LABEL_LENGTH || !LABEL_VALUE.test(value)) {
    throw new Error(
      `${field} is used as a label value, which must be at most 63 characters of letters, digits, '-', '_' ` +
        `and '.', beginning and ending with a letter or digit, got ${show(value)}`,
    );
  }
  return value;
}

const LABEL_KEY_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/**
 * A label or annotation key (a "qualified name"): an optional DNS subdomain prefix and '/', then a
 * name of at most 63 letters, digits, '-', '_' and '.', beginning and ending with a letter or digit.
 */
export function isQualifiedName(key: string): boolean {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  const prefixOk = prefix === undefined || (prefix.length <= MAX_DNS_SUBDOMAIN_LENGTH && DNS_SUBDOMAIN.test(prefix));
  return prefixOk && name.length <= MAX_DNS_LABEL_LENGTH && LABEL_KEY_NAME.test(name);
}

/**
 * A map of labels as the API server accepts them: each key an optional DNS subdomain prefix and
 * '/' followed by a name of at most 63 characters, each value a label value (empty allowed).
 */
export function validateLabels(field: string, labels: unknown): Record<string, string> {
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) {
    throw new Error(`${field} must be a map of label keys to values, got ${show(labels)}`);
  }
  for (const [key, value] of Object.entries(labels as Record<string, unknown>)) {
    if (!isQualifiedName(key)) {
      throw new Error(
        `${field} has the key ${show(key)}, which is not a label key: an optional DNS subdomain and '/', then at most 63 ` +
          `characters of letters, digits, '-', '_' and '.', beginning and ending with a letter or digit (e.g. "release" or "example.com/team")`,
      );
    }
    if (typeof value !== 'string' || value.length > MAX_DNS_LABEL_LENGTH || !LABEL_VALUE.test(value)) {
      throw new Error(
        `${field}.${key} must be a label value (at most 63 characters of letters, digits, '-', '_' and '.', beginning and ` +
          `ending with a letter or digit, or empty), got ${show(value)}`,
      );
    }
  }
  return { ...(labels as Record<string, string>) };
}

/** A key of a Secret or ConfigMap: alphanumerics, '-', '_' and '.'. */
export function validateSecretKey(field: string, value: string): string {
  requireString(field, value);
  if (value.length === 0 || value.length > MAX_DNS_SUBDOMAIN_LENGTH || !SECRET_KEY.test(value)) {
    throw new Error(
      `${field} must be a Secret key (1-253 characters of letters, digits, '-', '_' and '.'), got ${show(value)}`,
    );
  }
  return value;
}

/**
 * A PostgreSQL user or database name that needs no quoting: lower-case letters, digits and '_',
 * not starting with a digit, at most 63 bytes. The Bitnami images and the runner pass these
 * names unquoted into SQL and configuration files, where anything else breaks or changes case.
 */
export function validatePostgresIdentifier(field: string, value: string): string {
  requireString(field, value);
  if (value.length === 0 || value.length > 63 || !POSTGRES_IDENTIFIER.test(value)) {
    throw new Error(
      `${field} must be an unquoted PostgreSQL identifier (1-63 characters of a-z, 0-9 and '_', not starting ` +
        `with a digit), got ${show(value)}: use lower case and '_' instead of '-'`,
    );
  }
  return value;
}

/** `true` or `false` (a configuration file or plain JavaScript can hand over anything). */
export function validateBoolean(field: string, value: boolean): boolean {
  if (typeof value !== 'boolean') throw new Error(`${field} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

/** An integer within [min, max] (inclusive). */
export function validateIntegerRange(field: string, value: number, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(
      `${field} must be an integer from ${min} to ${max}, got ${show(value)}`,
    );
  }
  return value;
}

/** A TCP port number (1-65535). */
export function validatePort(field: string, value: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new Error(`${field} must be a TCP port number from 1 to 65535, got ${show(value)}`);
  }
  return value;
}

const BINARY_SUFFIXES: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL_SUFFIXES: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};
// The grammar of resource.Quantity (k8s.io/apimachinery/pkg/api/resource): a signed decimal
// number followed by a binary SI suffix, a decimal SI suffix or a decimal exponent.
const QUANTITY = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/;

/**
 * Parses a Kubernetes quantity ("512Mi", "8Gi", "1.5G", "500m", "1e3") into its value in base
 * units (bytes for memory and storage, cores for CPU). Throws for anything the API server would
 * reject, such as "10 GB", "10GB", "abc" or "".
 */
export function parseQuantity(field: string, value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      throw new Error(`${field} must be a Kubernetes quantity, got ${show(value)}`);
    }
    return value;
  }
  requireString(field, value);
  const match = QUANTITY.exec(value);
  if (!match) {
    throw new Error(
      `${field} must be a Kubernetes quantity such as "8Gi", "512Mi", "1.5G" or "500m" (a number directly ` +
        `followed by one of Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent e<n>; no spaces, no "B"), ` +
        `got ${show(value)}`,
    );
  }
  const number = Number(match[1]);
  const suffix = match[2] ?? '';
  if (suffix in BINARY_SUFFIXES) return number * BINARY_SUFFIXES[suffix]!;
  if (suffix in DECIMAL_SUFFIXES) return number * DECIMAL_SUFFIXES[suffix]!;
  return number * 10 ** Number(suffix.slice(1));
}

/**
 * A storage or memory size: a quantity of at least `minBytes` whole bytes. Returns the quantity
 * unchanged so it can be written into the manifest as the user wrote it.
 */
export function validateSize(field: string, value: string, minBytes = 1): string {
  const bytes = parseQuantity(field, value);
  if (bytes < minBytes) {
    throw new Error(`${field} must be at least ${minBytes} bytes, got ${show(value)} (${bytes} bytes)`);
  }
  if (!Number.isInteger(bytes)) {
    throw new Error(
      `${field} must be a whole number of bytes, got ${show(value)} (${bytes} bytes): use a suffix such as Mi or Gi`,
    );
  }
  return value;
}

/** A CPU quantity ("250m", "1", "1.5"), greater than zero. */
export function validateCpu(field: string, value: string): string {
  const cores = parseQuantity(field, value);
  if (cores <= 0) {
    throw new Error(`${field} must be a positive CPU quantity such as "250m" or "1", got ${show(value)}`);
  }
  return value;
}

const IMAGE_PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const IMAGE_DOMAIN = /^(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::\d+)?$/;
const IMAGE_TAG = /^[\w][\w.-]{0,127}$/;
const IMAGE_DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$/;

/** The parts of an image reference. */
export interface ImageReference {
  /** Registry and repository, e.g. `quay.io/keycloak/keycloak`. */
  readonly repository: string;
  /** Tag, when given. */
  readonly tag?: string;
  /** Digest (`sha256:...`), when given. */
  readonly digest?: string;
}

/**
 * An image reference that pins a version: it must carry a tag or a digest. `repo/name` alone
 * fails, and so does the tag `latest`: both resolve to whatever was pushed last, so two pods of
 * one StatefulSet (or a restore Job and the Keycloak it prepares) could run different versions,
 * and a GitOps diff would never show the change. Pin a version or a digest instead.
 */
export function validateImage(field: string, value: string): ImageReference {
  requireString(field, value);
  const fail = (why: string): never => {
    throw new Error(
      `${field} must be an image reference with a pinned tag or digest, such as ` +
        `"quay.io/keycloak/keycloak:26.3.3" or "repo/name@sha256:<64 hex>", got ${show(value)}: ${why}`,
    );
  };
  if (value.length === 0 || /\s/.test(value)) fail('it is empty or contains white space');
  let rest = value;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!IMAGE_DIGEST.test(digest)) fail(`the digest ${show(digest)} is not <algorithm>:<hex>`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!IMAGE_TAG.test(tag)) fail(`the tag ${show(tag)} is not valid (letters, digits, '_', '.', '-'; at most 128)`);
  }
  const parts = rest.split('/');
  const first = parts[0] ?? '';
  const hasDomain = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasDomain && !IMAGE_DOMAIN.test(first)) fail(`the registry ${show(first)} is not a host name`);
  const path = hasDomain ? parts.slice(1) : parts;
  for (const component of path) {
    if (!IMAGE_PATH_COMPONENT.test(component)) {
      fail(`the repository part ${show(component)} must be lower case letters and digits separated by '.', '_' or '-'`);
    }
  }
  if (tag === undefined && digest === undefined) fail('it has neither a tag nor a digest; add ":<version>"');
  if (tag === 'latest' && digest === undefined) {
    fail('the tag "latest" is mutable, so pods of one rollout may run different versions; pin a version');
  }
  return { repository: rest, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** A Kubernetes object identified by kind and name (within one namespace). */
export interface KubeObjectName {
  /** The kind, e.g. `StatefulSet`, `Service`, `PersistentVolumeClaim`. */
  readonly kind: string;
  /** metadata.name. */
  readonly name: string;
}

/**
 * Fails when two of the objects share a kind and a name: in one namespace the second would
 * silently replace the first (for example a new postgresql-ha whose Service has the legacy
 * database's Service name, so Keycloak would reach the wrong server).
 */
export function assertNoNameCollisions(field: string, objects: readonly KubeObjectName[]): void {
  const seen = new Map<string, number>();
  for (const object of objects) {
    const key = `${object.kind}/${object.name}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  const duplicates = [...seen.entries()].filter(([, count]) => count > 1).map(([key]) => key);
  if (duplicates.length > 0) {
    throw new Error(
      `${field}: these objects would have the same kind and name in one namespace: ${duplicates.join(', ')}; ` +
        `choose a different release or name for one of them`,
    );
  }
}

/**
 * A {@link DatabaseConnection} whose names are all usable in a manifest: host a DNS name, port a
 * port, user and database plain PostgreSQL identifiers, Secret names and keys valid.
 */
export function validateDatabaseConnection(field: string, connection: DatabaseConnection): DatabaseConnection {
  if (connection === null || typeof connection !== 'object') {
    throw new Error(`${field} must be a DatabaseConnection object (host, port, database, credentials), got ${String(connection)}`);
  }
  validateDnsSubdomain(`${field}.host`, connection.host);
  validatePort(`${field}.port`, connection.port);
  validatePostgresIdentifier(`${field}.database`, connection.database);
  for (const [name, credentials] of [
    ['credentials', connection.credentials],
    ['adminCredentials', connection.adminCredentials],
  ] as const) {
    if (credentials === undefined && name === 'adminCredentials') continue;
    if (credentials === null || typeof credentials !== 'object') {
      throw new Error(`${field}.${name} must be { username, secretName, passwordKey }, got ${String(credentials)}`);
    }
    validatePostgresIdentifier(`${field}.${name}.username`, credentials.username);
    validateDnsSubdomain(`${field}.${name}.secretName`, credentials.secretName);
    validateSecretKey(`${field}.${name}.passwordKey`, credentials.passwordKey);
  }
  return connection;
}

/** A migration id as the runner writes it (`m-20261125-031500-a1b2c3`), e.g. copied from an error. */
export function validateMigrationId(field: string, value: string): string {
  requireString(field, value);
  if (!MIGRATION_ID_PATTERN.test(value)) {
    throw new Error(
      `${field} must be a migration id like m-20261125-031500-a1b2c3, got ${show(value)}: ` +
        "copy the id from the backup Job's error (or the state ConfigMap), or leave it unset",
    );
  }
  return value;
}
