/**
 * Forgeries and replays of the WISEflow FLOW_EXTERNAL_SOURCE webhook through the local host, with
 * the app's real registrations (the jobs worker included) against the WISEflow simulator: the
 * route that carries a signature.
 *
 * - Generated forgeries, each built from a real signed call and then broken in one way: signed
 *   with a wrong or near-miss secret; body changed after signing (a flipped bit, a byte inserted
 *   or removed, the same JSON reformatted, another flow id or request id, a signature cut and
 *   pasted from another call); the signature itself damaged; a stale or future timestamp. Every
 *   one is refused 401 with the code that names it (100%), and afterwards nothing is stored,
 *   nothing enqueued and no job ran (no call reached the simulator).
 * - Generated replays: valid calls each delivered 2 to 6 times, identical, with a fresh timestamp
 *   header (the default scheme signs the body only, so anyone who saw a call can do that), or
 *   with another call id; part at once, part after the job finished. Every copy is answered 202,
 *   exactly one as new, and each request is processed once: one job run, one sync/done.
 *
 * FORGERY_RUNS (default 2,000) forgeries; REPLAY_REQUESTS (default 24) replayed requests.
 */
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { formatTimestamp, WISEFLOW_SIGNATURE_DEFAULTS } from '../../src/lib/wiseflow/webhook';
import {
  startExternalSourceHost,
  WEBHOOK_SECRET,
  type ExternalSourceHost,
} from '../support/external-source-host';
import { fuzzRoute } from '../support/route-fuzz';
import type { FuzzRequest } from '../support/webhook-arbitraries';
import { send } from '../support/webhook-http';
import { waitFor } from '../support/wait';

const FORGERY_RUNS = Number(process.env.FORGERY_RUNS ?? 2_000);
const REPLAY_REQUESTS = Number(process.env.REPLAY_REQUESTS ?? 24);
const TOLERANCE_S = 300; // WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS, its default
const sig = WISEFLOW_SIGNATURE_DEFAULTS;

let h: ExternalSourceHost;
beforeAll(async () => {
  h = await startExternalSourceHost({
    settings: { SYNC_MAX_ATTEMPTS: '2', WISEFLOW_MAX_RETRIES: '0' },
    quiet: true,
  });
}, 60_000);
afterAll(async () => {
  await h?.stop();
});

type Forgery =
  | 'wrong-secret'
  | 'near-secret'
  | 'flip-bit'
  | 'insert-byte'
  | 'delete-byte'
  | 'reformatted'
  | 'other-flow'
  | 'other-request'
  | 'pasted-signature'
  | 'damaged-signature'
  | 'stale'
  | 'future';

const FORGERY_CODE: Record<Forgery, string> = {
  'wrong-secret': 'signature_invalid',
  'near-secret': 'signature_invalid',
  'flip-bit': 'signature_invalid',
  'insert-byte': 'signature_invalid',
  'delete-byte': 'signature_invalid',
  reformatted: 'signature_invalid',
  'other-flow': 'signature_invalid',
  'other-request': 'signature_invalid',
  'pasted-signature': 'signature_invalid',
  'damaged-signature': 'signature_invalid',
  stale: 'timestamp_out_of_tolerance',
  future: 'timestamp_out_of_tolerance',
};

/** The headers WISEflow sends (see the simulator's buildWebhookCall), signed with `secret`. */
function signedHeaders(body: Buffer, secret: string, tsMs: number, callId: string): Array<[string, string]> {
  const ts = formatTimestamp(tsMs, sig.timestampFormat);
  const signed = sig.signedContent === 'timestamp.body' ? Buffer.concat([Buffer.from(`${ts}.`), body]) : body;
  const mac = createHmac('sha256', secret).update(signed).digest(sig.encoding);
  return [
    ['content-type', 'application/json'],
    [sig.header, `${sig.prefix}${mac}`],
    [sig.callIdHeader, callId],
    ...(sig.timestampHeader ? [[sig.timestampHeader, ts] as [string, string]] : []),
  ];
}

