/**
 * Prints the rehearsal's summary table (scenario, outcome, duration) after every run, as the
 * issue asks. vitest already exits non-zero when a scenario fails; this only makes the run
 * readable at a glance in CI logs.
 */
import { relative } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

export default class RehearsalSummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const rows: [string, string, string][] = [];
    for (const testModule of testModules) {
      const file = relative(process.cwd(), testModule.moduleId);
      for (const testCase of testModule.children.allTests()) {
        const result = testCase.result();
        const seconds = ((testCase.diagnostic()?.duration ?? 0) / 1000).toFixed(1);
        rows.push([`${file} › ${testCase.fullName}`, result.state.toUpperCase(), `${seconds} s`]);
      }
    }
    const header: [string, string, string] = ['scenario', 'outcome', 'duration'];
    const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
    const line = (cells: readonly string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ');
    const failed = rows.filter((row) => row[1] === 'FAILED').length;
    const skipped = rows.filter((row) => row[1] === 'SKIPPED').length;
    process.stdout.write(
      ['', 'Rehearsal summary', line(header), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line), '',
        `${rows.length - failed - skipped} passed, ${failed} failed${skipped ? `, ${skipped} not run (filtered)` : ''}`, ''].join('\n'),
    );
  }
}
