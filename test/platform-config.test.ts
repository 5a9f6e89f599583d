import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RUNNER_IMAGE,
  type PlatformConfig,
  platformConfig,
  resolvePlatformConfig,
} from '../lib/platform-config.js';
import { synthPlatform } from './support/synth.js';

describe('platform configuration', () => {
  it('defaults to a v2 platform on a three-instance CloudNativePG database, migrating from keycloak-postgresql', () => {
    const resolved = resolvePlatformConfig({});
    expect(resolved).toMatchObject({
      releaseName: 'keycloak',
      namespace: 'keycloak',
      shape: 'v2',
      database: { flavor: 'cloudnative-pg', instances: 3, storageSize: '8Gi', database: 'keycloak', username: 'keycloak' },
      legacyDatabase: { database: 'bitnami_keycloak', username: 'bn_keycloak', passwordKey: 'password', adminPasswordKey: 'postgres-password' },
      migration: { deleteLegacy: 'never', protectVolumes: true, backupMinSize: '1Gi', activeDeadlineSeconds: 3600, parallelJobs: 2 },
      syncWaves: { database: -40, backup: -30, restore: -20, keycloak: -10 },
      helmChart: { name: 'keycloak-platform', version: '0.1.0' },
    });
    expect(resolved.images.runner).toBe(DEFAULT_RUNNER_IMAGE);
  });

  it('resolves the committed configuration main.ts synthesizes', () => {
    expect(resolvePlatformConfig(platformConfig).shape).toBe('v2');
  });

  it('leaves the sslmodes unset by default and keeps configured ones', () => {
    const defaults = resolvePlatformConfig({});
    expect('sslMode' in defaults.database).toBe(false);
    expect('sslMode' in defaults.legacyDatabase).toBe(false);
    const resolved = resolvePlatformConfig({ database: { sslMode: 'verify-full', caSecret: 'pg-ca', caKey: 'root.pem' }, legacyDatabase: { sslMode: 'require' } });
    expect(resolved.database.sslMode).toBe('verify-full');
    expect(resolved.database.caSecret).toEqual({ secretName: 'pg-ca', key: 'root.pem' });
    expect(resolved.legacyDatabase.sslMode).toBe('require');
    expect(resolved.legacyDatabase.caSecret).toBeUndefined();
    expect(resolvePlatformConfig({ legacyDatabase: { sslMode: 'verify-ca', caSecret: 'legacy-ca' } }).legacyDatabase.caSecret).toEqual({ secretName: 'legacy-ca', key: 'ca.crt' });
  });

  it('keeps an explicit null admin password key (superuser unknown)', () => {
    expect(resolvePlatformConfig({ legacyDatabase: { adminPasswordKey: null } }).legacyDatabase.adminPasswordKey).toBeNull();
  });
});

