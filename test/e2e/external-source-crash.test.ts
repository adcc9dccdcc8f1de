/**
 * A crash right after the 202: the first host accepts the signed webhook (the job is on the
 * queue and stored with its marker) and dies before any worker runs it; a new host over the same
 * storage processes it to sync/done. Nothing the sender was told is accepted is lost.
 */
import { afterAll, expect, it } from 'vitest';
import type { LocalHost } from '../../src/local/host';
import {
  APP_FUNCTIONS,
  startExternalSourceHost,
  startHost,
  WEBHOOK_SECRET,
  type ExternalSourceHost,
} from '../support/external-source-host';
import { waitFor } from '../support/wait';

let h: ExternalSourceHost | undefined;
let second: LocalHost | undefined;
afterAll(async () => {
  await second?.stop();
  await h?.sim.stop();
  await h?.roster.stop();
});

it('a webhook acknowledged by a host that then dies is processed by the next one', async () => {
  // The first "process" serves the route only: no jobs worker runs before it dies.
  h = await startExternalSourceHost({ functions: ['app-start.ts', 'external-source-webhook.ts'] });
  const flowId = h.sim.addFlow({ code: 'CRASH-1', participants: [1, 2, 3, 4, 5] });
  h.roster.set('CRASH-1', [2, 4]);
  const payload = h.sim.externalSourcePayload(flowId);
  const call = h.sim.buildWebhookCall(payload, { secret: WEBHOOK_SECRET });
  const res = await fetch(h.webhookUrl, { method: 'POST', headers: call.headers, body: call.body });
  expect(res.status).toBe(202);
  const ref = { route: 'external-source', eventId: `request:${String(payload.requestId)}` };
  expect(await h.store.get(ref)).toMatchObject({ state: 'enqueued' });
  await h.host.stop(); // the crash: nothing ran the job

  second = await startHost(APP_FUNCTIONS, h.settings);
  const store = h.store;
  const done = await waitFor(
    async () => {
      const m = await store.get(ref);
      return m?.state === 'done' ? m : undefined;
    },
    { timeoutMs: 20_000, what: 'the job to be processed by the second host' },
  );
  expect(done.attempts).toBe(1);
  expect(h.sim.allocations(flowId, 'CRASH-1')).toEqual([2, 4]);
  expect(h.sim.syncCalls.filter((c) => c.flowId === flowId)).toMatchObject([{ kind: 'done' }]);
});
