/**
 * Fuzzing the intake alone (a dummy route) through a real loopback HTTP server, the Table store
 * and a storage queue on Azurite, with test/support/webhook-arbitraries.ts: bodies valid,
 * near-valid, truncated, huge, deeply nested, of wrong types, unicode and invalid UTF-8; content
 * types; missing, repeated and oversized headers; signatures and timestamps of every kind.
 *
 * Must hold for every request: never a 5xx or a dropped connection; a refusal is a JSON error
 * whose code names the problem (the one the first broken rule predicts); a valid request is
 * accepted. After the run: exactly the accepted events are stored and enqueued, once each.
 * WEBHOOK_FUZZ_RUNS sets the number of requests per route (default 1,500).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import type { SignatureScheme } from '../../src/lib/webhooks/signature';
import { webhookRequests } from '../support/webhook-arbitraries';
import { send } from '../support/webhook-http';
import {
  DEFAULT_SCHEME,
  OLD_SECRET,
  SECRET,
  pingRoute,
  webhookEnv,
  type WebhookEnv,
} from '../support/webhook-env';

const RUNS = Number(process.env.WEBHOOK_FUZZ_RUNS ?? 1500);
const MAX_BODY = 16 * 1024;
const MAX_DEPTH = 32;

let azurite: SharedAzurite;
beforeAll(async () => {
  azurite = sharedAzurite();
});
afterAll(async () => {});

const validPing = fc.record(
  {
    // A few fixed ids make true duplicates; uuids make fresh events.
    id: fc.oneof(
      { weight: 8, arbitrary: fc.uuid() },
      { weight: 1, arbitrary: fc.constantFrom('dup-a', 'dup-b', 'dup-c') },
    ),
    kind: fc.constant('ping'),
    n: fc.integer(),
    seq: fc.oneof(fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n }), fc.integer({ min: 0, max: 1_000_000 })),
    tags: fc.array(fc.string({ maxLength: 12 }), { maxLength: 4 }),
  },
  { requiredKeys: ['id', 'kind', 'n'] },
) as fc.Arbitrary<Record<string, unknown>>;

const SCHEMES: Record<string, SignatureScheme> = {
  'fuzz-signed-ts': DEFAULT_SCHEME,
  'fuzz-body-ts': {
    kind: 'hmac',
    secrets: [SECRET, OLD_SECRET],
    encoding: 'base64',
    header: 'x-wiseflow-signature',
    timestamp: { from: 'body', field: 'sentAt' },
  },
};

async function fuzzRoute(route: string, runs: number): Promise<void> {
  const scheme = SCHEMES[route]!;
  const env: WebhookEnv = await webhookEnv(azurite.connectionString, [pingRoute(route, scheme)], {
    maxBodyBytes: MAX_BODY,
    maxDepth: MAX_DEPTH,
  });
  const byStatus: Record<number, number> = {};
  const byCode: Record<string, number> = {};
  const accepted = new Set<string>();
  try {
    const requests = webhookRequests({
      validPayload: validPing,
      scheme,
      maxBodyBytes: MAX_BODY,
      maxDepth: MAX_DEPTH,
      setBodyTimestamp: (p, ms) => ({ ...p, sentAt: Number.isNaN(ms) ? 'soon' : Math.floor(ms / 1000) }),
    });
    await fc.assert(
      fc.asyncProperty(requests, async (r) => {
        const a = await send(`${env.url}/api/webhooks/${route}`, {
          method: r.method,
          headers: r.headers,
          body: r.body,
        });
        if ('error' in a) throw new Error(`${r.label}: connection failed: ${a.error}`);
        byStatus[a.status] = (byStatus[a.status] ?? 0) + 1;
        expect(a.status, r.label).toBeLessThan(500);
        expect(a.headers['content-type']).toMatch(/^application\/json/);
        const body = a.json as {
          accepted?: boolean;
          eventId?: string;
          duplicate?: boolean;
          error?: { code: string; message: string };
        };
        if (a.status === 202) {
          expect(r.expect, `${r.label}: accepted, expected ${r.expectCode}`).not.toBe('reject');
          expect(body.accepted).toBe(true);
          byCode.accepted = (byCode.accepted ?? 0) + 1;
          if (body.duplicate === false) {
            expect(accepted.has(body.eventId!), `${body.eventId} accepted twice as new`).toBe(false);
            accepted.add(body.eventId!);
          }
        } else {
          expect(r.expect, `${r.label}: ${a.status} ${body.error?.code}`).not.toBe('accept');
          expect(a.status).toBeGreaterThanOrEqual(400);
          expect(typeof body.error?.code).toBe('string');
          expect(body.error!.message.length).toBeGreaterThan(10);
          byCode[body.error!.code] = (byCode[body.error!.code] ?? 0) + 1;
          if (r.expect === 'reject') {
            expect(a.status, r.label).toBe(r.expectStatus);
            if (r.expectCode) expect(body.error!.code, r.label).toBe(r.expectCode);
          }
        }
      }),
      { numRuns: runs },
    );
    console.log(
      `webhook fuzz ${route}: ${runs} requests; by status ${JSON.stringify(byStatus)}; by code ${JSON.stringify(byCode)}`,
    );
    // Exactly the accepted events are stored and enqueued, each once: nothing from a refusal.
    const jobs = await env.drainJobs();
    expect(jobs.map((j) => j.eventId).sort()).toEqual([...accepted].sort());
    let markers = 0;
    for await (const e of env.table.listEntities()) if (String(e.rowKey).startsWith('e|')) markers++;
    expect(markers).toBe(accepted.size);
    expect(accepted.size).toBeGreaterThan(runs / 10);
  } finally {
    await env.close();
  }
}

describe('webhook intake fuzz', () => {
  it(
    `${RUNS} generated requests, timestamp signed in a header`,
    () => fuzzRoute('fuzz-signed-ts', RUNS),
    300_000,
  );
  it(
    `${Math.ceil(RUNS / 2)} generated requests, timestamp in the body`,
    () => fuzzRoute('fuzz-body-ts', Math.ceil(RUNS / 2)),
    300_000,
  );
});
