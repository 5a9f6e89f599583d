/**
 * One takeover of a real Bitnami `keycloak` release, with real processes: the release's own
 * manifests installed as v1 by Helm or Argo CD (Bitnami's PostgreSQL StatefulSet as a real server
 * holding Keycloak-shaped data or the user's dump, Bitnami's Keycloak StatefulSet as the stand-in,
 * writing every 100 ms), then v2 synthesized for the release's name and namespace and applied by
 * the same tool, then checks of what the user will rely on:
 *
 * - every row, sequence and large object the legacy volume holds after the upgrade (read from the
 *   volume itself) is on the new primary and the standby; Keycloak waited for the verified
 *   restore (scenario.ts's verifyMigrated);
 * - every write Keycloak saw accepted, before and after, is on the new primary and the standby;
 * - Keycloak answers through its Service on port 80;
 * - the Secret that held the pre-upgrade admin password is still there with the same password,
 *   and the master realm's admin user (Bitnami's `user`) is the same row;
 *
 * and Keycloak's measured write outage: last write accepted on the legacy database → first write
 * accepted on the new one, with the share of each runner step (the state ConfigMap's history).
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';

import { resolvePlatformConfig, type PlatformConfig } from '../../lib/platform-config.js';
import type { MigrationState as RunnerState } from '../../runner/src/state.js';
import { createKeycloakData } from '../../test/support/keycloak-data.js';
import { POSTGRES_MAJORS_HERE, type PostgresMajor } from '../../test/support/postgres.js';

import { bitnamiReplicationMode } from '../bitnami-pods.js';
import { fingerprint, KEYCLOAK_RUNTIME_TABLES, KEYCLOAK_WRITES_TABLE as WRITES_TABLE, withClient, type Connection, type DatabaseFingerprint } from '../checks.js';
import { defaultHelmMajor, Rehearsal, rehearsalTargetMajor, type SynthesizedShape } from '../harness.js';
import { classifyArgoObjects, classifyHelmObjects, type KubeObject } from '../manifests.js';
import type { Container } from '../pod-env.js';
import { PostgresNode } from '../postgres-node.js';
import { PG_BIN, waitFor } from '../postgres-processes.js';
import { defaultRun, deploy, helmRun, namesFor, readState, targetDatabase, targetNodes, verifyMigrated, type ReleaseNames, type Tool, type ToolRun } from '../scenario.js';
import type { HelmMajor } from '../../test/support/helm.js';

import type { BitnamiReleaseFile } from './release-file.js';


export interface TakeoverOptions {
  readonly release: BitnamiReleaseFile;
  readonly tool: Tool;
  /** The real helm binary of a Helm takeover: 4.1 or 3.17. @default - the rehearsal's default (REHEARSAL_HELM, else 4) */
  readonly helm?: HelmMajor;
  /** Platform configuration of v2 (from `--config`), over the release's name and namespace. @default - the default configuration */
  readonly config?: PlatformConfig;
  /** A plain-SQL dump (`pg_dump --no-owner --no-privileges`) loaded as the application user instead of the generated data. */
  readonly dataFile?: string;
  /** Users of the generated Keycloak-shaped data. @default 40 */
  readonly users?: number;
  /** Keycloak's steady write interval. @default 100 */
  readonly writeIntervalMs?: number;
  /** Argo CD's pause between sync waves (ARGOCD_SYNC_WAVE_DELAY; 2 s in a real Argo CD). @default 0 */
  readonly argoWaveDelayMs?: number;
  /** Progress lines. @default - silent */
  readonly log?: (line: string) => void;
}

