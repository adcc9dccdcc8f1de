/**
 * Load on the webhook routes (issue 12, item 3): 200 concurrent VALID posts per route through the
 * local host's HTTP server and the app's real registrations, then the jobs run to the end:
 *
 * - POST /api/webhooks/external-source: 200 signed FLOW_EXTERNAL_SOURCE requests, one per WISEflow
 *   flow (so each request has its own sync/done to count). All answered 202 `duplicate: false`;
 *   afterwards each request's marker is `done` after ONE claim, its roster was read once (the
 *   routine ran once), its participants were added in one call and WISEflow got exactly one
 *   sync/done for it (and no sync/fail).
 * - POST /api/webhooks/business-event: 200 F&O Data export events, each for its own 5-row export.
 *   All answered 202 `duplicate: false`; afterwards each export was downloaded once (200
 *   downloads for 200 exports whose rows all arrived) and each row reached the records API (the
 *   `http` target) in exactly one write, carrying its event's ControlNumber as its version.
 *
 * No timing is asserted (ack latency is measured by `npm run bench -- --only=webhooks`); the
 * durations are printed.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { setFinopsLocalOverrides } from '../../src/lib/flows/business-event/runtime';
import { tableClient } from '../../src/lib/storage/clients';
import { WebhookStore } from '../../src/lib/webhooks/store';
import { FinOpsSimulator, generatedRows } from '../../src/local/finops-simulator';
import { LocalHost } from '../../src/local/host';
import { localSettings } from '../../src/local/local-settings';
import { startRecordsApiSimulator, type RecordsApiSimulator } from '../../src/local/records-api-simulator';
import { RosterSimulator } from '../../src/local/roster-simulator';
import { WiseflowSimulator } from '../../src/local/wiseflow-simulator';
import { sharedAzurite } from '../support/azurite';
import { waitFor } from '../support/wait';

const N = 200;
const ROWS_PER_EXPORT = 5;
const ENTITY = 'Load groups';
const WEBHOOK_SECRET = 'load-webhook-secret-0123456789abcdef';
const id = Math.random().toString(36).slice(2, 8);

let host: LocalHost;
let wiseflow: WiseflowSimulator;
let roster: RosterSimulator;
let finops: FinOpsSimulator;
let records: RecordsApiSimulator;
let store: WebhookStore;

beforeAll(async () => {
  const azurite = sharedAzurite();
  [wiseflow, roster, finops, records] = await Promise.all([
    WiseflowSimulator.start(),
    RosterSimulator.start(),
    FinOpsSimulator.start(),
    startRecordsApiSimulator(),
  ]);
  setFinopsLocalOverrides({
    unsafeTestOnly: { allowLoopback: true, extraCaPem: finops.caPem },
    credential: finops.credential(),
  });
  const base = localSettings(
    {
      storageConnectionString: azurite.connectionString,
      viewUrl: '',
      username: '',
      password: '',
      wiseflow: {
        flow: 'wiseflow',
        baseUrl: wiseflow.baseUrl,
        clientId: wiseflow.credentials.clientId,
        clientSecret: wiseflow.credentials.clientSecret,
        webhookSecret: WEBHOOK_SECRET,
        rosterViewUrl: roster.viewUrl,
        rosterUsername: roster.username,
        rosterPassword: roster.password,
      },
    },
    {},
  );
  // No view-sync flow: the external-source flow and one business-event flow only.
  for (const k of Object.keys(base)) if (k.startsWith('FLOWFINITY_')) delete base[k];
  const functionsDir = path.join(__dirname, '..', '..', 'src', 'functions');
  host = await LocalHost.start({
    modules: readdirSync(functionsDir)
      .filter((f) => f.endsWith('.ts'))
      .map((f) => path.join(functionsDir, f)),
    settings: {
      ...base,
      SYNC_TABLE_PREFIX: `ld${id}`,
      SYNC_RECORDS_QUEUE: `ld-${id}-records`,
      SYNC_CONTROL_QUEUE: `ld-${id}-control`,
      SYNC_JOBS_QUEUE: `ld-${id}-jobs`,
      Flows__erp__Type: 'business-event',
      Flows__erp__EntityKeys: `${ENTITY}=GroupId`,
      Flows__erp__DownloadAllowedHosts: new URL(finops.baseUrl).hostname,
      // The records API logs every request: a row written twice would show.
      Flows__erp__Target: 'http',
      Flows__erp__TargetHttpUrl: records.urlTemplate,
    },
    httpPort: 0,
    enableTimers: false,
    queuePollIntervalMs: 50,
    visibilityTimeoutMs: 100,
    log: () => {},
  });
  store = new WebhookStore(
    tableClient({ kind: 'connectionString', connectionString: azurite.connectionString }, `ld${id}webhooks`),
  );
}, 60_000);

afterAll(async () => {
  await host?.stop();
  await Promise.all([wiseflow?.stop(), roster?.stop(), finops?.close(), records?.close()]);
  setFinopsLocalOverrides(undefined);
});

/** Posts every request at once (one connection each) and keeps status and JSON body. */
async function postAll(
  url: string,
  calls: { body: string; headers: Record<string, string> }[],
): Promise<{ status: number; body: { accepted?: boolean; duplicate?: boolean; eventId?: string } }[]> {
  return Promise.all(
    calls.map(async (c) => {
      const res = await fetch(url, { method: 'POST', headers: c.headers, body: c.body });
      return { status: res.status, body: (await res.json()) as { accepted?: boolean; duplicate?: boolean } };
    }),
  );
}

