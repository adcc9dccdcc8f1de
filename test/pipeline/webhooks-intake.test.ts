/**
 * The shared webhook intake end to end: a real HTTP server on loopback (raw bytes), the Table
 * store and a StorageQueueTransport on Azurite, and a worker that claims from the same store.
 */
import net from 'node:net';
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedCrash } from '../../src/lib/faults';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { StorageQueueTransport } from '../../src/lib/transport/storage-queue-transport';
import type { WebhookFaultPoint } from '../../src/lib/webhooks/intake';
import { createWebhookIntake } from '../../src/lib/webhooks/intake';
import { signWebhook, type SignatureScheme } from '../../src/lib/webhooks/signature';
import { WebhookStore } from '../../src/lib/webhooks/store';
import { send, startWebhookServer, type Answer } from '../support/webhook-http';
import {
  DEFAULT_SCHEME,
  OLD_SECRET,
  SECRET,
  pingRoute,
  runWorker,
  webhookEnv,
  type WebhookEnv,
} from '../support/webhook-env';

let azurite: SharedAzurite;
const envs: WebhookEnv[] = [];
beforeAll(async () => {
  azurite = sharedAzurite();
});
afterEach(async () => {
  await Promise.all(envs.splice(0).map((e) => e.close()));
});
afterAll(async () => {});

async function env(...args: Parameters<typeof webhookEnv> extends [unknown, ...infer R] ? R : never) {
  const e = await webhookEnv(azurite.connectionString, ...args);
  envs.push(e);
  return e;
}

function signed(
  payload: unknown,
  o: { scheme?: SignatureScheme; nowMs?: number; secretIndex?: number } = {},
) {
  const body = Buffer.from(JSON.stringify(payload), 'utf8');
  const headers: Array<[string, string]> = [
    ['content-type', 'application/json'],
    ...Object.entries(
      signWebhook(o.scheme ?? DEFAULT_SCHEME, body, { nowMs: o.nowMs, secretIndex: o.secretIndex }),
    ),
  ];
  return { headers, body };
}

const ping = (id: string, extra: Record<string, unknown> = {}) => ({ id, kind: 'ping', n: 1, ...extra });
const answer = (a: Answer | { error: string }): Answer => {
  if ('error' in a) throw new Error(`no answer: ${a.error}`);
  return a;
};
const post = async (
  e: WebhookEnv,
  route: string,
  r: { headers: Array<[string, string]>; body: Uint8Array | AsyncIterable<Uint8Array> },
) => answer(await send(`${e.url}/api/webhooks/${route}`, r));

