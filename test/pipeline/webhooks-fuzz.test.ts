/**
 * Fuzzing the intake alone (a dummy route) through a real loopback HTTP server, the Table store
 * and a storage queue on Azurite, with test/support/webhook-arbitraries.ts: bodies valid,
 * near-valid, truncated, huge, deeply nested, of wrong types, unicode and invalid UTF-8; content
 * types; missing, repeated and oversized headers; signatures and timestamps of every kind.
 *
 * Must hold for every request: never a 5xx or a dropped connection; a refusal is a JSON error
 * whose code names the problem (the one the first broken rule predicts); a valid request is
 * accepted. After the run, one scan: exactly the accepted events are stored and enqueued, once
 * each. Sent concurrently and checked by test/support/route-fuzz.ts. WEBHOOK_FUZZ_RUNS sets the
 * number of requests (default 2,000 for the header-timestamp route, half for the body one);
 * WEBHOOK_FUZZ_SEED replays a run.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import type { SignatureScheme } from '../../src/lib/webhooks/signature';
import { fuzzRoute, scanStore } from '../support/route-fuzz';
import { webhookRequests } from '../support/webhook-arbitraries';
import {
  DEFAULT_SCHEME,
  OLD_SECRET,
  SECRET,
  pingRoute,
  webhookEnv,
  type WebhookEnv,
} from '../support/webhook-env';

const RUNS = Number(process.env.WEBHOOK_FUZZ_RUNS ?? 2000);
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

async function fuzzIntakeRoute(route: string, runs: number): Promise<void> {
  const scheme = SCHEMES[route]!;
  const env: WebhookEnv = await webhookEnv(azurite.connectionString, [pingRoute(route, scheme)], {
    maxBodyBytes: MAX_BODY,
    maxDepth: MAX_DEPTH,
  });
  try {
    const report = await fuzzRoute({
      name: `webhook intake ${route}`,
      via: 'a loopback server',
      url: `${env.url}/api/webhooks/${route}`,
      requests: webhookRequests({
        validPayload: validPing,
        scheme,
        maxBodyBytes: MAX_BODY,
        maxDepth: MAX_DEPTH,
        setBodyTimestamp: (p, ms) => ({ ...p, sentAt: Number.isNaN(ms) ? 'soon' : Math.floor(ms / 1000) }),
      }),
      runs,
      seed: Number(process.env.WEBHOOK_FUZZ_SEED ?? Date.now() % 1_000_000),
      // The dummy route ignores `kind: pong` and probes, which no generated payload is.
      checkAccepted: (body) => (body.ignored ? `ignored (${body.reason})` : undefined),
    });
    expect(report.problems.slice(0, 5)).toEqual([]);
    // One scan: exactly the accepted events are stored (with their aliases) and enqueued.
    const scan = await scanStore(env.table, env.queue);
    const accepted = [...report.accepted].sort();
    expect([...scan.markers.keys()].sort()).toEqual(accepted);
    expect([...scan.markers.values()].filter((s) => s !== 'enqueued')).toEqual([]);
    expect({ orphans: scan.orphanAliases, others: scan.others }).toEqual({ orphans: [], others: [] });
    expect(scan.aliases).toBeLessThanOrEqual(accepted.length); // `seq` is optional: at most one each
    expect(scan.messages.sort()).toEqual(accepted);
    expect(accepted.length).toBeGreaterThan(runs / 10);
  } finally {
    await env.close();
  }
}

describe('webhook intake fuzz', () => {
  it(
    `${RUNS} generated requests, timestamp signed in a header`,
    () => fuzzIntakeRoute('fuzz-signed-ts', RUNS),
    300_000,
  );
  it(
    `${Math.ceil(RUNS / 2)} generated requests, timestamp in the body`,
    () => fuzzIntakeRoute('fuzz-body-ts', Math.ceil(RUNS / 2)),
    300_000,
  );
});
