/**
 * Fuzzing POST /api/webhooks/external-source through the local Functions host (the app's real
 * registration, the HTTP path a deployed app has, the Table store and the jobs queue on
 * Azurite), with the shared generators of test/support/webhook-arbitraries.ts: valid,
 * near-valid, truncated, huge, deeply nested, wrong-typed, unicode and invalid-UTF-8 bodies;
 * good and bad content types; missing, repeated and oversized headers; every signature and
 * timestamp case, signed as the app's settings say WISEflow signs.
 *
 * Must hold: never a 5xx or a dropped connection; every refusal a JSON error naming the problem
 * (the code the first broken rule predicts); afterwards exactly the accepted events are stored
 * and enqueued, once each. The jobs worker is not loaded, so the queue holds what was enqueued.
 * `npm test` runs 2,000 requests (external-source-fuzz.test.ts), `npm run test:long` 10,000
 * (external-source-fuzz.long.test.ts); EXTERNAL_SOURCE_FUZZ_RUNS overrides either.
 */
import fc from 'fast-check';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadExternalSourceFlows } from '../../src/lib/config';
import { sharedAzurite } from './azurite';
import { startExternalSourceHost, type ExternalSourceHost } from './external-source-host';
import { webhookRequests } from './webhook-arbitraries';
import { send } from './webhook-http';

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

  type FuzzCase = ReturnType<typeof webhookRequests> extends fc.Arbitrary<infer R> ? R : never;

  it(
    `${RUNS} generated requests through the local host: no 5xx, refusals named, only accepted events enqueued`,
    async () => {
      const scheme = loadExternalSourceFlows(h.settings)[0]!.webhook.signature;
      const url = `${h.host.httpUrl}/api/webhooks/external-source`;
      const byStatus: Record<number, number> = {};
      const byCode: Record<string, number> = {};
      const accepted = new Set<string>();
      const problems: string[] = [];
      const arbitrary = webhookRequests({
        validPayload,
        scheme,
        maxBodyBytes: MAX_BODY,
        maxDepth: MAX_DEPTH,
      });
      const seed = Number(process.env.EXTERNAL_SOURCE_FUZZ_SEED ?? Date.now() % 1_000_000);

      /** One request and every check on its answer; a failed check is collected, not thrown. */
      async function check(r: FuzzCase): Promise<void> {
        const a = await send(url, { method: r.method, headers: r.headers, body: r.body });
        const fail = (why: string) => problems.push(`${why}\n  ${fc.stringify(r)}`);
        if ('error' in a) return void fail(`connection failed: ${a.error}`);
        byStatus[a.status] = (byStatus[a.status] ?? 0) + 1;
        if (a.status >= 500) return void fail(`answered ${a.status}`);
        if (!/^application\/json/.test(String(a.headers['content-type']))) fail('not JSON');
        const body = a.json as {
          accepted?: boolean;
          eventId?: string;
          duplicate?: boolean;
          error?: { code: string; message: string };
        };
        if (a.status === 202) {
          if (r.expect === 'reject') fail(`accepted, expected ${r.expectStatus} ${r.expectCode}`);
          byCode.accepted = (byCode.accepted ?? 0) + 1;
          if (body.duplicate === false) {
            if (accepted.has(body.eventId!)) fail(`${body.eventId} accepted twice as new`);
            accepted.add(body.eventId!);
          }
          return;
        }
        const code = body.error?.code;
        byCode[code ?? '?'] = (byCode[code ?? '?'] ?? 0) + 1;
        if (r.expect === 'accept') fail(`refused ${a.status} ${code}, expected accepted`);
        if (typeof code !== 'string' || (body.error?.message.length ?? 0) <= 10)
          fail('refusal without a named error');
        // A body truncated inside a multi-byte character (flow codes like "ÆØÅ-1") is invalid UTF-8
        // before it is invalid JSON: the intake checks the encoding first.
        const truncatedUtf8 = r.expectCode === 'invalid_json' && code === 'invalid_encoding';
        if (
          r.expect === 'reject' &&
          (a.status !== r.expectStatus || (r.expectCode && code !== r.expectCode && !truncatedUtf8))
        )
          fail(`refused ${a.status} ${code}, expected ${r.expectStatus} ${r.expectCode}`);
      }

      // Generated in chunks (a "fresh" timestamp stays fresh) and sent CONCURRENTLY: the intake
      // must hold under parallel requests too, and a sequential run of 10,000 takes minutes here.
      const started = Date.now();
      const CHUNK = 500;
      for (let done = 0, chunk = 0; done < RUNS; done += CHUNK, chunk++) {
        const cases = fc.sample(arbitrary, { numRuns: Math.min(CHUNK, RUNS - done), seed: seed + chunk });
        let next = 0;
        await Promise.all(
          Array.from({ length: CONCURRENCY }, async () => {
            while (next < cases.length) await check(cases[next++]!);
          }),
        );
        if (problems.length > 0) break;
      }
      const seconds = (Date.now() - started) / 1000;
      console.log(
        `external-source fuzz (seed ${seed}): ${RUNS} requests in ${seconds.toFixed(1)} s through the local host, ${CONCURRENCY} at a time; by status ${JSON.stringify(byStatus)}; by code ${JSON.stringify(byCode)}`,
      );
      expect(problems.slice(0, 5)).toEqual([]);
      // Exactly the accepted events are stored and enqueued, each once: nothing from a refusal.
      const markers = await h.store.list({ limit: 1_000_000 });
      expect(markers.map((m) => m.eventId).sort()).toEqual([...accepted].sort());
      expect(markers.every((m) => m.state === 'enqueued')).toBe(true);
      const queue = QueueServiceClient.fromConnectionString(sharedAzurite().connectionString).getQueueClient(
        h.settings.SYNC_JOBS_QUEUE!,
      );
      expect((await queue.getProperties()).approximateMessagesCount).toBe(accepted.size);
      expect(accepted.size).toBeGreaterThan(RUNS / 10);
    },
    timeoutMs,
  );
}
