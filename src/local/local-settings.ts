/**
 * The embedded defaults of a local run: Azurite for state and queues (TRANSPORT=storagequeue,
 * CURSOR_STORE=blob) and the bundled Flowfinity simulator as the view. Values from the
 * environment win, so a user can point `npm start` at a real view or storage account.
 */
import { settings } from '../lib/config';

export interface LocalSettingsInput {
  storageConnectionString: string;
  viewUrl: string;
  username: string;
  password: string;
}

export function localSettings(
  i: LocalSettingsInput,
  env: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const defaults: Record<string, string> = {
    FUNCTIONS_WORKER_RUNTIME: 'node',
    AzureWebJobsStorage: i.storageConnectionString,
    FLOWFINITY_VIEW_URL: i.viewUrl,
    FLOWFINITY_ON_BEHALF_OF: 'integration',
    FLOWFINITY_USERNAME: i.username,
    FLOWFINITY_PASSWORD: i.password,
    TRANSPORT: 'storagequeue',
    CURSOR_STORE: 'blob',
    SYNC_SCHEDULE: '*/10 * * * * *',
  };
  const out: Record<string, string> = { ...defaults };
  for (const name of settings.map((d) => d.name as string)) {
    const v = env[name];
    if (v !== undefined && v !== '') out[name] = v;
  }
  // Managed identity for storage replaces the local connection string, which would win otherwise.
  if (env.AzureWebJobsStorage__accountName && !env.AzureWebJobsStorage) delete out.AzureWebJobsStorage;
  return out;
}
