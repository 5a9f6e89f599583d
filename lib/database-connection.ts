/**
 * How a client reaches a PostgreSQL database: the object every database construct exposes and
 * every consumer (Keycloak, DatabaseMigration) takes, so nobody re-derives service or Secret names.
 */
import type { DatabaseTls } from './database-tls.js';

export interface DatabaseConnection {
  /** DNS name of the service clients connect to (in the same namespace). */
  readonly host: string;
  /** TCP port of that service. */
  readonly port: number;
  /** Name of the database. */
  readonly database: string;
  /** Application user and where its password lives. */
  readonly credentials: DatabaseCredentials;
  /**
   * Superuser credentials, when the database exposes them (the runner uses them to restore
   * extensions and to read sizes). Absent: the application user is used.
   */
  readonly adminCredentials?: DatabaseCredentials;
  /**
   * TLS of every client of this database: Keycloak (JDBC and its gate) and the migration Jobs.
   *
   * @default - unset: libpq's and pgjdbc's default (`prefer`: TLS when the server offers it, unverified)
   */
  readonly tls?: DatabaseTls;
}

/** A user name and a reference to the Secret key holding its password. */
export interface DatabaseCredentials {
  /** The user name. Literal, because Bitnami and CloudNativePG both fix it at install time. */
  readonly username: string;
  /** Name of the Secret holding the password. */
  readonly secretName: string;
  /** Key of the password in that Secret. */
  readonly passwordKey: string;
}
