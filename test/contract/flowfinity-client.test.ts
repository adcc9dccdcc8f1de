/**
 * The Flowfinity view client over real HTTP on loopback, against the view simulator (and, for
 * bodies the simulator never sends, a few hand-written servers).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import {
  FlowfinityViewClient,
  parseRetryAfter,
  type ViewClientOptions,
} from '../../src/lib/flowfinity/view-client';
import { AppError } from '../../src/lib/errors';
import type { ViewItem } from '../../src/lib/ports';
import { FlowfinitySimulator, type SimulatorOptions } from '../../src/local/flowfinity-simulator';
import { waitFor } from '../support/wait';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

async function simulator(o: SimulatorOptions = {}): Promise<FlowfinitySimulator> {
  const sim = await FlowfinitySimulator.start(o);
  cleanups.push(() => sim.stop());
  return sim;
}

function clientFor(
  sim: { viewUrl: string; username: string; password: string },
  over: Partial<ViewClientOptions> = {},
) {
  return new FlowfinityViewClient({
    viewUrl: sim.viewUrl,
    onBehalfOf: 'ops.user',
    username: sim.username,
    password: sim.password,
    timeoutMs: 5_000,
    maxRetries: 3,
    retryBaseDelayMs: 5,
    ...over,
  });
}

async function collect(items: AsyncIterable<ViewItem>): Promise<ViewItem[]> {
  const out: ViewItem[] = [];
  for await (const item of items) out.push(item);
  return out;
}

const records = (items: ViewItem[]) => items.flatMap((i) => (i.kind === 'record' ? [i.record] : []));

async function failure(p: Promise<unknown>): Promise<AppError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(AppError);
  return e as AppError;
}

/** A hand-written server for bodies and headers the simulator does not produce. */
async function rawServer(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const server: Server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const stop = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  cleanups.push(stop);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/views/Raw`;
}

describe('FlowfinityViewClient against the view simulator', () => {
  it('first run: omits previouslastsubmissionid and returns every record in ascending order', async () => {
    const sim = await simulator({ seed: 7 });
    sim.insertMany(5);
    sim.update('000000002', { Company: 'Changed Ltd' });
    const client = clientFor({ ...sim, viewUrl: `${sim.viewUrl}?view=lead` });

    const got = records(await collect(client.query({})));

    expect(sim.stats.lastQuery?.has('previouslastsubmissionid')).toBe(false);
    expect(sim.stats.lastQuery?.get('onbehalfof')).toBe('ops.user');
    expect(sim.stats.lastQuery?.get('view')).toBe('lead'); // params already in the URL are kept
    expect(got.map((r) => r.recordId)).toEqual([
      '000000001',
      '000000003',
      '000000004',
      '000000005',
      '000000002',
    ]);
    expect(got.map((r) => r.version)).toEqual([1000n, 1002n, 1003n, 1004n, 1005n]);
    expect(got[4]?.data.Company).toBe('Changed Ltd');
    expect(got[0]?.data.EmployeeCount).toMatch(/^\d+$/);
  });

  it('asks only for records newer than previouslastsubmissionid', async () => {
    const sim = await simulator();
    sim.insertMany(10);
    const got = records(await collect(clientFor(sim).query({ previouslastsubmissionid: 1006n })));
    expect(sim.stats.lastQuery?.get('previouslastsubmissionid')).toBe('1006');
    expect(got.map((r) => r.version)).toEqual([1007n, 1008n, 1009n]);
    expect(await collect(clientFor(sim).query({ previouslastsubmissionid: 1009n }))).toEqual([]);
  });

  it.each(['number', 'string'] as const)(
    'keeps lastSubmissionId beyond 2^53 exact when sent as a JSON %s',
    async (lastSubmissionIdAs) => {
      const sim = await simulator({ firstSubmissionId: 9007199254740990n, lastSubmissionIdAs });
      sim.insertMany(6);
      const all = records(await collect(clientFor(sim).query({})));
      expect(all.map((r) => r.version)).toEqual([
        9007199254740990n,
        9007199254740991n,
        9007199254740992n,
        9007199254740993n,
        9007199254740994n,
        9007199254740995n,
      ]);
      const newer = records(
        await collect(clientFor(sim).query({ previouslastsubmissionid: 9007199254740992n })),
      );
      expect(sim.stats.lastQuery?.get('previouslastsubmissionid')).toBe('9007199254740992');
      expect(newer.map((r) => r.version)).toEqual([9007199254740993n, 9007199254740994n, 9007199254740995n]);
    },
  );

  it('retries 5xx and then succeeds', async () => {
    const sim = await simulator();
    sim.insertMany(3);
    sim.faults.failNext(2, 500);
    const got = records(await collect(clientFor(sim).query({})));
    expect(got).toHaveLength(3);
    expect(sim.stats.requests).toBe(3);
  });

  it('gives up after maxRetries with an unavailable error carrying the status', async () => {
    const sim = await simulator();
    sim.faults.failNext(10, 502);
    const e = await failure(collect(clientFor(sim, { maxRetries: 2 }).query({})));
    expect(e.kind).toBe('transient');
    expect(e.upstreamStatus).toBe(502);
    expect(e.message).toContain('502');
    expect(sim.stats.requests).toBe(3);
  });

  it('honours Retry-After on 429', async () => {
    const sim = await simulator();
    sim.insertMany(2);
    sim.faults.failNext(1, 429, 1);
    const started = Date.now();
    const got = records(await collect(clientFor(sim, { retryBaseDelayMs: 1 }).query({})));
    expect(got).toHaveLength(2);
    expect(sim.stats.requests).toBe(2);
    // Backoff alone would wait ~1 ms; the server asked for one second.
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('stops retrying when Retry-After is longer than it is willing to wait', async () => {
    const sim = await simulator();
    sim.faults.failNext(5, 503, 3600);
    const e = await failure(collect(clientFor(sim).query({})));
    expect(e.kind).toBe('transient');
    expect(e.message).toMatch(/retry after 3600 s/);
    expect(sim.stats.requests).toBe(1);
  });

  it('times out a request that hangs and retries it', async () => {
    const sim = await simulator();
    sim.insertMany(4);
    sim.faults.hangNext(1);
    const got = records(await collect(clientFor(sim, { timeoutMs: 300 }).query({})));
    expect(got).toHaveLength(4);
    expect(sim.stats.requests).toBe(2);
  });

  it('a request that hangs every time ends unavailable with the timeout in the message', async () => {
    const sim = await simulator();
    sim.faults.hangNext(10);
    const e = await failure(collect(clientFor(sim, { timeoutMs: 200, maxRetries: 1 }).query({})));
    expect(e.kind).toBe('transient');
    expect(e.message).toMatch(/timed out after 200 ms/);
    expect(sim.stats.requests).toBe(2);
  });

  it.each([
    [401, 'FLOWFINITY_PASSWORD'],
    [403, 'FLOWFINITY_ON_BEHALF_OF'],
    [404, 'FLOWFINITY_VIEW_URL'],
  ] as const)('%i is a configuration error naming %s, not retried', async (status, setting) => {
    const sim = await simulator({ onBehalfOf: 'ops.user' });
    sim.insertMany(1);
    const over: Partial<ViewClientOptions> =
      status === 401
        ? { password: 'wrong-secret-pw' }
        : status === 403
          ? { onBehalfOf: 'someone.else' }
          : { viewUrl: sim.viewUrl.replace('LeadSync', 'NoSuchView') };
    const password = over.password ?? sim.password;
    const e = await failure(collect(clientFor(sim, over).query({})));
    expect(e.kind).toBe('configuration');
    expect(e.upstreamStatus).toBe(status);
    expect(e.message).toContain(String(status));
    expect(e.message).toContain(setting);
    expect(e.message).not.toContain(password);
    expect(sim.stats.requests).toBe(1);
  });

  it('never puts the password or Authorization value in an error, even when the server echoes them', async () => {
    const url = await rawServer((req, res) => {
      res.writeHead(401, { 'Content-Type': 'text/plain' });
      res.end(
        `bad credentials: ${req.headers.authorization} = ${Buffer.from(req.headers.authorization?.slice(6) ?? '', 'base64').toString()}`,
      );
    });
    const password = 'S3cret-Pa55word';
    const e = await failure(
      collect(clientFor({ viewUrl: url, username: 'integration', password }).query({})),
    );
    const basic = Buffer.from(`integration:${password}`).toString('base64');
    expect(e.kind).toBe('configuration');
    expect(e.message).toContain('bad credentials');
    expect(e.message).not.toContain(password);
    expect(e.message).not.toContain(basic);
  });

  it('yields a malformed record with its raw JSON in place, and the others still come', async () => {
    const sim = await simulator();
    sim.insertMany(5);
    sim.faults.malformedNext(1);
    const items = await collect(clientFor(sim).query({}));
    expect(items.map((i) => i.kind)).toEqual(['record', 'record', 'malformed', 'record', 'record']);
    const bad = items[2];
    if (bad?.kind !== 'malformed') throw new Error('expected a malformed item');
    expect(bad.index).toBe(2);
    expect(bad.error).toMatch(/lastSubmissionId/);
    expect(JSON.parse(bad.raw)).toMatchObject({
      RecordID: sim.stats.lastMalformedRecordId,
      lastSubmissionId: 'abc',
    });
    // The simulator's state was not touched: the next query is clean.
    expect(records(await collect(clientFor(sim).query({})))).toHaveLength(5);
  });

  it('truncates the raw JSON of a huge malformed record to 32 KB', async () => {
    const url = await rawServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(
        JSON.stringify([
          { RecordID: '000000001', Notes: 'é'.repeat(40_000) },
          { RecordID: '000000002', lastSubmissionId: '7' },
        ]),
      );
    });
    const items = await collect(clientFor({ viewUrl: url, username: 'u', password: 'p' }).query({}));
    const bad = items[0];
    if (bad?.kind !== 'malformed') throw new Error('expected a malformed item');
    expect(Buffer.byteLength(bad.raw)).toBeLessThanOrEqual(32 * 1024);
    expect(bad.raw.startsWith('{"RecordID":"000000001"')).toBe(true);
    expect(bad.error).toMatch(/truncated/);
    expect(items[1]).toMatchObject({ kind: 'record', record: { recordId: '000000002', version: 7n } });
  });

  it('a body cut off after some records fails the query as unavailable', async () => {
    const sim = await simulator();
    sim.insertMany(10);
    sim.faults.truncateNext(1);
    const seen: ViewItem[] = [];
    const e = await failure(
      (async () => {
        for await (const item of clientFor(sim).query({})) seen.push(item);
      })(),
    );
    expect(e.kind).toBe('transient');
    expect(seen.length).toBeLessThan(10);
    expect(sim.stats.requests).toBe(1); // no retry once records were handed out
  });

  it('a body cut off before the first record is retried', async () => {
    const sim = await simulator();
    sim.insertMany(1);
    sim.faults.truncateNext(1);
    expect(records(await collect(clientFor(sim).query({})))).toHaveLength(1);
    expect(sim.stats.requests).toBe(2);
    expect(sim.stats.responsesTruncated).toBe(1);
  });

  it.each([
    ['an object', '{"error":"not a list"}'],
    ['HTML', '<html><body>Sign in</body></html>'],
    ['an unfinished array', '[{"RecordID":"000000001","lastSubmissionId":"1"}'],
  ])('a 200 body that is %s is a protocol error, not retried', async (_what, body) => {
    let requests = 0;
    const url = await rawServer((_req, res) => {
      requests++;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(body);
    });
    const e = await failure(collect(clientFor({ viewUrl: url, username: 'u', password: 'p' }).query({})));
    expect(e.kind).toBe('validation');
    expect(requests).toBe(1);
  });

  it('breaking out of the loop early aborts the request', async () => {
    const sim = await simulator();
    sim.insertMany(30_000);
    let first: ViewItem | undefined;
    for await (const item of clientFor(sim).query({})) {
      first = item;
      break;
    }
    expect(first).toMatchObject({ kind: 'record', record: { recordId: '000000001' } });
    await waitFor(() => sim.stats.responsesAborted === 1);
    expect(sim.stats.responsesCompleted).toBe(0);
    expect(sim.stats.recordsWritten).toBeLessThan(30_000);
  });

  it("the caller's signal aborts the query", async () => {
    const sim = await simulator();
    sim.insertMany(30_000);
    const controller = new AbortController();
    const reason = new Error('shutting down');
    let seen = 0;
    const err = await (async () => {
      for await (const _item of clientFor(sim).query({}, controller.signal)) {
        if (++seen === 3) controller.abort(reason);
      }
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBe(reason);
    expect(seen).toBeLessThan(30_000);
    await waitFor(() => sim.stats.responsesAborted === 1);
  });

  it('streams a large response: the first record arrives while the server is still writing', async () => {
    const total = 100_000;
    const sim = await simulator({ seed: 3 });
    sim.insertMany(total);
    let count = 0;
    let last = 0n;
    let writtenAtFirst = -1;
    let writtenAfterPause = -1;
    for await (const item of clientFor(sim, { timeoutMs: 120_000 }).query({})) {
      if (item.kind !== 'record') throw new Error(`unexpected ${item.kind}`);
      if (count === 0) {
        writtenAtFirst = sim.stats.recordsWritten;
        await sleep(200); // a buffering client would now hold the whole body
        writtenAfterPause = sim.stats.recordsWritten;
      }
      if (item.record.version <= last) throw new Error(`out of order at ${count}`);
      last = item.record.version;
      count++;
    }
    expect(count).toBe(total);
    expect(last).toBe(1000n + BigInt(total - 1));
    expect(writtenAtFirst).toBeLessThan(total);
    // Backpressure: while the consumer paused, the server could not write the rest.
    expect(writtenAfterPause).toBeLessThan(total / 2);
    expect(sim.stats.responsesCompleted).toBe(1);
  }, 60_000);
});

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP dates', () => {
    const now = Date.parse('2024-05-01T10:00:00Z');
    expect(parseRetryAfter('2', now)).toBe(2000);
    expect(parseRetryAfter('Wed, 01 May 2024 10:00:03 GMT', now)).toBe(3000);
    expect(parseRetryAfter('Wed, 01 May 2024 09:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
});
