/**
 * The run's shared Azurite (started once by test/global-setup.ts). Tests name their own tables,
 * queues and containers uniquely; nothing here is ever stopped by a test file.
 */
import { inject } from 'vitest';

export interface SharedAzurite {
  connectionString: string;
}

export function sharedAzurite(): SharedAzurite {
  const connectionString = inject('azuriteConnectionString');
  if (!connectionString)
    throw new Error('no shared Azurite: run this file with the vitest config that has test/global-setup.ts');
  return { connectionString };
}
