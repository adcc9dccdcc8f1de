/**
 * CURSOR_STORE=fileshare needs Azure Files, which Azurite (the local storage emulator) does not
 * have. With an Azurite connection string the File share SDK fails deep inside with "Invalid
 * EndpointSuffix in the provided Connection String"; this check says which setting is wrong and
 * what to do instead, before anything is built. The config validation calls it.
 */
import { ConfigError } from '../errors';

export interface FileShareCursorSettings {
  store: 'fileshare' | 'blob';
  /** CURSOR_STORAGE_CONNECTION when set, else the AzureWebJobsStorage connection string. */
  connectionString?: string;
  /** Which setting the connection string came from, for the message. */
  connectionSetting: string;
}

/** Why this connection string cannot reach Azure Files, or undefined when it can (as far as text tells). */
export function fileShareConnectionProblem(connectionString: string): string | undefined {
  const parts = new Map(
    connectionString
      .split(';')
      .map((p) => p.trim())
      .filter(Boolean)
      .map((p) => {
        const i = p.indexOf('=');
        return [p.slice(0, i).toLowerCase(), p.slice(i + 1)] as const;
      }),
  );
  if ((parts.get('usedevelopmentstorage') ?? '').toLowerCase() === 'true')
    return 'it is UseDevelopmentStorage=true (Azurite), and Azurite has no Azure Files service';
  // An explicit FileEndpoint is taken at its word (a real account, or a Files-compatible server).
  if (parts.has('fileendpoint')) return undefined;
  if (parts.get('accountname') === 'devstoreaccount1')
    return 'it is the Azurite development account (devstoreaccount1), and Azurite has no Azure Files service';
  const explicitEndpoints = ['blobendpoint', 'queueendpoint', 'tableendpoint'].some((k) => parts.has(k));
  if (explicitEndpoints && !parts.has('fileendpoint') && !parts.has('endpointsuffix'))
    return 'it lists service endpoints but no FileEndpoint (an emulator or a custom endpoint set without Azure Files)';
  return undefined;
}

/** Throws a ConfigError when CURSOR_STORE=fileshare cannot work with the configured storage. */
export function assertFileShareCursorAvailable(s: FileShareCursorSettings): void {
  if (s.store !== 'fileshare' || !s.connectionString) return;
  const problem = fileShareConnectionProblem(s.connectionString);
  if (problem)
    throw new ConfigError([
      `CURSOR_STORE=fileshare cannot use the connection string in ${s.connectionSetting}: ${problem}. ` +
        'Locally, set CURSOR_STORE=blob (the cursor file goes to a blob container); in Azure, use a real storage ' +
        'account (AzureWebJobsStorage__accountName or CURSOR_STORAGE_CONNECTION).',
    ]);
}
