/**
 * One Azurite for the whole test run (vitest globalSetup), instead of one per test file: every
 * file reaches it through `sharedAzurite()` (test/support/azurite.ts) and keeps to its own
 * uniquely named tables, queues and containers, so files still run in parallel.
 */
import type { TestProject } from 'vitest/node';
import { startAzurite } from '../src/local/azurite';

declare module 'vitest' {
  export interface ProvidedContext {
    azuriteConnectionString: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const azurite = await startAzurite();
  project.provide('azuriteConnectionString', azurite.connectionString);
  return () => azurite.stop();
}
