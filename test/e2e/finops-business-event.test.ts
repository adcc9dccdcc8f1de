/**
 * F&O business events and polling, end to end through the app's real function registrations in
 * the local host: the F&O simulator (HTTPS on loopback) posts events to
 * POST /api/webhooks/business-event → jobs queue → plan (download, parse) → records queue →
 * apply to a table target in Azurite → control queue → completion (event done / message acked).
 *
 * Two flows: `erp` (Customer groups; package API configured; polling on) and `plain`
 * (Vendor groups; no package API), so the expired-URL case is seen with and without fresh URLs.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Quarantine } from '../../src/lib/batch/quarantine';
import { setFinopsLocalOverrides } from '../../src/lib/flows/business-event/runtime';
import { tableClient } from '../../src/lib/storage/clients';
import { TableTarget } from '../../src/lib/targets/table-target';
import { FinOpsSimulator, generatedRows, type EntitySpec } from '../../src/local/finops-simulator';
import { LocalHost } from '../../src/local/host';
import { sharedAzurite } from '../support/azurite';

const ACTIVITY = '0d2c6f4e-1b7a-4c1e-9f3a-5b8e7d6c4a21';
const CUSTOMER_GROUPS = 'Customer groups';
const VENDOR_GROUPS = 'Vendor groups';

let sim: FinOpsSimulator;
let host: LocalHost;
const id = Math.random().toString(36).slice(2, 8);
const access = () => ({
  kind: 'connectionString' as const,
  connectionString: sharedAzurite().connectionString,
});
const webhook = () => `${host.httpUrl}/api/webhooks/business-event`;

beforeAll(async () => {
  sim = await FinOpsSimulator.start({ redeliveryMs: 60_000 });
  setFinopsLocalOverrides({
    unsafeTestOnly: { allowLoopback: true, extraCaPem: sim.caPem },
    credential: sim.credential(),
  });
  const functionsDir = path.join(__dirname, '..', '..', 'src', 'functions');
  host = await LocalHost.start({
    modules: readdirSync(functionsDir)
      .filter((f) => f.endsWith('.ts'))
      .map((f) => path.join(functionsDir, f)),
    settings: {
      FUNCTIONS_WORKER_RUNTIME: 'node',
      AzureWebJobsStorage: sharedAzurite().connectionString,
      TRANSPORT: 'storagequeue',
      CURSOR_STORE: 'blob',
      SYNC_TABLE_PREFIX: `fo${id}`,
      SYNC_RECORDS_QUEUE: `fo-${id}-records`,
      SYNC_CONTROL_QUEUE: `fo-${id}-control`,
      SYNC_JOBS_QUEUE: `fo-${id}-jobs`,
      SYNC_RECORDS_PER_MESSAGE: '20',
      SYNC_MAX_ATTEMPTS: '3',
      TARGET_TABLE_NAME: `fo${id}records`,
      FNO_DOWNLOAD_ALLOWED_HOSTS: '127.0.0.1',
      Flows__erp__Type: 'business-event',
      Flows__erp__EntityKeys: `${CUSTOMER_GROUPS}=CustomerGroupId`,
      Flows__erp__FnoBaseUrl: sim.baseUrl,
      Flows__erp__PollActivityId: ACTIVITY,
      Flows__plain__Type: 'business-event',
      Flows__plain__EntityKeys: `${VENDOR_GROUPS}=VendorGroupId`,
      // Low enough for a 1.5 MB entry of repetitive rows to count as a zip bomb.
      Flows__plain__PackageMaxRatio: '3',
    },
    httpPort: 0,
    enableTimers: false,
    queuePollIntervalMs: 30,
    visibilityTimeoutMs: 100,
  });
}, 30_000);

afterAll(async () => {
  await host?.stop();
  await sim?.close();
  setFinopsLocalOverrides(undefined);
});

async function targetRows(): Promise<Map<string, { version: bigint; data: Record<string, unknown> }>> {
  const out = new Map<string, { version: bigint; data: Record<string, unknown> }>();
  for await (const r of new TableTarget(tableClient(access(), `fo${id}records`)).list()) out.set(r.key, r);
  return out;
}

const customerKey = (i: number) => `erp|${CUSTOMER_GROUPS}:CustomerGroupId=CG${String(i).padStart(4, '0')}`;

function customers(
  count: number,
  description: string,
  o: Partial<EntitySpec> & { prefix?: string } = {},
): EntitySpec {
  const prefix = o.prefix ?? 'CG';
  return {
    entity: CUSTOMER_GROUPS,
    format: 'csv',
    columns: ['CustomerGroupId', 'Description'],
    rows: generatedRows(count, (i) => ({
      CustomerGroupId: `${prefix}${String(i).padStart(4, '0')}`,
      Description: description,
    })),
    ...o,
  };
}

async function health() {
  const body = (await (await fetch(`${host.httpUrl}/api/health`)).json()) as {
    flows: Record<string, unknown>[];
  };
  return Object.fromEntries(body.flows.map((f) => [String(f.flow), f])) as Record<
    string,
    Record<string, unknown>
  >;
}

const idle = () => host.waitForIdle({ timeoutMs: 30_000, quietMs: 150 });

describe('business events through the local host', () => {
  it('registers the webhook route and the poll timer of the polling flow only', () => {
    const names = host.functions.map((f) => f.name);
    expect(names).toContain('businessEventWebhook');
    expect(names).toContain('finopsPoll-erp');
    expect(names).not.toContain('finopsPoll-plain');
  });

  it('answers the activation test 2xx and ignores events not on the allow-list, enqueuing nothing', async () => {
    const test = await sim.sendActivationTestEvent(webhook());
    expect(test.status).toBe(202);
    expect(JSON.parse(test.body)).toMatchObject({ ignored: true, reason: 'activation_test' });
    const other = sim.addExport(customers(1, 'x', { entity: 'Sales orders' }));
    const ignored = await sim.sendBusinessEvent(webhook(), other);
    expect(ignored.status).toBe(202);
    expect(JSON.parse(ignored.body)).toMatchObject({ ignored: true, reason: 'entity_not_allowed' });
    await idle();
    expect([...(await targetRows()).keys()].some((k) => k.includes('Sales orders'))).toBe(false);
  });

  it('an event: its rows appear in the target, versioned by the exact ControlNumber', async () => {
    const controlNumber = 2n ** 60n + 7n; // beyond 2^53: kept exact
    const handle = sim.addExport(customers(50, 'first'));
    const sent = await sim.sendBusinessEvent(webhook(), handle, { controlNumber });
    expect(sent.status).toBe(202);
    expect(JSON.parse(sent.body)).toMatchObject({ accepted: true, duplicate: false });
    await idle();
    const rows = await targetRows();
    for (let i = 0; i < 50; i++)
      expect(rows.get(customerKey(i))).toMatchObject({
        version: controlNumber,
        data: { Description: 'first' },
      });
    expect((await health()).erp).toMatchObject({
      status: 'ok',
      exports: { done: 1 },
      totals: { applied: 50 },
    });
  });

  it('the same event twice, a second event for the same export, an older export after a newer: applied once, newer kept', async () => {
    const newer = sim.addExport(customers(10, 'newer'));
    const first = await sim.sendBusinessEvent(webhook(), newer, { controlNumber: 2n ** 61n });
    const again = await fetch(webhook(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: first.json,
    });
    expect(JSON.parse(await again.text())).toMatchObject({ duplicate: true });
    const sameExport = await sim.sendBusinessEvent(webhook(), newer, { controlNumber: 2n ** 61n });
    expect(JSON.parse(sameExport.body)).toMatchObject({ duplicate: true });
    await idle();
    const older = sim.addExport(customers(10, 'older'));
    const late = await sim.sendBusinessEvent(webhook(), older, { controlNumber: 2n ** 60n + 100n });
    expect(JSON.parse(late.body)).toMatchObject({ accepted: true, duplicate: false });
    await idle();
    const rows = await targetRows();
    for (let i = 0; i < 10; i++)
      expect(rows.get(customerKey(i))).toMatchObject({ version: 2n ** 61n, data: { Description: 'newer' } });
    // 50 + 10 applied; the older export's 10 rows were all skipped.
    expect((await health()).erp).toMatchObject({ totals: { applied: 60, skipped: 10 } });
  });

  it('an expired URL is refreshed through the package API', async () => {
    const before = sim.stats.byRoute['package-api'] ?? 0;
    const handle = sim.addExport(customers(5, 'refreshed', { columns: ['CustomerGroupId', 'Description'] }));
    const sent = await sim.sendBusinessEvent(webhook(), handle, {
      urlTtlMs: -60_000,
      controlNumber: 2n ** 62n,
    });
    expect(sent.status).toBe(202);
    await idle();
    expect(sim.stats.byRoute['package-api'] ?? 0).toBeGreaterThan(before);
    expect((await targetRows()).get(customerKey(0))).toMatchObject({ data: { Description: 'refreshed' } });
  });

  it('an expired URL without the package API: the event is quarantined with the reason, nothing applied', async () => {
    const handle = sim.addExport({
      entity: VENDOR_GROUPS,
      format: 'csv',
      columns: ['VendorGroupId'],
      rows: [{ VendorGroupId: 'V1' }],
    });
    const sent = await sim.sendBusinessEvent(webhook(), handle, { urlTtlMs: -60_000 });
    expect(sent.status).toBe(202);
    await idle();
    const entries = await new Quarantine(tableClient(access(), `fo${id}quarantine`), 'plain').list();
    expect(entries).toHaveLength(1);
    expect(entries[0]!.error).toMatch(/expired|refused|403/i);
    expect(entries[0]!.error).toContain('FNO_BASE_URL is not set');
    expect(entries[0]!.error).not.toContain('sig=');
    expect(entries[0]!.payload).not.toContain('sig=');
    expect([...(await targetRows()).keys()].some((k) => k.startsWith('plain|'))).toBe(false);
    expect((await health()).plain).toMatchObject({ status: 'degraded', quarantine: { count: 1 } });
  });

  it('refused downloads (another host, http:, a zip bomb) are quarantined with the reason, nothing applied', async () => {
    const quarantine = new Quarantine(tableClient(access(), `fo${id}quarantine`), 'plain');
    const vendors = (n: number) => ({
      entity: VENDOR_GROUPS,
      format: 'csv' as const,
      columns: ['VendorGroupId', 'Description'],
      rows: generatedRows(n, (i) => ({
        VendorGroupId: `VB${i}`,
        Description: 'the same text again and again',
      })),
    });
    const before = new Set((await quarantine.list()).map((e) => e.id));
    const file = sim.addExport(vendors(3));
    const url = new URL(sim.downloadUrl(file.exportId));
    url.hostname = 'localhost'; // not on the allow-list (127.0.0.1)
    await sim.sendBusinessEvent(webhook(), file, { extra: { DownloadURL: url.toString() } });
    url.hostname = '127.0.0.1';
    url.protocol = 'http:';
    await sim.sendBusinessEvent(webhook(), file, { extra: { DownloadURL: url.toString() } });
    const bomb = sim.addPackage([vendors(40_000)]);
    await sim.sendBusinessEvent(webhook(), bomb);
    await idle();
    const errors = (await quarantine.list()).filter((e) => !before.has(e.id)).map((e) => e.error);
    expect(errors).toHaveLength(3);
    expect(errors.join('\n')).toContain('host localhost is not on the allow-list');
    expect(errors.join('\n')).toMatch(/http:.* is not https/);
    expect(errors.join('\n')).toMatch(/package .* is rejected: .*inflates .*zip bomb/);
    expect(errors.join('\n')).not.toContain('sig=');
    expect(
      [...(await targetRows()).keys()].some((k) => k.startsWith(`plain|${VENDOR_GROUPS}:VendorGroupId=VB`)),
    ).toBe(false);
  });

  it('a malformed CSV row is quarantined with its file and line number, the rest applied', async () => {
    const rows = [
      { CustomerGroupId: 'M1', Description: 'ok' },
      { CustomerGroupId: '', Description: 'no key' },
      { CustomerGroupId: 'M3', Description: 'ok, "quoted"\nwith a line break' },
      { CustomerGroupId: 'M4', Description: 'ok' },
    ];
    const handle = sim.addExport({
      entity: CUSTOMER_GROUPS,
      format: 'csv',
      columns: ['CustomerGroupId', 'Description'],
      rows,
    });
    await sim.sendBusinessEvent(webhook(), handle, { controlNumber: 2n ** 62n + 1n });
    await idle();
    const target = await targetRows();
    for (const k of ['M1', 'M3', 'M4'])
      expect(target.has(`erp|${CUSTOMER_GROUPS}:CustomerGroupId=${k}`)).toBe(true);
    expect(target.get(`erp|${CUSTOMER_GROUPS}:CustomerGroupId=M3`)?.data.Description).toBe(
      'ok, "quoted"\nwith a line break',
    );
    const entries = await new Quarantine(tableClient(access(), `fo${id}quarantine`), 'erp').list();
    const bad = entries.find((e) => e.error.includes('key field CustomerGroupId is empty'));
    expect(bad?.error).toContain(`${CUSTOMER_GROUPS}.csv line 3`);
  });
});

// Polled rows get other keys: a flow's versions are control numbers for events and dequeue times
// for polling, so one entity's rows should come by one mode only (docs/finops.md).
describe('polling mode (recurring integrations) through the local host', () => {
  it('dequeue → process → ack, and the ack comes only after the batch drained', async () => {
    const handle = sim.addExport(customers(40, 'polled', { prefix: 'P' }));
    const { correlationId } = sim.enqueue(ACTIVITY, handle);
    let appliedAtAck = -1;
    sim.onAck = async () => {
      const rows = await targetRows();
      appliedAtAck = [...rows.values()].filter((r) => r.data.Description === 'polled').length;
    };
    await host.runTimer('finopsPoll-erp');
    await idle();
    sim.onAck = undefined;
    expect(sim.activity(ACTIVITY).find((m) => m.correlationId === correlationId)).toMatchObject({
      acked: true,
      deliveries: 1,
    });
    expect(appliedAtAck).toBe(40);
    await host.runTimer('finopsPoll-erp'); // 204: nothing more
    await idle();
    expect(sim.activity(ACTIVITY)).toHaveLength(1);
  });

  it('a crash before the ack: F&O re-delivers the message, it is acknowledged and applied once', async () => {
    const handle = sim.addExport(customers(15, 'crash', { prefix: 'C' }));
    const { correlationId } = sim.enqueue(ACTIVITY, handle);
    // The ack never reaches F&O (as if the process died before it): refused once.
    sim.faults.failNext(1, { route: 'ack', status: 400 });
    await host.runTimer('finopsPoll-erp');
    await idle();
    const msg = () => sim.activity(ACTIVITY).find((m) => m.correlationId === correlationId)!;
    expect(msg()).toMatchObject({ acked: false, deliveries: 1 });
    const first = await targetRows();
    const versions = [...first]
      .filter(([, r]) => r.data.Description === 'crash')
      .map(([k, r]) => [k, r.version]);
    expect(versions).toHaveLength(15);
    const appliedBefore = (await health()).erp!.totals as { applied: number };

    sim.advance(61_000); // past the re-delivery interval
    await host.runTimer('finopsPoll-erp');
    await idle();
    expect(msg()).toMatchObject({ acked: true, deliveries: 2 });
    const after = await targetRows();
    for (const [k, v] of versions) expect(after.get(k as string)?.version).toBe(v);
    expect((await health()).erp!.totals).toMatchObject({ applied: appliedBefore.applied });
  });
});
