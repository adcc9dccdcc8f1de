/**
 * The embedded defaults of a local run: Azurite for state and queues (TRANSPORT=storagequeue,
 * CURSOR_STORE=blob) and the bundled Flowfinity simulators as the views: the flow named by
 * SYNC_VIEW_NAME (`leads`) on FLOWFINITY_VIEW_URL, plus one `Flows__<name>__ViewUrl` flow per
 * extra view. Values from the environment win (any app setting, and any `Flows__*` setting),
 * so a user can point `npm start` at a real view or storage account.
 */
import { FLOW_SETTING_PATTERN, settings } from '../lib/config';

export interface LocalSettingsInput {
  storageConnectionString: string;
  viewUrl: string;
  username: string;
  password: string;
  /** More simulator views, each its own flow (same credentials). */
  extraViews?: { flow: string; viewUrl: string }[];
  /** The external-source flow against the WISEflow and roster simulators. */
  wiseflow?: LocalWiseflowSettings;
}

export interface LocalWiseflowSettings {
  /** The syncbridge flow name (`Flows__<flow>__Type=external-source`). */
  flow: string;
  baseUrl: string;
  clientId: string;
  clientSecret: string;
  webhookSecret: string;
  rosterViewUrl: string;
  rosterUsername: string;
  rosterPassword: string;
}

/** The settings of an external-source flow on the simulators (also used by the tests). */
export function localWiseflowSettings(w: LocalWiseflowSettings): Record<string, string> {
  return {
    [`Flows__${w.flow}__Type`]: 'external-source',
    [`Flows__${w.flow}__Username`]: w.rosterUsername,
    [`Flows__${w.flow}__Password`]: w.rosterPassword,
    [`Flows__${w.flow}__OnBehalfOf`]: 'integration',
    WISEFLOW_BASE_URL: w.baseUrl,
    WISEFLOW_CLIENT_ID: w.clientId,
    WISEFLOW_CLIENT_SECRET: w.clientSecret,
    WISEFLOW_WEBHOOK_SECRET: w.webhookSecret,
    WISEFLOW_ROSTER_VIEW_URL: w.rosterViewUrl,
  };
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
    SYNC_VIEW_NAME: 'leads',
    TRANSPORT: 'storagequeue',
    CURSOR_STORE: 'blob',
    SYNC_SCHEDULE: '*/10 * * * * *',
  };
  for (const v of i.extraViews ?? []) defaults[`Flows__${v.flow}__ViewUrl`] = v.viewUrl;
  if (i.wiseflow) Object.assign(defaults, localWiseflowSettings(i.wiseflow));
  const out: Record<string, string> = { ...defaults };
  const names = new Set(settings.map((d) => d.name as string));
  for (const [name, v] of Object.entries(env))
    if (v !== undefined && v !== '' && (names.has(name) || FLOW_SETTING_PATTERN.test(name))) out[name] = v;
  // Managed identity for storage replaces the local connection string, which would win otherwise.
  if (env.AzureWebJobsStorage__accountName && !env.AzureWebJobsStorage) delete out.AzureWebJobsStorage;
  return out;
}
