/**
 * Reading Kubernetes object names from the environment: the one check of every MIGRATION_* name
 * (config.ts) and of the Lease's (kube/lock.ts), so that a bad name is a usage error naming the
 * variable and the value, not the API server's 422 on the first request.
 */
import { usageError } from './errors.js';

/** A DNS subdomain name: what the names of the objects the runner reads and writes must be. */
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Whether `value` is a Kubernetes object name (a DNS subdomain, at most 253 characters). */
export function isObjectName(value: string): boolean {
  return value.length <= 253 && NAME.test(value);
}

/** The variable's value, trimmed; undefined when unset or blank. */
export function text(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

/** A required object name: usage error when unset (naming `what` it names) or not a name. */
export function requiredName(env: NodeJS.ProcessEnv, name: string, what: string): string {
  const value = text(env, name);
  if (!value) throw usageError(`${name} is not set`, `set ${name} to the name of ${what} (the DatabaseMigration construct sets it)`);
  if (!isObjectName(value)) {
    throw usageError(`${name} must be a Kubernetes object name (lower-case letters, digits, '-' and '.'), got "${value}"`, `fix ${name}`);
  }
  return value;
}

/** An optional object name: undefined when unset, usage error when not a name. */
export function optionalName(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = text(env, name);
  if (value === undefined) return undefined;
  if (!isObjectName(value)) {
    throw usageError(`${name} must be a Kubernetes object name (lower-case letters, digits, '-' and '.'), got "${value}"`, `fix ${name}, or leave it empty`);
  }
  return value;
}