export interface CheckRow {
  readonly check: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface Outage {
  readonly lastLegacyWrite: number;
  readonly firstNewWrite: number;
  readonly ms: number;
  /** Runner phase → ms of the outage spent in it, then the gaps between the steps and Keycloak's start after them. */
  readonly shares: readonly { readonly step: string; readonly ms: number }[];
}

export interface TakeoverReport {
  readonly ok: boolean;
  readonly rows: readonly CheckRow[];
  readonly outage?: Outage;
  readonly legacyMajor: { readonly tag: number; readonly rehearsed: number };
  readonly durationMs: number;
}

/**
 * The server major a legacy image tag is rehearsed on: the tag's own where the rehearsal has it,
 * else the nearest lower one (12 → 11, 14 → 13), never above the new database's major (`targetMajor`).
 */
export function rehearsedLegacyMajor(tagMajor: number, targetMajor: PostgresMajor): PostgresMajor {
  const candidates = POSTGRES_MAJORS_HERE.filter((major) => major <= tagMajor && major <= targetMajor);
  const chosen = candidates[candidates.length - 1];
  if (chosen === undefined) {
    throw new Error(`the release runs PostgreSQL ${tagMajor}; the rehearsal has legacy servers for ${POSTGRES_MAJORS_HERE.join(', ')} (up to the new database's ${targetMajor})`);
  }
  return chosen;
}

export async function rehearseTakeover(options: TakeoverOptions): Promise<TakeoverReport> {
  const started = Date.now();
  const { release, tool } = options;
  // Rows name the tool as the summary does: `helm 4.1`, `helm 3.17` or `argocd`.
  const toolLabel = tool === 'helm' ? helmRun(options.helm ?? defaultHelmMajor()).label : defaultRun(tool).label;
  const log = options.log ?? (() => undefined);
  const rows: CheckRow[] = [];
  const row = (check: string, ok: boolean, detail: string) => {
    rows.push({ check, ok, detail });
    log(`${ok ? 'ok  ' : 'FAIL'} ${check}: ${detail}`);
  };
  const config: PlatformConfig = { releaseName: release.release, namespace: release.namespace, ...options.config };
  const targetMajor = rehearsalTargetMajor(config);
  const rehearsed = rehearsedLegacyMajor(release.database.tagMajor, targetMajor);
  const names = namesFor(config.releaseName!, config.legacyDatabase?.name, config.keycloak?.name);
  let seeded: (Connection & { superuserPassword: string }) | undefined;

  const rehearsal = await Rehearsal.start({
    config,
    helm: { timeoutMs: 600_000, ...(options.helm ? { major: options.helm } : {}) },
    argo: { waveTimeoutMs: 600_000, ...(options.argoWaveDelayMs ? { waveDelayMs: options.argoWaveDelayMs } : {}) },
    workloads: { legacyMajorOf: () => rehearsed, keycloakWriteIntervalMs: options.writeIntervalMs ?? 100 },
    seedLegacy: async (connection) => {
      seeded = connection;
      if (options.dataFile) await loadDump(connection, options.dataFile);
      else await seedBitnamiKeycloakData(connection, rehearsed, options.users ?? 40);
    },
  });
  try {
    row(
      'legacy PostgreSQL',
      true,
      rehearsed === release.database.tagMajor
        ? `StatefulSet ${release.database.statefulSet}, PostgreSQL ${rehearsed} (image ${release.database.image})`
        : `StatefulSet ${release.database.statefulSet}: image tag ${release.database.tagMajor}, rehearsed on PostgreSQL ${rehearsed} (${rehearsed < release.database.tagMajor && rehearsed === targetMajor ? `the new database runs ${targetMajor}` : `the rehearsal has no PostgreSQL ${release.database.tagMajor} server`})`,
    );

    // v1: the release as the user has it.
    log(`installing ${release.file} as release ${release.release} in ${release.namespace} with ${toolLabel}`);
    const v1: SynthesizedShape = { helm: classifyHelmObjects(release.file, release.objects), argocd: classifyArgoObjects(release.file, release.objects) };
    const created = createSecretsTheReleaseExpects(rehearsal, release.objects);
    const installed = await deploy(rehearsal, tool, v1);
    const keycloakV1 = release.objects.find((o) => o.kind === 'StatefulSet' && o.metadata.name === release.keycloak.statefulSet)!;
    if (!installed.ok) {
      row(`v1 installed with ${toolLabel}`, false, installed.error?.message ?? 'failed');
      return finish();
    }
    try {
      await rehearsal.waitReady(keycloakV1, 120_000);
      await waitFor('Keycloak to accept a steady write on the legacy database', async () => rehearsal.workloads.keycloakAcceptedWrites.length > 0, 30_000);
    } catch (error) {
      row(`v1 installed with ${toolLabel}`, false, (error as Error).message);
      return finish();
    }
    row(`v1 installed with ${toolLabel}`, true, `${release.objects.length} objects${created.length ? `; Secrets the release expects to exist created: ${created.join(', ')}` : ''}; Keycloak writing every ${options.writeIntervalMs ?? 100} ms`);

    const adminSecretBefore = release.keycloak.adminSecret ? secretData(rehearsal, release.keycloak.adminSecret) : undefined;
    const legacyLive = { host: '127.0.0.1', port: rehearsal.workloads.legacyPort(`${release.database.statefulSet}-0`)!, user: 'postgres', password: seeded!.superuserPassword, database: seeded!.database };
    const adminBefore = await masterAdminRow(legacyLive);
    for (const replica of readReplicas(release)) {
      const state = await readReplicaState(rehearsal, replica, legacyLive);
      row(`v1 read replica ${replica}`, state.ok, state.detail);
    }

    // v2, applied by the same tool.
    log(`upgrading to v2 (release ${config.releaseName}, namespace ${config.namespace}) with ${toolLabel}`);
    const v2 = rehearsal.synthesize('v2', config);
    const upgraded = await deploy(rehearsal, tool, v2);
    row(
      `v2 applied with ${toolLabel}`,
      upgraded.ok,
      upgraded.ok
        ? `${upgraded.events.filter((e) => e.action === 'apply').length} applies, ${upgraded.events.filter((e) => e.action === 'prune').length} deletions`
        : `${upgraded.error?.message ?? 'failed'}${runnerErrors(rehearsal)}`,
    );
    if (!upgraded.ok) return finish();

    // Which database the runner migrated from: the configured names, or the one it adopted from
    // the labels and pod spec (state `adoptedLegacy`) — it must be the release's own.
    const migrated = readState(rehearsal, names).state as RunnerState | undefined;
    const source = migrated?.adoptedLegacy?.statefulSet ?? names.legacyStatefulSet;
    row(
      `migrated from StatefulSet ${release.database.statefulSet}`,
      source === release.database.statefulSet,
      migrated?.adoptedLegacy ? `adopted: ${migrated.adoptedLegacy.evidence}` : `configured names (${names.legacyStatefulSet}); decision: ${migrated?.decisionReason ?? 'no state'}`,
    );

    // The legacy database as the upgrade left it, read from its volume.
    const acrossMajors = rehearsed < 12;
    const left = await readLegacyVolume(rehearsal, `${release.database.statefulSet}-0`, seeded!, acrossMajors);
    const problems: string[] = [];
    try {
      await verifyMigrated(rehearsal, v2, left.fingerprint, { names, excludeTables: [...KEYCLOAK_RUNTIME_TABLES, WRITES_TABLE], acrossMajors });
    } catch (error) {
      problems.push((error as Error).message);
    }
    row(
      'every row, sequence and large object on primary and standby',
      problems.length === 0,
      problems.length === 0
        ? `${Object.keys(left.fingerprint.tables).length} tables, ${Object.values(left.fingerprint.tables).reduce((n, t) => n + t.rows, 0)} rows, ${Object.keys(left.fingerprint.sequences).length} sequences, ${Object.keys(left.fingerprint.largeObjects).length} large objects; Keycloak started only after the verified restore`
        : problems.join('; '),
    );

    // Every server of the target, either flavor (repmgr nodes, or CloudNativePG instances).
    const nodes = await targetNodes(rehearsal, 'keycloak', names);

    // Writes go on while we check: judge those accepted so far.
    const accepted = [...rehearsal.workloads.keycloakAcceptedWrites];
    const legacyWrites = accepted.filter((write) => write.host !== targetDatabase(rehearsal, names).appService);
    const missing: string[] = [];
    for (const node of nodes) {
      const present = await waitForIds(node.connection, accepted.map((write) => write.id));
      const lost = accepted.filter((write) => !present.has(write.id));
      if (lost.length > 0) missing.push(`${node.name} lacks ${lost.length} (first ${lost[0]!.id} at ${new Date(lost[0]!.at).toISOString()})`);
    }
    const notInVolume = legacyWrites.filter((write) => !left.writeIds.has(write.id));
    if (notInVolume.length > 0) missing.push(`${notInVolume.length} writes accepted by the legacy database are not in its volume`);
    row('no accepted Keycloak write lost', missing.length === 0, missing.length === 0 ? `${legacyWrites.length} on the legacy database, ${accepted.length - legacyWrites.length} on the new one, all on primary and standby` : missing.join('; '));

    // A release under fullnameOverride / nameOverride whose name v2 does not keep (keycloak.name
    // unset): Keycloak answers on v2's Service; the runner quiesced the renamed one by its labels.
    const renamed = release.keycloak.statefulSet !== names.keycloak;
    const serviceName = renamed ? names.keycloak : (release.keycloak.service ?? names.keycloak);
    const http = await httpThroughService(rehearsal, serviceName, 80);
    row(
      `Keycloak reachable through Service ${serviceName} port 80`,
      http.status === 200,
      `HTTP ${http.status}${http.body ? ` ${http.body}` : ''}${renamed ? ` (the release's Service was ${release.keycloak.service ?? 'none'}; keycloak.name: ${release.keycloak.statefulSet} keeps it)` : ''}`,
    );
    if (renamed) {
      const adopted = migrated?.adoptedWorkloads?.[`statefulset/${names.keycloak}`];
      row(
        `renamed Keycloak ${release.keycloak.statefulSet} quiesced by its labels`,
        adopted?.workload === `statefulset/${release.keycloak.statefulSet}`,
        adopted ? `${adopted.workload} (labels ${adopted.selector})` : `state records no adopted workload for statefulset/${names.keycloak}`,
      );
    }

    if (release.keycloak.adminSecret) {
      // The renamed release's admin Secret goes with it; the runner copied it to v2's Keycloak name.
      const where = secretData(rehearsal, release.keycloak.adminSecret) ? release.keycloak.adminSecret : renamed ? names.keycloak : release.keycloak.adminSecret;
      const after = secretData(rehearsal, where);
      const same = after !== undefined && after['admin-password'] === adminSecretBefore?.['admin-password'];
      row(
        `admin Secret ${release.keycloak.adminSecret} kept${where !== release.keycloak.adminSecret ? ` (copied to ${where})` : ''}`,
        same,
        same ? 'admin-password unchanged (user `user`)' : after ? 'admin-password changed' : 'deleted by the upgrade',
      );
    } else {
      row('admin Secret kept', false, `${release.file} holds no Secret ${release.keycloak.statefulSet} with admin-password`);
    }
    const adminAfter = nodes[0] ? await masterAdminRow(nodes[0].connection) : undefined;
    row(
      "master realm's admin user untouched",
      adminBefore !== undefined && adminBefore === adminAfter,
      adminBefore === undefined ? "the legacy data holds no user 'user' in realm master" : adminBefore === adminAfter ? "user 'user' of realm master: same row" : `before ${adminBefore}, after ${adminAfter ?? '(missing)'}`,
    );

    const outage = measureOutage(rehearsal, names);
    if (tool === 'argocd' && outage) {
      // Argo CD's waves put the new database before the backup Job that stops Keycloak, and leave
      // the legacy objects (no wave: 0) until Keycloak's wave (below 0) is healthy: neither the new
      // database's start-up nor the legacy one's deletion is part of the outage.
      const { events } = upgraded;
      const databaseWave = events.findIndex((event) => event.action === 'wave' && event.target === `Sync ${resolvePlatformConfig(config).syncWaves.database}`);
      const nextWave = events.findIndex((event, index) => index > databaseWave && event.action === 'wave');
      const readyAt = events
        .slice(databaseWave, nextWave === -1 ? events.length : nextWave)
        .filter((event) => event.action === 'ready')
        .map((event) => event.at);
      const databaseReadyAt = databaseWave >= 0 && readyAt.length > 0 ? Math.max(...readyAt) : undefined;
      // Keycloak "back" as Argo CD sees it: its StatefulSet healthy (its first write may land a moment later).
      const keycloakReady = events.findIndex((event) => event.action === 'ready' && event.target === `StatefulSet/${names.keycloak}` && event.detail === undefined);
      const pruned = events.findIndex((event) => event.action === 'prune' && event.target === `StatefulSet/${release.database.statefulSet}`);
      const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
      row(
        'new database up before Keycloak stopped, legacy pruned after it was back',
        databaseReadyAt !== undefined && databaseReadyAt < outage.lastLegacyWrite && keycloakReady >= 0 && (pruned === -1 || pruned > keycloakReady),
        `${databaseReadyAt === undefined ? 'no ready object in the database\'s wave' : `new database healthy ${seconds(outage.lastLegacyWrite - databaseReadyAt)} before the last legacy write`}; ` +
          (keycloakReady === -1
            ? `StatefulSet ${names.keycloak} never healthy`
            : pruned === -1
              ? `StatefulSet ${release.database.statefulSet} not pruned`
              : `StatefulSet ${release.database.statefulSet} pruned ${seconds(events[pruned]!.at - events[keycloakReady]!.at)} after StatefulSet ${names.keycloak} was healthy`),
      );
    }
    return finish(outage);
  } finally {
    await rehearsal.close();
  }

  function finish(outage?: Outage): TakeoverReport {
    return { ok: rows.every((r) => r.ok), rows, outage, legacyMajor: { tag: release.database.tagMajor, rehearsed }, durationMs: Date.now() - started };
  }
}

/**
 * What the user created before installing the release and the file therefore lacks
 * (`auth.existingSecret`): every Secret a non-optional secretKeyRef (see
 * Rehearsal.createMissingSecrets) or a Secret volume of a workload names, with random values for
 * the keys the pods read — a projection's items, or the files its `*_FILE` variables name.
 */
function createSecretsTheReleaseExpects(rehearsal: Rehearsal, objects: readonly KubeObject[]): string[] {
  const created = rehearsal.createMissingSecrets(objects);
  const shipped = new Set(objects.filter((object) => object.kind === 'Secret').map((object) => object.metadata.name));
  const wanted = new Map<string, Set<string>>();
  for (const workload of objects.filter((object) => object.kind === 'StatefulSet' || object.kind === 'Deployment')) {
    const pod = (workload.spec as { template: { spec: PodTemplateSpec } }).template.spec;
    for (const volume of pod.volumes ?? []) {
      const sources = volume.secret ? [{ name: volume.secret.secretName, items: volume.secret.items, optional: volume.secret.optional }] : (volume.projected?.sources ?? []).flatMap((source) => (source.secret ? [source.secret] : []));
      for (const source of sources) {
        if (source.optional || shipped.has(source.name)) continue;
        const keys = source.items?.map((item) => item.key) ?? filesReadFrom(pod, volume.name);
        if (!wanted.has(source.name)) wanted.set(source.name, new Set());
        for (const key of keys) wanted.get(source.name)!.add(key);
      }
    }
  }
  for (const [name, keys] of wanted) if (keys.size > 0 && rehearsal.createSecretIfMissing(name, keys)) created.push(name);
  return created;
}

interface PodTemplateSpec {
  volumes?: {
    name: string;
    secret?: { secretName: string; items?: { key: string }[]; optional?: boolean };
    projected?: { sources?: { secret?: { name: string; items?: { key: string }[]; optional?: boolean } }[] };
  }[];
  containers: { env?: { name: string; value?: string }[]; volumeMounts?: { name: string; mountPath: string }[] }[];
}

/** The file names under the mounts of `volume` that the containers' `*_FILE` variables name. */
function filesReadFrom(pod: PodTemplateSpec, volume: string): string[] {
  const files: string[] = [];
  for (const container of pod.containers) {
    for (const mount of (container.volumeMounts ?? []).filter((m) => m.name === volume)) {
      const prefix = mount.mountPath.endsWith('/') ? mount.mountPath : `${mount.mountPath}/`;
      for (const variable of container.env ?? []) {
        if (variable.name.endsWith('_FILE') && variable.value?.startsWith(prefix)) files.push(variable.value.slice(prefix.length));
      }
    }
  }
  return files;
}

/** Keycloak-shaped data (test/support/keycloak-data.ts) plus Bitnami's admin user in the master realm. */
async function seedBitnamiKeycloakData(connection: Connection & { superuserPassword: string }, major: number, users: number): Promise<void> {
  const superuser = { ...connection, user: 'postgres', password: connection.superuserPassword };
  // citext and pgcrypto are trusted extensions only from PostgreSQL 13 on.
  await createKeycloakData(connection, { users, ...(major < 13 ? { extensionCreator: superuser } : {}) });
  await withClient(connection, async (client) => {
    // A running Keycloak holds no Liquibase lock.
    await client.query('UPDATE databasechangeloglock SET locked = false, lockgranted = NULL, lockedby = NULL');
    await client.query(
      `INSERT INTO public.user_entity (id, realm_id, username, email, enabled, created_timestamp)
       SELECT md5('bitnami-admin')::uuid::text, id, 'user', NULL, true, 1700000000000 FROM public.realm WHERE name = 'master'`,
    );
    await client.query(
      `INSERT INTO public.credential (id, user_id, type, secret_data, credential_data, created_date, priority)
       VALUES (md5('bitnami-admin-password')::uuid::text, md5('bitnami-admin')::uuid::text, 'password',
               '{"value":"pbkdf2-sha512-hash-of-admin-password","salt":"c2FsdA=="}', '{"hashIterations":210000,"algorithm":"pbkdf2-sha512"}', 1700000000000, 10)`,
    );
    // Materialized views as Keycloak's data last left them (a restore refreshes them).
    const views = await client.query<{ name: string }>(`SELECT format('%I.%I', schemaname, matviewname) AS name FROM pg_matviews WHERE ispopulated`);
    for (const { name } of views.rows) await client.query(`REFRESH MATERIALIZED VIEW ${name}`);
  });
}

/** The user's plain-SQL dump, loaded as the application user (what Keycloak owns), stopping at the first error. */
async function loadDump(connection: Connection, file: string): Promise<void> {
  const child = spawn(`${PG_BIN}/psql`, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', connection.host, '-p', String(connection.port), '-U', connection.user, '-d', connection.database, '-f', file], {
    env: { ...process.env, PGPASSWORD: connection.password },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) {
    throw new Error(`--data ${file}: psql stopped at the first error (${stderr.trim().split('\n').at(-1)}); take the dump with \`pg_dump --no-owner --no-privileges\` so that the application user can load it`);
  }
}

/** Pods of the release's read replicas (`architecture: replication`: POSTGRES_REPLICATION_MODE=slave). */
function readReplicas(release: BitnamiReleaseFile): string[] {
  return release.objects
    .filter((object) => object.kind === 'StatefulSet')
    .filter((object) =>
      ((object.spec as { template: { spec: { containers: Container[] } } }).template.spec.containers ?? []).some((container) => bitnamiReplicationMode(container) === 'slave'),
    )
    .map((object) => `${object.metadata.name}-0`);
}

/** A read replica is a hot standby that replayed what the primary holds (its users, by count). */
async function readReplicaState(rehearsal: Rehearsal, pod: string, primary: Connection): Promise<{ ok: boolean; detail: string }> {
  // Helm does not wait for it (no --wait): give the clone its time.
  const port = await waitFor(`${pod} to serve`, async () => rehearsal.workloads.legacyPort(pod), 120_000).catch(() => undefined);
  if (port === undefined) return { ok: false, detail: 'not running' };
  const count = (connection: Connection) =>
    withClient(connection, async (client) => (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM public.user_entity')).rows[0]!.n);
  const replica = { ...primary, port };
  const inRecovery = await withClient(replica, async (client) => (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r);
  const expected = await count(primary);
  const replayed = await waitFor(`${pod} to replay the primary's users`, async () => ((await count(replica)) === expected ? true : undefined), 15_000).catch(() => false);
  return { ok: inRecovery && replayed, detail: `${inRecovery ? 'hot standby' : 'NOT in recovery'}, ${replayed ? `replayed the primary's ${expected} users` : "lags the primary's users"}` };
}

/** The master realm's admin user (Bitnami's `user`) as one JSON row, or undefined. */
async function masterAdminRow(connection: Connection): Promise<string | undefined> {
  return withClient(connection, async (client) => {
    const result = await client.query<{ row: string }>(
      `SELECT row_to_json(u)::text AS row FROM public.user_entity u JOIN public.realm r ON r.id = u.realm_id WHERE r.name = 'master' AND lower(u.username::text) = 'user'`,
    );
    return result.rows[0]?.row;
  });
}

/**
 * Starts the legacy server once more on its volume (its pod is gone: the StatefulSet was deleted
 * or scaled to 0) and reads what it holds: the fingerprint and the ids of Keycloak's writes.
 */
async function readLegacyVolume(rehearsal: Rehearsal, pod: string, seeded: Connection & { superuserPassword: string }, acrossMajors: boolean) {
  const server = rehearsal.workloads.legacyServers.get(pod);
  if (!server) throw new Error(`the legacy database pod ${pod} never ran`);
  const node = new PostgresNode(server);
  await waitFor(`the legacy database pod ${pod} to stop`, async () => !node.isRunning(), 120_000);
  await node.start();
  try {
    const connection = { host: '127.0.0.1', port: server.port, user: 'postgres', password: seeded.superuserPassword, database: seeded.database };
    const legacy: DatabaseFingerprint = await fingerprint(connection, [...KEYCLOAK_RUNTIME_TABLES, WRITES_TABLE], { acrossMajors });
    const writeIds = await withClient(connection, async (client) => new Set((await client.query<{ id: string }>(`SELECT id FROM ${WRITES_TABLE}`)).rows.map((r) => r.id)));
    return { fingerprint: legacy, writeIds };
  } finally {
    await node.stop();
  }
}

/** The ids among `ids` present on a server (waiting a little for a standby to replay). */
async function waitForIds(connection: Connection, ids: readonly string[]): Promise<Set<string>> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const present = await withClient(connection, async (client) => new Set((await client.query<{ id: string }>(`SELECT id FROM ${WRITES_TABLE} WHERE id = ANY($1)`, [ids])).rows.map((r) => r.id)));
    if (present.size === ids.length || Date.now() > deadline) return present;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The runner's error lines of the last hook pod that failed (what `kubectl logs` would show the user). */
function runnerErrors(rehearsal: Rehearsal): string {
  const failed = [...rehearsal.jobs.runs].reverse().find((run) => /"level":"error"|"level":50/.test(rehearsal.jobs.logsOf(run.podName)));
  if (!failed) return '';
  const lines = rehearsal.jobs
    .logsOf(failed.podName)
    .split('\n')
    .filter((line) => /"level":"error"|"level":50/.test(line))
    .map((line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; message?: string; hint?: string };
        return [entry.msg ?? entry.message, entry.hint].filter(Boolean).join(' — ');
      } catch {
        return line;
      }
    });
  return lines.length > 0 ? `; ${failed.podName} says: ${lines.at(-1)}` : '';
}

function secretData(rehearsal: Rehearsal, name: string): Record<string, string> | undefined {
  const secret = rehearsal.server.get({ apiVersion: 'v1', kind: 'Secret', name, namespace: rehearsal.namespace });
  return secret ? ((secret.data ?? {}) as Record<string, string>) : undefined;
}

/** GET / through the Service's port, as an in-cluster client of `http://<service>.<ns>.svc` would. */
async function httpThroughService(rehearsal: Rehearsal, service: string, port: number): Promise<{ status: number; body?: string }> {
  let local: number | undefined;
  try {
    local = await rehearsal.proxies.localPort(service, port);
  } catch (error) {
    return { status: 0, body: (error as Error).message };
  }
  if (local === undefined) return { status: 0, body: `no Service ${service}` };
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: local, path: '/', timeout: 5000 }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    req.on('error', (error) => resolve({ status: 0, body: error.message }));
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end();
  });
}

/**
 * Last write accepted on the legacy database → first accepted on the new one, split over the
 * runner's recorded steps (state history: each phase's start to finish) and the rest.
 */
export function measureOutage(rehearsal: Rehearsal, names: ReleaseNames): Outage | undefined {
  const writes = rehearsal.workloads.keycloakAcceptedWrites;
  const appService = targetDatabase(rehearsal, names).appService;
  const legacy = writes.filter((write) => write.host !== appService);
  if (legacy.length === 0) return undefined;
  const lastLegacyWrite = Math.max(...legacy.map((write) => write.at));
  const firstNew = writes.filter((write) => write.host === appService && write.at > lastLegacyWrite).map((write) => write.at);
  if (firstNew.length === 0) return undefined;
  const firstNewWrite = Math.min(...firstNew);
  const ms = firstNewWrite - lastLegacyWrite;
  const history = readState(rehearsal, names).state?.history ?? [];
  const shares: { step: string; ms: number }[] = [];
  let covered = 0;
  let lastStepEnd = lastLegacyWrite;
  for (const entry of history) {
    const from = Math.max(Date.parse(entry.startedAt), lastLegacyWrite);
    const to = Math.min(Date.parse(entry.finishedAt), firstNewWrite);
    if (to > from) {
      shares.push({ step: entry.phase, ms: to - from });
      covered += to - from;
      lastStepEnd = Math.max(lastStepEnd, to);
    }
  }
  // What no step recorded, split at the last step's end: before it the hook Jobs' starts and the
  // tool's applies between them; after it Keycloak's start (its database gate included).
  const afterSteps = Math.max(0, firstNewWrite - lastStepEnd);
  shares.push({ step: 'between the steps (hook Job starts, the tool applying v2)', ms: Math.max(0, ms - covered - afterSteps) });
  shares.push({ step: 'after the last step (Keycloak starting, its database gate included)', ms: afterSteps });
  return { lastLegacyWrite, firstNewWrite, ms, shares };
}

/** `tool`: how the table names the tool that ran, e.g. `helm 4.1` or `argocd` ({@link ToolRun.label}). */
export function formatReport(report: TakeoverReport, release: BitnamiReleaseFile, tool: string): string {
  const lines = [`rehearse:takeover ${release.file} (release ${release.release}, namespace ${release.namespace}, ${tool})`, ''];
  const width = Math.max(...report.rows.map((r) => r.check.length));
  lines.push(`| ${'check'.padEnd(width)} | result | detail |`, `|${'-'.repeat(width + 2)}|--------|--------|`);
  for (const r of report.rows) lines.push(`| ${r.check.padEnd(width)} | ${r.ok ? 'ok    ' : 'FAILED'} | ${r.detail.replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`);
  lines.push('');
  if (report.outage) {
    lines.push(`Keycloak write outage (measured): ${(report.outage.ms / 1000).toFixed(1)} s, last write on the legacy database ${new Date(report.outage.lastLegacyWrite).toISOString()} → first on the new one ${new Date(report.outage.firstNewWrite).toISOString()}`);
    lines.push('', '| step | s | share |', '|---|---:|---:|');
    for (const share of report.outage.shares) lines.push(`| ${share.step} | ${(share.ms / 1000).toFixed(1)} | ${Math.round((100 * share.ms) / report.outage.ms)} % |`);
  } else {
    lines.push('Keycloak write outage: not measured (no accepted write on both databases)');
  }
  lines.push('', `${report.ok ? 'PASSED' : 'FAILED'} in ${(report.durationMs / 1000).toFixed(0)} s`);
  return lines.join('\n');
}