it(`${FORGERY_RUNS} generated forgeries: every one refused 401 with its reason; nothing stored, enqueued or run`, async () => {
  const flowId = h.sim.addFlow({ code: 'FORGED', participants: [1, 2, 3] });
  h.roster.set('FORGED', [1, 2]);
  const forgery = fc
    .record({
      how: fc.constantFrom<Forgery>(...(Object.keys(FORGERY_CODE) as Forgery[])),
      requestId: fc.uuid(),
      other: fc.uuid(),
      secret: fc.string({ minLength: 16, maxLength: 40 }),
      at: fc.nat(),
      bit: fc.nat({ max: 7 }),
      offS: fc.integer({ min: 10, max: 30 * 86_400 }),
    })
    .map((f): FuzzRequest => {
      const now = Date.now();
      const payload = h.sim.externalSourcePayload(flowId, { requestId: f.requestId });
      const body = Buffer.from(JSON.stringify(payload));
      const tsMs =
        f.how === 'stale'
          ? now - (TOLERANCE_S + f.offS) * 1000
          : f.how === 'future'
            ? now + (TOLERANCE_S + f.offS) * 1000
            : now;
      const secret =
        f.how === 'wrong-secret'
          ? f.secret === WEBHOOK_SECRET
            ? `${f.secret}!`
            : f.secret
          : f.how === 'near-secret'
            ? [
                WEBHOOK_SECRET.slice(1),
                `${WEBHOOK_SECRET} `,
                WEBHOOK_SECRET.toUpperCase(),
                `${WEBHOOK_SECRET.slice(0, -1)}0`,
              ][f.at % 4]!
            : WEBHOOK_SECRET;
      let headers = signedHeaders(body, secret, tsMs, f.other);
      let sent = body;
      const i = f.at % body.length;
      if (f.how === 'flip-bit') {
        sent = Buffer.from(body);
        sent[i]! ^= 1 << f.bit;
      }
      if (f.how === 'insert-byte')
        sent = Buffer.concat([body.subarray(0, i), Buffer.from(' '), body.subarray(i)]);
      if (f.how === 'delete-byte') sent = Buffer.concat([body.subarray(0, i), body.subarray(i + 1)]);
      if (f.how === 'reformatted') sent = Buffer.from(JSON.stringify(payload, null, 1 + (f.at % 3)));
      if (f.how === 'other-flow')
        sent = Buffer.from(JSON.stringify({ ...payload, flowId: flowId + 1 + (f.at % 5) }));
      if (f.how === 'other-request') sent = Buffer.from(JSON.stringify({ ...payload, requestId: f.other }));
      if (f.how === 'pasted-signature') {
        // The signature of another genuine call, on this body.
        const genuine = Buffer.from(JSON.stringify({ ...payload, requestId: f.other }));
        const theirs = signedHeaders(genuine, WEBHOOK_SECRET, tsMs, f.other);
        headers = headers.map(([k, v]) => [k, k === sig.header ? theirs.find(([n]) => n === k)![1] : v]);
      }
      if (f.how === 'damaged-signature')
        headers = headers.map(([k, v]): [string, string] => {
          if (k !== sig.header) return [k, v];
          // A character that carries six bits of the MAC (not the last one, whose low bits are
          // padding: base64 "…A=" and "…B=" decode to the same bytes), or the value cut short.
          const mac = v.slice(sig.prefix.length);
          const j = f.at % (mac.length - 3);
          const c = mac[j] === 'A' ? 'B' : 'A';
          return [
            k,
            sig.prefix + (f.bit % 2 ? `${mac.slice(0, j)}${c}${mac.slice(j + 1)}` : mac.slice(0, j + 1)),
          ];
        });
      if (
        sent.equals(body) &&
        !['wrong-secret', 'near-secret', 'pasted-signature', 'damaged-signature', 'stale', 'future'].includes(
          f.how,
        )
      )
        sent = Buffer.concat([body, Buffer.from(' ')]); // a change that happened to be none
      return {
        label: `forgery:${f.how}`,
        method: 'POST',
        headers,
        body: sent,
        expect: 'reject',
        expectStatus: 401,
        expectCode: FORGERY_CODE[f.how],
      };
    });
  const report = await fuzzRoute({
    name: 'external-source forgeries',
    url: h.webhookUrl,
    requests: forgery,
    runs: FORGERY_RUNS,
    seed: Number(process.env.FORGERY_SEED ?? Date.now() % 1_000_000),
  });
  expect(report.problems.slice(0, 5)).toEqual([]);
  expect(report.byStatus).toEqual({ 401: FORGERY_RUNS });
  // A refusal leaves no trace: no marker, no job (the worker is loaded: a job would have called
  // the simulator), nothing on the queue.
  await h.host.waitForIdle({ timeoutMs: 10_000, quietMs: 200 });
  expect(await h.store.list({ limit: 1_000_000 })).toEqual([]);
  expect(h.sim.syncCalls.filter((c) => c.flowId === flowId)).toEqual([]);
  expect(h.sim.sources(flowId)).toEqual([]);
}, 300_000);

