/**
 * The platform configuration as a file (YAML or JSON), for GitOps repositories that keep one per
 * environment: `PLATFORM_CONFIG=envs/prod.yaml npm run synth`. The file holds exactly the fields
 * of {@link PlatformConfig}; everything it leaves out takes the same default, and a bad value
 * fails with the same message as the typed object (prefixed with the file's path), because the
 * file's content goes through the same {@link resolvePlatformConfig}.
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { type PlatformConfig, platformConfig, resolvePlatformConfig } from './platform-config.js';

/** The environment variable naming the file. */
export const PLATFORM_CONFIG_VARIABLE = 'PLATFORM_CONFIG';

/** Reads, parses and validates a platform configuration file; throws naming the file and the problem. */
export function readPlatformConfigFile(path: string): PlatformConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new Error(`${PLATFORM_CONFIG_VARIABLE} names ${path}, which cannot be read (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}): fix the path or unset ${PLATFORM_CONFIG_VARIABLE} to use lib/platform-config.ts`, { cause });
  }
  // JSON is YAML; one parser gives both the same line-numbered errors.
  const document = parseDocument(text, { uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new Error(`platform config file ${path} is not valid YAML or JSON: ${document.errors[0]!.message}`);
  }
  const value: unknown = document.toJS();
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(
      `platform config file ${path} must hold a mapping of settings (releaseName, namespace, shape, database, …), got ${Array.isArray(value) ? 'a list' : JSON.stringify(value)}`,
    );
  }
  const config = value as PlatformConfig;
  try {
    resolvePlatformConfig(config);
  } catch (error) {
    throw new Error(`platform config file ${path}: ${(error as Error).message}`, { cause: error });
  }
  return config;
}

/** The file named by PLATFORM_CONFIG when set, else the typed {@link platformConfig}. */
export function platformConfigFromEnvironment(env: NodeJS.ProcessEnv = process.env): PlatformConfig {
  const path = env[PLATFORM_CONFIG_VARIABLE]?.trim();
  return path ? readPlatformConfigFile(path) : platformConfig;
}
