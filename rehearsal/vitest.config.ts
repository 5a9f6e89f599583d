import { defineConfig } from 'vitest/config';

// The rehearsal starts real PostgreSQL, repmgr and Pgpool-II processes and runs the runner image
// (built first by global-setup.ts) for hook Jobs and the database gate: each file in its own fork,
// at most two at once on CI's two cores, and timeouts sized for a whole upgrade (a scenario brings
// up three database servers and runs several Jobs).
export default defineConfig({
  test: {
    include: ['rehearsal/**/*.test.ts'],
    globalSetup: ['rehearsal/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
    testTimeout: 600_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
    reporters: ['default', './rehearsal/summary-reporter.ts'],
  },
});
