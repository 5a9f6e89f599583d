/**
 * Entry point of the runner (`node runner.mjs <command>`, the package's bins `keycloak-migration` and
 * `kubectl-keycloak_migration`, `npm run runner -- <command>` in this repository).
 *
 * The one place where an error becomes an exit: a RunnerError prints one line — what failed and
 * what to do — and exits with its code (the Jobs' podFailurePolicy reads it); anything else is an
 * unexpected error (exit 1, retried), its stack only at debug level. SIGTERM/SIGINT end the
 * running pg tools first, so a stopped runner leaves nothing writing behind it.
 */
// First: it sets globals the dependencies read when they load.
import './runtime-globals.js';
import { Env, ExitCode, RunnerCommand } from '../../lib/contract.js';
import { programNameOf, runCli } from './cli.js';
import type { AnyCommand } from './cli.js';
import { isRunnerError } from './errors.js';
import { createLogger, redact, type Logger } from './log.js';
import { findPgTools, terminateActiveTools, toolVersion } from './pg/tools.js';

/** Printed by `--version`; replaced by the bundler with package.json's version. */
declare const RUNNER_VERSION: string | undefined;

function runnerVersion(): string {
  return typeof RUNNER_VERSION === 'string' ? RUNNER_VERSION : 'development';
}

/**
 * `--version`: the runner's version and what it would work with. Loading the runner's Kubernetes
 * client here also proves, in the bundle test, that client-node is bundled and loads without
 * node_modules. Through kube/client.ts, not `import('@kubernetes/client-node')`: a namespace import
 * makes the bundler keep every export of client-node (5.4 MB instead of the 2.5 MB the runner
 * uses), and every hook Job parses the chunk it lands in.
 */
async function printVersion(): Promise<void> {
  const lines = [`keycloak-pg-migration-runner ${runnerVersion()}`, `node ${process.version}`];
  const kube = await import('./kube/client.js');
  lines.push(`@kubernetes/client-node: ${kube.kubeClientLoaded() ? 'loaded' : 'missing'}`);
  try {
    const tools = await findPgTools();
    lines.push(`pg_dump ${(await toolVersion(tools.pgDump)).version} (${tools.pgDump})`);
    lines.push(`pg_restore ${(await toolVersion(tools.pgRestore)).version} (${tools.pgRestore})`);
  } catch (error) {
    lines.push(`PostgreSQL client tools: ${isRunnerError(error) ? error.oneLine() : String(error)}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

/**
 * The commands, loaded on demand: the bundle evaluates a dynamically imported module only when it
 * is imported, so Keycloak's gate (an init container on every Keycloak start) does not pay for
 * evaluating the Kubernetes client it never uses (~100 ms of a ~250 ms start here).
 */
async function loadCommands(name: string | undefined): Promise<readonly AnyCommand[]> {
  if (name === RunnerCommand.gate) return [(await import('./commands/gate.js')).gateCommand];
  // The stand-alone data commands do not use the Kubernetes client either (~8 MB and ~0.1 s less).
  if (name === RunnerCommand.checksumSource) return [(await import('./commands/checksum-source.js')).checksumSourceCommand];
  if (name === RunnerCommand.backup) return [(await import('./commands/backup.js')).backupCommand];
  if (name === RunnerCommand.restore) return [(await import('./commands/restore.js')).restoreCommand];
  if (name === RunnerCommand.copy) return [(await import('./commands/copy.js')).copyCommand];
  if (name === RunnerCommand.verify) return [(await import('./commands/verify.js')).verifyCommand];
  return (await import('./commands/index.js')).commands;
}

function reportFailure(error: unknown, log: Logger): number {
  if (isRunnerError(error)) {
    if (error.cause) log.debug('cause', { cause: redact(String((error.cause as Error)?.stack ?? error.cause)) });
    log.error(error.oneLine(), { exitCode: error.exitCode });
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  log.debug('stack', { stack: redact(error instanceof Error ? (error.stack ?? '') : '') });
  log.error(`unexpected error: ${message}: this is a bug or an unclassified failure; the Job will retry (MIGRATION_LOG_LEVEL=debug shows the stack)`, {
    exitCode: ExitCode.unexpected,
  });
  return ExitCode.unexpected;
}

export async function main(argv: readonly string[]): Promise<number> {
  let log: Logger;
  try {
    log = createLogger();
  } catch (error) {
    // An invalid MIGRATION_LOG_LEVEL / MIGRATION_LOG_FORMAT: said with the defaults, before anything runs.
    return reportFailure(error, createLogger({ env: { ...process.env, [Env.logLevel]: undefined, [Env.logFormat]: undefined } }));
  }
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    log.warn(`received ${signal}: stopping`);
    controller.abort();
    terminateActiveTools('SIGTERM');
    // 128 + signal number, as shells report it; the Job retries.
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    if (argv[0] === '--version' || argv[0] === 'version') {
      await printVersion();
      return 0;
    }
    return await runCli(argv, { commands: await loadCommands(argv[0]), log, signal: controller.signal, programName: programNameOf(process.argv[1]) });
  } catch (error) {
    return reportFailure(error, log);
  }
}

process.exitCode = await main(process.argv.slice(2));
