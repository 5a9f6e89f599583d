/**
 * `npm run rehearse:takeover -- --from <release.yaml> [--release NAME] [--namespace NS]
 * [--config FILE] [--tool helm|argocd] [--helm 3|4] [--data dump.sql] [--wave-delay MS]`: one takeover of exactly those
 * manifests in the rehearsal (rehearse-takeover.ts). Bad input stops before anything is started
 * (exit 2, one line naming the file or flag, what was found and the fix); a failed check exits 1.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { readPlatformConfigFile } from '../../lib/platform-config-file.js';
import type { PlatformConfig } from '../../lib/platform-config.js';
import setupRehearsal from '../global-setup.js';
import { defaultRun, helmRun, type ToolRun } from '../scenario.js';

import { readReleaseFile, ReleaseFileError, type BitnamiReleaseFile } from './release-file.js';
import { formatReport, rehearseTakeover } from './rehearse-takeover.js';

const USAGE = 'usage: npm run rehearse:takeover -- --from <release.yaml> [--release NAME] [--namespace NS] [--config FILE] [--tool helm|argocd] [--helm 3|4] [--data dump.sql] [--wave-delay MS]';

class UsageError extends Error {}

interface Invocation {
  readonly release: BitnamiReleaseFile;
  readonly run: ToolRun;
  readonly config?: PlatformConfig;
  readonly dataFile?: string;
  readonly waveDelayMs?: number;
}

/** Everything checked before a process starts. */
function parseInvocation(argv: readonly string[]): Invocation {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        from: { type: 'string' },
        release: { type: 'string' },
        namespace: { type: 'string' },
        config: { type: 'string' },
        tool: { type: 'string', default: 'helm' },
        helm: { type: 'string', default: '4' },
        data: { type: 'string' },
        'wave-delay': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n${USAGE}`);
  }
  const from = values.from as string | undefined;
  if (!from) throw new UsageError(`--from is required: the rendered release (\`helm get manifest <release> -n <namespace> > release.yaml\`)\n${USAGE}`);
  const tool = values.tool as string;
  if (tool !== 'helm' && tool !== 'argocd') throw new UsageError(`--tool must be helm or argocd, got ${JSON.stringify(tool)}`);
  const helm = values.helm as string;
  if (helm !== '3' && helm !== '4') throw new UsageError(`--helm must be 3 (helm 3.17) or 4 (helm 4.1, what users install today), got ${JSON.stringify(helm)}`);
  const run = tool === 'helm' ? helmRun(helm === '3' ? 3 : 4) : defaultRun('argocd');
  const dataFile = values.data as string | undefined;
  if (dataFile !== undefined && !existsSync(dataFile)) throw new UsageError(`--data ${dataFile}: no such file (a plain-SQL dump: pg_dump --no-owner --no-privileges)`);
  const waveDelay = values['wave-delay'] as string | undefined;
  if (waveDelay !== undefined && (tool !== 'argocd' || !/^\d{1,5}$/.test(waveDelay))) {
    throw new UsageError(`--wave-delay must be milliseconds (0-99999) with --tool argocd (Argo CD's ARGOCD_SYNC_WAVE_DELAY, 2000 in a real Argo CD), got ${JSON.stringify(waveDelay)}${tool === 'argocd' ? '' : ' with --tool ' + tool}`);
  }
  const configFile = values.config as string | undefined;
  let config: PlatformConfig | undefined;
  try {
    config = configFile === undefined ? undefined : readPlatformConfigFile(configFile);
  } catch (error) {
    // Its message names PLATFORM_CONFIG (the synth's variable); here the file came from --config.
    throw new UsageError(`--config ${configFile}: ${(error as Error).message}`);
  }
  const release = readReleaseFile(from, { release: (values.release as string | undefined) ?? config?.releaseName, namespace: (values.namespace as string | undefined) ?? config?.namespace });
  return { release, run, config, dataFile, ...(waveDelay !== undefined ? { waveDelayMs: Number(waveDelay) } : {}) };
}

async function main(): Promise<number> {
  let invocation: Invocation;
  try {
    invocation = parseInvocation(process.argv.slice(2));
  } catch (error) {
    if (error instanceof UsageError || error instanceof ReleaseFileError) {
      process.stderr.write(`rehearse:takeover: ${(error as Error).message}\n`);
      return 2;
    }
    throw error;
  }
  setupRehearsal();
  const report = await rehearseTakeover({
    release: invocation.release,
    tool: invocation.run.tool,
    ...(invocation.run.helm ? { helm: invocation.run.helm } : {}),
    config: invocation.config,
    dataFile: invocation.dataFile,
    ...(invocation.waveDelayMs !== undefined ? { argoWaveDelayMs: invocation.waveDelayMs } : {}),
    log: (line) => process.stderr.write(`rehearse:takeover: ${line}\n`),
  });
  process.stdout.write(`${formatReport(report, invocation.release, invocation.run.label)}\n`);
  return report.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`rehearse:takeover: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
