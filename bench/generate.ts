/**
 * Fills an empty database with Keycloak-shaped data of a chosen size on disk.
 *
 * Everything is generated server-side (INSERT ... SELECT over generate_series), so 1 GiB takes
 * about a minute on two cores. The data is deliberately not a benchmark toy: UUID keys, password
 * hashes, tokens and signatures are random bytes (incompressible), JSON documents repeat their keys
 * (compressible, as real event details are), names come from small vocabularies. The mix is
 * reported as the gzip ratio of a sample, so readers can judge how much compression can win.
 *
 * Usage: tsx bench/generate.ts --size 1GiB [--host 127.0.0.1 --port 5432 --user postgres
 *        --database keycloak]  (defaults from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE)
 */
import { gzipSync } from 'node:zlib';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { KEYCLOAK_POST_LOAD_DDL, KEYCLOAK_TABLES_DDL } from './keycloak-schema.js';
import { formatBytes, parseSize } from './size.js';

/**
 * Bumped whenever the generated data changes shape, so cached source clusters built by an older
 * generator are not reused.
 */
export const GENERATOR_VERSION = 1;

/**
 * On-disk bytes one generated user brings with it (its credential, attributes, role mappings,
 * sessions, events, admin events, audit rows and share of large objects, with indexes), measured
 * with this generator. Used to pick the user count for a requested size.
 */
const BYTES_PER_USER = 15_400;

/** pg_database_size of the schema with only the configuration tables filled (and an empty database's catalog). */
const BASE_BYTES = 10 * 1024 * 1024;

/** Realms in the generated installation (master plus tenants). */
const REALMS = 4;
const CLIENTS_PER_REALM = 60;
const REALM_ROLES_PER_REALM = 100;
const GROUPS_PER_REALM = 50;

export interface GenerateOptions {
  /** Wanted pg_database_size after generation, in bytes. */
  readonly targetBytes: number;
  /** Progress lines. @default - silent */
  readonly log?: (line: string) => void;
}

export interface GenerationReport {
  readonly generatorVersion: number;
  /** The data shape's id (bench/shapes.ts). */
  readonly shape: string;
  readonly targetBytes: number;
  /** pg_database_size after generation, VACUUM and CHECKPOINT. */
  readonly databaseBytes: number;
  /** Keycloak users (0 for the shapes that have none). */
  readonly users: number;
  readonly tables: number;
  readonly largeObjects: number;
  /** Rows per table, `schema.table` → count. */
  readonly rowCounts: Record<string, number>;
  /** Uncompressed / gzip (level 6) size of a text-format sample of every table over 1 MiB. */
  readonly sampleGzipRatio: number;
  readonly seconds: number;
}

/** Connection settings for {@link generateKeycloakDatabase}. */
export interface GenerateConnection {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password?: string;
  readonly database: string;
}

/**
 * Creates the Keycloak schema in `connection.database` (which must be empty) and fills it to
 * about `options.targetBytes`.
 */
export async function generateKeycloakDatabase(
  connection: GenerateConnection,
  options: GenerateOptions,
): Promise<GenerationReport> {
  const log = options.log ?? (() => {});
  const started = performance.now();
  const users = Math.max(1000, Math.round((options.targetBytes - BASE_BYTES) / BYTES_PER_USER));
  const largeObjects = Math.max(20, Math.round(users / 150));
  const main = await connectForGeneration(connection);
  try {
    const existing = await main.query(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r'`,
    );
    if (existing.rows[0].n > 0) {
      throw new Error(
        `database '${connection.database}' already has ${existing.rows[0].n} tables in schema public; ` +
          'the generator needs an empty database (drop and recreate it)',
      );
    }
    await main.query('CREATE EXTENSION IF NOT EXISTS pgcrypto');
    await main.query(KEYCLOAK_TABLES_DDL);
    log(`generating ${users} users in ${REALMS} realms, ${largeObjects} large objects`);
    await prepareSession(main);
    for (const statement of configurationInserts()) await main.query(statement);

    // Two lanes on two connections: the user-centric tables and the event/audit tables are
    // independent, and a single INSERT ... SELECT keeps only one core busy.
    const lanes = [userLane(users), eventLane(users, largeObjects)];
    await Promise.all(
      lanes.map(async (lane, index) => {
        const client = await connectForGeneration(connection);
        try {
          await prepareSession(client);
          for (const [table, statement] of lane) {
            const t0 = performance.now();
            await client.query(statement);
            log(`  lane ${index + 1}: ${table} ${seconds(t0)} s`);
          }
        } finally {
          await client.end();
        }
      }),
    );
    log('building indexes and foreign keys');
    await runInParallel(connection, [...KEYCLOAK_POST_LOAD_DDL], 2);
    await main.query(`SELECT setval('hibernate_sequence', ${users * 3 + 17})`);
    await main.query('DROP EXTENSION pgcrypto');
    log('VACUUM (FREEZE, ANALYZE) and CHECKPOINT');
    // Freezing now sets hint bits once, so the first benchmark round does not pay for writing them.
    await main.query('VACUUM (FREEZE, ANALYZE)');
    await main.query('CHECKPOINT');

    const size = await main.query('SELECT pg_database_size(current_database())::bigint AS bytes');
    const rowCounts = await countRows(main);
    const sampleGzipRatio = await sampleCompressionRatio(main);
    const report: GenerationReport = {
      generatorVersion: GENERATOR_VERSION,
      shape: 'keycloak',
      targetBytes: options.targetBytes,
      databaseBytes: Number(size.rows[0].bytes),
      users,
      tables: Object.keys(rowCounts).length,
      largeObjects,
      rowCounts,
      sampleGzipRatio,
      seconds: Number(seconds(started)),
    };
    log(
      `generated ${formatBytes(report.databaseBytes)} (asked ${formatBytes(options.targetBytes)}) ` +
        `in ${report.seconds} s; sample gzip ratio ${sampleGzipRatio.toFixed(2)}`,
    );
    return report;
  } finally {
    await main.end();
  }
}

