import { defineConfig } from 'vitest/config';

// `npm run test:unit`: the fast tier for the inner loop: no Azurite, no build, seconds.
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    testTimeout: 30_000,
    pool: 'forks',
  },
});
