import { defineConfig } from 'vitest/config';

// Tests start real PostgreSQL servers: keep files in separate forks, but not too many at once
// on CI's two cores.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
