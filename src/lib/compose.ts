/**
 * Composition root: builds the adapters that configuration selects, one runtime per flow, and
 * the batch engine that routes messages to them. The only module that knows every concrete
 * adapter; the engine and the flows see ports only.
 */
import { randomUUID } from 'node:crypto';
import type { TableClient } from '@azure/data-tables';
import { Engine } from './batch/engine';
import type { FlowConfig } from './config';
import { loadConfig, type Config } from './config';
import { BlobCursorStore } from './cursor/blob-cursor-store';
import { fileShareCursorStore } from './cursor/fileshare-cursor-store';
import { noFaults, type Faults } from './faults';
import { FlowfinityViewClient } from './flowfinity/view-client';
import { ViewSyncFlow } from './flows/view-sync/flow';
import { BusinessEventFlow } from './flows/business-event/flow';
import {
  BUSINESS_EVENT_JOB_KIND,
  businessEventJobHandler,
  createBusinessEventFlow,
  finopsLocalOverrides,
} from './flows/business-event/runtime';
import { ExternalSourceService } from './flows/external-source/service';
import type { JobHandler } from './jobs/worker';
import type { CursorStore, TargetReader, TargetSystem, Transport, ViewSource } from './ports';
import { azureCredential, blobServiceClient, queueServiceClient, tableClient } from './storage/clients';
import { createTarget } from './targets/target-settings';
import { TableTarget } from './targets/table-target';
import { currentTraceparent, instrumentTarget } from './telemetry';
import { ensureQueues } from './transport/ensure-queues';
import { createServiceBusClient, ServiceBusTransport } from './transport/servicebus-transport';
import { StorageQueueTransport } from './transport/storage-queue-transport';
import { WebhookStore } from './webhooks/store';

/**
 * Records a flow applies at once in one instance: host.json's serviceBus.maxConcurrentCalls and
 * queues.batchSize (16). Sizes the http target's connections and the postgres pool.
 */
export const APPLY_CONCURRENCY = 16;

export interface AppServices {
  config: Config;
  engine: Engine;
  /** The view-sync flows, by name. */
  flows: ViewSyncFlow[];
  flow(name: string): ViewSyncFlow;
  /** The business-event (F&O data export) flows, by name. */
  businessEventFlows: BusinessEventFlow[];
  /** Read access to a flow's target (health, tests, CLI). */
  targetReader(flow: string): TargetReader;
  /** Accepted webhook events and their jobs (de-duplication markers, claims, outcomes). */
  webhookStore: WebhookStore;
  /** The `jobs` worker's handlers, by job kind: one per webhook flow that is configured. */
  jobHandlers: ReadonlyMap<string, JobHandler>;
  /** The queues (webhook intakes enqueue jobs on it). */
  transport: Transport;
  /** The external-source flow (WISEflow sync requests), when one is configured. */
  externalSource?: ExternalSourceService;
  close(): Promise<void>;
}

/** Test and tooling hooks: replace an adapter, per flow where adapters are per flow. */
export interface ServiceOverrides {
  view?: (flow: FlowConfig) => ViewSource;
  cursor?: (flow: FlowConfig) => CursorStore;
  target?: (flow: FlowConfig) => TargetSystem & Partial<TargetReader>;
  /** Replaces a business-event flow's target (tests, benchmark). */
  businessEventTarget?: (flow: string) => TargetSystem & Partial<TargetReader>;
  transport?: Transport;
  faults?: Faults;
  now?: () => number;
  instanceId?: string;
  /** The engine's waits (back-off before a failing message is redelivered). */
  sleep?: (ms: number) => Promise<void>;
}

export function createCursorStore(config: Config, flow: FlowConfig): CursorStore {
  const c = config.cursor;
  const slash = flow.cursorFile.lastIndexOf('/');
  const directory = slash < 0 ? '' : flow.cursorFile.slice(0, slash);
  const fileName = flow.cursorFile.slice(slash + 1);
  if (c.store === 'blob') {
    const access = c.connectionString
      ? { kind: 'connectionString' as const, connectionString: c.connectionString }
      : config.storage;
    return new BlobCursorStore(blobServiceClient(access).getContainerClient(c.shareName), flow.cursorFile);
  }
  return fileShareCursorStore({
    connectionString:
      c.connectionString ??
      (config.storage.kind === 'connectionString' ? config.storage.connectionString : undefined),
    accountName: config.storage.kind === 'identity' ? config.storage.accountName : undefined,
    shareName: c.shareName,
    directory,
    fileName,
  });
}

export function createTransport(config: Config): Transport {
  const t = config.transport;
  const queues = { records: t.recordsQueue, control: t.controlQueue, jobs: t.jobsQueue };
  if (t.kind === 'servicebus') {
    if (!t.serviceBus) throw new Error('TRANSPORT=servicebus needs ServiceBusConnection');
    return new ServiceBusTransport({ access: t.serviceBus, queues, tier: t.serviceBusTier });
  }
  return new StorageQueueTransport(queueServiceClient(config.storage), queues);
}

export function createViewClient(flow: FlowConfig): ViewSource {
  return new FlowfinityViewClient({
    viewUrl: flow.view.url,
    onBehalfOf: flow.view.onBehalfOf,
    username: flow.view.username,
    password: flow.view.password,
    timeoutMs: flow.view.timeoutMs,
    maxRetries: flow.view.maxRetries,
  });
}

