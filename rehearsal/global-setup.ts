/**
 * Before any scenario: the runner image of the current sources (built by scripts/build-image.ts
 * when missing, a few seconds when nothing changed), and proof that podman can start it. Every
 * hook Job and Keycloak's database gate run in it; without it the rehearsal stops here with one
 * line naming what is missing (no fallback to host processes).
 */
import { spawnSync } from 'node:child_process';

import { ensureRunnerImage, formatImageSize } from '../scripts/build-image.js';

export default function setup(): void {
  const image = ensureRunnerImage({ log: (line) => process.stderr.write(`rehearsal: ${line}\n`) });
  const probe = spawnSync('podman', ['run', '--rm', '--pull=never', '--network=host', image.reference, '--version'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    const said = `${probe.stderr ?? ''}${probe.stdout ?? ''}`.trim().split('\n').at(-1);
    throw new Error(`rehearsal: podman cannot run ${image.reference}: ${said ?? probe.error?.message} (run \`bash scripts/setup-test-machine.sh\`)`);
  }
  // Forks inherit the environment: every scenario uses exactly this image.
  process.env.REHEARSAL_RUNNER_IMAGE = image.reference;
  process.env.REHEARSAL_RUNNER_IMAGE_SIZE = formatImageSize(image.sizeBytes);
}
