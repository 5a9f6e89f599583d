/**
 * TLS towards a PostgreSQL database, carried by its {@link DatabaseConnection} so that every
 * client of that database — Keycloak's JDBC pool, Keycloak's database gate, the migration Jobs —
 * connects the same way. A CA certificate is mounted from a Secret (CloudNativePG keeps its CA in
 * `<cluster>-ca`, key `ca.crt`; Bitnami's charts take a user-provided Secret) and handed to libpq
 * (`*_PGSSLROOTCERT`) and to pgjdbc (`sslrootcert` in `KC_DB_URL_PROPERTIES`), which both read PEM.
 */
import type { k8s } from 'cdk8s-plus-27';
import { SslMode, type SslModeValue } from './contract.js';
import { validateDnsSubdomain, validateSecretKey } from './validation.js';

/** A Secret key holding the PEM CA bundle that signed the database server's certificate. */
export interface DatabaseCaSecret {
  /** Name of the Secret (in the same namespace). */
  readonly secretName: string;
  /**
   * Key of the PEM bundle in that Secret.
   *
   * @default 'ca.crt'
   */
  readonly key?: string;
}

/** How clients secure their connections to a database. */
export interface DatabaseTls {
  /**
   * libpq / pgjdbc sslmode: `disable`, `allow`, `prefer`, `require`, `verify-ca` or `verify-full`.
   * `verify-full` also checks that the certificate names the host clients connect to.
   */
  readonly sslMode: SslModeValue;
  /**
   * The CA to verify the server's certificate with; required by `verify-ca` and `verify-full`.
   *
   * @default - none: the server's certificate is not verified
   */
  readonly caSecret?: DatabaseCaSecret;
}

export const DEFAULT_CA_KEY = 'ca.crt';
/** File name of the CA inside each mount (the Secret's key is projected to it). */
const CA_FILE = 'ca.crt';

/** Checks a DatabaseTls and fills in the defaults; errors name `field`, the value and the fix. */
export function validateDatabaseTls(field: string, tls: DatabaseTls): Required<Pick<DatabaseTls, 'sslMode'>> & { caSecret?: Required<DatabaseCaSecret> } {
  const modes = Object.values(SslMode) as string[];
  if (!modes.includes(tls.sslMode)) {
    throw new Error(`${field}.sslMode must be one of ${modes.join(', ')} (libpq sslmode), got ${JSON.stringify(tls.sslMode)}`);
  }
  const verifies = tls.sslMode === SslMode.verifyCa || tls.sslMode === SslMode.verifyFull;
  if (verifies && tls.caSecret === undefined) {
    throw new Error(
      `${field}.sslMode ${tls.sslMode} verifies the server's certificate, but ${field}.caSecret is not set: ` +
        `name the Secret holding the CA (CloudNativePG: '<cluster>-ca'), or use sslMode 'require' for encryption without verification`,
    );
  }
  if (tls.caSecret === undefined) return { sslMode: tls.sslMode };
  if (tls.sslMode === SslMode.disable) {
    throw new Error(`${field}.caSecret is set but ${field}.sslMode is 'disable', which never uses it: choose 'verify-full' (or remove caSecret)`);
  }
  return {
    sslMode: tls.sslMode,
    caSecret: {
      secretName: validateDnsSubdomain(`${field}.caSecret.secretName`, tls.caSecret.secretName),
      key: validateSecretKey(`${field}.caSecret.key`, tls.caSecret.key ?? DEFAULT_CA_KEY),
    },
  };
}

/** The pod volume projecting the CA key to `ca.crt` (read-only for everyone: it is public). */
export function caVolume(volumeName: string, caSecret: Required<DatabaseCaSecret>): k8s.Volume {
  return { name: volumeName, secret: { secretName: caSecret.secretName, items: [{ key: caSecret.key, path: CA_FILE }], defaultMode: 0o444 } };
}

/** Path of the CA file under a mount of {@link caVolume}. */
export function caFile(mountPath: string): string {
  return `${mountPath}/${CA_FILE}`;
}

/**
 * Keycloak's `KC_DB_URL_PROPERTIES` for pgjdbc: appended to the default JDBC URL as is, so it
 * starts with `?` (Keycloak's db-url-properties: "append the right character at the beginning").
 */
export function jdbcTlsProperties(sslMode: SslModeValue, caPath: string | undefined): string {
  return `?sslmode=${sslMode}${caPath !== undefined ? `&sslrootcert=${caPath}` : ''}`;
}
