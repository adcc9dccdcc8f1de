/**
 * The embedded defaults of a local run: Azurite for state and queues (TRANSPORT=storagequeue,
 * CURSOR_STORE=blob) and the bundled Flowfinity simulator as the view. Values from the
 * environment win, so a user can point `npm start` at a real view or storage account.
 */
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
  for (const [k, v] of Object.entries(env))
    if (
      v !== undefined &&
      (k in defaults || /^(SYNC_|FLOWFINITY_|CURSOR_|TARGET|POISON_|TRANSPORT|ServiceBusConnection)/.test(k))
    )
      out[k] = v;
  return out;
}
