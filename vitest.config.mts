import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Longest first, in this order (README → Tests has the times). */
const LONG_FILES = [/model\/model\.test\.ts$/, /fault-injection\.test\.ts$/, /view-sync\.test\.ts$/];

/**
 * The longest files first (the model schedules take most of one worker's run), so the other
 * worker works through the rest meanwhile instead of one long file starting last; otherwise
 * vitest's own order (slowest known first, larger files first).
 */
class LongFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => {
      const i = LONG_FILES.findIndex((re) => re.test(f.moduleId));
      return i < 0 ? LONG_FILES.length : i;
    };
    // Array.prototype.sort is stable: files of equal rank keep vitest's order.
    return (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
  }
}

// `npm test`: every tier but the long runs. Two files at a time (the machine's two cores), each
// worker with its own Azurite (test/global-setup.ts).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/**/*.long.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    sequence: { sequencer: LongFirstSequencer },
    reporters: ['default'],
  },
});
