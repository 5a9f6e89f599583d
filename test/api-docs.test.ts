// API.md is generated from lib/index.ts and its TSDoc (scripts/api-docs.ts): it must match the code.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from './support/synth.js';

describe('API.md', () => {
  it('is up to date with the exported constructs and props (npm run api-docs)', () => {
    // Exits 1 with "API.md is stale" when it is not.
    execFileSync(process.execPath, [join(projectRoot, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(projectRoot, 'scripts', 'api-docs.ts'), '--check'], { cwd: projectRoot, stdio: 'pipe' });
  });

  it('documents every construct with its props, each optional prop with a default', () => {
    const api = readFileSync(join(projectRoot, 'API.md'), 'utf8');
    for (const construct of ['Keycloak', 'PostgresHa', 'PostgresStandalone', 'DatabaseMigration', 'KeycloakPlatform', 'KeycloakIngress', 'KeycloakNetworkPolicies', 'KeycloakMonitor']) {
      expect(api).toContain(`### ${construct}\n`);
      expect(api).toContain(`### ${construct}Props\n`);
    }
    // Internal helpers stay internal.
    for (const internal of ['validateImage', 'restrictedProfileViolations', 'MIGRATION_JOB_ENV', 'customizePod', 'Env = ']) {
      expect(api).not.toContain(internal);
    }
  });
});
