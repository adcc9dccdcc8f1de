/**
 * One Azurite per vitest worker for the whole run (vitest globalSetup), instead of one per test
 * file: every file reaches its worker's through `sharedAzurite()` (test/support/azurite.ts) and
 * keeps to its own uniquely named tables, queues and containers. One per worker, not one for
 * all: Azurite is single-threaded, and two files at once on one Azurite wait on each other.
 */
import type { TestProject } from 'vitest/node';
import { startAzurite } from '../src/local/azurite';

declare module 'vitest' {
  export interface ProvidedContext {
    azuriteConnectionStrings: string[];
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const workers = Math.max(1, Number(project.config.maxWorkers) || 1);
  const azurites = await Promise.all(Array.from({ length: workers }, () => startAzurite()));
  project.provide(
    'azuriteConnectionStrings',
    azurites.map((a) => a.connectionString),
  );
  return async () => {
    await Promise.all(azurites.map((a) => a.stop()));
  };
}
