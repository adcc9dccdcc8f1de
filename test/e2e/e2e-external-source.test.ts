/**
 * The external-source flow end to end, as a user meets it: `register-webhooks` points the
 * WISEflow simulator's FLOW_EXTERNAL_SOURCE webhook at the local host; a manager's "request
 * update" is a signed POST to /api/webhooks/external-source; the jobs worker runs the update
 * routine; the simulator sees the allocations and `sync/done` (or `sync/fail`), and a failed job
 * shows in /api/health and `syncbridge jobs list --failed`.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main as cli } from '../../src/cli';
import { loadExternalSourceFlows } from '../../src/lib/config';
import { registerWebhooksCommand } from '../../src/lib/flows/external-source/register-command';
import type { WebhookMarker } from '../../src/lib/webhooks/store';
import {
  startExternalSourceHost,
  WEBHOOK_SECRET,
  type ExternalSourceHost,
} from '../support/external-source-host';
import { waitFor } from '../support/wait';

let h: ExternalSourceHost;
const participants = Array.from({ length: 30 }, (_, i) => i + 1);

beforeAll(async () => {
  // Two deliveries and no client retry: a job that keeps failing transiently gives up fast.
  h = await startExternalSourceHost({ settings: { SYNC_MAX_ATTEMPTS: '2', WISEFLOW_MAX_RETRIES: '0' } });
}, 60_000);
afterAll(async () => {
  await h?.stop();
});

const register = (baseUrl: string, env: Record<string, string> = h.settings) => {
  const lines: string[] = [];
  return registerWebhooksCommand({
    flows: loadExternalSourceFlows(env),
    baseUrl,
    env: {},
    print: (l) => lines.push(l),
  }).then((r) => ({ ...r!, lines }));
};

async function settled(requestId: string): Promise<WebhookMarker> {
  return waitFor(
    async () => {
      const m = await h.store.get({ route: 'external-source', eventId: `request:${requestId}` });
      return m && (m.state === 'done' || m.state === 'failed') ? m : undefined;
    },
    { timeoutMs: 20_000, what: `request ${requestId} to finish` },
  );
}

async function post(call: { body: string; headers: Record<string, string> }) {
  const res = await fetch(h.webhookUrl, { method: 'POST', headers: call.headers, body: call.body });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('register-webhooks against the simulator', () => {
  it('creates once, changes nothing on a rerun, updates when the URL changes, replaces on a new secret', async () => {
    const first = await register('http://127.0.0.1:9/');
    expect(first.action).toBe('created');
    expect(first.lines.join('\n')).toContain('F&O business events');
    const calls = () => h.sim.requests.filter((r) => r.path.startsWith('/v1/webhooks')).map((r) => r.method);
    const before = calls().length;
    expect((await register('http://127.0.0.1:9/')).action).toBe('unchanged');
    expect(calls().slice(before)).toEqual(['GET']); // looked, changed nothing

    const moved = await register(h.host.httpUrl);
    expect(moved).toMatchObject({ action: 'updated', webhookId: first.webhookId });
    expect((await register(h.host.httpUrl)).action).toBe('unchanged');
    expect(h.sim.webhooks).toMatchObject([
      { url: h.webhookUrl, active: true, events: ['FLOW_EXTERNAL_SOURCE'], secret: WEBHOOK_SECRET },
    ]);

    const rotated = { ...h.settings, WISEFLOW_WEBHOOK_SECRET: 'a-rotated-secret-0123456789' };
    const replaced = await register(h.host.httpUrl, rotated);
    expect(replaced.action).toBe('replaced');
    expect(replaced.deleted).toEqual([first.webhookId]);
    expect(h.sim.webhooks).toHaveLength(1);
    // Back to the app's secret for the rest of the file.
    expect((await register(h.host.httpUrl)).action).toBe('replaced');
    expect(h.sim.webhooks).toMatchObject([{ secret: WEBHOOK_SECRET, url: h.webhookUrl }]);
  });
});

describe('FLOW_EXTERNAL_SOURCE through the local host', () => {
  it('a signed request update: a source is created, allocations match the roster, sync/done', async () => {
    const flowId = h.sim.addFlow({ code: 'E2E-EXAM', participants });
    h.roster.set('E2E-EXAM', [3, 1, 4, 15, 9, 2, 6]);
    const t0 = Date.now();
    const r = await h.sim.requestUpdate(flowId);
    expect(r.deliveries).toMatchObject([{ status: 202 }]);
    expect((await settled(r.requestId)).state).toBe('done');
    console.log(`external-source e2e: request → sync/done in ${Date.now() - t0} ms`);
    expect(h.sim.sources(flowId)).toMatchObject([{ reference: 'E2E-EXAM', state: 'SUCCESS' }]);
    expect(h.sim.allocations(flowId, 'E2E-EXAM')).toEqual([1, 2, 3, 4, 6, 9, 15]);
    expect(h.sim.syncCalls.filter((c) => c.flowId === flowId)).toMatchObject([
      { kind: 'done', reference: 'E2E-EXAM', status: 200 },
    ]);

    // A roster change: the next request makes exactly the adds and removes needed.
    h.roster.set('E2E-EXAM', [1, 2, 3, 4, 6, 9, 20]);
    const calls = h.sim.allocationCalls.length;
    const again = await h.sim.requestUpdate(flowId);
    expect((await settled(again.requestId)).state).toBe('done');
    expect(h.sim.allocations(flowId, 'E2E-EXAM')).toEqual([1, 2, 3, 4, 6, 9, 20]);
    expect(h.sim.allocationCalls.slice(calls).map((c) => [c.kind, c.participantIds])).toEqual([
      ['add', [20]],
      ['removeOne', [15]],
    ]);
  });

  it('forged signature, stale timestamp, unknown event: 401/401/400 and nothing stored or enqueued', async () => {
    const flowId = h.sim.addFlow({ code: 'E2E-FORGED', participants });
    const markers = (await h.store.list()).length;
    const payload = () => h.sim.externalSourcePayload(flowId);
    const forged = await post(
      h.sim.buildWebhookCall(payload(), { secret: 'not-the-secret-0123456789abcdef' }),
    );
    expect(forged).toMatchObject({ status: 401, body: { error: { code: 'signature_invalid' } } });
    const stale = await post(
      h.sim.buildWebhookCall(payload(), { secret: WEBHOOK_SECRET, timestampMs: Date.now() - 3600_000 }),
    );
    expect(stale).toMatchObject({ status: 401, body: { error: { code: 'timestamp_out_of_tolerance' } } });
    const unknown = await post(
      h.sim.buildWebhookCall({ ...payload(), event: 'PAPER_SUBMITTED' }, { secret: WEBHOOK_SECRET }),
    );
    expect(unknown).toMatchObject({ status: 400, body: { error: { code: 'invalid_payload' } } });
    expect(JSON.stringify(unknown.body)).toContain('FLOW_EXTERNAL_SOURCE');
    expect((await h.store.list()).length).toBe(markers);
    expect(h.sim.sources(flowId)).toEqual([]); // no job ran
  });

  it('the same webhook twice is processed once', async () => {
    const flowId = h.sim.addFlow({ code: 'E2E-TWICE', participants });
    h.roster.set('E2E-TWICE', [5, 6]);
    const requestId = randomUUID();
    const call = h.sim.buildWebhookCall(h.sim.externalSourcePayload(flowId, { requestId }), {
      secret: WEBHOOK_SECRET,
    });
    const first = await post(call);
    const second = await post(call);
    expect(first).toMatchObject({ status: 202, body: { accepted: true, duplicate: false } });
    expect(second).toMatchObject({ status: 202, body: { accepted: true, duplicate: true } });
    const m = await settled(requestId);
    expect(m).toMatchObject({ state: 'done', attempts: 1 });
    // A redelivery after it finished is still a duplicate.
    expect(await post(call)).toMatchObject({ status: 202, body: { duplicate: true } });
    await h.host.waitForIdle({ timeoutMs: 10_000, quietMs: 200 });
    expect(h.sim.syncCalls.filter((c) => c.flowId === flowId)).toHaveLength(1);
    expect(h.sim.allocationCalls.filter((c) => c.flowId === flowId && c.kind === 'add')).toHaveLength(1);
  });

  it('a permanent failure: sync/fail, the job ends failed and shows in health and the CLI', async () => {
    const flowId = h.sim.addFlow({ code: 'E2E-BROKEN', participants });
    h.sim.addSource(flowId, 'BROKEN-1');
    h.roster.set('BROKEN-1', ['not-a-participant-id']);
    const r = await h.sim.requestUpdate(flowId);
    const m = await settled(r.requestId);
    expect(m.state).toBe('failed');
    expect(m.reason).toMatch(/reference BROKEN-1: invalid_roster: .*\(sync\/fail reported\)/);
    expect(h.sim.syncCalls.filter((c) => c.flowId === flowId)).toMatchObject([
      { kind: 'fail', reference: 'BROKEN-1', status: 200 },
    ]);
    expect(h.sim.sources(flowId)).toMatchObject([{ state: 'FAILED' }]);

    const health = await fetch(`${h.host.httpUrl}/api/health`);
    expect(health.status).toBe(200);
    const report = (await health.json()) as {
      status: string;
      jobs: { failed: { count: number; recent: { eventId: string; reason: string }[] } };
    };
    expect(report.status).toBe('degraded');
    expect(report.jobs.failed.count).toBeGreaterThanOrEqual(1);
    expect(report.jobs.failed.recent).toContainEqual(
      expect.objectContaining({ eventId: `request:${r.requestId}`, reason: m.reason }),
    );

    const out: string[] = [];
    const errors: string[] = [];
    const io = {
      out: (l: string) => void out.push(l),
      err: (l: string) => void errors.push(l),
      isTTY: false,
    };
    const spy = vi.spyOn(console, 'log').mockImplementation((line: string) => void out.push(line));
    try {
      expect(await cli(['jobs', 'list', '--failed'], io)).toBe(0);
      expect(await cli(['sources', 'list', String(flowId)], io)).toBe(0);
      expect(await cli(['sources', 'add', String(flowId), 'BROKEN-2'], io)).toBe(0);
      // A bad reference: a clear error on stderr and a non-zero exit, nothing created.
      expect(await cli(['sources', 'add', String(flowId), 'bad reference!'], io)).toBe(1);
      expect(errors.join('\n')).toMatch(/letters, digits and - _ , \. ; : \| only/);
      h.roster.set('BROKEN-2', [7, 8]);
      expect(await cli(['sources', 'sync', String(flowId), '--reference', 'BROKEN-2'], io)).toBe(0);
      // --json gives the failed jobs as data.
      const json: string[] = [];
      expect(
        await cli(['jobs', 'list', '--failed', '--json'], { ...io, out: (l) => void json.push(l) }),
      ).toBe(0);
      expect(JSON.parse(json.join('\n'))).toContainEqual(
        expect.objectContaining({ eventId: `request:${r.requestId}`, state: 'failed' }),
      );
    } finally {
      spy.mockRestore();
    }
    const text = out.join('\n');
    expect(text).toContain(`external-source/request:${r.requestId}  failed`);
    expect(text).toContain('reason: reference BROKEN-1: invalid_roster');
    expect(text).toMatch(/BROKEN-1 {2}id=\d+ state=FAILED/);
    expect(text).toContain('created external source BROKEN-2');
    expect(text).toContain('BROKEN-2  done roster=2 added=2 removed=0');
    expect(h.sim.allocations(flowId, 'BROKEN-2')).toEqual([7, 8]);
  });

  it('transient failures until the last delivery: the job ends failed and WISEflow gets sync/fail', async () => {
    const flowId = h.sim.addFlow({ code: 'E2E-FLAKY', participants });
    h.sim.addSource(flowId, 'FLAKY-1');
    h.roster.set('FLAKY-1', [1, 2]);
    await h.host.waitForIdle({ timeoutMs: 10_000, quietMs: 200 });
    h.sim.faults.failNext(2, 503); // each delivery's first call (list the sources)
    const r = await h.sim.requestUpdate(flowId);
    const m = await settled(r.requestId);
    expect(m).toMatchObject({ state: 'failed', attempts: 2 });
    expect(m.reason).toMatch(/^gave up after 2 deliveries: .*503/);
    expect(h.sim.syncCalls.filter((c) => c.flowId === flowId)).toMatchObject([
      { kind: 'fail', reference: 'FLAKY-1', status: 200 },
    ]);
    expect(h.sim.sources(flowId)).toMatchObject([{ state: 'FAILED' }]);
  });

  it("two WISEflow flows' requests interleaved: no cross-talk", async () => {
    const a = h.sim.addFlow({ code: 'E2E-A', participants });
    const b = h.sim.addFlow({ code: 'E2E-B', participants });
    h.sim.addSource(a, 'SHARED-NAME');
    h.sim.addSource(b, 'SHARED-NAME-B');
    const rosterA = [[1, 2, 3], [2, 3, 4, 5], [10]];
    const rosterB = [
      [20, 21],
      [21, 22, 23],
      [1, 2],
    ];
    for (let round = 0; round < 3; round++) {
      h.roster.set('SHARED-NAME', rosterA[round]!);
      h.roster.set('SHARED-NAME-B', rosterB[round]!);
      const [ra, rb] = await Promise.all([h.sim.requestUpdate(a), h.sim.requestUpdate(b)]);
      const [ma, mb] = await Promise.all([settled(ra.requestId), settled(rb.requestId)]);
      expect([ma.state, mb.state]).toEqual(['done', 'done']);
      expect(h.sim.allocations(a, 'SHARED-NAME')).toEqual(rosterA[round]);
      expect(h.sim.allocations(b, 'SHARED-NAME-B')).toEqual(rosterB[round]);
    }
    const sourceIds = new Map([
      [a, h.sim.sources(a)[0]!.id],
      [b, h.sim.sources(b)[0]!.id],
    ]);
    for (const c of h.sim.allocationCalls.filter((c) => c.flowId === a || c.flowId === b))
      expect(c.sourceId).toBe(sourceIds.get(c.flowId));
    expect(h.sim.syncCalls.filter((c) => c.flowId === a).map((c) => c.reference)).toEqual(
      Array(3).fill('SHARED-NAME'),
    );
    expect(h.sim.syncCalls.filter((c) => c.flowId === b).map((c) => c.reference)).toEqual(
      Array(3).fill('SHARED-NAME-B'),
    );
  });
});
