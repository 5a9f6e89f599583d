/**
 * The registry of the runner's commands, in the order `--help` lists them. Adding a command is
 * one import and one entry here.
 */
import type { AnyCommand } from '../cli.js';
import { checksumSourceCommand } from './checksum-source.js';
import { backupCommand } from './backup.js';
import { restoreCommand } from './restore.js';
import { copyCommand } from './copy.js';
import { verifyCommand } from './verify.js';
import { prepareCommand } from './prepare.js';
import { backupPhaseCommand } from './backup-phase.js';
import { restorePhaseCommand } from './restore-phase.js';
import { gateCommand } from './gate.js';
import { recordFailureCommand } from './record-failure.js';
import { statusCommand } from './status.js';
import { planCommand } from './plan.js';

export const commands: readonly AnyCommand[] = [
  checksumSourceCommand,
  backupCommand,
  restoreCommand,
  copyCommand,
  verifyCommand,
  prepareCommand,
  backupPhaseCommand,
  restorePhaseCommand,
  gateCommand,
  recordFailureCommand,
  statusCommand,
  planCommand,
];