export function createApp(config: Config, o: ServiceOverrides = {}): AppServices {
  const tables = new Map<string, TableClient>();
  const table = (name: string) => {
    let t = tables.get(name);
    if (!t) tables.set(name, (t = tableClient(config.storage, name)));
    return t;
  };
  const targets = new Map<string, TableTarget>();
  const tableTarget = (name: string) => {
    let t = targets.get(name);
    if (!t) targets.set(name, (t = new TableTarget(table(name))));
    return t;
  };
  const transport = o.transport ?? createTransport(config);
  const readers = new Map<string, Partial<TargetReader>>();
  const flows = config.flows.map((f) => {
    // Measured (latency, errors, deletions: telemetry/index.ts); a no-op without a provider.
    const target = instrumentTarget(
      f.name,
      o.target?.(f) ??
        createTarget(f.target, {
          concurrency: APPLY_CONCURRENCY,
          credential: azureCredential,
          createTableTarget: () => tableTarget(f.target.tableName),
        }),
    );
    readers.set(f.name, target as Partial<TargetReader>);
    return new ViewSyncFlow({
      name: f.name,
      settings: {
        ...f.batch,
        lookback: f.lookback,
        stateField: f.stateField,
        deletedStates: f.deletedStates,
      },
      view: o.view?.(f) ?? createViewClient(f),
      cursor: o.cursor?.(f) ?? createCursorStore(config, f),
      target,
    });
  });
  const businessEventFlows = config.businessEventFlows.map((f) => {
    const target =
      o.businessEventTarget?.(f.name) ??
      createTarget(f.target, {
        concurrency: APPLY_CONCURRENCY,
        credential: azureCredential,
        createTableTarget: () => tableTarget(f.target.tableName),
      });
    readers.set(f.name, target as Partial<TargetReader>);
    return createBusinessEventFlow(f, {
      target,
      defaultCredential: azureCredential,
      overrides: finopsLocalOverrides(),
      now: o.now,
    });
  });
  const engine = new Engine(
    {
      transport,
      stateTable: table(`${config.tablePrefix}state`),
      quarantineTable: table(`${config.tablePrefix}quarantine`),
      faults: o.faults ?? noFaults,
      now: o.now ?? Date.now,
      instanceId: o.instanceId ?? randomUUID(),
      sleep: o.sleep,
      traceparent: currentTraceparent,
    },
    [...flows, ...businessEventFlows],
  );
  const byName = new Map(flows.map((f) => [f.name, f]));
  const jobHandlers = new Map<string, JobHandler>();
  if (businessEventFlows.length > 0)
    jobHandlers.set(BUSINESS_EVENT_JOB_KIND, businessEventJobHandler(engine, businessEventFlows));
  const esFlow = config.externalSourceFlows[0];
  const externalSource = esFlow
    ? new ExternalSourceService(esFlow, {
        allocationTable: table(`${config.tablePrefix}wiseflowallocations`),
      })
    : undefined;
  if (externalSource) jobHandlers.set(externalSource.handler.kind, externalSource.handler);
  return {
    config,
    engine,
    flows,
    businessEventFlows,
    flow: (name) => {
      const f = byName.get(name);
      if (!f) engine.flow(name); // throws the ConfigError naming the flows this app has
      return f!;
    },
    targetReader: (name) => ({
      list: () => {
        const r = readers.get(name);
        if (!r?.list) throw new Error(`the target of flow ${name} cannot list its records`);
        return r.list();
      },
    }),
    webhookStore: new WebhookStore(table(`${config.tablePrefix}webhooks`)),
    jobHandlers,
    transport,
    externalSource,
    close: async () => {
      await transport.close();
      await Promise.all([...flows, ...businessEventFlows].map((f) => f.target.close?.()));
    },
  };
}

let shared: AppServices | undefined;
/** The process-wide services of the function app, built on first use from process.env. */
export function getApp(): AppServices {
  shared ??= createApp(loadConfig());
  return shared;
}

/**
 * Makes sure the app's queues exist before the triggers need them: storage queues are created,
 * Service Bus queues (which infra creates with their properties) are checked, and a missing one
 * is a ConfigError naming it and its setting.
 */
export async function ensureAppQueues(config: Config): Promise<void> {
  const t = config.transport;
  const queues = [
    { name: t.recordsQueue, setting: 'SYNC_RECORDS_QUEUE' },
    { name: t.controlQueue, setting: 'SYNC_CONTROL_QUEUE' },
    { name: t.jobsQueue, setting: 'SYNC_JOBS_QUEUE' },
  ];
  if (t.kind === 'storagequeue') {
    await ensureQueues({
      transport: 'storagequeue',
      queues,
      queueService: queueServiceClient(config.storage),
    });
    return;
  }
  if (!t.serviceBus) throw new Error('TRANSPORT=servicebus needs ServiceBusConnection');
  const client = createServiceBusClient(t.serviceBus);
  try {
    await ensureQueues({
      transport: 'servicebus',
      queues,
      client,
      namespace: t.serviceBus.kind === 'identity' ? t.serviceBus.fullyQualifiedNamespace : undefined,
    });
  } finally {
    await client.close();
  }
}
