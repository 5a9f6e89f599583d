/**
 * The takeover scenarios of `npm run rehearse`: every rendered Bitnami keycloak release in
 * test/fixtures/bitnami-keycloak/ (copies of ../shared/fixtures/bitnami-keycloak/ with their
 * provenance), taken over with the default configuration and the release's name and namespace
 * (two releases with the one field the runner's refusal names, see {@link CONFIG_THE_REFUSAL_NAMES}),
 * exactly as `npm run rehearse:takeover -- --from <file> --tool <tool> [--config]` does.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

import { expect } from 'vitest';

import type { PlatformConfig } from '../../lib/platform-config.js';
import { defaultRun, type Tool } from '../scenario.js';

import { readReleaseFile } from './release-file.js';
import { formatReport, rehearseTakeover } from './rehearse-takeover.js';

export const TAKEOVER_FIXTURES_DIR = join(import.meta.dirname, '..', '..', 'test', 'fixtures', 'bitnami-keycloak');

/** Every `keycloak-*.yaml` release of the fixtures. */
export function takeoverFixtures(): string[] {
  return readdirSync(TAKEOVER_FIXTURES_DIR)
    .filter((file) => /^keycloak-.*\.yaml$/.test(file))
    .sort();
}

/**
 * The releases `npm run rehearse` takes over with each tool. Every fixture with both tools takes
 * ~13 min of wall time on two shared cores (18 takeovers), too much for CI's 30 minutes; by
 * default each distinct path runs once: the newest chart (KC_DB_URL, password files) with both
 * tools, chart 6 (PostgreSQL 11, the 10.x Secret keys) and `architecture: replication` (a read
 * replica streaming from the primary) with Helm, chart 21 (KEYCLOAK_DATABASE_*, passwords in env)
 * and `existingSecret` under another release name with Argo CD.
 * `REHEARSAL_TAKEOVER=all` runs the whole matrix (every fixture with both tools).
 */
export const DEFAULT_TAKEOVERS: Readonly<Record<Tool, readonly string[]>> = {
  helm: ['keycloak-25.4.0-release-keycloak.yaml', 'keycloak-6.2.5-release-keycloak.yaml', 'keycloak-25.4.0-release-keycloak-pg-replication.yaml'],
  argocd: ['keycloak-25.4.0-release-keycloak.yaml', 'keycloak-21.8.0-release-keycloak.yaml', 'keycloak-25.4.0-release-idp-existing-secret.yaml'],
};

export function takeoverScenarios(tool: Tool, env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.REHEARSAL_TAKEOVER === 'all') return takeoverFixtures();
  if (env.REHEARSAL_TAKEOVER !== undefined && env.REHEARSAL_TAKEOVER !== '') {
    throw new Error(`REHEARSAL_TAKEOVER must be "all" (every fixture with both tools) or unset, got ${JSON.stringify(env.REHEARSAL_TAKEOVER)}`);
  }
  const present = new Set(takeoverFixtures());
  const missing = DEFAULT_TAKEOVERS[tool].filter((file) => !present.has(file));
  if (missing.length > 0) throw new Error(`takeover scenarios name fixtures that ${TAKEOVER_FIXTURES_DIR} lacks: ${missing.join(', ')}`);
  return [...DEFAULT_TAKEOVERS[tool]];
}

/**
 * Releases the runner does not adopt with the default configuration yet: it refuses (78) naming
 * the field (test/bitnami-takeover.test.ts checks each refusal), and with that field set, as the
 * error says, the takeover passes. Everything else runs with the default configuration.
 */
export const CONFIG_THE_REFUSAL_NAMES: Readonly<Record<string, PlatformConfig>> = {
  // auth.existingSecret: the database reads my-pg-secret, the default names idp-postgresql.
  'keycloak-25.4.0-release-idp-existing-secret.yaml': { legacyDatabase: { secretName: 'my-pg-secret' } },
  // architecture: replication: the primary is <name>-primary, its Secret keeps <name>.
  'keycloak-25.4.0-release-keycloak-pg-replication.yaml': { legacyDatabase: { name: 'keycloak-postgresql-primary', secretName: 'keycloak-postgresql' } },
  // keycloak chart ≤ 6 (postgresql chart 10.x): the Secret's keys are postgresql-password / postgresql-postgres-password.
  'keycloak-6.2.5-release-keycloak.yaml': { legacyDatabase: { passwordKey: 'postgresql-password', adminPasswordKey: 'postgresql-postgres-password' } },
};

/** The scenario's name: the file, and the configuration when it is not the default. */
export function scenarioName(file: string): string {
  const config = CONFIG_THE_REFUSAL_NAMES[file];
  return config ? `${file} (config ${JSON.stringify(config)})` : `${file} (default configuration)`;
}

/** One takeover; fails the scenario with the whole check table when any check fails. */
export async function expectTakeoverPasses(file: string, tool: Tool): Promise<void> {
  const release = readReleaseFile(join(TAKEOVER_FIXTURES_DIR, file));
  const report = await rehearseTakeover({ release, tool, users: 20, config: CONFIG_THE_REFUSAL_NAMES[file] });
  const table = formatReport(report, release, defaultRun(tool).label);
  if (!report.ok) throw new Error(`takeover of ${file} with ${tool} failed:\n${table}`);
  expect(report.outage?.ms).toBeGreaterThan(0);
  process.stdout.write(`${table}\n`);
}
