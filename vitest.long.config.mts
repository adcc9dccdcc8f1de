import { defineConfig } from 'vitest/config';

// `npm run test:long`: thousands of model schedules (about an hour).
export default defineConfig({
  test: {
    include: ['test/**/*.long.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 3_600_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
