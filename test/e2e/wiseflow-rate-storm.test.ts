/**
 * The WISEflow client under a 429 storm, through the local host (issue 12, item 3): many sync
 * requests are accepted at once, so the jobs worker runs many update routines in parallel, all
 * sharing the credential's rate gate; meanwhile the WISEflow simulator answers EVERY request 429
 * with Retry-After (and RateLimit-*) for a few seconds.
 *
 * What test/contract/wiseflow-client.test.ts already proves, on a bare client: a 429 pauses the
 * next request for RateLimit-Reset or Retry-After (single calls), 40 parallel calls through one
 * client ride out a storm of 15 counted 429s without exceeding 20/s, several client instances
 * share one gate, and the gate holds several windows at once. What this adds: the same promise
 * with the app's real composition (settings WISEFLOW_RATE_PER_SECOND/PER_MINUTE, the jobs queue,
 * the update routine's parallel reads, the token request), a storm that lasts a time rather than
 * a count, and the outcome of every job.
 *
 * The simulator enforces the same limits as the ones configured, so a request over the limit
 * outside the storm would also be answered 429: asserted to be none.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { WebhookMarker } from '../../src/lib/webhooks/store';
import {
  startExternalSourceHost,
  WEBHOOK_SECRET,
  type ExternalSourceHost,
} from '../support/external-source-host';
import { waitFor } from '../support/wait';

const LIMITS = { perSecond: 50, perMinute: 1000 };
const JOBS = 40;
const STORM_MS = 3_000;
const RETRY_AFTER_S = 1;

let h: ExternalSourceHost;

beforeAll(async () => {
  h = await startExternalSourceHost({
    quiet: true,
    simulator: { rateLimits: LIMITS, retryAfterHeader: true },
    settings: {
      WISEFLOW_RATE_PER_SECOND: String(LIMITS.perSecond),
      WISEFLOW_RATE_PER_MINUTE: String(LIMITS.perMinute),
    },
  });
}, 60_000);
afterAll(async () => {
  await h?.stop();
});

it(`${JOBS} parallel sync jobs through a ${STORM_MS / 1000} s 429 storm: the limit holds and every job ends`, async () => {
  const flows = Array.from({ length: JOBS }, (_, i) => {
    const code = `STORM-${i}`;
    const flowId = h.sim.addFlow({ code, participants: [1, 2, 3, 4] });
    h.sim.addSource(flowId, code);
    h.roster.set(code, [1 + (i % 4), 1 + ((i + 2) % 4)]);
    return { flowId, code, requestId: '' };
  });
  const calls = flows.map((f) => {
    const payload = h.sim.externalSourcePayload(f.flowId);
    f.requestId = String(payload.requestId);
    return h.sim.buildWebhookCall(payload, { secret: WEBHOOK_SECRET });
  });
  const t0 = Date.now();
  const statuses = await Promise.all(
    calls.map(
      async (c) => (await fetch(h.webhookUrl, { method: 'POST', headers: c.headers, body: c.body })).status,
    ),
  );
  expect(statuses).toEqual(Array(JOBS).fill(202));

  // The storm starts once the routines are under way, and lasts STORM_MS whatever the client does.
  await waitFor(() => h.sim.requests.length >= 20, { timeoutMs: 20_000, what: 'the first WISEflow calls' });
  const stormStart = Date.now();
  h.sim.faults.rateLimitStorm(Number.MAX_SAFE_INTEGER, RETRY_AFTER_S);
  await new Promise((r) => setTimeout(r, STORM_MS));
  h.sim.faults.rateLimitStorm(0);
  const stormEnd = Date.now();

  const markers = await waitFor(
    async () => {
      const ms = await Promise.all(
        flows.map((f) => h.store.get({ route: 'external-source', eventId: `request:${f.requestId}` })),
      );
      return ms.every((m) => m?.state === 'done' || m?.state === 'failed')
        ? (ms as WebhookMarker[])
        : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200, what: `${JOBS} jobs to end` },
  );
  await h.host.waitForIdle({ timeoutMs: 10_000, quietMs: 200 });

  const log = h.sim.requests;
  const stormed = log.filter((r) => r.status === 429 && r.at >= stormStart && r.at <= stormEnd + 50);
  const other429 = log.filter((r) => r.status === 429 && !stormed.includes(r));
  console.log(
    `429 storm: ${log.length} WISEflow requests in ${Date.now() - t0} ms, ${stormed.length} answered 429 during the ` +
      `${stormEnd - stormStart} ms storm; busiest second ${h.sim.maxRequestsInWindow(1000)} requests ` +
      `(limit ${LIMITS.perSecond}); jobs ${JSON.stringify(countStates(markers))}`,
  );

  // The storm did hit requests in flight, and the client never went over the configured limit:
  // not in any 1 s window (every arrival counts: 429s and the token request too), not per minute,
  // and the simulator, which enforces the same limits, never had to refuse anything else.
  expect(stormed.length).toBeGreaterThan(0);
  expect(h.sim.maxRequestsInWindow(1000)).toBeLessThanOrEqual(LIMITS.perSecond);
  expect(h.sim.maxRequestsInWindow(60_000)).toBeLessThanOrEqual(LIMITS.perMinute);
  expect(other429).toEqual([]);

  // Every job reached a terminal outcome, and WISEflow heard of each: one sync/done (the storm
  // was shorter than the client's patience, WISEFLOW_MAX_WAIT_SECONDS and 20 waits per call).
  expect(countStates(markers)).toEqual({ done: JOBS });
  for (const f of flows)
    expect(
      h.sim.syncCalls.filter((c) => c.flowId === f.flowId).map((c) => [c.reference, c.kind, c.status]),
      f.code,
    ).toEqual([[f.code, 'done', 200]]);
  for (const f of flows) expect(h.sim.allocations(f.flowId, f.code).length, f.code).toBe(2);
}, 120_000);

function countStates(ms: readonly WebhookMarker[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of ms) out[m.state] = (out[m.state] ?? 0) + 1;
  return out;
}
