/**
 * The registry of the runner's commands, in the order `--help` lists them. Adding a command is
 * one import and one entry here.
 */
import type { AnyCommand } from '../cli.js';
import { backupCommand } from './backup.js';
import { restoreCommand } from './restore.js';
import { verifyCommand } from './verify.js';

export const commands: readonly AnyCommand[] = [
  backupCommand,
  restoreCommand,
  verifyCommand,
];
