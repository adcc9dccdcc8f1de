/**
 * The WISEflow API client over real HTTP on loopback, against the WISEflow simulator: auth and
 * token caching, the envelope and typed errors, retries, and the rate limits measured from the
 * simulator's own request log.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '../../src/lib/errors';
import { WiseflowClient, type WiseflowClientOptions } from '../../src/lib/wiseflow/client';
import { RateGate } from '../../src/lib/wiseflow/rate-gate';
import { signWiseflowBody, WISEFLOW_SIGNATURE_DEFAULTS } from '../../src/lib/wiseflow/webhook';
import { WiseflowSimulator, type WiseflowSimulatorOptions } from '../../src/local/wiseflow-simulator';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

async function simulator(o: WiseflowSimulatorOptions = {}): Promise<WiseflowSimulator> {
  const sim = await WiseflowSimulator.start(o);
  cleanups.push(() => sim.stop());
  return sim;
}

function oauthClient(sim: WiseflowSimulator, over: Partial<WiseflowClientOptions> = {}): WiseflowClient {
  const { clientId, clientSecret } = sim.credentials;
  return new WiseflowClient({
    baseUrl: sim.baseUrl,
    auth: { kind: 'oauth', clientId, clientSecret },
    retryBaseDelayMs: 5,
    timeoutMs: 5_000,
    ...over,
  });
}

async function failure(p: Promise<unknown>): Promise<AppError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(AppError);
  return e as AppError;
}

const tokenRequests = (sim: WiseflowSimulator) =>
  sim.requests.filter((r) => r.path === '/v1/oauth2/token').length;
const apiRequests = (sim: WiseflowSimulator) => sim.requests.filter((r) => r.path !== '/v1/oauth2/token');

describe('authentication', () => {
  it('caches the OAuth token and refreshes it before it expires, never using an expired one', async () => {
    let now = 1_700_000_000_000;
    const clock = () => now;
    const sim = await simulator({ tokenLifetimeSeconds: 120, now: clock });
    const flow = sim.addFlow({ code: 'F1' });
    const client = oauthClient(sim, { clock, tokenRefreshSkewMs: 60_000 });

    await client.listSources(flow);
    await client.listSources(flow);
    expect(tokenRequests(sim)).toBe(1);

    now += 59_000; // 61 s before expiry: still fresh
    await client.listSources(flow);
    expect(tokenRequests(sim)).toBe(1);

    now += 2_000; // 59 s before expiry: inside the refresh margin
    await client.listSources(flow);
    expect(tokenRequests(sim)).toBe(2);

    now += 200_000; // long after both tokens expired
    await client.listSources(flow);
    expect(tokenRequests(sim)).toBe(3);
    expect(sim.expiredTokenUses).toBe(0);
    expect(apiRequests(sim).every((r) => r.status === 200)).toBe(true);
  });

  it('refreshes once for many concurrent callers, also across client instances of one credential', async () => {
    let now = 1_700_000_000_000;
    const clock = () => now;
    const sim = await simulator({ tokenLifetimeSeconds: 3599, now: clock });
    const flow = sim.addFlow({ code: 'F1' });
    const clients = [oauthClient(sim, { clock }), oauthClient(sim, { clock }), oauthClient(sim, { clock })];

    await Promise.all(Array.from({ length: 60 }, (_, i) => clients[i % 3]!.listSources(flow)));
    expect(tokenRequests(sim)).toBe(1);

    now += 3_599_000;
    await Promise.all(Array.from({ length: 60 }, (_, i) => clients[i % 3]!.listSources(flow)));
    expect(tokenRequests(sim)).toBe(2);
    expect(sim.expiredTokenUses).toBe(0);
  });

  it('gets a new token once when the API answers 401 to a cached token', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1' });
    const client = oauthClient(sim);
    await client.listSources(flow);
    // The token is revoked on the server side: the sim forgets it.
    (sim as unknown as { tokens: Map<string, unknown> }).tokens.clear();
    await client.listSources(flow);
    expect(tokenRequests(sim)).toBe(2);
  });

  it('uses the x-api-key header without any token request', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1' });
    sim.addSource(flow, 'REF-1');
    const client = new WiseflowClient({
      baseUrl: sim.baseUrl,
      auth: { kind: 'apiKey', apiKey: sim.credentials.apiKey },
    });
    const sources = await client.listSources(flow);
    expect(sources.map((s) => s.reference)).toEqual(['REF-1']);
    expect(tokenRequests(sim)).toBe(0);
    expect(sim.requests[0]!.credential).toBe('key:0');
  });

  it('says which setting to check on refused credentials, without echoing them', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1' });
    const badSecret = 'not-the-secret-0123456789';
    const e1 = await failure(
      new WiseflowClient({
        baseUrl: sim.baseUrl,
        auth: { kind: 'oauth', clientId: sim.credentials.clientId, clientSecret: badSecret },
      }).listSources(flow),
    );
    expect(e1.kind).toBe('configuration');
    expect(e1.message).toContain('WISEFLOW_CLIENT_SECRET');
    expect(JSON.stringify({ m: e1.message, d: e1.details })).not.toContain(badSecret);

    const badKey = 'wrong-key-abcdef0123456789';
    const e2 = await failure(
      new WiseflowClient({ baseUrl: sim.baseUrl, auth: { kind: 'apiKey', apiKey: badKey } }).listSources(
        flow,
      ),
    );
    expect(e2.kind).toBe('configuration');
    expect(e2.message).toContain('WISEFLOW_API_KEY');
    expect(JSON.stringify({ m: e2.message, d: e2.details })).not.toContain(badKey);
  });

  it('refuses a plain-http base URL that is not loopback', () => {
    expect(
      () =>
        new WiseflowClient({
          baseUrl: 'http://europe-api.wiseflow.net/v1',
          auth: { kind: 'apiKey', apiKey: 'k' },
        }),
    ).toThrow(/https/);
  });
});

describe('envelope and typed errors', () => {
  it('parses sources and maps 400/403/404/409 to the error kinds with the API details', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1', participants: [1, 2] });
    const client = oauthClient(sim);

    const created = await client.createSource(flow, { reference: 'CLASS-A', description: 'Class A' });
    expect(created).toMatchObject({ reference: 'CLASS-A', description: 'Class A', state: 'NONE' });
    expect(typeof created.id).toBe('string');
    expect(await client.getSource(flow, created.id)).toMatchObject({ id: created.id, reference: 'CLASS-A' });

    const conflict = await failure(client.createSource(flow, { reference: 'CLASS-A' }));
    expect(conflict).toMatchObject({ kind: 'conflict', code: 'wiseflow_conflict', upstreamStatus: 409 });

    const notFound = await failure(client.listSources(999_999));
    expect(notFound).toMatchObject({ kind: 'permanent', code: 'wiseflow_not_found', upstreamStatus: 404 });
    expect(notFound.details).toMatchObject({
      operation: 'listSources',
      apiCode: 404,
      apiMessage: 'Flow not found',
    });

    const bad = await failure(client.addParticipants(flow, created.id, ['1', '77']));
    expect(bad).toMatchObject({ kind: 'validation', code: 'wiseflow_bad_request', upstreamStatus: 400 });
    expect(bad.details).toMatchObject({ errors: [{ reason: 'PARTICIPANT_NOT_FOUND' }] });

    sim.setArchived(flow, true);
    const forbidden = await failure(client.syncDone(flow, 'CLASS-A'));
    expect(forbidden).toMatchObject({ kind: 'permanent', code: 'wiseflow_forbidden', upstreamStatus: 403 });
    // Reads still work on an archived flow.
    expect((await client.listSources(flow)).length).toBe(1);
  });

  it('validates references and ids before sending anything', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1' });
    const client = oauthClient(sim);
    await expect(client.createSource(flow, { reference: 'has.dot' })).rejects.toMatchObject({
      kind: 'validation',
    });
    await expect(client.addParticipants(flow, '1', ['x1'])).rejects.toMatchObject({ kind: 'validation' });
    await expect(client.syncDone(flow, 'bad ref')).rejects.toMatchObject({ kind: 'validation' });
    expect(apiRequests(sim)).toHaveLength(0);
  });

  it('sends sync/done and sync/fail by reference, URL-encoded (the wide reference set)', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1' });
    sim.addSource(flow, 'A|B:c.d');
    const client = oauthClient(sim);
    await client.syncDone(flow, 'A|B:c.d');
    await client.syncFail(flow, 'A|B:c.d');
    expect(sim.syncCalls.map((c) => [c.reference, c.kind, c.status])).toEqual([
      ['A|B:c.d', 'done', 200],
      ['A|B:c.d', 'fail', 200],
    ]);
    expect(sim.sources(flow)[0]!.state).toBe('FAILED');
  });
});

describe('retries', () => {
  it('retries 5xx on idempotent calls and gives up with a transient error', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1' });
    const client = oauthClient(sim, { maxRetries: 2 });
    await client.listSources(flow); // token first
    const before = apiRequests(sim).length;

    sim.faults.failNext(2, 503);
    await client.listSources(flow);
    expect(apiRequests(sim).length - before).toBe(3);

    sim.faults.failNext(10, 500);
    const e = await failure(client.listSources(flow));
    expect(e).toMatchObject({ kind: 'transient', code: 'wiseflow_unavailable', upstreamStatus: 500 });
    expect(apiRequests(sim).length - before).toBe(3 + 3);
  });

  it('does not repeat a non-idempotent call that may have reached the server', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1', participants: [1] });
    const src = sim.addSource(flow, 'REF');
    const client = oauthClient(sim, { maxRetries: 3 });
    await client.listSources(flow);
    sim.faults.failNext(1, 502);
    const e = await failure(client.addParticipants(flow, src, ['1']));
    expect(e.kind).toBe('transient');
    expect(sim.requests.filter((r) => r.path.endsWith('/allocations/participants'))).toHaveLength(1);
  });

  it('retries a request that hangs, after the timeout', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1' });
    const client = oauthClient(sim, { timeoutMs: 300 });
    await client.listSources(flow);
    sim.faults.hangNext(1);
    const t0 = Date.now();
    expect(await client.listSources(flow)).toEqual([]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });
});

describe('rate limits', () => {
  it('honours RateLimit-Reset after a 429: the next request waits at least that long', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1' });
    const client = new WiseflowClient({
      baseUrl: sim.baseUrl,
      auth: { kind: 'apiKey', apiKey: sim.credentials.apiKey },
    });
    sim.faults.rateLimitStorm(2, 1);
    await client.listSources(flow);
    const log = sim.requests;
    expect(log.map((r) => r.status)).toEqual([429, 429, 200]);
    for (let i = 1; i < log.length; i++) expect(log[i]!.at - log[i - 1]!.at).toBeGreaterThanOrEqual(1000);
  });

  it('honours Retry-After when the server sends it', async () => {
    const sim = await simulator({ retryAfterHeader: true });
    const flow = sim.addFlow({ code: 'F1' });
    const client = new WiseflowClient({
      baseUrl: sim.baseUrl,
      auth: { kind: 'apiKey', apiKey: sim.credentials.apiKey },
    });
    sim.faults.rateLimitStorm(1, 1);
    await client.listSources(flow);
    expect(sim.requests[1]!.at - sim.requests[0]!.at).toBeGreaterThanOrEqual(1000);
  });

  it('gives up with a transient error when the server asks to wait longer than maxWaitMs', async () => {
    const sim = await simulator();
    const flow = sim.addFlow({ code: 'F1' });
    const client = new WiseflowClient({
      baseUrl: sim.baseUrl,
      auth: { kind: 'apiKey', apiKey: sim.credentials.apiKey },
      maxWaitMs: 5_000,
    });
    sim.faults.rateLimitStorm(1, 30);
    const e = await failure(client.listSources(flow));
    expect(e).toMatchObject({ kind: 'transient', code: 'wiseflow_rate_limited', upstreamStatus: 429 });
    expect((e as AppError & { retryAfterMs?: number }).retryAfterMs).toBe(30_000);
  });

  it('a 429 storm under parallel load completes without exceeding the limits', async () => {
    const limits = { perSecond: 20, perMinute: 1000 };
    const sim = await simulator({ rateLimits: limits });
    const flow = sim.addFlow({ code: 'F1' });
    const client = oauthClient(sim, { rateLimits: limits });
    await client.listSources(flow); // the token and one call
    sim.faults.rateLimitStorm(15, 1);
    const t0 = Date.now();
    const results = await Promise.all(Array.from({ length: 40 }, () => client.listSources(flow)));
    expect(results).toHaveLength(40);
    expect(sim.requests.filter((r) => r.status === 429).length).toBe(15);
    expect(sim.requests.filter((r) => r.status === 200).length).toBe(2 + 40);
    // The storm paused everyone at least once for RateLimit-Reset.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    expect(sim.maxRequestsInWindow(1000)).toBeLessThanOrEqual(limits.perSecond);
  });

  it('many parallel calls through several client instances never exceed 200 requests/s', async () => {
    const sim = await simulator(); // WISEflow's limits: 200/s, 5,000/min
    const flow = sim.addFlow({ code: 'F1' });
    const clients = Array.from({ length: 5 }, () => oauthClient(sim));
    const calls = Array.from({ length: 500 }, (_, i) => clients[i % clients.length]!.listSources(flow));
    await Promise.all(calls);
    expect(sim.requests.filter((r) => r.status === 429)).toHaveLength(0);
    expect(sim.maxRequestsInWindow(1000)).toBeLessThanOrEqual(200);
    // The gate did make the calls wait: 501 requests cannot fit in two seconds.
    const span = sim.requests.at(-1)!.at - sim.requests[0]!.at;
    expect(span).toBeGreaterThanOrEqual(2000);
  });

  it('adapts to a lower limit the server reports (another instance uses the same credential)', async () => {
    const sim = await simulator({ rateLimits: { perSecond: 25, perMinute: 5000 } });
    const flow = sim.addFlow({ code: 'F1' });
    const client = new WiseflowClient({
      baseUrl: sim.baseUrl,
      auth: { kind: 'apiKey', apiKey: sim.credentials.apiKey },
    });
    const results = await Promise.all(Array.from({ length: 60 }, () => client.listSources(flow)));
    expect(results).toHaveLength(60);
    // Without feedback, 60 parallel calls at 200/s would hammer on; with it the client pauses.
    expect(sim.requests.filter((r) => r.status === 429).length).toBeLessThan(60);
  });

  it('the gate holds every window at once, counted from each response', async () => {
    const gate = new RateGate([
      { limit: 4, windowMs: 200 },
      { limit: 6, windowMs: 1000 },
    ]);
    const starts: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        const release = await gate.acquire();
        starts.push(Date.now());
        await new Promise((r) => setTimeout(r, 5));
        release();
      }),
    );
    starts.sort((a, b) => a - b);
    const maxIn = (w: number) => {
      let max = 0;
      for (let i = 0; i < starts.length; i++)
        max = Math.max(max, starts.filter((t) => t >= starts[i]! && t < starts[i]! + w).length);
      return max;
    };
    expect(maxIn(200)).toBeLessThanOrEqual(4);
    expect(maxIn(1000)).toBeLessThanOrEqual(6);
    expect(starts.at(-1)! - starts[0]!).toBeGreaterThanOrEqual(1000);
  });
});

describe('webhooks management', () => {
  it('creates, lists, updates, tests and deletes webhooks; the test event arrives signed', async () => {
    const received: { headers: IncomingMessage['headers']; body: Buffer }[] = [];
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(202).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => receiver.close(() => r())));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/api/webhooks/external-source`;

    const sim = await simulator({ maxWebhooks: 1 });
    const client = oauthClient(sim);
    const secret = 'webhook-secret-123';
    const w = await client.createWebhook({
      secret,
      title: 'syncbridge',
      url,
      active: true,
      events: ['FLOW_EXTERNAL_SOURCE'],
    });
    expect(w).toMatchObject({ title: 'syncbridge', url, active: true, events: ['FLOW_EXTERNAL_SOURCE'] });
    expect(JSON.stringify(w)).not.toContain(secret);
    expect(await client.listWebhooks()).toHaveLength(1);

    const over = await failure(
      client.createWebhook({ secret, title: 'second', url, active: true, events: ['FLOW_EXTERNAL_SOURCE'] }),
    );
    expect(over).toMatchObject({ kind: 'validation', upstreamStatus: 400 });

    const updated = await client.updateWebhook(w.id, {
      title: 'renamed',
      url,
      active: false,
      events: ['FLOW_EXTERNAL_SOURCE'],
    });
    expect(updated).toMatchObject({ title: 'renamed', active: false });
    expect(await client.getWebhook(w.id)).toMatchObject({ title: 'renamed' });

    await client.testWebhook(w.id);
    for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(received).toHaveLength(1);
    const sig = String(received[0]!.headers[WISEFLOW_SIGNATURE_DEFAULTS.header]);
    expect(sig).toBe(`sha256=${signWiseflowBody(received[0]!.body, secret)}`);

    await client.deleteWebhook(w.id);
    expect(await client.listWebhooks()).toHaveLength(0);
    await expect(client.getWebhook(w.id)).rejects.toMatchObject({ code: 'wiseflow_not_found' });
  });
});
