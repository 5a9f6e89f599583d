// Keycloak's gate (init container): exits 0 at once when the target carries the ready marker,
// waits (saying why) while it does not, and exits 75 after its timeout so the kubelet restarts it.
// Run as the init container runs it: the bundle, TARGET_* of Keycloak's own user, nothing else.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, ReadyMarker, RunnerCommand } from '../lib/contract.js';
import { writeMarker } from '../runner/src/pg/marker.js';
import { assertBundleIsFresh, BUNDLE } from './support/runner-hooks-harness.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { logLines, REPOSITORY_ROOT } from './support/runner-cli.js';
import { spawn } from 'node:child_process';

let server: TestPostgres;
const APP = 'app';
const APP_PASSWORD = 'gate-app-pass';

interface GateRun {
  code: number | null;
  stderr: string;
  ms: number;
}

function startGate(database: string, env: Record<string, string> = {}): { done: Promise<GateRun>; stderr(): string } {
  const started = Date.now();
  const child = spawn(process.execPath, [BUNDLE, RunnerCommand.gate], {
    cwd: REPOSITORY_ROOT,
    env: {
      PATH: process.env.PATH,
      TARGET_PGHOST: '127.0.0.1',
      TARGET_PGPORT: String(server.port),
      TARGET_PGUSER: APP,
      TARGET_PGPASSWORD: APP_PASSWORD,
      TARGET_PGDATABASE: database,
      MIGRATION_GATE_TIMEOUT_SECONDS: '20',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return {
    stderr: () => stderr,
    done: new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr, ms: Date.now() - started }))),
  };
}

async function waitUntil(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  assertBundleIsFresh();
  server = await startPostgres();
  await server.createUser(APP, APP_PASSWORD);
  for (const database of ['ready_db', 'waiting_db', 'restoring_db', 'empty_db']) await server.createDatabase(database, APP);
  await writeMarker(server.settings('ready_db'), { status: ReadyMarker.ready, migrationId: 'm-ready', owner: APP });
  await writeMarker(server.settings('restoring_db'), { status: ReadyMarker.restoring, migrationId: 'm-restoring', owner: APP });
});
afterAll(async () => {
  await server?.stop();
});

describe('gate', () => {
  it('exits 0 at once when the marker says ready', async () => {
    const run = await startGate('ready_db').done;
    expect(run.code, run.stderr).toBe(0);
    expect(logLines(run.stderr).map((line) => line.msg)).toEqual(['the database is ready: starting Keycloak']);
    // Generous for a loaded CI machine; bench/ measures the real start-up → exit latency.
    expect(run.ms).toBeLessThan(3000);
  });

  it('waits while there is no marker, says why, and passes once the restore marks the data ready', async () => {
    const gate = startGate('waiting_db');
    await waitUntil('the gate reported why it waits', () => gate.stderr().includes('waiting for the migrated data'));
    await writeMarker(server.settings('waiting_db'), { status: ReadyMarker.restoring, migrationId: 'm-1', owner: APP });
    await waitUntil('the gate saw the restore', () => gate.stderr().includes('is restoring the data'));
    await writeMarker(server.settings('waiting_db'), { status: ReadyMarker.ready, migrationId: 'm-1', owner: APP });
    const run = await gate.done;
    expect(run.code, run.stderr).toBe(0);
    const reasons = logLines(run.stderr).filter((line) => line.msg === 'waiting for the migrated data').map((line) => line.reason as string);
    expect(reasons[0]).toMatch(/has no ready marker/);
    expect(reasons.some((reason) => /migration m-1 is restoring the data/.test(reason))).toBe(true);
  });

  it('exits 75 after its timeout with one line saying why (restore in progress)', async () => {
    const run = await startGate('restoring_db', { MIGRATION_GATE_TIMEOUT_SECONDS: '2' }).done;
    expect(run.code).toBe(ExitCode.tempFail);
    const errors = logLines(run.stderr).filter((line) => line.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toMatch(/^the database was not ready after 2s: the migration m-restoring is restoring the data/);
    expect(run.ms).toBeGreaterThanOrEqual(1900);
  });

  it('keeps waiting while the database is unreachable, naming it', async () => {
    const run = await startGate('empty_db', { TARGET_PGPORT: '1', MIGRATION_GATE_TIMEOUT_SECONDS: '1' }).done;
    expect(run.code).toBe(ExitCode.tempFail);
    expect(run.stderr).toMatch(/the database is not reachable: cannot reach PostgreSQL at 127\.0\.0\.1:1/);
    expect(run.stderr).not.toContain(APP_PASSWORD);
  });

  it('fails with a usage error naming a malformed timeout', async () => {
    const run = await startGate('ready_db', { MIGRATION_GATE_TIMEOUT_SECONDS: 'ten' }).done;
    expect(run.code).toBe(ExitCode.usage);
    expect(run.stderr).toContain('MIGRATION_GATE_TIMEOUT_SECONDS must be a whole number of seconds from 1 to 86400, got \\"ten\\"');
  });
});
