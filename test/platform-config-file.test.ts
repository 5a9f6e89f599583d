// PLATFORM_CONFIG: the same configuration as a YAML or JSON file, with the same defaults,
// validation and messages as the typed object.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { synthesizePlatform } from '../main.js';
import { platformConfigFromEnvironment, readPlatformConfigFile } from '../lib/platform-config-file.js';
import { platformConfig, resolvePlatformConfig, type PlatformConfig } from '../lib/platform-config.js';

const dir = mkdtempSync(join(tmpdir(), 'platform-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function tree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else out[relative(root, path)] = readFileSync(path, 'utf8');
    }
  };
  walk(root);
  return out;
}

const config: PlatformConfig = {
  releaseName: 'idp',
  namespace: 'iam',
  database: { instances: 2, storageSize: '20Gi' },
  legacyDatabase: { name: 'idp-db' },
  migration: { deleteLegacy: 'never' },
};

describe('platform config file', () => {
  it('synthesizes exactly what the same typed object synthesizes, from YAML and from JSON', () => {
    const yamlPath = file('env.yaml', 'releaseName: idp\nnamespace: iam\ndatabase:\n  instances: 2\n  storageSize: 20Gi\nlegacyDatabase:\n  name: idp-db\nmigration:\n  deleteLegacy: never\n');
    const jsonPath = file('env.json', JSON.stringify(config));
    expect(readPlatformConfigFile(yamlPath)).toEqual(config);
    expect(readPlatformConfigFile(jsonPath)).toEqual(config);
    synthesizePlatform(join(dir, 'typed'), config);
    synthesizePlatform(join(dir, 'from-file'), readPlatformConfigFile(yamlPath));
    const typed = tree(join(dir, 'typed'));
    expect(Object.keys(typed).length).toBeGreaterThan(2);
    expect(tree(join(dir, 'from-file'))).toEqual(typed);
  });

  it('takes every default for what it leaves out (an empty file is the default configuration)', () => {
    expect(resolvePlatformConfig(readPlatformConfigFile(file('empty.yaml', '')))).toEqual(resolvePlatformConfig({}));
  });

  it('is read only when PLATFORM_CONFIG is set', () => {
    expect(platformConfigFromEnvironment({})).toBe(platformConfig);
    expect(platformConfigFromEnvironment({ PLATFORM_CONFIG: file('p.json', '{"releaseName":"sso"}') })).toEqual({ releaseName: 'sso' });
  });

  it('fails with the typed object\'s message, prefixed with the file, on a bad value or an unknown key', () => {
    const bad = { database: { instances: 1 } } as PlatformConfig;
    const typedMessage = (() => {
      try {
        resolvePlatformConfig(bad);
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error('expected the typed object to fail');
    })();
    const path = file('bad.yaml', 'database:\n  instances: 1\n');
    expect(() => readPlatformConfigFile(path)).toThrow(`platform config file ${path}: ${typedMessage}`);
    expect(() => readPlatformConfigFile(file('typo.yaml', 'database:\n  instance: 3\n'))).toThrow(/platform config 'database.instance' is not a known setting/);
  });

  it('fails naming the file when it is missing, not YAML, or not a mapping', () => {
    expect(() => readPlatformConfigFile(join(dir, 'nope.yaml'))).toThrow(/PLATFORM_CONFIG names .*nope\.yaml, which cannot be read \(ENOENT\)/);
    expect(() => readPlatformConfigFile(file('broken.yaml', 'releaseName: [idp\n'))).toThrow(/broken\.yaml is not valid YAML or JSON/);
    expect(() => readPlatformConfigFile(file('dup.yaml', 'releaseName: a\nreleaseName: b\n'))).toThrow(/dup\.yaml is not valid YAML or JSON/);
    expect(() => readPlatformConfigFile(file('list.yaml', '- releaseName: idp\n'))).toThrow(/list\.yaml must hold a mapping of settings .*got a list/);
  });
});
