/**
 * This worker's shared Azurite (started by test/global-setup.ts, one per vitest worker). Tests
 * name their own tables, queues and containers uniquely; nothing here is ever stopped by a test
 * file.
 */
import { inject } from 'vitest';

export interface SharedAzurite {
  connectionString: string;
}

export function sharedAzurite(): SharedAzurite {
  const all = inject('azuriteConnectionStrings');
  if (!all?.length)
    throw new Error('no shared Azurite: run this file with the vitest config that has test/global-setup.ts');
  // VITEST_POOL_ID: this worker's number, 1..maxWorkers.
  const worker = Math.max(1, Number(process.env.VITEST_POOL_ID ?? 1));
  return { connectionString: all[(worker - 1) % all.length]! };
}