/** Exact row count of every ordinary table in schema public, `public.name` → count. */
export async function countRows(client: pg.Client): Promise<Record<string, number>> {
  const tables = await client.query(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname`,
  );
  if (tables.rows.length === 0) return {};
  const union = tables.rows
    .map(
      (row: { relname: string }) =>
        `SELECT '${row.relname}' AS t, count(*)::bigint AS n FROM public.${pg.escapeIdentifier(row.relname)}`,
    )
    .join(' UNION ALL ');
  const counts = await client.query(union);
  const result: Record<string, number> = {};
  for (const row of counts.rows as Array<{ t: string; n: string }>) result[`public.${row.t}`] = Number(row.n);
  return result;
}

export async function connectForGeneration(connection: GenerateConnection): Promise<pg.Client> {
  const client = new pg.Client({ ...connection, application_name: 'bench-generate' });
  await client.connect();
  return client;
}

/** Session settings and helper functions (in pg_temp, so they vanish with the session). */
async function prepareSession(client: pg.Client): Promise<void> {
  await client.query(`
    SET synchronous_commit = off;
    SET work_mem = '64MB';
    SET maintenance_work_mem = '256MB';
    -- gen_random_bytes stops at 1024 bytes; longer values are built from chunks.
    CREATE FUNCTION pg_temp.rb(n integer) RETURNS bytea LANGUAGE sql VOLATILE
      AS $$ SELECT CASE WHEN n <= 1024 THEN gen_random_bytes(n) ELSE
        (SELECT string_agg(gen_random_bytes(least(1024, n - (i - 1) * 1024)), ''::bytea ORDER BY i)
           FROM generate_series(1, (n + 1023) / 1024) i) END $$;
    CREATE FUNCTION pg_temp.b64(n integer) RETURNS text LANGUAGE sql VOLATILE
      AS $$ SELECT translate(encode(pg_temp.rb(n), 'base64'), E'\\n', '') $$;
    CREATE FUNCTION pg_temp.hex(n integer) RETURNS text LANGUAGE sql VOLATILE
      AS $$ SELECT encode(gen_random_bytes(n), 'hex') $$;
    CREATE FUNCTION pg_temp.pick(options text[]) RETURNS text LANGUAGE sql VOLATILE
      AS $$ SELECT options[1 + floor(random() * array_length(options, 1))::int] $$;
    CREATE FUNCTION pg_temp.uid(kind text, n bigint) RETURNS text LANGUAGE sql IMMUTABLE
      AS $$ SELECT md5(kind || n::text)::uuid::text $$;
    CREATE FUNCTION pg_temp.ip() RETURNS text LANGUAGE sql VOLATILE
      AS $$ SELECT (10 + floor(random() * 200))::int || '.' || floor(random() * 256)::int || '.' ||
                   floor(random() * 256)::int || '.' || floor(random() * 256)::int $$;
    CREATE FUNCTION pg_temp.ms() RETURNS bigint LANGUAGE sql VOLATILE
      AS $$ SELECT 1704067200000 + floor(random() * 31536000000)::bigint $$;
  `);
}

const FIRST_NAMES = `ARRAY['Anna','Ben','Chloé','David','Elif','Farid','Greta','Hiro','Ines','Jonas','Kofi','Lena','Mateo','Nora','Olga','Pavel','Quinn','Rosa','Sven','Tariq','Uma','Viktor','Wen','Ximena','Yusuf','Zoe']`;
const LAST_NAMES = `ARRAY['Müller','Schmidt','García','Nakamura','Okafor','Rossi','Dubois','Kowalski','Andersson','Novak','Silva','Yilmaz','Chen','Patel','Ivanova','Haddad','Murphy','Jensen','Costa','Lindqvist']`;
const DOMAINS = `ARRAY['example.com','corp.example','mail.example.org','uni.example.edu','partner.example.net']`;
const EVENT_TYPES = `ARRAY['LOGIN','LOGIN','LOGIN','CODE_TO_TOKEN','REFRESH_TOKEN','REFRESH_TOKEN','LOGOUT','LOGIN_ERROR','UPDATE_PROFILE','CLIENT_LOGIN']`;

/** Realms, clients, roles, groups, flows, components: the many small tables. */
function configurationInserts(): string[] {
  const R = REALMS;
  const C = CLIENTS_PER_REALM;
  return [
    `INSERT INTO realm (id, name, enabled, events_enabled, events_expiration, ssl_required, sso_idle_timeout,
       sso_max_lifespan, access_token_lifespan, password_policy, login_theme, default_role, admin_events_enabled)
     SELECT pg_temp.uid('realm', r), CASE WHEN r = 0 THEN 'master' ELSE 'tenant-' || r END, true, true, 2592000,
       'external', 1800, 36000, 300, 'length(12) and hashIterations(27500) and notUsername', 'keycloak.v2',
       pg_temp.uid('role', r * 100000), true
     FROM generate_series(0, ${R - 1}) r`,
    `INSERT INTO realm_attribute (name, realm_id, value)
     SELECT 'attr.' || k || '.' || pg_temp.pick(ARRAY['frontendUrl','bruteForceProtected','displayName','clientSessionIdleTimeout','cibaExpiresIn','oauth2DeviceCodeLifespan','webAuthnPolicyRpEntityName','shortVerificationUri']),
       pg_temp.uid('realm', r), CASE WHEN k % 5 = 0 THEN pg_temp.b64(48) ELSE (k * 37)::text END
     FROM generate_series(0, ${R - 1}) r, generate_series(1, 60) k`,
    `INSERT INTO realm_events_listeners SELECT pg_temp.uid('realm', r), v FROM generate_series(0, ${R - 1}) r, unnest(ARRAY['jboss-logging','email','metrics-listener']) v`,
    `INSERT INTO realm_enabled_event_types SELECT pg_temp.uid('realm', r), v FROM generate_series(0, ${R - 1}) r, unnest(${EVENT_TYPES}) v ON CONFLICT DO NOTHING`,
    `INSERT INTO realm_supported_locales SELECT pg_temp.uid('realm', r), v FROM generate_series(0, ${R - 1}) r, unnest(ARRAY['en','de','fr','es','ja','pt-BR']) v`,
    `INSERT INTO realm_smtp_config SELECT pg_temp.uid('realm', r), v, n FROM generate_series(0, ${R - 1}) r,
       (VALUES ('host','smtp.example.com'),('port','587'),('from','iam@example.com'),('starttls','true'),('auth','true')) AS s(n, v)`,
    `INSERT INTO realm_localizations SELECT pg_temp.uid('realm', r), l,
       '{"loginTitle":"Sign in to ' || l || '","welcome":"' || pg_temp.b64(90) || '","footer":"' || repeat('Terms apply. ', 20) || '"}'
     FROM generate_series(0, ${R - 1}) r, unnest(ARRAY['en','de','fr']) l`,
    `INSERT INTO realm_required_credential SELECT 'password', 'password', true, true, pg_temp.uid('realm', r) FROM generate_series(0, ${R - 1}) r`,
    `INSERT INTO client (id, enabled, full_scope_allowed, client_id, public_client, secret, base_url, realm_id, protocol,
       name, client_authenticator_type, root_url, description, standard_flow_enabled, direct_access_grants_enabled)
     SELECT pg_temp.uid('client', r * 1000 + c), true, c % 3 = 0, 'app-' || c || '-' || substr(md5(r::text || c), 1, 6),
       c % 4 = 0, pg_temp.b64(24), '/app/' || c, pg_temp.uid('realm', r), 'openid-connect', 'Application ' || c,
       'client-secret', 'https://app' || c || '.example.com', 'Generated client ' || c, true, c % 2 = 0
     FROM generate_series(0, ${R - 1}) r, generate_series(1, ${C}) c`,
    `INSERT INTO client_attributes SELECT id, a, CASE WHEN a LIKE '%cert%' THEN pg_temp.b64(600) ELSE (random() * 1000)::int::text END
     FROM client, unnest(ARRAY['backchannel.logout.session.required','oauth2.device.authorization.grant.enabled','pkce.code.challenge.method',
       'jwt.credential.certificate','display.on.consent.screen','post.logout.redirect.uris','use.refresh.tokens',
       'client_credentials.use_refresh_token','tls.client.certificate.bound.access.tokens','saml.signing.certificate']) a`,
    `INSERT INTO redirect_uris SELECT id, root_url || '/callback/' || k FROM client, generate_series(1, 3) k`,
    `INSERT INTO web_origins SELECT id, root_url FROM client`,
    `INSERT INTO client_initial_access SELECT pg_temp.uid('cia', k), pg_temp.uid('realm', k % ${R}), 1700000000, 86400, 10, 5 FROM generate_series(1, 20) k`,
    `INSERT INTO client_scope SELECT pg_temp.uid('scope', r * 100 + s), 'scope-' || s, pg_temp.uid('realm', r), 'Scope ' || s, 'openid-connect'
     FROM generate_series(0, ${R - 1}) r, generate_series(1, 20) s`,
    `INSERT INTO client_scope_attributes SELECT id, v, n FROM client_scope,
       (VALUES ('display.on.consent.screen','true'),('include.in.token.scope','true'),('consent.screen.text','\${profileScopeConsentText}')) AS a(n, v)`,
    `INSERT INTO client_scope_client SELECT c.id, s.id, random() < 0.5 FROM client c JOIN client_scope s USING (realm_id) WHERE random() < 0.3`,
    `INSERT INTO default_client_scope SELECT realm_id, id, true FROM client_scope`,
    `INSERT INTO protocol_mapper SELECT pg_temp.uid('mapper', r * 100000 + c * 10 + m), 'mapper ' || m, 'openid-connect',
       pg_temp.pick(ARRAY['oidc-usermodel-attribute-mapper','oidc-audience-mapper','oidc-usermodel-realm-role-mapper','oidc-full-name-mapper']),
       pg_temp.uid('client', r * 1000 + c), NULL
     FROM generate_series(0, ${R - 1}) r, generate_series(1, ${C}) c, generate_series(1, 5) m`,
    `INSERT INTO protocol_mapper_config SELECT id, v, n FROM protocol_mapper,
       (VALUES ('claim.name','preferred_username'),('jsonType.label','String'),('id.token.claim','true'),('access.token.claim','true'),('userinfo.token.claim','true')) AS a(n, v)`,
    `INSERT INTO keycloak_role (id, client_realm_constraint, client_role, description, name, realm_id, realm)
     SELECT pg_temp.uid('role', r * 100000 + k), pg_temp.uid('realm', r), false, 'Realm role ' || k,
       CASE WHEN k = 0 THEN 'default-roles-' || r ELSE 'role-' || k END, pg_temp.uid('realm', r), pg_temp.uid('realm', r)
     FROM generate_series(0, ${R - 1}) r, generate_series(0, ${REALM_ROLES_PER_REALM - 1}) k`,
    `INSERT INTO keycloak_role (id, client_realm_constraint, client_role, description, name, client)
     SELECT pg_temp.uid('crole', r * 100000 + c * 10 + k), pg_temp.uid('client', r * 1000 + c), true, 'Client role', 'client-role-' || k,
       pg_temp.uid('client', r * 1000 + c)
     FROM generate_series(0, ${R - 1}) r, generate_series(1, ${C}) c, generate_series(1, 5) k`,
    `INSERT INTO composite_role SELECT pg_temp.uid('role', r * 100000), pg_temp.uid('role', r * 100000 + k)
     FROM generate_series(0, ${R - 1}) r, generate_series(1, 10) k`,
    `INSERT INTO role_attribute SELECT pg_temp.uid('roleattr', k), pg_temp.uid('role', (k % ${R}) * 100000 + k % ${REALM_ROLES_PER_REALM}), 'tier', 'gold'
     FROM generate_series(1, 200) k`,
    `INSERT INTO scope_mapping SELECT pg_temp.uid('client', r * 1000 + c), pg_temp.uid('role', r * 100000 + c)
     FROM generate_series(0, ${R - 1}) r, generate_series(1, ${C}) c`,
    `INSERT INTO keycloak_group SELECT pg_temp.uid('group', r * 1000 + g), 'group-' || g, CASE WHEN g <= 10 THEN ' ' ELSE pg_temp.uid('group', r * 1000 + g % 10 + 1) END,
       pg_temp.uid('realm', r), 0
     FROM generate_series(0, ${R - 1}) r, generate_series(1, ${GROUPS_PER_REALM}) g`,
    `INSERT INTO group_attribute SELECT pg_temp.uid('gattr', k), 'costCenter', 'CC-' || k, pg_temp.uid('group', (k % ${R}) * 1000 + k % ${GROUPS_PER_REALM} + 1)
     FROM generate_series(1, 400) k`,
    `INSERT INTO group_role_mapping SELECT pg_temp.uid('role', r * 100000 + g), pg_temp.uid('group', r * 1000 + g)
     FROM generate_series(0, ${R - 1}) r, generate_series(1, ${GROUPS_PER_REALM}) g`,
    `INSERT INTO realm_default_groups SELECT pg_temp.uid('realm', r), pg_temp.uid('group', r * 1000 + 1) FROM generate_series(0, ${R - 1}) r`,
    `INSERT INTO identity_provider (internal_id, enabled, provider_alias, provider_id, realm_id, provider_display_name)
     SELECT pg_temp.uid('idp', r * 10 + k), true, 'idp-' || k, pg_temp.pick(ARRAY['oidc','saml','github','google']), pg_temp.uid('realm', r), 'Provider ' || k
     FROM generate_series(0, ${R - 1}) r, generate_series(1, 4) k`,
    `INSERT INTO identity_provider_config SELECT internal_id, CASE WHEN n = 'signingCertificate' THEN pg_temp.b64(900) ELSE 'https://idp.example.com/' || n END, n
     FROM identity_provider, unnest(ARRAY['authorizationUrl','tokenUrl','userInfoUrl','clientId','signingCertificate','issuer']) n`,
    `INSERT INTO identity_provider_mapper SELECT pg_temp.uid('idpm', k), 'mapper-' || k, 'idp-' || (k % 4 + 1), 'hardcoded-role-idp-mapper', pg_temp.uid('realm', k % ${R})
     FROM generate_series(1, 40) k`,
    `INSERT INTO idp_mapper_config SELECT id, 'role-1', 'role' FROM identity_provider_mapper`,
    `INSERT INTO authentication_flow SELECT pg_temp.uid('flow', r * 100 + f), pg_temp.pick(ARRAY['browser','direct grant','registration','reset credentials','clients','first broker login','docker auth']) || ' ' || f,
       'Generated flow', pg_temp.uid('realm', r), 'basic-flow', f <= 8, true
     FROM generate_series(0, ${R - 1}) r, generate_series(1, 16) f`,
    `INSERT INTO authentication_execution SELECT pg_temp.uid('exec', r * 10000 + f * 10 + e), NULL,
       pg_temp.pick(ARRAY['auth-cookie','auth-spnego','identity-provider-redirector','auth-username-password-form','auth-otp-form','conditional-user-configured']),
       pg_temp.uid('realm', r), pg_temp.uid('flow', r * 100 + f), e % 3, e * 10, false, NULL, NULL
     FROM generate_series(0, ${R - 1}) r, generate_series(1, 16) f, generate_series(1, 6) e`,
    `INSERT INTO authenticator_config SELECT pg_temp.uid('authcfg', k), 'config-' || k, pg_temp.uid('realm', k % ${R}) FROM generate_series(1, 24) k`,
    `INSERT INTO authenticator_config_entry SELECT id, 'true', n FROM authenticator_config, unnest(ARRAY['defaultProvider','require.otp','acr.level']) n`,
    `INSERT INTO required_action_provider SELECT pg_temp.uid('rap', r * 100 + k), a, initcap(replace(a, '_', ' ')), pg_temp.uid('realm', r), true, false, a, k * 10
     FROM generate_series(0, ${R - 1}) r, unnest(ARRAY['CONFIGURE_TOTP','TERMS_AND_CONDITIONS','UPDATE_PASSWORD','UPDATE_PROFILE','VERIFY_EMAIL','delete_account','webauthn-register','update_user_locale']) WITH ORDINALITY AS x(a, k)`,
    `INSERT INTO component SELECT pg_temp.uid('component', r * 100 + k), 'component-' || k, pg_temp.uid('realm', r),
       pg_temp.pick(ARRAY['rsa-generated','hmac-generated','aes-generated','declarative-user-profile','trusted-hosts','max-clients']),
       pg_temp.pick(ARRAY['org.keycloak.keys.KeyProvider','org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy','org.keycloak.userprofile.UserProfileProvider']),
       pg_temp.uid('realm', r), 'anonymous'
     FROM generate_series(0, ${R - 1}) r, generate_series(1, 25) k`,
    `INSERT INTO component_config SELECT pg_temp.uid('ccfg', row_number() OVER ()), id, n,
       CASE n WHEN 'privateKey' THEN pg_temp.b64(1200) WHEN 'certificate' THEN pg_temp.b64(800) WHEN 'kc.user.profile.config' THEN
         '{"attributes":[{"name":"username","displayName":"\${username}","validations":{"length":{"min":3,"max":255}}},{"name":"email"}]}'
       ELSE (random() * 100)::int::text END
     FROM component, unnest(ARRAY['priority','privateKey','certificate','kc.user.profile.config','active','enabled']) n`,
    `INSERT INTO resource_server SELECT pg_temp.uid('client', r * 1000 + c), false, 0, 1 FROM generate_series(0, ${R - 1}) r, generate_series(1, 5) c`,
    `INSERT INTO resource_server_resource SELECT pg_temp.uid('res', k), 'resource-' || k, 'urn:app:resources:default', NULL,
       pg_temp.uid('client', (k % ${R}) * 1000 + k % 5 + 1), pg_temp.uid('client', (k % ${R}) * 1000 + k % 5 + 1), false, 'Resource ' || k
     FROM generate_series(1, 300) k`,
    `INSERT INTO resource_server_scope SELECT pg_temp.uid('rscope', k), 'scope-' || k, NULL, pg_temp.uid('client', (k % ${R}) * 1000 + k % 5 + 1), NULL
     FROM generate_series(1, 60) k`,
    `INSERT INTO resource_server_policy SELECT pg_temp.uid('policy', k), 'policy-' || k, 'Generated policy', pg_temp.pick(ARRAY['role','js','time','group','aggregate']),
       1, 0, pg_temp.uid('client', (k % ${R}) * 1000 + k % 5 + 1), NULL
     FROM generate_series(1, 200) k`,
    `INSERT INTO policy_config SELECT id, 'roles', '[{"id":"' || gen_random_uuid() || '","required":false}]' FROM resource_server_policy`,
    `INSERT INTO associated_policy SELECT pg_temp.uid('policy', k), pg_temp.uid('policy', k + 1) FROM generate_series(1, 100) k`,
    `INSERT INTO resource_policy SELECT pg_temp.uid('res', k), pg_temp.uid('policy', k % 200 + 1) FROM generate_series(1, 300) k`,
    `INSERT INTO resource_scope SELECT pg_temp.uid('res', k), pg_temp.uid('rscope', k % 60 + 1) FROM generate_series(1, 300) k`,
    `INSERT INTO resource_uris SELECT pg_temp.uid('res', k), '/api/v1/items/' || k || '/*' FROM generate_series(1, 300) k`,
    `INSERT INTO resource_attribute SELECT pg_temp.uid('resattr', k), 'owner-team', 'team-' || k % 7, pg_temp.uid('res', k) FROM generate_series(1, 300) k`,
    `INSERT INTO user_federation_provider SELECT pg_temp.uid('ufp', r), 0, 'ldap', -1, 0, 0, 'ldap', pg_temp.uid('realm', r) FROM generate_series(1, ${R - 1}) r`,
    `INSERT INTO user_federation_config SELECT id, v, n FROM user_federation_provider,
       (VALUES ('connectionUrl','ldaps://ldap.example.com'),('usersDn','ou=people,dc=example,dc=com'),('bindDn','cn=admin,dc=example,dc=com'),('vendor','other')) AS a(n, v)`,
    `INSERT INTO org SELECT pg_temp.uid('org', k), true, pg_temp.uid('realm', k % ${R}), pg_temp.uid('group', (k % ${R}) * 1000 + 1), 'Org ' || k, 'Generated organization', 'org-' || k, NULL
     FROM generate_series(1, 30) k`,
    `INSERT INTO org_domain SELECT pg_temp.uid('org', k), 'org' || k || '.example.com', k % 2 = 0, pg_temp.uid('org', k) FROM generate_series(1, 30) k`,
    `INSERT INTO server_config VALUES ('crt_jgroups', '{"prvKey":"' || pg_temp.b64(1200) || '","crt":"' || pg_temp.b64(800) || '"}', 1)`,
    `INSERT INTO jgroups_ping SELECT 'uuid://' || gen_random_uuid(), 'keycloak-' || k, 'ISPN', '10.0.0.' || k || ':7800', k = 0 FROM generate_series(0, 2) k`,
    `INSERT INTO migration_model VALUES ('mm-26.4.0', '26.4.0', 1730000000)`,
    `INSERT INTO databasechangeloglock VALUES (1, false, NULL, NULL), (1000, false, NULL, NULL), (1001, false, NULL, NULL)`,
    `INSERT INTO databasechangelog SELECT k || '-' || substr(md5(k::text), 1, 8), 'keycloak', 'META-INF/jpa-changelog-' || (k / 20) || '.xml',
       timestamp '2024-01-01' + k * interval '1 second', k, 'EXECUTED', '9:' || md5(k::text), 'createTable tableName=T' || k, '', NULL, '4.29.1', NULL, NULL, '1730000000'
     FROM generate_series(1, 420) k`,
  ];
}

/** The per-user tables: user_entity and everything keyed by user, plus offline sessions. */
function userLane(users: number): Array<[string, string]> {
  const R = REALMS;
  return [
    [
      'user_entity',
      `INSERT INTO user_entity (id, email, email_constraint, email_verified, enabled, first_name, last_name, realm_id,
         username, created_timestamp, not_before)
       SELECT pg_temp.uid('user', n), lower(f) || '.' || lower(l) || n || '@' || d, lower(f) || '.' || lower(l) || n || '@' || d,
         random() < 0.8, random() < 0.97, f, l, pg_temp.uid('realm', n % ${R}), lower(f) || '.' || lower(l) || n,
         pg_temp.ms(), 0
       FROM (SELECT n, pg_temp.pick(${FIRST_NAMES}) f, pg_temp.pick(${LAST_NAMES}) l, pg_temp.pick(${DOMAINS}) d
             FROM generate_series(1, ${users}) n) s`,
    ],
    [
      'credential',
      // Keycloak's pbkdf2 credential: secret_data holds the hash and salt (random, incompressible).
      `INSERT INTO credential (id, salt, type, user_id, created_date, user_label, secret_data, credential_data, priority, version)
       SELECT pg_temp.uid('cred', n), gen_random_bytes(16), 'password', pg_temp.uid('user', n), pg_temp.ms(), NULL,
         '{"value":"' || pg_temp.b64(64) || '","salt":"' || pg_temp.b64(16) || '","additionalParameters":{}}',
         '{"hashIterations":27500,"algorithm":"pbkdf2-sha512","additionalParameters":{}}', 10, 0
       FROM generate_series(1, ${users}) n`,
    ],
    [
      'user_attribute',
      `INSERT INTO user_attribute (name, value, user_id, id)
       SELECT a, CASE a WHEN 'locale' THEN pg_temp.pick(ARRAY['en','de','fr','es'])
                        WHEN 'phoneNumber' THEN '+49' || (1000000000 + floor(random() * 8999999999))::bigint
                        WHEN 'department' THEN pg_temp.pick(ARRAY['Engineering','Sales','Finance','Support','Legal','Operations'])
                        WHEN 'employeeNumber' THEN 'E' || n
                        WHEN 'picture' THEN 'https://cdn.example.com/avatars/' || pg_temp.hex(16) || '.png'
                        ELSE pg_temp.b64(30) END,
         pg_temp.uid('user', n), gen_random_uuid()::text
       FROM generate_series(1, ${users}) n,
            unnest(ARRAY['locale','phoneNumber','department','employeeNumber','picture','ldapEntryDn']) a`,
    ],
    [
      'user_role_mapping',
      `INSERT INTO user_role_mapping SELECT pg_temp.uid('role', (n % ${R}) * 100000 + k), pg_temp.uid('user', n)
       FROM generate_series(1, ${users}) n, generate_series(0, 2) k`,
    ],
    [
      'user_group_membership',
      `INSERT INTO user_group_membership SELECT pg_temp.uid('group', (n % ${R}) * 1000 + n % ${GROUPS_PER_REALM} + 1), pg_temp.uid('user', n), 'UNMANAGED'
       FROM generate_series(1, ${users}) n`,
    ],
    [
      'user_required_action',
      `INSERT INTO user_required_action SELECT pg_temp.uid('user', n), pg_temp.pick(ARRAY['VERIFY_EMAIL','UPDATE_PASSWORD','CONFIGURE_TOTP'])
       FROM generate_series(1, ${users}) n WHERE n % 10 = 0`,
    ],
    [
      'federated_identity',
      `INSERT INTO federated_identity SELECT 'idp-' || (n % 4 + 1), pg_temp.uid('realm', n % ${R}), pg_temp.hex(12), 'user' || n,
         NULL, pg_temp.uid('user', n)
       FROM generate_series(1, ${users}) n WHERE n % 5 = 0`,
    ],
    [
      'user_consent',
      `INSERT INTO user_consent SELECT pg_temp.uid('consent', n), pg_temp.uid('client', (n % ${R}) * 1000 + n % ${CLIENTS_PER_REALM} + 1),
         pg_temp.uid('user', n), pg_temp.ms(), pg_temp.ms(), NULL, NULL
       FROM generate_series(1, ${users}) n WHERE n % 3 = 0`,
    ],
    [
      'user_consent_client_scope',
      `INSERT INTO user_consent_client_scope SELECT pg_temp.uid('consent', n), pg_temp.uid('scope', (n % ${R}) * 100 + k)
       FROM generate_series(1, ${users}) n, generate_series(1, 2) k WHERE n % 3 = 0`,
    ],
    [
      'offline_user_session',
      // Keycloak keeps offline sessions as JSON text with notes; tokens inside are random.
      `INSERT INTO offline_user_session (user_session_id, user_id, realm_id, created_on, offline_flag, data,
         last_session_refresh, broker_session_id, version, remember_me)
       SELECT pg_temp.uid('uss', n), pg_temp.uid('user', n), pg_temp.uid('realm', n % ${R}), 1730000000 + n, '1',
         '{"brokerSessionId":null,"brokerUserId":null,"ipAddress":"' || pg_temp.ip() || '","authMethod":"openid-connect",' ||
         '"rememberMe":false,"started":0,"notes":{"KC_DEVICE_NOTE":"' || pg_temp.b64(180) || '","AUTH_TIME":"1730000000",' ||
         '"authenticators-completed":"{\\"' || gen_random_uuid() || '\\":1730000000}"},"state":"LOGGED_IN"}',
         1730000000 + n, NULL, 0, false
       FROM generate_series(1, ${users}) n WHERE n % 2 = 0`,
    ],
    [
      'offline_client_session',
      `INSERT INTO offline_client_session (user_session_id, client_id, offline_flag, timestamp, data)
       SELECT pg_temp.uid('uss', n), pg_temp.uid('client', (n % ${R}) * 1000 + n % ${CLIENTS_PER_REALM} + k), '1', 1730000000 + n,
         '{"authMethod":"openid-connect","redirectUri":"https://app.example.com/callback","notes":{"scope":"openid profile email offline_access",' ||
         '"iss":"https://sso.example.com/realms/tenant","nonce":"' || pg_temp.b64(24) || '","code_challenge":"' || pg_temp.b64(32) || '"}}'
       FROM generate_series(1, ${users}) n, generate_series(1, 2) k WHERE n % 2 = 0`,
    ],
  ];
}

/** Events, admin events, the custom audit table, revoked tokens and the large objects. */
function eventLane(users: number, largeObjects: number): Array<[string, string]> {
  const R = REALMS;
  const events = users * 8;
  return [
    [
      'event_entity',
      `INSERT INTO event_entity (id, client_id, details_json, error, ip_address, realm_id, session_id, event_time, type, user_id)
       SELECT gen_random_uuid()::text, 'app-' || (e % ${CLIENTS_PER_REALM} + 1), '{"auth_method":"openid-connect","token_id":"' || gen_random_uuid() ||
         '","grant_type":"authorization_code","refresh_token_type":"Refresh","scope":"openid profile email","refresh_token_id":"' ||
         gen_random_uuid() || '","code_id":"' || gen_random_uuid() || '","client_auth_method":"client-secret","username":"user' || (e % ${users}) || '"}',
         CASE WHEN e % 17 = 0 THEN 'invalid_user_credentials' END, pg_temp.ip(), pg_temp.uid('realm', (e % ${users}) % ${R}),
         gen_random_uuid()::text, pg_temp.ms(), pg_temp.pick(${EVENT_TYPES}), pg_temp.uid('user', e % ${users} + 1)
       FROM generate_series(1, ${events}) e`,
    ],
    [
      'admin_event_entity',
      `INSERT INTO admin_event_entity (id, admin_event_time, realm_id, operation_type, auth_realm_id, auth_client_id,
         auth_user_id, ip_address, resource_path, representation, resource_type)
       SELECT gen_random_uuid()::text, pg_temp.ms(), pg_temp.uid('realm', n % ${R}), pg_temp.pick(ARRAY['CREATE','UPDATE','DELETE','ACTION']),
         pg_temp.uid('realm', 0), pg_temp.uid('client', 1), pg_temp.uid('user', 1), pg_temp.ip(), 'users/' || pg_temp.uid('user', n),
         '{"id":"' || pg_temp.uid('user', n) || '","username":"user' || n || '","enabled":true,"emailVerified":true,' ||
         '"attributes":{"department":["Engineering"],"ldapEntryDn":["' || pg_temp.b64(60) || '"]},"createdTimestamp":' || pg_temp.ms() ||
         ',"access":{"manageGroupMembership":true,"view":true,"mapRoles":true,"impersonate":false,"manage":true},' ||
         '"credentials":[{"type":"password","temporary":false,"value":"**********"}],"federationLink":"' || pg_temp.hex(16) ||
         '","notBefore":0,"requiredActions":[],"groups":["/group-1"],"clientConsents":[],"signature":"' || pg_temp.b64(256) || '"}',
         'USER'
       FROM generate_series(1, ${users}) n`,
    ],
    [
      'custom_audit_log',
      `INSERT INTO custom_audit_log (id, realm_id, user_id, recorded_at, payload, signature)
       SELECT gen_random_uuid(), pg_temp.uid('realm', n % ${R}), pg_temp.uid('user', n),
         timestamptz '2024-01-01' + random() * interval '365 days',
         jsonb_build_object('action', pg_temp.pick(ARRAY['login','consent','password-change','mfa-enrol']),
           'ip', pg_temp.ip(), 'userAgent', 'Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/' || (100 + n % 40),
           'session', gen_random_uuid(), 'riskScore', round((random() * 100)::numeric, 2),
           'device', jsonb_build_object('fingerprint', pg_temp.hex(32), 'trusted', random() < 0.5),
           'claims', jsonb_build_object('acr', '1', 'amr', jsonb_build_array('pwd', 'otp'), 'nonce', pg_temp.b64(24))),
         gen_random_bytes(64)
       FROM generate_series(1, ${users}) n`,
    ],
    [
      'revoked_token',
      `INSERT INTO revoked_token SELECT gen_random_uuid()::text, 1730000000 + n FROM generate_series(1, ${Math.max(100, Math.round(users / 10))}) n`,
    ],
    [
      'large objects',
      // Documents of 64-256 KiB: random binary halves (incompressible) and XML-ish text halves.
      `SELECT lo_from_bytea(0, (SELECT string_agg(gen_random_bytes(1024), ''::bytea) FROM generate_series(1, 32 + (k % 4) * 16))
                               || convert_to(repeat('<attr name="x">' || md5(k::text) || '</attr>', 1000 + (k % 4) * 500), 'UTF8'))
       FROM generate_series(1, ${largeObjects}) k`,
    ],
  ];
}

/** Runs independent statements on `parallel` connections, each taking the next statement. */
async function runInParallel(connection: GenerateConnection, statements: string[], parallel: number): Promise<void> {
  const queue = [...statements];
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      const client = await connectForGeneration(connection);
      try {
        await client.query(`SET maintenance_work_mem = '256MB'`);
        for (let next = queue.shift(); next !== undefined; next = queue.shift()) await client.query(next);
      } finally {
        await client.end();
      }
    }),
  );
}

/**
 * gzip ratio of the text-format COPY of a sample (about 2 % of the pages, at least 200 rows) of
 * every table over 1 MiB, weighted by table size: what a compressing dump could gain.
 */
export async function sampleCompressionRatio(client: pg.Client): Promise<number> {
  const big = await client.query(
    `SELECT c.relname, pg_relation_size(c.oid)::bigint AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind = 'r' AND pg_relation_size(c.oid) > 1048576`,
  );
  let weightedRaw = 0;
  let weightedGzip = 0;
  for (const row of big.rows as Array<{ relname: string; bytes: string }>) {
    const sample = await client.query(
      `SELECT t::text AS line FROM public.${pg.escapeIdentifier(row.relname)} t TABLESAMPLE SYSTEM (2) LIMIT 20000`,
    );
    const text = Buffer.from(sample.rows.map((r: { line: string }) => r.line).join('\n'));
    if (text.length === 0) continue;
    const ratio = text.length / gzipSync(text, { level: 6 }).length;
    weightedRaw += Number(row.bytes);
    weightedGzip += Number(row.bytes) / ratio;
  }
  return weightedGzip === 0 ? 1 : weightedRaw / weightedGzip;
}

function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
}

function parseArgs(argv: string[]): Record<string, string> {
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument '${arg}'; flags look like --size 1GiB`);
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`flag ${arg} needs a value`);
    flags[arg.slice(2)] = value;
    i += 1;
  }
  return flags;
}

async function main(): Promise<void> {
  const flags = parseArgs(process.argv.slice(2));
  const report = await generateKeycloakDatabase(
    {
      host: flags.host ?? process.env.PGHOST ?? '127.0.0.1',
      port: Number(flags.port ?? process.env.PGPORT ?? 5432),
      user: flags.user ?? process.env.PGUSER ?? 'postgres',
      password: process.env.PGPASSWORD,
      database: flags.database ?? process.env.PGDATABASE ?? 'keycloak',
    },
    { targetBytes: parseSize('--size', flags.size ?? '1GiB'), log: (line) => console.error(line) },
  );
  console.log(JSON.stringify(report, null, 2));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