type Copy = 'identical' | 're-timestamped' | 'new-call-id';

it(`${REPLAY_REQUESTS} valid requests replayed 2-6 times each (at once and after they ran): all 202, one new each, each processed once`, async () => {
  const plans = fc.sample(
    fc.record({
      copies: fc.array(fc.constantFrom<Copy>('identical', 're-timestamped', 'new-call-id'), {
        minLength: 1,
        maxLength: 5,
      }),
      early: fc.nat({ max: 5 }),
    }),
    { numRuns: REPLAY_REQUESTS, seed: Number(process.env.REPLAY_SEED ?? Date.now() % 1_000_000) },
  );
  const requests = plans.map((p, n) => {
    const code = `REPLAY-${n}`;
    const flowId = h.sim.addFlow({ code, participants: [1, 2, 3, 4] });
    h.roster.set(code, [(n % 4) + 1]);
    const payload = h.sim.externalSourcePayload(flowId);
    const body = Buffer.from(JSON.stringify(payload));
    const original = signedHeaders(body, WEBHOOK_SECRET, Date.now(), `call-${n}`);
    const copy = (c: Copy): Array<[string, string]> =>
      c === 'identical'
        ? original
        : c === 'new-call-id'
          ? original.map(([k, v]) => [k, k === sig.callIdHeader ? `call-${n}-again` : v])
          : original.map(([k, v]) => [
              k,
              k === sig.timestampHeader ? formatTimestamp(Date.now() + 1000, sig.timestampFormat) : v,
            ]);
    const early = p.copies.slice(0, p.early % (p.copies.length + 1));
    const late = p.copies.slice(early.length);
    return {
      flowId,
      requestId: String(payload.requestId),
      body,
      original,
      early: early.map(copy),
      late: late.map(copy),
    };
  });
  const answers = new Map<string, Array<{ status: number; duplicate?: boolean }>>();
  const post = async (r: (typeof requests)[number], headers: Array<[string, string]>) => {
    const a = await send(h.webhookUrl, { headers, body: r.body });
    if ('error' in a) throw new Error(`connection failed: ${a.error}`);
    const list = answers.get(r.requestId) ?? [];
    list.push({ status: a.status, duplicate: (a.json as { duplicate?: boolean }).duplicate });
    answers.set(r.requestId, list);
  };
  // The original and its early copies race each other.
  await Promise.all(requests.flatMap((r) => [r.original, ...r.early].map((hd) => post(r, hd))));
  await waitFor(
    async () => {
      const done = (await h.store.list({ limit: 1_000_000 })).filter(
        (m) => m.state === 'done' || m.state === 'failed',
      );
      return done.length >= requests.length ? done : undefined;
    },
    { timeoutMs: 60_000, what: 'every replayed request to finish' },
  );
  // The late copies arrive after the job ran.
  await Promise.all(requests.flatMap((r) => r.late.map((hd) => post(r, hd))));
  await h.host.waitForIdle({ timeoutMs: 20_000, quietMs: 300 });

  let copies = 0;
  for (const r of requests) {
    const a = answers.get(r.requestId)!;
    copies += a.length;
    expect(
      a.every((x) => x.status === 202),
      r.requestId,
    ).toBe(true);
    expect(
      a.filter((x) => x.duplicate === false),
      r.requestId,
    ).toHaveLength(1);
    const m = await h.store.get({ route: 'external-source', eventId: `request:${r.requestId}` });
    expect(m, r.requestId).toMatchObject({ state: 'done', attempts: 1 });
    expect(
      h.sim.syncCalls.filter((c) => c.flowId === r.flowId),
      r.requestId,
    ).toHaveLength(1);
  }
  console.log(`replays: ${requests.length} requests delivered ${copies} times in all; each processed once`);
}, 180_000);
