// Fault matrix (repmgr target): a failing restore (unreachable target, wrong password, deadline), two pre-phase
// Jobs at once, a backup volume too small, a missing RBAC permission — with both tools; each
// ends, after the operator's fix and another upgrade, in the fully checked migration.
import { describe, it } from 'vitest';

import { FAILURE_CASES } from './fault-cases.js';
import { REPMGR, runFaultCase } from './run-fault-case.js';
import { defaultRun } from './scenario.js';

const cases = FAILURE_CASES.flatMap((fault) => fault.tools.map((tool) => [`${defaultRun(tool).label}: ${fault.name}`, fault, tool] as const));

describe('fault matrix: failures and recovery', () => {
  it.each(cases)('%s', async (_name, fault, tool) => {
    await runFaultCase(fault, tool, REPMGR);
  });
});
