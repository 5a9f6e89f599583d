/**
 * cdk8s's `Testing.app()` makes a fresh `cdk8s.outdir.*` directory in the system temp dir for
 * every app and never removes it (`Testing.synth` writes nothing there): a run of the suite left
 * thousands behind. At the end of the run, remove the empty ones this run created.
 */
import { readdirSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PREFIX = 'cdk8s.outdir.';

function outdirs(): Set<string> {
  return new Set(readdirSync(tmpdir()).filter((name) => name.startsWith(PREFIX)));
}

export default function setup(): () => void {
  const before = outdirs();
  return () => {
    for (const name of outdirs()) {
      if (before.has(name)) continue;
      try {
        rmdirSync(join(tmpdir(), name)); // only when empty: a directory holding files is left alone
      } catch {
        // not empty, or already gone
      }
    }
  };
}