describe('webhook intake: accepted requests', () => {
  it('answers 202 with the event id, enqueues exactly one job, and keeps the job exact with the marker', async () => {
    const e = await env([pingRoute('ping')]);
    const big = '{"id":"evt-1","kind":"ping","n":7,"seq":9007199254740993,"extra":{"kept":true}}';
    const body = Buffer.from(big);
    const r = await post(e, 'ping', {
      headers: [
        ['content-type', 'application/json; charset=utf-8'],
        ...Object.entries(signWebhook(DEFAULT_SCHEME, body)),
      ],
      body,
    });
    expect(r.status).toBe(202);
    expect(r.json).toEqual({ accepted: true, eventId: 'evt-1', duplicate: false });
    const jobs = await e.drainJobs();
    expect(jobs).toEqual([{ type: 'webhook-job', v: 1, route: 'ping', eventId: 'evt-1', jobKind: 'ping' }]);
    expect((await e.store.get(jobs[0]!))?.state).toBe('enqueued');
    const claim = await e.store.claim(jobs[0]!);
    expect(claim.status).toBe('claimed');
    // The job is the validated payload, unknown fields kept, the big integer exact (as decimal text).
    if (claim.status === 'claimed')
      expect(claim.job).toEqual({
        kind: 'ping',
        body: { id: 'evt-1', kind: 'ping', n: 7, seq: '9007199254740993', extra: { kept: true } },
      });
    expect(e.server.results.map((x) => [x.outcome, x.reason])).toEqual([['accepted', undefined]]);
  });

  it("puts the request's trace context in the job message, so the job joins its trace", async () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const e = await env([pingRoute('ping')], { traceparent: () => traceparent });
    expect((await post(e, 'ping', signed(ping('traced')))).status).toBe(202);
    expect(await e.drainJobs()).toEqual([expect.objectContaining({ eventId: 'traced', traceparent })]);
  });

  it('accepts a signature made with the previous secret during a rotation', async () => {
    const e = await env([pingRoute('ping')]);
    const r = await post(e, 'ping', signed(ping('rotated'), { secretIndex: 1 }));
    expect(r.status).toBe(202);
    expect(OLD_SECRET).not.toBe(SECRET);
  });

  it('processes a replayed request once: every replay answers 202 duplicate and enqueues nothing', async () => {
    const e = await env([pingRoute('ping')]);
    const req = signed(ping('replayed'));
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await post(e, 'ping', req));
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202, 202]);
    expect(answers.map((a) => (a.json as { duplicate: boolean }).duplicate)).toEqual([
      false,
      true,
      true,
      true,
      true,
    ]);
    const jobs = await e.drainJobs();
    expect(jobs).toHaveLength(1);
    const processed = new Map<string, number>();
    expect(await runWorker(e.store, [...jobs, ...jobs], processed)).toContain('claimed');
    expect(processed).toEqual(new Map([['ping/replayed', 1]]));
    // After processing, a replay still changes nothing.
    expect((await post(e, 'ping', req)).json).toMatchObject({ duplicate: true });
    expect(await e.messageCount()).toBe(0);
    expect(e.server.results.slice(1).map((x) => `${x.outcome}:${x.reason}`)).toEqual([
      'duplicate:enqueued',
      'duplicate:enqueued',
      'duplicate:enqueued',
      'duplicate:enqueued',
      'duplicate:done',
    ]);
  });

  it('treats an event that shares another key (an alias) with a known one as its duplicate', async () => {
    const e = await env([pingRoute('ping')]);
    expect((await post(e, 'ping', signed(ping('first', { seq: 42 })))).json).toMatchObject({
      duplicate: false,
    });
    expect((await post(e, 'ping', signed(ping('second', { seq: 42 })))).json).toEqual({
      accepted: true,
      eventId: 'second',
      duplicate: true,
    });
    expect((await post(e, 'ping', signed(ping('third', { seq: 43 })))).json).toMatchObject({
      duplicate: false,
    });
    expect((await e.drainJobs()).map((j) => j.eventId).sort()).toEqual(['first', 'third']);
    expect(await e.store.get({ route: 'ping', eventId: 'second' })).toBeUndefined();
  });

  it('answers an ignored request 202 and stores nothing (before and after validation)', async () => {
    const e = await env([pingRoute('ping')]);
    const probe = await post(e, 'ping', signed({ probe: true }));
    const pong = await post(e, 'ping', signed(ping('p1', { kind: 'pong' })));
    expect([probe.status, pong.status]).toEqual([202, 202]);
    expect(probe.json).toEqual({ accepted: true, ignored: true, reason: 'activation_test' });
    expect(pong.json).toEqual({ accepted: true, ignored: true, reason: 'not_allowed' });
    expect(e.server.results.map((r) => r.outcome)).toEqual(['ignored', 'ignored']);
    expect(await e.entityCount()).toBe(0);
    expect(await e.messageCount()).toBe(0);
  });
});

