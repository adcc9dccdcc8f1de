/**
 * Fuzzing POST /api/webhooks/external-source through the local Functions host (the app's real
 * registration, the HTTP path a deployed app has, the Table store and the jobs queue on
 * Azurite), with the shared generators of test/support/webhook-arbitraries.ts: valid,
 * near-valid, truncated, huge, deeply nested, wrong-typed, unicode and invalid-UTF-8 bodies;
 * good and bad content types; missing, repeated and oversized headers; every signature and
 * timestamp case, signed as the app's settings say WISEflow signs.
 *
 * Must hold: never a 5xx or a dropped connection; every refusal a JSON error naming the problem
 * (the code the first broken rule predicts); afterwards, in one scan, exactly the accepted events
 * are stored and enqueued, once each. The jobs worker is not loaded, so the queue holds what was
 * enqueued. Requests are sent and checked by test/support/route-fuzz.ts.
 * `npm test` runs 10,000 requests (external-source-fuzz.test.ts), `npm run test:long` 50,000
 * (external-source-fuzz.long.test.ts); EXTERNAL_SOURCE_FUZZ_RUNS overrides either,
 * EXTERNAL_SOURCE_FUZZ_SEED replays a run.
 */
import fc from 'fast-check';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadExternalSourceFlows } from '../../src/lib/config';
import { tableClient } from '../../src/lib/storage/clients';
import { sharedAzurite } from './azurite';
import { startExternalSourceHost, type ExternalSourceHost } from './external-source-host';
import { fuzzRoute, scanStore } from './route-fuzz';
import { webhookRequests } from './webhook-arbitraries';

const MAX_BODY = 16 * 1024;
const MAX_DEPTH = 32;
const CONCURRENCY = Number(process.env.EXTERNAL_SOURCE_FUZZ_CONCURRENCY ?? 16);

export function externalSourceFuzz(defaultRuns: number, timeoutMs: number): void {
  const RUNS = Number(process.env.EXTERNAL_SOURCE_FUZZ_RUNS ?? defaultRuns);
  let h: ExternalSourceHost;
  beforeAll(async () => {
    h = await startExternalSourceHost({
      functions: ['app-start.ts', 'external-source-webhook.ts'],
      settings: { WEBHOOK_MAX_BODY_BYTES: String(MAX_BODY), WEBHOOK_MAX_JSON_DEPTH: String(MAX_DEPTH) },
      quiet: true,
    });
  }, 60_000);
  afterAll(async () => {
    await h?.stop();
  });

  const validPayload = fc.record(
    {
      event: fc.constant('FLOW_EXTERNAL_SOURCE'),
      // A few fixed ids make true duplicates; uuids make fresh requests.
      requestId: fc.oneof(
        { weight: 8, arbitrary: fc.uuid() },
        { weight: 1, arbitrary: fc.constantFrom('dup-a', 'dup-b', 'dup-c') },
      ),
      flowId: fc.oneof(fc.integer({ min: 1, max: 1_000_000_000 }), fc.integer({ min: 1 }).map(String)),
      flowCode: fc.stringMatching(/^[A-Za-z0-9ÆØÅæøå][A-Za-z0-9 _.:-]{0,19}$/),
      extraField: fc.jsonValue({ maxDepth: 2 }),
    },
    { requiredKeys: ['event', 'requestId', 'flowId'] },
  ) as fc.Arbitrary<Record<string, unknown>>;

  it(
    `${RUNS} generated requests through the local host: no 5xx, refusals named, only accepted events enqueued`,
    async () => {
      const scheme = loadExternalSourceFlows(h.settings)[0]!.webhook.signature;
      const seed = Number(process.env.EXTERNAL_SOURCE_FUZZ_SEED ?? Date.now() % 1_000_000);
      const report = await fuzzRoute({
        name: 'external-source webhook',
        url: `${h.host.httpUrl}/api/webhooks/external-source`,
        // One request in five all valid (about a quarter are accepted in all): an accepted event
        // costs three storage calls, a refusal none, and the faults are what is searched.
        requests: webhookRequests({
          validPayload,
          scheme,
          maxBodyBytes: MAX_BODY,
          maxDepth: MAX_DEPTH,
          validWeight: 1,
          mixedWeight: 4,
        }),
        runs: RUNS,
        seed,
        concurrency: CONCURRENCY,
        // The route ignores nothing: every 202 is a new event or a duplicate.
        checkAccepted: (body) =>
          body.ignored ? `ignored (${body.reason}), the route ignores nothing` : undefined,
      });
      expect(report.problems.slice(0, 5)).toEqual([]);
      expect(report.runs).toBe(RUNS);
      // One scan: exactly the accepted events are stored (no aliases on this route) and enqueued,
      // each once; nothing from a refusal.
      const connectionString = sharedAzurite().connectionString;
      const scan = await scanStore(
        tableClient(
          { kind: 'connectionString', connectionString },
          `${h.settings.SYNC_TABLE_PREFIX}webhooks`,
        ),
        QueueServiceClient.fromConnectionString(connectionString).getQueueClient(h.settings.SYNC_JOBS_QUEUE!),
      );
      const accepted = [...report.accepted].sort();
      expect([...scan.markers.keys()].sort()).toEqual(accepted);
      expect([...scan.markers.values()].filter((s) => s !== 'enqueued')).toEqual([]);
      expect({ aliases: scan.aliases, others: scan.others }).toEqual({ aliases: 0, others: [] });
      expect(scan.messages.sort()).toEqual(accepted);
      // The run covered what it claims to (a short run, FUZZ_RUNS=100, may miss some).
      if (RUNS < 2_000) return;
      expect(accepted.length).toBeGreaterThan(RUNS / 10);
      for (const code of [
        'duplicate',
        'payload_too_large',
        'too_deeply_nested',
        'invalid_encoding',
        'invalid_json',
        'unsupported_media_type',
        'method_not_allowed',
        'signature_missing',
        'signature_invalid',
        'timestamp_missing',
        'timestamp_invalid',
        'timestamp_out_of_tolerance',
      ])
        expect(report.byCode[code] ?? 0, code).toBeGreaterThan(0);
    },
    timeoutMs,
  );
}