const countBy = <T>(xs: readonly T[], key: (x: T) => string | number) => {
  const out: Record<string, number> = {};
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return out;
};

/** N WISEflow flows with one source and a 2-person roster each; one signed request per flow. */
function externalSourceRequests() {
  const flows = Array.from({ length: N }, (_, i) => {
    const code = `LOAD-${id}-${i}`;
    const flowId = wiseflow.addFlow({ code, participants: [1, 2, 3] });
    wiseflow.addSource(flowId, code);
    roster.set(code, [1 + (i % 3), 1 + ((i + 1) % 3)]);
    return { flowId, code, requestId: '' };
  });
  const calls = flows.map((f) => {
    const payload = wiseflow.externalSourcePayload(f.flowId);
    f.requestId = String(payload.requestId);
    return wiseflow.buildWebhookCall(payload, { secret: WEBHOOK_SECRET });
  });
  return { flows, calls };
}

/** N exports of ROWS_PER_EXPORT rows each (keys of their own); one Data export event per export. */
function businessEvents() {
  return Array.from({ length: N }, (_, i) => {
    const handle = finops.addExport({
      entity: ENTITY,
      format: 'csv',
      columns: ['GroupId', 'Description'],
      rows: generatedRows(ROWS_PER_EXPORT, (j) => ({ GroupId: `L${i}-${j}`, Description: `export ${i}` })),
    });
    return { i, ...finops.businessEventJson(handle) };
  });
}

it(
  `${N} concurrent valid posts on each webhook route (both at once): all 202, each processed exactly once`,
  { timeout: 180_000 },
  async () => {
    const external = externalSourceRequests();
    const events = businessEvents();
    const rows = N * ROWS_PER_EXPORT;

    const t0 = Date.now();
    const timed = async <T>(p: Promise<T>) => {
      const r = await p;
      return { r, ms: Date.now() - t0 };
    };
    const [es, be] = await Promise.all([
      timed(postAll(`${host.httpUrl}/api/webhooks/external-source`, external.calls)),
      timed(
        postAll(
          `${host.httpUrl}/api/webhooks/business-event`,
          events.map((e) => ({ body: e.json, headers: { 'content-type': 'application/json' } })),
        ),
      ),
    ]);
    for (const answers of [es.r, be.r]) {
      expect(countBy(answers, (a) => a.status)).toEqual({ 202: N });
      expect(answers.every((a) => a.body.accepted === true && a.body.duplicate === false)).toBe(true);
    }

    const mine = new Set(external.flows.map((f) => f.flowId));
    await waitFor(
      () =>
        wiseflow.syncCalls.filter((c) => mine.has(c.flowId)).length >= N && records.effects.length >= rows,
      { timeoutMs: 90_000, intervalMs: 100, what: `${N} sync/done calls and ${rows} rows` },
    );
    await host.waitForIdle({ timeoutMs: 30_000, quietMs: 300 });
    console.log(
      `webhook load: ${N} external-source posts answered after ${es.ms} ms, ${N} business-event posts after ${be.ms} ms; ` +
        `every job finished after ${Date.now() - t0} ms; ${wiseflow.requests.length} WISEflow requests ` +
        `(${wiseflow.requests.filter((r) => r.status === 429).length} answered 429), ${records.requests.length} records API requests`,
    );

    // ---- external-source: one claim, one roster read, one add, one sync/done per request ----------
    const esMarkers = new Map(
      (await store.list({ route: 'external-source', limit: 10 * N })).map((m) => [m.eventId, m]),
    );
    expect(esMarkers.size).toBe(N);
    for (const f of external.flows) {
      expect(esMarkers.get(`request:${f.requestId}`), f.code).toMatchObject({ state: 'done', attempts: 1 });
      expect(roster.queries.get(f.code), f.code).toBe(1);
      expect(
        wiseflow.syncCalls.filter((c) => c.flowId === f.flowId).map((c) => [c.reference, c.kind, c.status]),
      ).toEqual([[f.code, 'done', 200]]);
      expect(wiseflow.allocationCalls.filter((c) => c.flowId === f.flowId && c.kind === 'add')).toHaveLength(
        1,
      );
    }
    expect(external.flows.map((f) => wiseflow.sources(f.flowId)[0]!.state)).toEqual(Array(N).fill('SUCCESS'));

    // ---- business-event: one claim and one download per event, one write per row ----------------
    const beMarkers = await store.list({ route: 'business-event', limit: 10 * N });
    expect(beMarkers).toHaveLength(N);
    expect(countBy(beMarkers, (m) => `${m.state}/${m.attempts}`)).toEqual({ 'done/1': N });
    // N downloads for N exports, each of which delivered all its rows: one download each.
    expect(finops.stats.byRoute.download).toBe(N);
    expect(finops.stats.downloadsCompleted).toBe(N);
    // Each row: exactly one write request and one effect, with its event's ControlNumber.
    const keyOf = (i: number, j: number) => `erp|${ENTITY}:GroupId=L${i}-${j}`;
    const expected = new Map(
      events.flatMap((e) =>
        Array.from(
          { length: ROWS_PER_EXPORT },
          (_, j) => [keyOf(e.i, j), e.controlNumber.toString()] as const,
        ),
      ),
    );
    expect(records.effects).toHaveLength(rows);
    expect(new Map(records.effects.map((x) => [x.key, x.version]))).toEqual(expected);
    const writes = records.requests.filter((r) => r.method !== 'GET');
    expect(writes).toHaveLength(rows);
    // 201: each write created its record; a second write of a row would be a 409 or a replay.
    expect(countBy(writes, (w) => w.status)).toEqual({ 201: rows });
  },
);
