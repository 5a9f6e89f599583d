/**
 * Environment variables that carry JSON (the construct writes them; a person may too): one parse
 * with one kind of error, so every such variable fails the same way — a usage error (exit 64)
 * naming the variable, what is wrong, and an example of the expected shape.
 */
import { ExitCode } from '../../lib/contract.js';
import { RunnerError } from './errors.js';

export interface JsonVariable {
  readonly parsed: unknown;
  /** The usage error for a problem found in `parsed`: "<variable> <problem>", with the hint. */
  readonly invalid: (problem: string) => RunnerError;
}

/** Parses `value` as JSON; undefined when it is unset or blank. `example`: the shape to show in the hint. */
export function parseJsonVariable(variable: string, value: string | undefined, example: string): JsonVariable | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const invalid = (problem: string) => new RunnerError(`${variable} ${problem}`, { exitCode: ExitCode.usage, hint: example });
  try {
    return { parsed: JSON.parse(value) as unknown, invalid };
  } catch {
    throw invalid(`is not valid JSON: ${JSON.stringify(value.slice(0, 80))}`);
  }
}