describe('platform configuration bad input', () => {
  const fails = (config: PlatformConfig, message: RegExp) => expect(() => resolvePlatformConfig(config)).toThrow(message);

  it('fails when a key is misspelt, naming the known ones', () => {
    fails({ database: { instance: 2 } as never }, /'database.instance' is not a known setting \(got 2\); known settings of 'database': flavor, instances/);
    fails({ releasename: 'x' } as never, /'releasename' is not a known setting/);
  });

  it('fails when a verifying sslmode has no CA, or a CA has no sslmode to use it', () => {
    fails({ database: { sslMode: 'verify-full' } }, /'database.sslMode' "verify-full" verifies the server's certificate, but database.caSecret is not set: name the Secret holding the CA/);
    fails({ legacyDatabase: { caSecret: 'legacy-ca' } }, /'legacyDatabase.caSecret' is set but legacyDatabase.sslMode is unset: set legacyDatabase.sslMode to 'verify-full'/);
    fails({ database: { sslMode: 'disable', caSecret: 'ca' } }, /'database.caSecret' is set but database.sslMode is 'disable'/);
    fails({ database: { caKey: 'ca.pem' } }, /'database.caKey' is set but database.caSecret is not/);
    fails({ database: { sslMode: 'require', caSecret: 'Bad_Name' } }, /'database.caSecret' must be a DNS-1123 subdomain/);
  });

  it('fails when an sslmode is not a libpq sslmode', () => {
    fails(
      { database: { sslMode: 'on' as never } },
      /'database.sslMode' must be one of 'disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full' \(libpq sslmode\), got "on"/,
    );
    fails({ legacyDatabase: { sslMode: true as never } }, /'legacyDatabase.sslMode' must be one of .*got true/);
  });

  it('fails when HA has fewer than two instances', () => {
    fails({ database: { instances: 1 } }, /'database.instances' must be an integer of at least 2.*got 1: use shape 'v1'/);
  });

  it('fails when the HA flavor is unknown', () => {
    fails({ database: { flavor: 'patroni' as never } }, /'database.flavor' must be one of 'repmgr', 'cloudnative-pg', got "patroni"/);
  });

  it('fails when the shape is unknown', () => {
    fails({ shape: 'v3' as never }, /'shape' must be 'v1'.*or 'v2'.*got "v3"/);
  });

  it('fails when the release name is not a DNS label', () => {
    fails({ releaseName: 'Keycloak_Prod' }, /'releaseName' must be a DNS-1123 label.*"Keycloak_Prod"/);
  });

  it("names Keycloak as Bitnami's fullname by default, and keycloak.name (a release's fullnameOverride) when set", () => {
    expect(resolvePlatformConfig({}).keycloak.name).toBe('keycloak');
    expect(resolvePlatformConfig({ releaseName: 'idp' }).keycloak.name).toBe('idp-keycloak');
    expect(resolvePlatformConfig({ releaseName: 'my-keycloak' }).keycloak.name).toBe('my-keycloak');
    expect(resolvePlatformConfig({ keycloak: { name: 'sso' } }).keycloak.name).toBe('sso');
  });

  it('fails when keycloak.name cannot name a Service', () => {
    fails({ keycloak: { name: '1sso' } }, /'keycloak.name' is used as a Service name, which must start with a letter \(DNS-1035\), got "1sso": prefix it with a letter/);
    fails({ keycloak: { name: 'SSO' } }, /'keycloak.name' must be a DNS-1123 label.*"SSO"/);
  });

  it('fails when an image has no tag', () => {
    fails({ images: { runner: 'ghcr.io/me/runner' } }, /'images.runner' must be an image reference with a pinned tag or digest/);
  });

  it('fails when a size is malformed', () => {
    fails({ database: { storageSize: '8 GB' } }, /'database.storageSize' must be a Kubernetes quantity.*"8 GB"/);
  });

  it('fails when the backup size is below the configured minimum', () => {
    fails({ migration: { backupSize: '512Mi', backupMinSize: '2Gi' } }, /'migration.backupSize' "512Mi" is smaller than migration.backupMinSize "2Gi"/);
  });

  it('fails when the restore wave is not strictly between the backup and Keycloak', () => {
    fails({ syncWaves: { restore: 0 } }, /'syncWaves.restore' must be strictly between syncWaves.backup \(-30\) and syncWaves.keycloak \(-10\), got 0/);
    fails({ syncWaves: { restore: -30 } }, /strictly between syncWaves.backup \(-30\).*got -30/);
  });

  it('fails when the backup wave is not above the database and below 0 (the wave where Argo CD prunes the Bitnami release)', () => {
    // The waves of an older configuration: the legacy database would be pruned at 0, before a backup above it.
    fails(
      { syncWaves: { database: 0, restore: 5, keycloak: 10 } },
      /'syncWaves.backup' must be above syncWaves.database \(0\) and below 0, got -30: .*prunes the legacy database .* at the start of wave 0; lower syncWaves.database/,
    );
    fails({ syncWaves: { backup: 0, restore: 5, keycloak: 10 } }, /'syncWaves.backup' must be .*below 0, got 0/);
  });

  it('fails when the chart version is not SemVer', () => {
    fails({ helmChart: { version: '1.0' } }, /'helmChart.version' must be a SemVer 2 version.*"1.0"/);
  });

  it('fails when the chart name is not a DNS label', () => {
    fails({ helmChart: { name: 'Keycloak Platform' } }, /'helmChart.name' must be a DNS-1123 label/);
  });

  it('fails when deleteLegacy is not a runner mode', () => {
    fails({ migration: { deleteLegacy: 'immediately' as never } }, /'migration.deleteLegacy' must be one of 'never', 'after-restore', 'after-backup', got "immediately"/);
  });

  it('passes migration.indexesAfterReady through to the migration Jobs, and fails on a non-boolean', () => {
    fails({ migration: { indexesAfterReady: 'off' as unknown as boolean } }, /'migration.indexesAfterReady' must be true or false, got "off"/);
    expect(resolvePlatformConfig({}).migration.indexesAfterReady).toBeUndefined();
    const jobs = synthPlatform({ shape: 'v2', flavor: 'helm', database: 'cloudnative-pg' }, { migration: { indexesAfterReady: false } }).filter((o) => o.kind === 'Job');
    expect(jobs.length).toBeGreaterThan(0);
    for (const job of jobs) {
      expect(job.spec.template.spec.containers[0].env.find((v: { name: string }) => v.name === 'MIGRATION_INDEXES_AFTER_READY')?.value, job.metadata.name).toBe('false');
    }
  });

  it('fails when acceptLegacyChangesOf is not a migration id, and keeps a valid one', () => {
    fails({ migration: { acceptLegacyChangesOf: 'yes' } }, /'migration.acceptLegacyChangesOf' must be a migration id like m-20261125-031500-a1b2c3, got "yes": copy the id/);
    expect(resolvePlatformConfig({ migration: { acceptLegacyChangesOf: 'm-20261125-031500-a1b2c3' } }).migration.acceptLegacyChangesOf).toBe('m-20261125-031500-a1b2c3');
    expect(resolvePlatformConfig({}).migration.acceptLegacyChangesOf).toBeUndefined();
  });

  it('fails when the Job deadline is too short to be useful: not above the Jobs\' 600 s wait for the new database', () => {
    fails({ migration: { activeDeadlineSeconds: 30 } }, /'migration.activeDeadlineSeconds' must be an integer from 601/);
    fails({ migration: { activeDeadlineSeconds: 600 } }, /'migration.activeDeadlineSeconds' must be an integer from 601 to 604800, got 600/);
    expect(resolvePlatformConfig({ migration: { activeDeadlineSeconds: 601 } }).migration.activeDeadlineSeconds).toBe(601);
  });

  it('fails on more HA instances than the constructs make, naming the setting', () => {
    fails({ database: { instances: 10 } }, /'database.instances' must be an integer from 2 to 9, got 10/);
  });
});
