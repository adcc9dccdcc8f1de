/**
 * Drives one webhook route of a running host with generated requests (webhook-arbitraries.ts)
 * and checks every answer, cheaply enough for 10,000 requests per route in `npm test`:
 *
 * - generated in chunks with `fc.sample` (a "fresh" timestamp is fresh when sent) and sent
 *   CONCURRENTLY over a keep-alive agent: fast-check's own runner is sequential, and the intake
 *   must hold under parallel requests anyway (duplicates race each other);
 * - each answer is checked with plain code (vitest's `expect` per request costs more than the
 *   request); an answer that does not come within 30 s is a hang. A failed check is collected
 *   with the request that caused it, not thrown, so one run reports its first counterexamples;
 * - the storage side ("nothing stored or enqueued for a refusal") is checked ONCE at the end
 *   from per-request bookkeeping (`accepted`: the event ids answered `duplicate: false`) by the
 *   caller, against a full scan of the store and the queue. A refusal that left a trace shows up
 *   there as an entity or a message no 202 accounts for.
 *
 * The seed is printed with the counts by status and by code, to replay a failing run.
 */
import type { TableClient } from '@azure/data-tables';
import type { QueueClient } from '@azure/storage-queue';
import fc from 'fast-check';
import type { FuzzRequest } from './webhook-arbitraries';
import { send } from './webhook-http';

export interface RouteFuzzOptions {
  /** Printed with the counts. */
  name: string;
  /** What serves the route, for the printed line (default `the local host`). */
  via?: string;
  url: string;
  requests: fc.Arbitrary<FuzzRequest>;
  runs: number;
  seed: number;
  concurrency?: number;
  /** Requests generated at a time (default 250): small enough that a fresh timestamp stays fresh. */
  chunk?: number;
  /** A request still unanswered after this long is a hang (default 30 s: a loaded 2-core CI). */
  answerTimeoutMs?: number;
  /**
   * What a 202 of a valid request may say besides accepted/duplicate (the business-event route
   * answers `ignored` with a reason for events it does not take). Return a problem or undefined.
   */
  checkAccepted?: (body: AnswerBody, r: FuzzRequest) => string | undefined;
}

export interface AnswerBody {
  accepted?: boolean;
  eventId?: string;
  duplicate?: boolean;
  ignored?: boolean;
  reason?: string;
  error?: { code?: unknown; message?: unknown };
}

export interface RouteFuzzReport {
  runs: number;
  seconds: number;
  byStatus: Record<string, number>;
  /** Error codes of refusals; `accepted`, `duplicate` and `ignored:<reason>` for 202s. */
  byCode: Record<string, number>;
  /** Event ids answered `duplicate: false`: what the store and the queue must hold, once each. */
  accepted: Set<string>;
  /** Failed checks with their request (empty when every answer was right). */
  problems: string[];
}

const bump = (m: Record<string, number>, k: string) => void (m[k] = (m[k] ?? 0) + 1);

