/**
 * Prints the rehearsal's summary table (scenario, outcome, duration) after every run, and the
 * runner image every hook Job and database gate ran in (reference and size). vitest already exits
 * non-zero when a scenario fails; this only makes the run
 * readable at a glance in CI logs.
 */
import { relative } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

// The drills' TaskMeta field (declared beside the measurement).
import type {} from './failover-drill.js';

export default class RehearsalSummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const rows: [string, string, string][] = [];
    const drills: string[] = [];
    const failures: string[] = [];
    for (const testModule of testModules) {
      const file = relative(process.cwd(), testModule.moduleId);
      for (const testCase of testModule.children.allTests()) {
        const result = testCase.result();
        const seconds = ((testCase.diagnostic()?.duration ?? 0) / 1000).toFixed(1);
        // Failover drills (failover-drill.ts) report what they measured.
        const failover = testCase.meta().failover;
        if (failover) {
          drills.push(
            `${failover.flavor}: writes stopped for ${failover.outageMs} ms; ${failover.acknowledged} acknowledged, ${failover.lost} lost, ` +
              `${failover.readOnlyWrites} into a read-only server; errors seen: ${failover.errors.length ? failover.errors.join(' | ') : 'none'}`,
          );
        }
        // CI keeps only the end of the log: each failure's first error lines go under the table.
        if (result.state === 'failed') {
          const errors = result.errors ?? [];
          failures.push(`FAILED ${testCase.fullName}`, ...errors.slice(0, 2).map((error) => `  ${firstLines(error.message ?? String(error), 6)}`));
        }
        rows.push([result.state.toUpperCase(), `${seconds} s`, `${file.replace(/^rehearsal\//, '').replace(/\.test\.ts$/, '')} › ${testCase.fullName}`]);
      }
    }
    // Outcome and duration first: scenario names are long, and the last column needs no padding.
    const header: [string, string, string] = ['outcome', 'duration', 'scenario'];
    const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
    const line = (cells: readonly string[]) => cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ');
    const failed = rows.filter((row) => row[0] === 'FAILED').length;
    const skipped = rows.filter((row) => row[0] === 'SKIPPED').length;
    process.stdout.write(
      ['', 'Rehearsal summary', line(header), widths.map((width, column) => '-'.repeat(column === 2 ? 8 : width)).join('  '), ...rows.map(line), '',
        `${rows.length - failed - skipped} passed, ${failed} failed${skipped ? `, ${skipped} not run (filtered)` : ''}`,
        ...(failures.length ? ['', 'Why they failed (first lines of each error)', ...failures] : []),
        ...(drills.length ? ['', 'Failover drills (measured write outage, through the application\'s Service)', ...drills] : []),
        `runner image: ${process.env.REHEARSAL_RUNNER_IMAGE ?? '(not built)'}${process.env.REHEARSAL_RUNNER_IMAGE_SIZE ? ` (${process.env.REHEARSAL_RUNNER_IMAGE_SIZE})` : ''}`, ''].join('\n'),
    );
  }
}

/** The first lines of an error message, indented to sit under its scenario. */
function firstLines(message: string, count: number): string {
  return message.split('\n').slice(0, count).join('\n  ');
}
