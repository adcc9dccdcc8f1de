/**
 * The WISEflow simulator's own contract: what it sends (signed FLOW_EXTERNAL_SOURCE calls) and
 * the quirks tests rely on (rate-limit headers, 429, the plain "Unauthorized" of a bad key).
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { WiseflowClient } from '../../src/lib/wiseflow/client';
import {
  dedupKeyOf,
  parseExternalSourceWebhook,
  parseTimestamp,
  signWiseflowBody,
  WISEFLOW_SIGNATURE_DEFAULTS as P,
} from '../../src/lib/wiseflow/webhook';
import { WiseflowSimulator, type WiseflowSimulatorOptions } from '../../src/local/wiseflow-simulator';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

async function simulator(o: WiseflowSimulatorOptions = {}) {
  const sim = await WiseflowSimulator.start(o);
  cleanups.push(() => sim.stop());
  return sim;
}

async function receiver() {
  const calls: { headers: IncomingMessage['headers']; body: Buffer }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      calls.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(202, { 'content-type': 'application/json' }).end('{"accepted":true}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => server.close(() => r())));
  return {
    calls,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/webhooks/external-source`,
  };
}

it('"request update" marks the sources PENDING and sends each subscriber a signed FLOW_EXTERNAL_SOURCE call', async () => {
  const sim = await simulator();
  const { emptyFlowId, classesFlowId } = sim.seedDemo();
  const rx = await receiver();
  const client = new WiseflowClient({
    baseUrl: sim.baseUrl,
    auth: { kind: 'apiKey', apiKey: sim.credentials.apiKey },
  });
  await client.createWebhook({
    secret: 's3cret',
    title: 'sb',
    url: rx.url,
    active: true,
    events: ['FLOW_EXTERNAL_SOURCE'],
  });
  await client.createWebhook({
    secret: 'other',
    title: 'grades',
    url: rx.url,
    active: true,
    events: ['FINAL_GRADE'],
  });

  const first = await sim.requestUpdate(classesFlowId);
  const second = await sim.requestUpdate(emptyFlowId);
  expect(first.deliveries).toEqual([{ webhookId: 1, status: 202, callId: expect.any(String) }]);
  expect(sim.sources(classesFlowId).map((s) => s.state)).toEqual(['PENDING', 'PENDING']);
  expect(rx.calls).toHaveLength(2);

  const call = rx.calls[0]!;
  expect(call.headers[P.header]).toBe(`${P.prefix}${signWiseflowBody(call.body, 's3cret')}`);
  const ts = parseTimestamp(String(call.headers[P.timestampHeader!]), P.timestampFormat)!;
  expect(Math.abs(Date.now() - ts)).toBeLessThan(5_000);
  const parsed = parseExternalSourceWebhook(JSON.parse(call.body.toString('utf8')));
  expect(parsed).toMatchObject({
    flowId: String(classesFlowId),
    flowCode: 'DEMO-CLASSES',
    requestId: first.requestId,
  });
  expect(dedupKeyOf(call.body, call.headers)).toEqual({
    key: `request:${first.requestId}`,
    source: 'requestId',
  });
  expect(rx.calls[1]!.headers[P.callIdHeader]).not.toBe(call.headers[P.callIdHeader]);
  expect(second.requestId).not.toBe(first.requestId);
});

it('signs with other parameters when told to (hex, timestamp.body, ms)', async () => {
  const sim = await simulator({
    signature: { encoding: 'hex', signedContent: 'timestamp.body', timestampFormat: 'unix-ms' },
  });
  const flow = sim.addFlow({ code: 'F' });
  const call = sim.buildWebhookCall(sim.externalSourcePayload(flow), {
    secret: 'k',
    timestampMs: 1_718_900_000_123,
  });
  const p = { ...P, encoding: 'hex' as const, signedContent: 'timestamp.body' as const };
  expect(call.headers[P.timestampHeader!]).toBe('1718900000123');
  expect(call.headers[P.header]).toBe(
    `sha256=${signWiseflowBody(Buffer.from(call.body), 'k', p, '1718900000123')}`,
  );
});

it('refuses http webhook URLs when asked to behave like production', async () => {
  const sim = await simulator({ allowHttpWebhooks: false });
  const client = new WiseflowClient({
    baseUrl: sim.baseUrl,
    auth: { kind: 'apiKey', apiKey: sim.credentials.apiKey },
  });
  await expect(
    client.createWebhook({
      secret: 's',
      title: 't',
      url: 'http://example.com/x',
      active: true,
      events: ['FLOW_EXTERNAL_SOURCE'],
    }),
  ).rejects.toMatchObject({ kind: 'validation', upstreamStatus: 400 });
  await expect(
    client.createWebhook({
      secret: 's',
      title: 't',
      url: 'https://example.com/x',
      active: true,
      events: ['NOPE'],
    }),
  ).rejects.toMatchObject({ kind: 'validation' });
});

it('sends RateLimit-* headers, answers 429 beyond the limit, and "Unauthorized" to a bad key', async () => {
  const sim = await simulator({ rateLimits: { perSecond: 3, perMinute: 100 } });
  const flow = sim.addFlow({ code: 'F' });
  const url = `${sim.baseUrl}/flows/${flow}/external-sources`;
  const headers = { 'x-api-key': sim.credentials.apiKey };
  const answers = [];
  for (let i = 0; i < 4; i++) answers.push(await fetch(url, { headers }));
  expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 429]);
  expect(answers.map((r) => r.headers.get('ratelimit-remaining'))).toEqual(['2', '1', '0', '0']);
  expect(answers[0]!.headers.get('ratelimit-limit')).toBe('3');
  expect(Number(answers[3]!.headers.get('ratelimit-reset'))).toBeGreaterThanOrEqual(1);
  expect(await answers[0]!.json()).toEqual({ success: true, data: [], error: null });

  const bad = await fetch(url, { headers: { 'x-api-key': 'nope' } });
  expect(bad.status).toBe(401);
  expect(await bad.json()).toBe('Unauthorized');
});
