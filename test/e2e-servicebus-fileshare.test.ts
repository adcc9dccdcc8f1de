/**
 * The same end-to-end run as e2e-local-host.test.ts, with the card's Azure adapters:
 * TRANSPORT=servicebus (the local host drives app.serviceBusQueue triggers over real AMQP
 * against the Service Bus test server) and CURSOR_STORE=fileshare (Azure Files test server).
 * Its own file: registrations are made once per process, for one transport.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { tableClient } from '../src/lib/storage/clients';
import { TableTarget } from '../src/lib/targets/table-target';
import { startAzurite, type AzuriteInstance } from '../src/local/azurite';
import { FlowfinitySimulator } from '../src/local/flowfinity-simulator';
import { LocalHost } from '../src/local/host';
import { localSettings } from '../src/local/local-settings';
import { startAzureFilesServer, type AzureFilesServer } from './support/azure-files-server';
import { startServiceBusServer, type ServiceBusTestServer } from './support/servicebus-server';

let azurite: AzuriteInstance;
let sim: FlowfinitySimulator;
let host: LocalHost;
let serviceBus: ServiceBusTestServer;
let files: AzureFilesServer;

const functionsDir = path.join(__dirname, '..', 'src', 'functions');

beforeAll(async () => {
  azurite = await startAzurite();
  sim = await FlowfinitySimulator.start({ initialRecords: 60, seed: 5 });
  serviceBus = await startServiceBusServer();
  for (const q of ['sync-records', 'sync-control']) serviceBus.createQueue(q, { maxDeliveryCount: 5 });
  files = await startAzureFilesServer();
  host = await LocalHost.start({
    modules: readdirSync(functionsDir)
      .filter((f) => f.endsWith('.ts'))
      .map((f) => path.join(functionsDir, f)),
    settings: {
      ...localSettings(
        {
          storageConnectionString: azurite.connectionString,
          viewUrl: sim.viewUrl,
          username: sim.username,
          password: sim.password,
        },
        {},
      ),
      SYNC_RECORDS_PER_MESSAGE: '8',
      TRANSPORT: 'servicebus',
      ServiceBusConnection: serviceBus.connectionString,
      CURSOR_STORE: 'fileshare',
      CURSOR_STORAGE_CONNECTION: files.connectionString,
    },
    httpPort: 0,
    enableTimers: false,
    queuePollIntervalMs: 50,
    visibilityTimeoutMs: 100,
  });
});
afterAll(async () => {
  await host?.stop();
  await sim?.stop();
  await serviceBus?.stop();
  await files?.stop();
  await azurite?.stop();
});

async function health() {
  const res = await fetch(`${host.httpUrl}/api/health`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function targetEqualsSource() {
  const target = new Map<string, { version: bigint; deleted: boolean }>();
  for await (const r of new TableTarget(
    tableClient(
      { kind: 'connectionString', connectionString: azurite.connectionString },
      'syncbridgerecords',
    ),
  ).list())
    target.set(r.key, r);
  const source = sim.snapshot();
  expect(target.size).toBe(source.length);
  for (const s of source) {
    expect(target.get(`default|${s.RecordID}`)).toMatchObject({
      version: s.lastSubmissionId,
      deleted: s.fields.State === 'Deleted',
    });
  }
}

it('registers the app functions with resolved settings', () => {
  const byName = Object.fromEntries(host.functions.map((f) => [f.name, f]));
  expect(Object.keys(byName).sort()).toEqual([
    'applyRecords',
    'health',
    'recordsPoison',
    'syncControl',
    'syncTimer',
  ]);
  expect(byName.syncTimer!.binding.schedule).toBe('*/10 * * * * *');
  expect(byName.applyRecords!).toMatchObject({
    triggerType: 'serviceBusTrigger',
    binding: { queueName: 'sync-records', connection: 'ServiceBusConnection' },
  });
  expect(byName.recordsPoison!.binding.queueName).toBe('sync-records/$deadletterqueue');
  expect(byName.syncControl!.binding.queueName).toBe('sync-control');
});

it('syncs the view through timer → queue → apply → complete and reports it in /api/health', async () => {
  const before = await health();
  expect(before).toMatchObject({
    status: 200,
    body: { status: 'ok', cursor: null, batch: null, recordsSynced: 0 },
  });

  await host.runTimer('syncTimer');
  await host.waitForIdle({ timeoutMs: 60_000, quietMs: 300 });
  await targetEqualsSource();
  const max = sim.snapshot().reduce((m, r) => (r.lastSubmissionId > m ? r.lastSubmissionId : m), 0n);
  expect((await health()).body).toMatchObject({
    status: 'ok',
    cursor: max.toString(),
    batch: null,
    recordsSynced: 60,
  });

  const changed = sim.snapshot()[2]!;
  sim.update(changed.RecordID, { Company: 'Renamed Ltd' });
  sim.remove(sim.snapshot()[9]!.RecordID);
  await host.runTimer('syncTimer');
  await host.waitForIdle({ timeoutMs: 60_000, quietMs: 300 });
  await targetEqualsSource();
  expect((await health()).body).toMatchObject({ recordsSynced: 62, batchesCompleted: 2 });
  // The cursor lives in the file share, as the plain number the tutorial's flow reads.
  expect(files.fileContent('syncbridge', 'lastSubmissionId.txt')?.toString().trim()).toBe(
    (await health()).body.cursor,
  );
  expect(serviceBus.stats.completed).toBeGreaterThan(0);
  expect(serviceBus.messages('sync-records')).toEqual([]);
});

it('answers unknown routes with a JSON 404', async () => {
  const res = await fetch(`${host.httpUrl}/api/nope`);
  expect(res.status).toBe(404);
  expect(await res.json()).toHaveProperty('error');
});
