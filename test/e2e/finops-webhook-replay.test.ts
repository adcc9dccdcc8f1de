/**
 * Replays of F&O business events through the local host, processed by the app's real jobs worker
 * and engine against the F&O simulator. The route has no signature (the function key, which the
 * local host does not enforce, is its credential), so what a replay can do is be processed twice.
 *
 * Generated: each of REPLAY_EXPORTS (default 10) exports is announced once, then delivered again
 * 1 to 5 times: the identical bytes, the same JSON reformatted (other bytes), or another event
 * (new EventId) for the same export and ControlNumber, as F&O does when it re-sends; part at once,
 * racing the first delivery, part after it was applied. Every delivery is answered 202, exactly
 * one per export as new; each export is downloaded and applied once (no row applied twice, none
 * skipped as already there), and its rows are in the target at its ControlNumber.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { setFinopsLocalOverrides } from '../../src/lib/flows/business-event/runtime';
import { tableClient } from '../../src/lib/storage/clients';
import { TableTarget } from '../../src/lib/targets/table-target';
import { FinOpsSimulator, generatedRows } from '../../src/local/finops-simulator';
import { LocalHost } from '../../src/local/host';
import { sharedAzurite } from '../support/azurite';
import { send } from '../support/webhook-http';

const EXPORTS = Number(process.env.REPLAY_EXPORTS ?? 10);
const ROWS = 8;
const ENTITY = 'Customer groups';
let sim: FinOpsSimulator;
let host: LocalHost;
const id = Math.random().toString(36).slice(2, 8);

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
      SYNC_TABLE_PREFIX: `rp${id}`,
      SYNC_RECORDS_QUEUE: `rp-${id}-records`,
      SYNC_CONTROL_QUEUE: `rp-${id}-control`,
      SYNC_JOBS_QUEUE: `rp-${id}-jobs`,
      TARGET_TABLE_NAME: `rp${id}records`,
      FNO_DOWNLOAD_ALLOWED_HOSTS: '127.0.0.1',
      Flows__erp__Type: 'business-event',
      Flows__erp__EntityKeys: `${ENTITY}=CustomerGroupId`,
    },
    httpPort: 0,
    enableTimers: false,
    queuePollIntervalMs: 30,
    visibilityTimeoutMs: 100,
    log: () => {},
  });
}, 30_000);

afterAll(async () => {
  await host?.stop();
  await sim?.close();
  setFinopsLocalOverrides(undefined);
});

type Copy = 'identical' | 'reformatted' | 'same-export-new-event';

it(`${EXPORTS} exports, each event replayed 1-5 times (racing and late): all 202, each export applied once`, async () => {
  const url = `${host.httpUrl}/api/webhooks/business-event`;
  const plans = fc.sample(
    fc.record({
      copies: fc.array(fc.constantFrom<Copy>('identical', 'reformatted', 'same-export-new-event'), {
        minLength: 1,
        maxLength: 5,
      }),
      early: fc.nat({ max: 5 }),
    }),
    { numRuns: EXPORTS, seed: Number(process.env.REPLAY_SEED ?? Date.now() % 1_000_000) },
  );
  const exports = plans.map((p, n) => {
    const handle = sim.addExport({
      entity: ENTITY,
      format: 'csv',
      columns: ['CustomerGroupId', 'Description'],
      rows: generatedRows(ROWS, (i) => ({ CustomerGroupId: `R${n}-${i}`, Description: `export ${n}` })),
    });
    const controlNumber = 2n ** 60n + BigInt(n);
    const first = sim.businessEventJson(handle, { controlNumber });
    const copy = (c: Copy): string =>
      c === 'identical'
        ? first.json
        : c === 'reformatted'
          ? first.json.replace(/,"/g, ', "').replace(/":/g, '": ')
          : sim.businessEventJson(handle, { controlNumber }).json;
    const early = p.copies.slice(0, p.early % (p.copies.length + 1));
    return {
      n,
      controlNumber,
      first: first.json,
      early: early.map(copy),
      late: p.copies.slice(early.length).map(copy),
      answers: [] as Array<{ status: number; duplicate?: unknown }>,
    };
  });
  type Export = (typeof exports)[number];
  const post = async (e: Export, json: string) => {
    const a = await send(url, { headers: [['content-type', 'application/json']], body: Buffer.from(json) });
    if ('error' in a) throw new Error(`connection failed: ${a.error}`);
    e.answers.push({ status: a.status, duplicate: (a.json as { duplicate?: unknown }).duplicate });
  };
  const idle = () => host.waitForIdle({ timeoutMs: 60_000, quietMs: 300 });

  await Promise.all(exports.flatMap((e) => [e.first, ...e.early].map((json) => post(e, json))));
  await idle();
  await Promise.all(exports.flatMap((e) => e.late.map((json) => post(e, json))));
  await idle();

  let deliveries = 0;
  for (const e of exports) {
    deliveries += e.answers.length;
    expect(e.answers.filter((a) => a.status !== 202)).toEqual([]);
    expect(
      e.answers.filter((a) => a.duplicate === false),
      `export ${e.n}`,
    ).toHaveLength(1);
  }
  // Each export downloaded once, each row applied once at its export's ControlNumber.
  expect(sim.stats.downloadsCompleted).toBe(EXPORTS);
  const rows = new Map<string, { version: bigint; data: Record<string, unknown> }>();
  for await (const r of new TableTarget(
    tableClient(
      { kind: 'connectionString', connectionString: sharedAzurite().connectionString },
      `rp${id}records`,
    ),
  ).list())
    rows.set(r.key, r);
  expect(rows.size).toBe(EXPORTS * ROWS);
  for (const e of exports)
    for (let i = 0; i < ROWS; i++)
      expect(rows.get(`erp|${ENTITY}:CustomerGroupId=R${e.n}-${i}`), `export ${e.n} row ${i}`).toMatchObject({
        version: e.controlNumber,
        data: { Description: `export ${e.n}` },
      });
  const health = (await (await fetch(`${host.httpUrl}/api/health`)).json()) as {
    flows: Array<{ flow: string; totals?: Record<string, number> }>;
  };
  expect(health.flows.find((f) => f.flow === 'erp')?.totals).toMatchObject({
    applied: EXPORTS * ROWS,
    skipped: 0,
  });
  console.log(`business-event replays: ${EXPORTS} exports delivered ${deliveries} times; each applied once`);
}, 120_000);
