/**
 * The external-source flow through the local Functions host with the app's real registrations,
 * against the WISEflow simulator and a roster view simulator on loopback and the run's Azurite.
 * Every name (tables, queues) is unique, so test files sharing the Azurite do not meet.
 */
import path from 'node:path';
import { loadExternalSourceFlows } from '../../src/lib/config';
import { tableClient } from '../../src/lib/storage/clients';
import { WebhookStore } from '../../src/lib/webhooks/store';
import { LocalHost } from '../../src/local/host';
import { localSettings } from '../../src/local/local-settings';
import { RosterSimulator } from '../../src/local/roster-simulator';
import { WiseflowSimulator, type WiseflowSimulatorOptions } from '../../src/local/wiseflow-simulator';
import { sharedAzurite } from './azurite';

export const APP_FUNCTIONS = [
  'app-start.ts',
  'apply-records.ts',
  'health.ts',
  'records-poison.ts',
  'sync-control.ts',
  'sync-timer.ts',
  'webhook-jobs.ts',
  'external-source-webhook.ts',
];
const functionsDir = path.join(__dirname, '..', '..', 'src', 'functions');

/** A local host over `functions` (file names under src/functions) with these settings. */
export function startHost(
  functions: string[],
  settings: Record<string, string>,
  quiet = false,
): Promise<LocalHost> {
  return LocalHost.start({
    modules: functions.map((f) => path.join(functionsDir, f)),
    settings,
    httpPort: 0,
    enableTimers: false,
    queuePollIntervalMs: 50,
    visibilityTimeoutMs: 100,
    ...(quiet ? { log: () => {} } : {}),
  });
}

export const WEBHOOK_SECRET = 'e2e-webhook-secret-0123456789abcdef';

export interface ExternalSourceHost {
  host: LocalHost;
  sim: WiseflowSimulator;
  roster: RosterSimulator;
  store: WebhookStore;
  settings: Record<string, string>;
  webhookUrl: string;
  stop(): Promise<void>;
}

/** `functions`: file names under src/functions to load (default: all the app's). */
export async function startExternalSourceHost(
  o: {
    functions?: string[];
    settings?: Record<string, string>;
    quiet?: boolean;
    /** Options of the WISEflow simulator (rate limits, Retry-After). */
    simulator?: WiseflowSimulatorOptions;
  } = {},
): Promise<ExternalSourceHost> {
  const azurite = sharedAzurite();
  const id = Math.random().toString(36).slice(2, 8);
  const sim = await WiseflowSimulator.start(o.simulator);
  const roster = await RosterSimulator.start();
  const base = localSettings(
    {
      storageConnectionString: azurite.connectionString,
      viewUrl: '',
      username: '',
      password: '',
      wiseflow: {
        flow: 'wiseflow',
        baseUrl: sim.baseUrl,
        clientId: sim.credentials.clientId,
        clientSecret: sim.credentials.clientSecret,
        webhookSecret: WEBHOOK_SECRET,
        rosterViewUrl: roster.viewUrl,
        rosterUsername: roster.username,
        rosterPassword: roster.password,
      },
    },
    {},
  );
  // No view-sync flow in this app: only the external-source flow.
  for (const k of Object.keys(base)) if (k.startsWith('FLOWFINITY_')) delete base[k];
  const settings: Record<string, string> = {
    ...base,
    SYNC_TABLE_PREFIX: `es${id}`,
    SYNC_RECORDS_QUEUE: `es-${id}-records`,
    SYNC_CONTROL_QUEUE: `es-${id}-control`,
    SYNC_JOBS_QUEUE: `es-${id}-jobs`,
    ...o.settings,
  };
  const host = await startHost(o.functions ?? APP_FUNCTIONS, settings, o.quiet);
  const store = new WebhookStore(
    tableClient({ kind: 'connectionString', connectionString: azurite.connectionString }, `es${id}webhooks`),
  );
  // The flow's settings must load on their own too (register-webhooks reads only these).
  loadExternalSourceFlows(settings);
  return {
    host,
    sim,
    roster,
    store,
    settings,
    webhookUrl: `${host.httpUrl}/api/webhooks/external-source`,
    async stop() {
      await host.stop();
      await sim.stop();
      await roster.stop();
    },
  };
}