describe('webhook intake: refusals store nothing', () => {
  it('413 for a body over the cap, without reading it all: an endless body is cut off', async () => {
    const e = await env([pingRoute('ping')], { maxBodyBytes: 64 * 1024 });
    let pulled = 0;
    const counted = createWebhookIntake(pingRoute('ping'), {
      store: e.store,
      transport: e.transport,
      maxBodyBytes: 64 * 1024,
    });
    const server = await startWebhookServer({
      ping: (req) =>
        counted.handle({
          ...req,
          body: (async function* () {
            for await (const c of req.body as AsyncIterable<Buffer>) {
              pulled += c.length;
              yield c;
            }
          })(),
        }),
    });
    let sent = 0;
    async function* endless() {
      for (;;) {
        sent += 16 * 1024;
        yield Buffer.alloc(16 * 1024, 0x20);
      }
    }
    try {
      const r = answer(
        await send(`${server.url}/api/webhooks/ping`, {
          headers: [['content-type', 'application/json']],
          body: endless(),
        }),
      );
      expect(r.status).toBe(413);
      expect(r.headers.connection).toBe('close');
      expect(r.json).toEqual({
        error: {
          code: 'payload_too_large',
          message: 'The body is larger than 65536 bytes.',
          details: { maxBytes: 65536 },
        },
      });
      expect(pulled).toBeLessThanOrEqual(64 * 1024 + 64 * 1024);
      expect(sent).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
    expect(await e.entityCount()).toBe(0);
  });

  it('413 at once for a declared Content-Length over the cap, before any body byte arrives', async () => {
    const e = await env([pingRoute('ping')], { maxBodyBytes: 1024 });
    const port = Number(new URL(e.url).port);
    const text = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.write(
          'POST /api/webhooks/ping HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n',
        );
      });
      let data = '';
      socket.on('data', (d) => {
        data += d.toString();
        if (data.includes('}}')) {
          socket.destroy();
          resolve(data);
        }
      });
      socket.on('error', reject);
      setTimeout(() => reject(new Error('no answer within 5 s')), 5000).unref();
    });
    expect(text).toMatch(/^HTTP\/1\.1 413/);
    expect(text).toContain('"code":"payload_too_large"');
    expect(await e.entityCount()).toBe(0);
  });

  it('415 for anything but application/json in UTF-8', async () => {
    const e = await env([pingRoute('ping')]);
    const { body, headers } = signed(ping('ct'));
    const sig = headers.filter(([k]) => k !== 'content-type');
    for (const ct of [
      'text/plain',
      'application/xml',
      'application/json; charset=iso-8859-1',
      'application/x-www-form-urlencoded',
      undefined,
    ]) {
      const r = await post(e, 'ping', { headers: ct ? [['content-type', ct], ...sig] : sig, body });
      expect(r.status, String(ct)).toBe(415);
      expect((r.json as { error: { code: string } }).error.code).toBe('unsupported_media_type');
    }
    const gzip = await post(e, 'ping', { headers: [...headers, ['content-encoding', 'gzip']], body });
    expect([gzip.status, (gzip.json as { error: { code: string } }).error.code]).toEqual([
      415,
      'unsupported_media_type',
    ]);
    const twice = await post(e, 'ping', {
      headers: [['content-type', 'application/json'], ['content-type', 'application/json'], ...sig],
      body,
    });
    expect(twice.status).toBe(415);
    expect(await e.entityCount()).toBe(0);
    expect(await e.messageCount()).toBe(0);
  });

  it('401 for every forgery and replay outside the window, over thousands of generated cases; nothing stored or enqueued', async () => {
    const schemes: Record<string, SignatureScheme> = {
      'signed-ts': DEFAULT_SCHEME,
      'body-only': {
        kind: 'hmac',
        secrets: [SECRET],
        encoding: 'base64',
        header: 'x-wiseflow-signature',
        timestamp: { from: 'header', header: 'x-wiseflow-timestamp' },
        timestampFormat: 'unix-seconds',
      },
      'body-ts': {
        kind: 'hmac',
        secrets: [SECRET, OLD_SECRET],
        encoding: 'base64url',
        timestamp: { from: 'body', field: 'sentAt' },
        toleranceSeconds: 120,
      },
    };
    const e = await env(Object.entries(schemes).map(([name, s]) => pingRoute(name, s)));
    const counts: Record<string, number> = {};
    const forgery = fc.record({
      route: fc.constantFrom(...Object.keys(schemes)),
      id: fc.uuid(),
      n: fc.integer(),
      how: fc.constantFrom(
        'wrong-secret',
        'flip-bit',
        'insert-byte',
        'delete-byte',
        'stale',
        'future',
        'other-timestamp',
        'no-signature',
        'reformatted',
      ),
      at: fc.nat(),
      bit: fc.nat({ max: 7 }),
      offS: fc.integer({ min: 1, max: 30 * 86_400 }),
    });
    await fc.assert(
      fc.asyncProperty(forgery, async (f) => {
        const scheme = schemes[f.route]!;
        const tol = (scheme.kind === 'hmac' ? (scheme.toleranceSeconds ?? 300) : 0) * 1000;
        const now = Date.now();
        const sentAt =
          f.how === 'stale'
            ? now - tol - f.offS * 1000
            : f.how === 'future'
              ? now + tol + f.offS * 1000
              : now;
        const payload = { id: f.id, kind: 'ping', n: f.n, sentAt: Math.floor(sentAt / 1000) };
        const body = Buffer.from(JSON.stringify(payload));
        let sent = body;
        let headers = signWebhook(scheme, body, { nowMs: sentAt });
        if (f.how === 'wrong-secret')
          headers = signWebhook(
            { ...scheme, secrets: ['attacker-guess-000000000'] } as SignatureScheme,
            body,
            { nowMs: sentAt },
          );
        if (f.how === 'flip-bit') {
          sent = Buffer.from(body);
          sent[f.at % sent.length]! ^= 1 << f.bit;
        }
        if (f.how === 'insert-byte')
          sent = Buffer.concat([
            body.subarray(0, f.at % body.length),
            Buffer.from(' '),
            body.subarray(f.at % body.length),
          ]);
        if (f.how === 'delete-byte')
          sent = Buffer.concat([
            body.subarray(0, f.at % body.length),
            body.subarray((f.at % body.length) + 1),
          ]);
        if (f.how === 'reformatted') sent = Buffer.from(JSON.stringify(payload, null, 1)); // same JSON, other bytes
        if (f.how === 'no-signature')
          for (const k of Object.keys(headers)) if (k.includes('signature')) delete headers[k];
        if (f.how === 'other-timestamp') {
          if (f.route === 'signed-ts')
            headers['x-timestamp'] = String(Number(headers['x-timestamp']) - 1 - (f.offS % 60));
          // body-only signs the body alone: its header timestamp is NOT authenticated, so moving it
          // within the window is undetectable; moving it out is refused.
          else if (f.route === 'body-only')
            headers['x-wiseflow-timestamp'] = String(Math.floor(now / 1000) - 301 - f.offS);
          else sent = Buffer.from(JSON.stringify({ ...payload, sentAt: payload.sentAt - 1 }));
        }
        const r = await post(e, f.route, {
          headers: [['content-type', 'application/json'], ...Object.entries(headers)],
          body: sent,
        });
        const code = (r.json as { error?: { code?: string } }).error?.code ?? 'none';
        counts[code] = (counts[code] ?? 0) + 1;
        expect(r.status, `${f.route} ${f.how}`).toBe(401);
        expect(code).toMatch(/^(signature_invalid|signature_missing|timestamp_out_of_tolerance)$/);
        expect(r.text).not.toContain(SECRET);
      }),
      { numRuns: 3000 },
    );
    console.log(`forgeries refused, by code: ${JSON.stringify(counts)}`);
    expect(await e.entityCount()).toBe(0);
    expect(await e.messageCount()).toBe(0);
    expect(e.log.text()).not.toContain(SECRET);
  });

  it('400 with bounded details that never echo the payload; 400 for invalid JSON, nesting and UTF-8', async () => {
    const e = await env([pingRoute('ping')]);
    const huge = 'Z'.repeat(20_000);
    const wrong = await post(
      e,
      'ping',
      signed({ id: 12, kind: 'nope', n: huge, [huge]: 1, tags: Array.from({ length: 100 }, () => 5) }),
    );
    expect(wrong.status).toBe(400);
    const err = (
      wrong.json as {
        error: { code: string; details: { issues: { path: string; message: string }[]; more?: number } };
      }
    ).error;
    expect(err.code).toBe('invalid_payload');
    expect(err.details.issues.length).toBeLessThanOrEqual(20);
    expect(err.details.issues.map((i) => i.path)).toEqual(
      expect.arrayContaining(['id', 'kind', 'n', 'tags']),
    );
    expect(wrong.text.length).toBeLessThan(4000);
    expect(wrong.text).not.toContain('ZZZZZZZZZZ');

    const cases: [Buffer, string][] = [
      [Buffer.from('{"id":"x",'), 'invalid_json'],
      [Buffer.from('['.repeat(100) + ']'.repeat(100)), 'too_deeply_nested'],
      [Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), 'invalid_encoding'],
    ];
    for (const [body, code] of cases) {
      const r = await post(e, 'ping', {
        headers: [['content-type', 'application/json'], ...Object.entries(signWebhook(DEFAULT_SCHEME, body))],
        body,
      });
      expect([r.status, (r.json as { error: { code: string } }).error.code]).toEqual([400, code]);
    }
    expect(await e.entityCount()).toBe(0);
    expect(await e.messageCount()).toBe(0);
  });

  it('405 for another method', async () => {
    const e = await env([pingRoute('ping')]);
    const r = answer(await send(`${e.url}/api/webhooks/ping`, { method: 'PUT', ...signed(ping('m')) }));
    expect([r.status, r.headers.allow]).toEqual([405, 'POST']);
  });
});

