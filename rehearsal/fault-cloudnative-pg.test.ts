// The fault matrix's cases that touch the target, into CloudNativePG: the runner killed inside
// pg_dump and inside pg_restore, and the restore failures (unreachable `-rw`, a drifted `-app`
// password, the deadline); each ends, after the operator's fix and another upgrade, in the fully
// checked migration. The cases are fault-cases.ts's own. Tools: the kill inside pg_restore with
// both; the rest (the repmgr matrix runs them with both already) with one each, alternating, to
// keep CI's two cores within the suite's budget.
import { describe, it } from 'vitest';

import { FAILURE_CASES, KILL_CASES } from './fault-cases.js';
import type { FaultCase } from './faults.js';
import { runFaultCase } from './run-fault-case.js';
import type { Tool } from './scenario.js';

const CLOUDNATIVE_PG = { database: { flavor: 'cloudnative-pg' as const } };

const killInside = (step: 'pg_dump' | 'pg_restore'): FaultCase => {
  const fault = KILL_CASES.find((candidate) => candidate.name.includes(`inside ${step}`));
  if (!fault) throw new Error(`fault-cases.ts has no kill inside ${step}`);
  return fault;
};
const restoreFailures = FAILURE_CASES.filter((fault) => fault.name.startsWith('restore Job fails'));
if (restoreFailures.length !== 3) throw new Error(`expected the 3 restore failures of fault-cases.ts, found ${restoreFailures.length}`);

const cases: (readonly [string, FaultCase, Tool])[] = [
  ...(['helm', 'argocd'] as const).map((tool) => [`${tool}: ${killInside('pg_restore').name}`, killInside('pg_restore'), tool] as const),
  [`helm: ${killInside('pg_dump').name}`, killInside('pg_dump'), 'helm'],
  ...restoreFailures.map((fault, index) => {
    const tool: Tool = index % 2 === 0 ? 'argocd' : 'helm';
    return [`${tool}: ${fault.name}`, fault, tool] as const;
  }),
];

describe('fault matrix into CloudNativePG', () => {
  it.each(cases)('%s', async (_name, fault, tool) => {
    await runFaultCase(fault, tool, CLOUDNATIVE_PG);
  });
});
