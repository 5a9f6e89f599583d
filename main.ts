/**
 * The cdk8s app: synthesizes the platform configured in `lib/platform-config.ts` for both GitOps
 * tools in one run (or the YAML/JSON file named by `PLATFORM_CONFIG`, see lib/platform-config-file.ts):
 *
 * - `<outdir>/argocd/`: plain manifests with Argo CD hooks and sync waves (point an Argo CD
 *   Application's `path` here);
 * - `<outdir>/helm/<chart>/`: a Helm chart with helm.sh/hook annotations, laid out exactly as
 *   `cdk8s synth --format helm` lays it out (`Chart.yaml` with apiVersion v2, `README.md`,
 *   `templates/`), but with a deliberate chart name instead of the directory's basename and
 *   without a second ~1.8 s CLI run.
 *
 * `<outdir>` is `CDK8S_OUTDIR`, which `cdk8s synth` sets after deleting the directory (cdk8s#1560:
 * never hard-code it); `dist` when run directly.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, YamlOutputType } from 'cdk8s';
import { stringify } from 'yaml';
import { KeycloakPlatform } from './lib/keycloak-platform.js';
import { type PlatformConfig, platformConfig, resolvePlatformConfig } from './lib/platform-config.js';
import { platformConfigFromEnvironment } from './lib/platform-config-file.js';

/** Where each flavor lands below the output directory. */
export interface SynthesizedLayout {
  /** Directory of the Argo CD manifests. */
  readonly argocdDir: string;
  /** Directory of the Helm chart (holds Chart.yaml). */
  readonly helmChartDir: string;
}

/** Synthesizes both flavors of `config` below `outdir`. */
export function synthesizePlatform(outdir: string, config: PlatformConfig = platformConfig): SynthesizedLayout {
  const resolved = resolvePlatformConfig(config);
  const argocdDir = join(outdir, 'argocd');
  const helmChartDir = join(outdir, 'helm', resolved.helmChart.name);

  const argocd = new App({ outdir: argocdDir, yamlOutputType: YamlOutputType.FILE_PER_CHART });
  new KeycloakPlatform(argocd, resolved.releaseName, { ...config, flavor: 'argocd' });
  argocd.synth();

  const helm = new App({ outdir: join(helmChartDir, 'templates'), yamlOutputType: YamlOutputType.FILE_PER_CHART });
  new KeycloakPlatform(helm, resolved.releaseName, { ...config, flavor: 'helm' });
  helm.synth();

  mkdirSync(helmChartDir, { recursive: true });
  // The same keys, in the same order, as cdk8s-cli's helm scaffolding writes.
  writeFileSync(
    join(helmChartDir, 'Chart.yaml'),
    stringify({
      apiVersion: 'v2',
      name: resolved.helmChart.name,
      version: resolved.helmChart.version,
      description: `Generated chart for ${resolved.helmChart.name}`,
      type: 'application',
    }),
  );
  writeFileSync(
    join(helmChartDir, 'README.md'),
    'This Helm chart is generated using cdk8s. Any manual changes to the chart would be discarded once cdk8s app ' +
      'is synthesized again (`npm run synth`).\n',
  );
  return { argocdDir, helmChartDir };
}

// Synthesize only when run as the app (`cdk8s synth`, `tsx main.ts`), not when a test imports it.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // PLATFORM_CONFIG=<file.yaml|json> replaces the typed configuration (lib/platform-config-file.ts).
  synthesizePlatform(process.env.CDK8S_OUTDIR ?? 'dist', platformConfigFromEnvironment());
}