describe('webhook intake: never loses, never doubles', () => {
  const points: WebhookFaultPoint[] = ['webhook.reserved', 'webhook.sent', 'webhook.flagged'];

  it.each(points)(
    'a crash at %s, then the sender retries: exactly one job reaches the worker',
    async (point) => {
      let crash: WebhookFaultPoint | undefined = point;
      const faults = {
        at: async (p: WebhookFaultPoint) => {
          if (p === crash) {
            crash = undefined;
            throw new SimulatedCrash(p);
          }
        },
      };
      const e = await env([pingRoute('ping')], { faults, pendingWaitMs: 200 });
      const req = signed(ping(`crash-${point}`));
      const first = await send(`${e.url}/api/webhooks/ping`, req);
      expect(first).toHaveProperty('error'); // the process "died": no answer
      const retry = await post(e, 'ping', req);
      expect(retry.status).toBe(202);
      const jobs = await e.drainJobs();
      // Storage queues have no duplicate detection: a crash after the send leaves two copies.
      expect(jobs.length).toBe(point === 'webhook.sent' ? 2 : 1);
      const processed = new Map<string, number>();
      const statuses = await runWorker(e.store, [...jobs, ...jobs], processed);
      expect(statuses.filter((s) => s === 'claimed')).toHaveLength(1);
      expect(processed).toEqual(new Map([[`ping/crash-${point}`, 1]]));
      expect(e.server.results.map((r) => `${r.outcome}:${r.reason}`)).toEqual([
        point === 'webhook.flagged' ? 'duplicate:enqueued' : 'duplicate:resent',
      ]);
    },
  );

  it('a process that dies right after the 202 loses nothing: a new worker finds the job', async () => {
    const e = await env([pingRoute('ping')]);
    expect((await post(e, 'ping', signed(ping('after-202')))).status).toBe(202);
    await e.server.close(); // the intake's process is gone
    const store = new WebhookStore(e.table);
    const processed = new Map<string, number>();
    await runWorker(store, await e.drainJobs(), processed);
    expect(processed).toEqual(new Map([['ping/after-202', 1]]));
  });

  it('a pending event whose sender never retries is re-sent by redispatchPending', async () => {
    let armed = true;
    const faults = {
      at: async (p: WebhookFaultPoint) => {
        if (p === 'webhook.reserved' && armed) {
          armed = false;
          throw new SimulatedCrash(p);
        }
      },
    };
    const e = await env([pingRoute('ping')], { faults });
    await send(`${e.url}/api/webhooks/ping`, signed(ping('orphan')));
    expect((await e.store.get({ route: 'ping', eventId: 'orphan' }))?.state).toBe('pending');
    expect(await e.intakes.ping!.redispatchPending(60_000)).toBe(0); // not old enough yet
    expect(await e.intakes.ping!.redispatchPending(0)).toBe(1);
    expect((await e.store.get({ route: 'ping', eventId: 'orphan' }))?.state).toBe('enqueued');
    expect((await e.drainJobs()).map((j) => j.eventId)).toEqual(['orphan']);
  });

  it('200 concurrent valid posts: all 202, each enqueued once and processed once', async () => {
    const e = await env([pingRoute('ping')]);
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) => post(e, 'ping', signed(ping(`c-${i}`, { seq: i })))),
    );
    expect(answers.filter((a) => a.status === 202)).toHaveLength(200);
    expect(answers.every((a) => (a.json as { duplicate: boolean }).duplicate === false)).toBe(true);
    const jobs = await e.drainJobs();
    expect(jobs).toHaveLength(200);
    expect(new Set(jobs.map((j) => j.eventId)).size).toBe(200);
    const processed = new Map<string, number>();
    await runWorker(e.store, jobs, processed);
    expect(processed.size).toBe(200);
    expect([...processed.values()].every((n) => n === 1)).toBe(true);
  });

  it('concurrent duplicates of one event: all 202, one job message, processed once', async () => {
    const e = await env([pingRoute('ping')], { pendingWaitMs: 5000 });
    const req = signed(ping('same'));
    const answers = await Promise.all(Array.from({ length: 30 }, () => post(e, 'ping', req)));
    expect(answers.every((a) => a.status === 202)).toBe(true);
    expect(answers.filter((a) => (a.json as { duplicate: boolean }).duplicate === false)).toHaveLength(1);
    const jobs = await e.drainJobs();
    expect(jobs).toHaveLength(1);
    const processed = new Map<string, number>();
    await runWorker(e.store, [...jobs, ...jobs, ...jobs], processed);
    expect(processed).toEqual(new Map([['ping/same', 1]]));
  });

  it('the worker claim is a lease: busy while held, released on a transient failure, taken over after it ends', async () => {
    const e = await env([pingRoute('ping')]);
    await post(e, 'ping', signed(ping('lease')));
    const [job] = await e.drainJobs();
    const a = await e.store.claim(job!, { leaseMs: 60_000 });
    expect(a).toMatchObject({ status: 'claimed', attempt: 1 });
    expect(await e.store.claim(job!)).toMatchObject({ status: 'busy' });
    if (a.status === 'claimed') await e.store.release(job!, a.token);
    const b = await e.store.claim(job!, { leaseMs: 50 });
    expect(b).toMatchObject({ status: 'claimed', attempt: 2 });
    await new Promise((r) => setTimeout(r, 120)); // the worker "died"; its lease runs out
    expect(await e.store.claim(job!)).toMatchObject({ status: 'claimed', attempt: 3 });
    await e.store.complete(job!, { outcome: 'failed', reason: 'flow archived (403)' });
    expect(await e.store.claim(job!)).toMatchObject({
      status: 'done',
      marker: { state: 'failed', reason: 'flow archived (403)' },
    });
    expect(await e.store.claim({ route: 'ping', eventId: 'never-seen' })).toEqual({ status: 'unknown' });
  });

  it('purges finished markers with their aliases; a later copy is then new (keep markers longer than senders retry)', async () => {
    const e = await env([pingRoute('ping')]);
    const req = signed(ping('old', { seq: 77 }));
    await post(e, 'ping', req);
    await post(e, 'ping', signed(ping('open')));
    const jobs = await e.drainJobs();
    await e.store.complete(jobs.find((j) => j.eventId === 'old')!);
    expect(await e.store.purge('ping', Date.now() - 60_000)).toBe(0); // not old enough
    expect(await e.store.purge('ping', Date.now() + 1)).toBe(1); // 'open' is not finished: kept
    expect(await e.entityCount()).toBe(1);
    expect((await post(e, 'ping', req)).json).toMatchObject({ duplicate: false });
  });

  it('503 when the store is down and when the queue is down; nothing acknowledged, and the retry succeeds', async () => {
    const good = await env([pingRoute('ping')]);
    const deadCs = good.table.url.replace(/:\d+\//, ':1/'); // nothing listens on port 1
    const deadTable = new TableClient(deadCs.replace(/\/[^/]+$/, ''), 'x', {
      allowInsecureConnection: true,
      retryOptions: { maxRetries: 0 },
    });
    const deadStore = createWebhookIntake(pingRoute('ping'), {
      store: new WebhookStore(deadTable, { requestTimeoutMs: 2000 }),
      transport: good.transport,
    });
    const deadQueue = new StorageQueueTransport(
      QueueServiceClient.fromConnectionString(
        azurite.connectionString.replace(/(QueueEndpoint=http:\/\/[^:]+):\d+/, '$1:1'),
        { retryOptions: { maxTries: 1 } },
      ),
      { jobs: 'jobs' },
    );
    const queueDown = createWebhookIntake(pingRoute('ping'), { store: good.store, transport: deadQueue });
    const server = await startWebhookServer({ a: (r) => deadStore.handle(r), b: (r) => queueDown.handle(r) });
    try {
      const req = signed(ping('outage'));
      const a = answer(await send(`${server.url}/api/webhooks/a`, req));
      expect([a.status, (a.json as { error: { code: string } }).error.code]).toEqual([
        503,
        'storage_unavailable',
      ]);
      const b = answer(await send(`${server.url}/api/webhooks/b`, req));
      expect([b.status, (b.json as { error: { code: string } }).error.code]).toEqual([
        503,
        'queue_unavailable',
      ]);
      expect(server.results.map((r) => r.outcome)).toEqual(['failed', 'failed']);
      expect(await good.messageCount()).toBe(0);
      // The queue is back: the sender's retry sends the pending event's job.
      const retry = await post(good, 'ping', req);
      expect(retry.status).toBe(202);
      expect((await good.drainJobs()).map((j) => j.eventId)).toEqual(['outage']);
    } finally {
      await server.close();
    }
  });

  it('logs no secret, signature or payload', async () => {
    const e = await env([pingRoute('ping')]);
    const marker = 'PAYLOAD-CONTENT-MUST-NOT-BE-LOGGED';
    const ok = signed(ping('logged', { note: marker }));
    await post(e, 'ping', ok);
    await post(e, 'ping', {
      ...ok,
      body: Buffer.from(JSON.stringify(ping('logged', { note: marker + '!' }))),
    });
    await post(e, 'ping', signed({ id: 5, note: marker }));
    const text = e.log.text();
    expect(e.log.lines.length).toBeGreaterThanOrEqual(3);
    for (const secretish of [
      SECRET,
      OLD_SECRET,
      marker,
      ...ok.headers.map(([, v]) => v).filter((v) => v.length > 30),
    ])
      expect(text).not.toContain(secretish);
    expect(text).toContain('logged'); // ids are fine
  });
});

describe('webhook store: names', () => {
  it('keeps event ids of any text apart, long ones by digest', async () => {
    const e = await env([pingRoute('ping')]);
    const ids = [
      'a/b',
      'a%2fb',
      'a#b?c\\d',
      'x'.repeat(256),
      'x'.repeat(255) + 'y',
      'ünï©ødé 😀',
      '\u0001ctl',
    ];
    for (const id of ids)
      expect((await post(e, 'ping', signed(ping(id)))).json).toMatchObject({ eventId: id, duplicate: false });
    expect((await e.drainJobs()).map((j) => j.eventId).sort()).toEqual([...ids].sort());
    for (const id of ids) expect((await e.store.get({ route: 'ping', eventId: id }))?.eventId).toBe(id);
    const body = Buffer.from('{"id":"\\ud800","kind":"ping","n":1}'); // a lone surrogate: not storable text
    const lone = await post(e, 'ping', {
      body,
      headers: [['content-type', 'application/json'], ...Object.entries(signWebhook(DEFAULT_SCHEME, body))],
    });
    expect([lone.status, (lone.json as { error: { code: string } }).error.code]).toEqual([
      400,
      'invalid_event_id',
    ]);
  });
});