/** Sends `runs` generated requests; stops early after the first failing chunk. */
export async function fuzzRoute(o: RouteFuzzOptions): Promise<RouteFuzzReport> {
  const concurrency = o.concurrency ?? 16;
  const chunk = o.chunk ?? 250;
  const answerTimeoutMs = o.answerTimeoutMs ?? 30_000;
  const r: RouteFuzzReport = {
    runs: 0,
    seconds: 0,
    byStatus: {},
    byCode: {},
    accepted: new Set(),
    problems: [],
  };
  const started = Date.now();

  async function one(req: FuzzRequest): Promise<void> {
    const fail = (why: string) => void r.problems.push(`${why}\n  ${fc.stringify(req)}`);
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<'hang'>((resolve) => {
      timer = setTimeout(() => resolve('hang'), answerTimeoutMs);
    });
    const a = await Promise.race([
      send(o.url, { method: req.method, headers: req.headers, body: req.body }),
      hang,
    ]).finally(() => clearTimeout(timer));
    if (a === 'hang') return fail(`no answer within ${answerTimeoutMs} ms (a hang)`);
    if ('error' in a) return fail(`connection failed: ${a.error}`);
    bump(r.byStatus, String(a.status));
    if (a.status >= 500) return fail(`answered ${a.status}: ${a.text.slice(0, 300)}`);
    if (!/^application\/json/.test(String(a.headers['content-type'])))
      fail(`content type ${a.headers['content-type']}, not JSON`);
    const body = (a.json ?? {}) as AnswerBody;
    if (a.status === 202) {
      if (body.accepted !== true) fail(`202 without accepted: true: ${a.text.slice(0, 200)}`);
      if (req.expect === 'reject') fail(`accepted, expected ${req.expectStatus} ${req.expectCode}`);
      if (body.ignored === true) {
        bump(r.byCode, `ignored:${body.reason}`);
        const why = o.checkAccepted?.(body, req);
        if (why) fail(why);
        return;
      }
      if (typeof body.eventId !== 'string' || typeof body.duplicate !== 'boolean')
        return fail(`202 without eventId/duplicate: ${a.text.slice(0, 200)}`);
      bump(r.byCode, body.duplicate ? 'duplicate' : 'accepted');
      const why = o.checkAccepted?.(body, req);
      if (why) fail(why);
      if (!body.duplicate) {
        if (r.accepted.has(body.eventId)) fail(`${body.eventId} accepted twice as new`);
        r.accepted.add(body.eventId);
      }
      return;
    }
    const code = body.error?.code;
    const message = body.error?.message;
    bump(r.byCode, typeof code === 'string' ? code : '?');
    if (a.status < 400) fail(`answered ${a.status}, neither 202 nor a refusal`);
    if (typeof code !== 'string' || typeof message !== 'string' || message.length <= 10)
      fail(`refusal without a named error: ${a.text.slice(0, 200)}`);
    if (req.expect === 'accept') fail(`refused ${a.status} ${code}, expected accepted`);
    if (
      req.expect === 'reject' &&
      (a.status !== req.expectStatus || (req.expectCode !== undefined && code !== req.expectCode))
    )
      fail(`refused ${a.status} ${code}, expected ${req.expectStatus} ${req.expectCode}`);
  }

  for (let i = 0; r.runs < o.runs && r.problems.length === 0; i++) {
    const batch = fc.sample(o.requests, { numRuns: Math.min(chunk, o.runs - r.runs), seed: o.seed + i });
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < batch.length) await one(batch[next++]!);
      }),
    );
    r.runs += batch.length;
  }
  r.seconds = (Date.now() - started) / 1000;
  console.log(
    `${o.name} fuzz (seed ${o.seed}): ${r.runs} requests in ${r.seconds.toFixed(1)} s through ${o.via ?? 'the local host'}, ${concurrency} at a time; by status ${JSON.stringify(r.byStatus)}; by code ${JSON.stringify(r.byCode)}`,
  );
  return r;
}

export interface StoreScan {
  /** eventId → state of every marker (`e|` row). */
  markers: Map<string, string>;
  /** Alias rows whose event has no marker (a refusal's leftover would be one). */
  orphanAliases: string[];
  /** Alias rows in all. */
  aliases: number;
  /** Rows that are neither markers nor aliases. */
  others: string[];
  /** The eventId of every job message on the queue, in the order received (repeats kept). */
  messages: string[];
}

/**
 * One scan of everything the intake may have written: the webhooks table (markers and alias
 * rows) and the jobs queue (every message received once, left invisible, not deleted). Run it
 * after the requests; no jobs worker may be loaded, or the queue would already be drained.
 */
export async function scanStore(table: TableClient, queue: QueueClient): Promise<StoreScan> {
  const scan: StoreScan = { markers: new Map(), orphanAliases: [], aliases: 0, others: [], messages: [] };
  const aliasOf: string[] = [];
  for await (const e of table.listEntities<Record<string, unknown>>()) {
    const rk = String(e.rowKey);
    if (rk.startsWith('e|')) {
      const state = e.phase === 'new' ? (e.enqueuedAt ? 'enqueued' : 'pending') : String(e.phase);
      scan.markers.set(String(e.eventId), state);
    } else if (rk.startsWith('a|')) {
      scan.aliases++;
      aliasOf.push(String(e.aliasOf));
    } else scan.others.push(rk);
  }
  scan.orphanAliases = aliasOf.filter((id) => !scan.markers.has(id));
  for (;;) {
    const r = await queue.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 600 });
    if (r.receivedMessageItems.length === 0) break;
    for (const m of r.receivedMessageItems) {
      const text = Buffer.from(m.messageText, 'base64').toString('utf8');
      scan.messages.push(String((JSON.parse(text) as { eventId?: unknown }).eventId));
    }
  }
  return scan;
}
