/**
 * The takeover scenarios of `npm run rehearse`: every rendered Bitnami keycloak release in
 * test/fixtures/bitnami-keycloak/ (copies of ../shared/fixtures/bitnami-keycloak/ with their
 * provenance), taken over with the default configuration and the release's name and namespace
 * (the runner adopts an `existingSecret`, `architecture: replication` or the 10.x chart's Secret
 * keys from the database's labels and pod spec), exactly as `npm run rehearse:takeover -- --from <file> --tool <tool> [--config]` does.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

import { expect } from 'vitest';

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
 * replica streaming from the primary) and `fullnameOverride` (Keycloak quiesced by its labels, its
 * admin Secret copied) with Helm, chart 21 (KEYCLOAK_DATABASE_*, passwords in env), `existingSecret`
 * under another release name and `nameOverride` with Argo CD.
 * `REHEARSAL_TAKEOVER=all` runs the whole matrix (every fixture with both tools).
 */
export const DEFAULT_TAKEOVERS: Readonly<Record<Tool, readonly string[]>> = {
  helm: [
    'keycloak-25.4.0-release-keycloak.yaml',
    'keycloak-6.2.5-release-keycloak.yaml',
    'keycloak-25.4.0-release-keycloak-pg-replication.yaml',
    'keycloak-25.4.0-release-keycloak-fullname-sso.yaml',
  ],
  argocd: [
    'keycloak-25.4.0-release-keycloak.yaml',
    'keycloak-21.8.0-release-keycloak.yaml',
    'keycloak-25.4.0-release-idp-existing-secret.yaml',
    'keycloak-25.4.0-release-idp-nameoverride.yaml',
  ],
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

/** The scenario's name: the file; every release is taken over with the default configuration. */
export function scenarioName(file: string): string {
  return `${file} (default configuration)`;
}

/** One takeover; fails the scenario with the whole check table when any check fails. */
export async function expectTakeoverPasses(file: string, tool: Tool): Promise<void> {
  const release = readReleaseFile(join(TAKEOVER_FIXTURES_DIR, file));
  const report = await rehearseTakeover({ release, tool, users: 20 });
  const table = formatReport(report, release, defaultRun(tool).label);
  if (!report.ok) throw new Error(`takeover of ${file} with ${tool} failed:\n${table}`);
  expect(report.outage?.ms).toBeGreaterThan(0);
  process.stdout.write(`${table}\n`);
}
