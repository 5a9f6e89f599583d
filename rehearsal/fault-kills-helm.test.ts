// Fault matrix (repmgr target): the runner killed (SIGKILL) at every step boundary and inside dump and restore,
// under helm; each Job's retry must resume and the upgrade converge with nothing lost.
import { describe, it } from 'vitest';

import { KILL_CASES } from './fault-cases.js';
import { REPMGR, runFaultCase } from './run-fault-case.js';
import { defaultRun } from './scenario.js';

describe(`fault matrix, ${defaultRun('helm').label}: runner killed`, () => {
  it.each(KILL_CASES.filter((fault) => fault.tools.includes('helm')).map((fault) => [fault.name, fault] as const))('%s', async (_name, fault) => {
    await runFaultCase(fault, 'helm', REPMGR);
  });
});
