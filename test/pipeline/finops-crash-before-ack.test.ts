/**
 * Polling mode, a process that dies between the drain and the ack: the real flow, engine and
 * storage queues on Azurite (the local host's StorageQueueDriver), the F&O simulator over HTTPS,
 * and a SimulatedCrash at `complete.flow` (the completion step, before onComplete acks). The
 * drain signal comes back, the completion runs again and acknowledges; every row was written once.
 * (F&O's own re-delivery of a message whose ack was lost is in test/e2e/finops-business-event.test.ts.)
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyRecordsMessage } from '../../src/lib/batch/applier';
import { handleControlMessage } from '../../src/lib/batch/control';
import { createApp, type AppServices } from '../../src/lib/compose';
import { loadConfig } from '../../src/lib/config';
import { SimulatedCrash, type Faults } from '../../src/lib/faults';
import { pollOnce, setFinopsLocalOverrides } from '../../src/lib/flows/business-event/runtime';
import { tableClient } from '../../src/lib/storage/clients';
import { TableTarget } from '../../src/lib/targets/table-target';
import { FinOpsSimulator, generatedRows } from '../../src/local/finops-simulator';
import { StorageQueueDriver } from '../../src/local/host/storage-queue-driver';
import { sharedAzurite } from '../support/azurite';
import { quietLog, RecordingTarget } from '../support/pipeline';
import { waitFor } from '../support/wait';
import { asWorker } from '../../src/local/host/rpc';

const ACTIVITY = '7b0c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d';
let sim: FinOpsSimulator;
let app: AppServices;
let target: RecordingTarget;
let drivers: StorageQueueDriver[] = [];
let crashes = 0;

beforeAll(async () => {
  sim = await FinOpsSimulator.start({ redeliveryMs: 60_000 });
  setFinopsLocalOverrides({
    unsafeTestOnly: { allowLoopback: true, extraCaPem: sim.caPem },
    credential: sim.credential(),
  });
  const id = randomBytes(4).toString('hex');
  const cs = sharedAzurite().connectionString;
  const config = loadConfig({
    AzureWebJobsStorage: cs,
    TRANSPORT: 'storagequeue',
    CURSOR_STORE: 'blob',
    SYNC_TABLE_PREFIX: `cr${id}`,
    SYNC_RECORDS_QUEUE: `cr-${id}-records`,
    SYNC_CONTROL_QUEUE: `cr-${id}-control`,
    SYNC_JOBS_QUEUE: `cr-${id}-jobs`,
    SYNC_RECORDS_PER_MESSAGE: '10',
    Flows__erp__Type: 'business-event',
    Flows__erp__EntityKeys: 'Customer groups=CustomerGroupId',
    Flows__erp__DownloadAllowedHosts: '127.0.0.1',
    Flows__erp__FnoBaseUrl: sim.baseUrl,
    Flows__erp__PollActivityId: ACTIVITY,
    Flows__erp__TargetTableName: `cr${id}records`,
  });
  // Dies once at the completion step, before onComplete (and so before the ack).
  const faults: Faults = {
    at: async (point) => {
      if (point === 'complete.flow' && crashes === 0) {
        crashes++;
        throw new SimulatedCrash(point);
      }
    },
  };
  target = new RecordingTarget(new TableTarget(tableClient(config.storage, `cr${id}records`)));
  app = createApp(config, { faults, businessEventTarget: () => target });
  await app.engine.ensureReady();
  const driver = (
    queueName: string,
    invoke: (body: unknown, meta: Record<string, unknown>) => Promise<unknown>,
  ) =>
    new StorageQueueDriver({
      queueName,
      invoke: asWorker(invoke),
      connectionString: cs,
      maxConcurrency: 8,
      pollIntervalMs: 20,
      newBatchThreshold: 4,
      maxDequeueCount: 5,
      visibilityTimeoutMs: 0,
      receiveVisibilityTimeoutMs: 60_000,
      messageEncoding: 'base64',
    });
  drivers = [
    driver(config.transport.recordsQueue, (body, meta) =>
      applyRecordsMessage(app.engine, body, { deliveryCount: Number(meta.dequeueCount) }, quietLog),
    ),
    driver(config.transport.controlQueue, (body) => handleControlMessage(app.engine, body, quietLog)),
  ];
  for (const d of drivers) await d.start();
}, 30_000);

afterAll(async () => {
  for (const d of drivers) await d.stop();
  await app?.close();
  await sim?.close();
  setFinopsLocalOverrides(undefined);
});

it('a crash before the ack: the completion runs again and acknowledges; every row written once', async () => {
  const flow = app.businessEventFlows[0]!;
  const handle = sim.addExport({
    entity: 'Customer groups',
    format: 'csv',
    columns: ['CustomerGroupId', 'Description'],
    rows: generatedRows(95, (i) => ({ CustomerGroupId: `G${i}`, Description: `group ${i}` })),
  });
  const { correlationId } = sim.enqueue(ACTIVITY, handle);
  const message = () => sim.activity(ACTIVITY).find((m) => m.correlationId === correlationId)!;

  expect(await pollOnce(app.engine, flow, quietLog)).toMatchObject({ kind: 'planned', outcome: 'planned' });
  await waitFor(() => message().acked, { timeoutMs: 30_000 });
  expect(crashes).toBe(1);
  expect(message().deliveries).toBe(1);
  expect(target.writes).toBe(95);
  expect(target.duplicates()).toEqual([]);
});
