/**
 * The bench helper for webhook acknowledgements (bench/webhook-ack.ts) against the real intake on
 * Azurite: it reports every status and coherent percentiles. No timing is asserted here (the
 * figures belong to `npm run bench`); set WEBHOOK_ACK_BENCH=1 (and WEBHOOK_ACK_CONCURRENCY, default 16) to print them.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { signWebhook } from '../../src/lib/webhooks/signature';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { benchWebhookAck, percentile, poissonGapsMs } from '../../bench/webhook-ack';
import { DEFAULT_SCHEME, pingRoute, webhookEnv } from '../support/webhook-env';

let azurite: SharedAzurite;
beforeAll(async () => {
  azurite = sharedAzurite();
});
afterAll(async () => {});

it('percentile is nearest-rank', () => {
  const v = Array.from({ length: 100 }, (_, i) => i + 1);
  expect([percentile(v, 50), percentile(v, 99), percentile(v, 100), percentile([7], 99)]).toEqual([
    50, 99, 100, 7,
  ]);
});

it('posts signed webhooks at a concurrency and reports statuses and p50/p99', async () => {
  const env = await webhookEnv(azurite.connectionString, [pingRoute('ping')]);
  try {
    const total = process.env.WEBHOOK_ACK_BENCH ? 2000 : 120;
    const tag = Date.now().toString(36);
    const r = await benchWebhookAck(
      `${env.url}/api/webhooks/ping`,
      (i) => {
        // Every 10th request repeats an earlier event (a duplicate), every 20th is forged.
        const id = i % 10 === 9 ? `${tag}-${i - 1}` : `${tag}-${i}`;
        const body = JSON.stringify({ id, kind: 'ping', n: i });
        const headers = signWebhook(DEFAULT_SCHEME, body);
        if (i % 20 === 19) headers['x-signature'] = '0'.repeat(64);
        return { headers: { 'content-type': 'application/json', ...headers }, body };
      },
      { concurrency: Number(process.env.WEBHOOK_ACK_CONCURRENCY ?? 16), total },
    );
    if (process.env.WEBHOOK_ACK_BENCH) console.log('webhook ack', JSON.stringify(r));
    expect(r.statuses).toEqual({ 202: total - total / 20, 401: total / 20 });
    // A refusal's body is kept, so the bench can say why requests were refused.
    expect(Object.keys(r.samples)).toEqual(['401']);
    expect(JSON.parse(r.samples[401]!)).toMatchObject({ error: { code: 'signature_invalid' } });
    expect(r.p50Ms).toBeGreaterThan(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
    expect(r.maxMs).toBeGreaterThanOrEqual(r.p99Ms);
    // One job per distinct event: every 10th request repeats (or forges) its predecessor's id.
    expect((await env.drainJobs()).length).toBe(total - total / 10);
  } finally {
    await env.close();
  }
});

it('open-loop arrivals are seeded exponential gaps with the asked mean', () => {
  const gaps = poissonGapsMs(20, 10_000, 7);
  expect(poissonGapsMs(20, 10_000, 7)).toEqual(gaps);
  expect(poissonGapsMs(20, 10, 8)).not.toEqual(gaps.slice(0, 10));
  const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
  expect(mean).toBeGreaterThan(45);
  expect(mean).toBeLessThan(55);
  expect(Math.min(...gaps)).toBeGreaterThanOrEqual(0);
});

it('open loop: requests arrive at the rate whatever is in flight, and a late send counts against the app', async () => {
  // Each answer takes 100 ms. Sending request 0 stalls for 400 ms (a busy sender): the requests
  // scheduled meanwhile go late, and their latency counts from when they were due.
  let inFlight = 0;
  let maxInFlight = 0;
  const server = http.createServer((req, res) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    req.resume();
    req.on('end', () =>
      setTimeout(() => {
        inFlight--;
        res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
      }, 100),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const r = await benchWebhookAck(
      url,
      async (i) => {
        if (i === 0) await new Promise((res) => setTimeout(res, 400));
        return { headers: { 'content-type': 'application/json' }, body: '{}' };
      },
      { concurrency: 1, rate: 100, total: 20 },
    );
    expect(r.statuses).toEqual({ 202: 20 });
    // Not a closed loop of 1: the requests were in flight together.
    expect(maxInFlight).toBeGreaterThan(5);
    // 20 arrivals at 100/s are due within ~0.2 s (seed 1) but none was sent before 0.4 s.
    expect(r.p50Ms).toBeGreaterThan(300);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
