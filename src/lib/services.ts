/**
 * Composition root: builds the adapters that configuration selects and the SyncContext the
 * pipeline steps run with. The only module that knows every concrete adapter.
 */
import { randomUUID } from 'node:crypto';
import type { Config } from './config';
import { loadConfig } from './config';
import { BlobCursorStore } from './cursor/blob-cursor-store';
import { fileShareCursorStore } from './cursor/fileshare-cursor-store';
import { noFaults, type Faults } from './faults';
import { FlowfinityViewClient } from './flowfinity/view-client';
import { blobServiceClient, queueServiceClient, tableClient } from './storage/clients';
import type { SyncContext } from './sync/context';
import { Ledger } from './sync/ledger';
import type { CursorStore, TargetReader, TargetSystem, Transport, ViewSource } from './ports';
import { Quarantine } from './sync/quarantine';
import { TableTarget } from './targets/table-target';
import { ServiceBusTransport } from './transport/servicebus-transport';
import { StorageQueueTransport } from './transport/storage-queue-transport';

export interface Services {
  config: Config;
  ctx: SyncContext;
  targetReader: TargetReader;
  close(): Promise<void>;
}

export interface ServiceOverrides {
  view?: ViewSource;
  cursor?: CursorStore;
  transport?: Transport;
  target?: TargetSystem & Partial<TargetReader>;
  faults?: Faults;
  now?: () => number;
  instanceId?: string;
}

export function createCursorStore(config: Config): CursorStore {
  const c = config.cursor;
  const path = [c.directory.replace(/^\/+|\/+$/g, ''), c.fileName].filter(Boolean).join('/');
  if (c.store === 'blob') {
    const access = c.connectionString
      ? { kind: 'connectionString' as const, connectionString: c.connectionString }
      : config.storage;
    return new BlobCursorStore(blobServiceClient(access).getContainerClient(c.shareName), path);
  }
  return fileShareCursorStore({
    connectionString:
      c.connectionString ??
      (config.storage.kind === 'connectionString' ? config.storage.connectionString : undefined),
    accountName: config.storage.kind === 'identity' ? config.storage.accountName : undefined,
    shareName: c.shareName,
    directory: c.directory,
    fileName: c.fileName,
  });
}

export function createTransport(config: Config): Transport {
  const t = config.transport;
  const queues = { records: t.recordsQueue, control: t.controlQueue };
  if (t.kind === 'servicebus') {
    if (!t.serviceBus) throw new Error('TRANSPORT=servicebus needs ServiceBusConnection');
    return new ServiceBusTransport({ access: t.serviceBus, queues });
  }
  return new StorageQueueTransport(queueServiceClient(config.storage), queues);
}

export function createServices(config: Config, o: ServiceOverrides = {}): Services {
  const target = o.target ?? new TableTarget(tableClient(config.storage, config.target.tableName));
  const transport = o.transport ?? createTransport(config);
  const now = o.now ?? Date.now;
  const ctx: SyncContext = {
    settings: {
      ...config.sync,
      maxMessageBytes: transport.maxMessageBytes,
    },
    view:
      o.view ??
      new FlowfinityViewClient({
        viewUrl: config.flowfinity.viewUrl,
        onBehalfOf: config.flowfinity.onBehalfOf,
        username: config.flowfinity.username,
        password: config.flowfinity.password,
        timeoutMs: config.flowfinity.timeoutMs,
        maxRetries: config.flowfinity.maxRetries,
      }),
    cursor: o.cursor ?? createCursorStore(config),
    transport,
    target,
    ledger: new Ledger(tableClient(config.storage, `${config.tablePrefix}state`), config.sync.viewName),
    quarantine: new Quarantine(
      tableClient(config.storage, `${config.tablePrefix}quarantine`),
      config.sync.viewName,
      now,
    ),
    faults: o.faults ?? noFaults,
    now,
    instanceId: o.instanceId ?? randomUUID(),
  };
  const reader = target as Partial<TargetReader>;
  return {
    config,
    ctx,
    targetReader: {
      list: () => {
        if (!reader.list) throw new Error('this target cannot list its records');
        return reader.list();
      },
    },
    close: () => transport.close(),
  };
}

let shared: Services | undefined;
/** The process-wide services of the function app, built on first use from process.env. */
export function getServices(): Services {
  shared ??= createServices(loadConfig());
  return shared;
}

/** Creates tables/queues a local run needs (Azure deployments get them from infra). */
export async function ensureInfrastructure(s: Services): Promise<void> {
  await s.ctx.ledger.ensureReady();
  await s.ctx.target.ensureReady?.();
  await s.ctx.transport.ensureQueues?.();
}
