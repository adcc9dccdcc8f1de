/**
 * The Flowfinity view simulator: view semantics, wire quirks, late commits, the writer and the
 * fault switches, checked over real HTTP with plain fetch (no client of ours in between).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { FlowfinitySimulator, type SimulatorOptions } from '../../src/local/flowfinity-simulator';

const sims: FlowfinitySimulator[] = [];
afterEach(async () => {
  while (sims.length) await sims.pop()?.stop();
});

async function simulator(o: SimulatorOptions = {}): Promise<FlowfinitySimulator> {
  const sim = await FlowfinitySimulator.start(o);
  sims.push(sim);
  return sim;
}

const auth = (sim: FlowfinitySimulator) =>
  'Basic ' + Buffer.from(`${sim.username}:${sim.password}`).toString('base64');

async function get(
  sim: FlowfinitySimulator,
  params: Record<string, string> = {},
  headers?: Record<string, string>,
) {
  const url = new URL(sim.viewUrl);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return fetch(url, { headers: headers ?? { Authorization: auth(sim) } });
}

type Row = Record<string, unknown> & { RecordID: string; lastSubmissionId: number | string };

async function view(sim: FlowfinitySimulator, previous?: bigint): Promise<Row[]> {
  const res = await get(sim, previous === undefined ? {} : { previouslastsubmissionid: String(previous) });
  expect(res.status).toBe(200);
  return (await res.json()) as Row[];
}

const ids = (rows: Row[]) => rows.map((r) => BigInt(r.lastSubmissionId));

describe('FlowfinitySimulator', () => {
  it('serves Lead Registration records with the REST view quirks', async () => {
    const sim = await simulator({ seed: 11 });
    sim.insertMany(3);
    const res = await get(sim, { onbehalfof: 'anyone' });
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    const text = await res.text();
    expect(text).toContain('"RecordID":"000000001","lastSubmissionId":1000,');
    const rows = JSON.parse(text) as Row[];
    expect(rows).toHaveLength(3);
    for (const r of rows) {
      expect(r.RecordID).toMatch(/^\d{9}$/);
      expect(r.EmployeeCount).toMatch(/^\d+$/);
      expect(r.TotalValue).toMatch(/^\d+$/);
      expect(r.Industry).toEqual({ Selection: expect.any(String) });
      expect(r.CallbackRequested).toEqual({ Selection: [expect.stringMatching(/^(Yes|No)$/)] });
      expect(r.CreatedOn).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$/);
      expect(r.FirstContact).toMatch(/^\d{4}-\d\d-\d\dT00:00:00\.000$/);
      expect(r.State).toBe('New');
      for (const key of ['Company', 'ContactName', 'Email', 'Phone', 'CreatedBy'])
        expect(typeof r[key]).toBe('string');
    }
  });

  it('is deterministic for a seed', async () => {
    const a = await simulator({ seed: 5 });
    const b = await simulator({ seed: 5 });
    const c = await simulator({ seed: 6 });
    for (const s of [a, b, c]) {
      s.insertMany(20);
      s.update('000000003');
      s.remove('000000004');
    }
    expect(await view(a)).toEqual(await view(b));
    expect(await view(a)).not.toEqual(await view(c));
  });

  it('writes lastSubmissionId with every digit, as a number or a string', async () => {
    const asNumber = await simulator({ firstSubmissionId: 9007199254740993n });
    const asString = await simulator({ firstSubmissionId: 9007199254740993n, lastSubmissionIdAs: 'string' });
    asNumber.insert();
    asString.insert();
    expect(await (await get(asNumber)).text()).toContain('"lastSubmissionId":9007199254740993,');
    expect(await (await get(asString)).text()).toContain('"lastSubmissionId":"9007199254740993",');
  });

  it('an update is a new version and replaces the old one in the view', async () => {
    const sim = await simulator();
    sim.insertMany(3);
    const updated = sim.update('000000001', { Company: 'Renamed Inc', EmployeeCount: '30' });
    expect(updated.lastSubmissionId).toBe(1003n);

    const rows = await view(sim);
    expect(rows.map((r) => r.RecordID)).toEqual(['000000002', '000000003', '000000001']);
    expect(ids(rows)).toEqual([1001n, 1002n, 1003n]);
    expect(rows[2]).toMatchObject({ Company: 'Renamed Inc', EmployeeCount: '30' });
    expect(ids(await view(sim, 1002n))).toEqual([1003n]);
    expect(sim.snapshot().find((r) => r.RecordID === '000000001')).toMatchObject({
      lastSubmissionId: 1003n,
      fields: { Company: 'Renamed Inc' },
    });
  });

  it('remove() moves the record to State "Deleted" as a new version', async () => {
    const sim = await simulator();
    sim.insertMany(2);
    const removed = sim.remove('000000002');
    expect(removed).toMatchObject({
      RecordID: '000000002',
      lastSubmissionId: 1002n,
      fields: { State: 'Deleted' },
    });
    const rows = await view(sim, 1001n);
    expect(rows).toEqual([
      expect.objectContaining({ RecordID: '000000002', lastSubmissionId: 1002, State: 'Deleted' }),
    ]);
    expect(sim.snapshot()).toHaveLength(2); // deleted records stay in the truth
    expect(() => sim.update('000000099')).toThrow(/no record/);
  });

  it('a late commit hides its allocated id until commit, then shows it in sorted position', async () => {
    const sim = await simulator();
    sim.insertMany(3); // 1000..1002
    const late = sim.beginLateCommit(); // 1003, a new record
    const after = sim.insert(); // 1004
    expect(late.id).toBe(1003n);
    expect(after.lastSubmissionId).toBe(1004n);

    expect(ids(await view(sim))).toEqual([1000n, 1001n, 1002n, 1004n]);
    expect(sim.snapshot().map((r) => r.lastSubmissionId)).not.toContain(1003n);

    const committed = late.commit();
    expect(committed).toMatchObject({ RecordID: '000000004', lastSubmissionId: 1003n });
    expect(ids(await view(sim))).toEqual([1000n, 1001n, 1002n, 1003n, 1004n]);
    // A reader whose cursor already passed 1004 never sees 1003 (why SYNC_LOOKBACK exists).
    expect(await view(sim, 1004n)).toEqual([]);
    expect(ids(await view(sim, 1002n))).toEqual([1003n, 1004n]);
    expect(() => late.commit()).toThrow(/already committed/);
  });

  it('a late update superseded by a newer one is discarded at commit', async () => {
    const sim = await simulator();
    sim.insertMany(1); // 1000
    const late = sim.beginLateCommit('000000001'); // 1001
    sim.update('000000001', { Company: 'Newest' }); // 1002
    late.commit();
    expect(sim.snapshot()).toEqual([
      expect.objectContaining({
        lastSubmissionId: 1002n,
        fields: expect.objectContaining({ Company: 'Newest' }),
      }),
    ]);
    expect(ids(await view(sim))).toEqual([1002n]);
  });

  it('the writer keeps changing records until stopped', async () => {
    const sim = await simulator({ initialRecords: 10 });
    const before = sim.snapshot();
    const stop = sim.startWriter({ intervalMs: 5, changesPerTick: 3 });
    await sleep(150);
    stop();
    const after = sim.snapshot();
    const maxBefore = before.at(-1)?.lastSubmissionId ?? 0n;
    expect(after.filter((r) => r.lastSubmissionId > maxBefore).length).toBeGreaterThan(3);
    expect(new Set(after.map((r) => r.RecordID)).size).toBe(after.length);
    await sleep(50);
    expect(sim.snapshot()).toEqual(after);
  });

  it('insertMany(200_000) is cheap and the view filters it', async () => {
    const sim = await simulator();
    sim.insertMany(200_000);
    expect(sim.size).toBe(200_000);
    const rows = await view(sim, 1000n + 199_996n);
    expect(rows.map((r) => r.RecordID)).toEqual(['000199998', '000199999', '000200000']);
  });

  it('answers 401, 403, 404 and 400 like a misconfigured view', async () => {
    const sim = await simulator({ onBehalfOf: 'ops.user' });
    const noAuth = await get(sim, { onbehalfof: 'ops.user' }, {});
    expect(noAuth.status).toBe(401);
    expect(noAuth.headers.get('www-authenticate')).toMatch(/^Basic/);
    const wrong = 'Basic ' + Buffer.from(`${sim.username}:nope`).toString('base64');
    expect((await get(sim, { onbehalfof: 'ops.user' }, { Authorization: wrong })).status).toBe(401);
    expect((await get(sim, { onbehalfof: 'intruder' })).status).toBe(403);
    expect((await get(sim, {})).status).toBe(403);
    expect((await get(sim, { onbehalfof: 'ops.user' })).status).toBe(200);
    expect((await get(sim, { onbehalfof: 'ops.user', previouslastsubmissionid: '' })).status).toBe(200);
    expect((await get(sim, { onbehalfof: 'ops.user', previouslastsubmissionid: 'x1' })).status).toBe(400);
    const other = await fetch(sim.viewUrl.replace('LeadSync', 'Other'), {
      headers: { Authorization: auth(sim) },
    });
    expect(other.status).toBe(404);
    expect(sim.stats.requests).toBe(8);
  });

  it('failNext answers the given status with Retry-After, then recovers', async () => {
    const sim = await simulator({ initialRecords: 1 });
    sim.faults.failNext(2, 429, 7);
    const first = await get(sim);
    expect(first.status).toBe(429);
    expect(first.headers.get('retry-after')).toBe('7');
    expect((await get(sim)).status).toBe(429);
    expect((await get(sim)).status).toBe(200);
  });

  it('malformedNext corrupts one record in its sorted position without touching the state', async () => {
    const sim = await simulator({ initialRecords: 5 });
    const truth = sim.snapshot();
    sim.faults.malformedNext(1);
    const rows = await view(sim);
    expect(rows.map((r) => r.RecordID)).toEqual(truth.map((r) => r.RecordID));
    expect(rows[2]?.lastSubmissionId).toBe('abc');
    expect(sim.stats.lastMalformedRecordId).toBe(rows[2]?.RecordID);
    expect(sim.snapshot()).toEqual(truth);
    expect(ids(await view(sim))).toEqual(truth.map((r) => r.lastSubmissionId));
  });

  it('truncateNext sends part of the body and then drops the connection', async () => {
    const sim = await simulator({ initialRecords: 10 });
    sim.faults.truncateNext(1);
    const res = await get(sim);
    expect(res.status).toBe(200);
    await expect(res.text()).rejects.toThrow();
    expect(sim.stats.responsesTruncated).toBe(1);
    expect(await view(sim)).toHaveLength(10);
  });

  it('slowMs delays answers', async () => {
    const sim = await simulator();
    sim.faults.slowMs = 200;
    const started = Date.now();
    expect((await get(sim)).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
  });

  it('stop() closes connections that hang', async () => {
    const sim = await FlowfinitySimulator.start({ initialRecords: 1 });
    sim.faults.hangNext(1);
    const pending = get(sim).then(
      () => 'answered',
      () => 'failed',
    );
    while (sim.stats.requests === 0) await sleep(5);
    await sim.stop();
    expect(await pending).toBe('failed');
  });
});
