/**
 * Issue 15 items 2 and 3: a failing records message waits before it is handed back (Service Bus
 * redelivers at once, so without the wait a short outage burns every delivery), the last
 * delivery retries transient failures in-process before quarantining anything, and what it
 * quarantines after that is `transient-exhausted`, never passed off as a permanent `record`.
 * The dead-letter handler waits too before rethrowing (its queue has no delivery limit).
 * The waits are recorded by the pipeline's injected sleep, so nothing here sleeps for real.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { applyRecordsMessage, backoffMs } from '../../src/lib/batch/applier';
import { PermanentError, TransientError } from '../../src/lib/errors';
import type { TargetSystem } from '../../src/lib/ports';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { faultAt, Pipeline, quietLog, type PipelineOptions } from '../support/pipeline';

let azurite: SharedAzurite;
const open: { stop(): Promise<void> }[] = [];
beforeAll(() => {
  azurite = sharedAzurite();
});
afterEach(async () => {
  while (open.length) await open.pop()!.stop();
});

async function sim(initialRecords: number) {
  const s = await FlowfinitySimulator.start({ initialRecords, seed: 11 });
  open.push(s);
  return s;
}
async function pipeline(o: Omit<PipelineOptions, 'azuriteConnectionString'>) {
  const p = await new Pipeline({ azuriteConnectionString: azurite.connectionString, ...o }).start();
  open.push(p);
  return p;
}

/** A target failing for one record: `failures` times (Infinity: always), transiently or permanently. */
function failing(recordId: string, o: { failures: number; permanent?: boolean }) {
  const state = { calls: 0 };
  const wrap = (inner: TargetSystem): TargetSystem => ({
    ensureReady: () => inner.ensureReady?.() ?? Promise.resolve(),
    apply: async (r) => {
      if (r.key.endsWith(`|${recordId}`) && state.calls++ < o.failures)
        throw o.permanent ? new PermanentError('target says 422') : new TransientError('target answered 503');
      return inner.apply(r);
    },
  });
  return { wrap, state };
}

const SECONDS = (...s: number[]) => s.map((x) => x * 1000);

describe('back-off before a redelivery (issue 15 item 2)', () => {
  it('schedule: delivery n waits the n-th value, the last one repeats', () => {
    expect([1, 2, 3, 4, 5, 9].map((n) => backoffMs(SECONDS(5, 15, 45, 120), n))).toEqual(
      SECONDS(5, 15, 45, 120, 120, 120),
    );
    expect(backoffMs([], 3)).toBe(0);
  });

  it('a target outage over two deliveries: each failing delivery waits longer, then the message applies; nothing quarantined', async () => {
    const s = await sim(8);
    const victim = s.snapshot()[2]!;
    const t = failing(victim.RecordID, { failures: 2 });
    const p = await pipeline({ sim: s, wrapTarget: t.wrap, maxDequeueCount: 5 });
    await p.syncUntilQuiet();
    expect(p.waits).toEqual(SECONDS(5, 15));
    expect(await p.quarantine.list()).toEqual([]);
    expect(await p.diffWithSource()).toEqual([]);
    expect(p.target.duplicates()).toEqual([]);
  });

  it('the last delivery retries a transient failure in-process instead of quarantining it', async () => {
    const s = await sim(8);
    const victim = s.snapshot()[2]!;
    // Fails on deliveries 1 and 2 (maxAttempts 2) and on the first in-process round; the second round applies it.
    const t = failing(victim.RecordID, { failures: 3 });
    const p = await pipeline({
      sim: s,
      wrapTarget: t.wrap,
      maxDequeueCount: 2,
      env: { SYNC_RETRY_BACKOFF_SECONDS: '2,4,8' },
    });
    await p.syncUntilQuiet();
    // delivery 1 failed → 2 s; delivery 2 (the last): round 1 waits 2 s, round 2 waits 4 s and applies.
    expect(p.waits).toEqual(SECONDS(2, 2, 4));
    expect(await p.quarantine.list()).toEqual([]);
    expect(await p.diffWithSource()).toEqual([]);
  });

  it('a record failing transiently through every retry is quarantined as transient-exhausted (replayable), a refused one as record at once', async () => {
    const s = await sim(10);
    const flaky = s.snapshot()[2]!;
    const refused = s.snapshot()[6]!;
    const t1 = failing(flaky.RecordID, { failures: Infinity });
    const t2 = failing(refused.RecordID, { failures: Infinity, permanent: true });
    const p = await pipeline({
      sim: s,
      wrapTarget: (inner) => t2.wrap(t1.wrap(inner)),
      maxDequeueCount: 2,
      env: { SYNC_RECORDS_PER_MESSAGE: '20', SYNC_RETRY_BACKOFF_SECONDS: '1,3' },
    });
    await p.syncUntilQuiet();
    const q = await p.quarantine.list();
    expect(q.map((e) => [e.kind, e.recordId]).sort()).toEqual(
      [
        ['record', refused.RecordID],
        ['transient-exhausted', flaky.RecordID],
      ].sort(),
    );
    expect(q.find((e) => e.kind === 'transient-exhausted')!.error).toMatch(/transient, retries exhausted/);
    // delivery 1 → 1 s; the last delivery: rounds 1..3 wait 1, 3, 3 s (bounded), then quarantine.
    expect(p.waits).toEqual(SECONDS(1, 1, 3, 3));
    // The refused record took no in-process retry: delivery 1 stopped at the flaky record before
    // it, and the last delivery tried it once.
    expect(t2.state.calls).toBe(1);
    expect(await p.diffWithSource(new Set([`leads|${flaky.RecordID}`, `leads|${refused.RecordID}`]))).toEqual(
      [],
    );

    // Once the target is back, replay fixes the transient one.
    t1.state.calls = Infinity;
    const report = await p.replay([q.find((e) => e.kind === 'transient-exhausted')!.id]);
    expect(report.failed).toEqual([]);
    expect(await p.diffWithSource(new Set([`leads|${refused.RecordID}`]))).toEqual([]);
  });
});

describe('the dead-letter handler waits before rethrowing (issue 15 item 3)', () => {
  it('storage down while handling a dead-lettered message: it waits (bounded by the schedule) and rethrows', async () => {
    const s = await sim(3);
    const storageDown = faultAt('apply.ledger', () => new TransientError('table storage unavailable (503)'), {
      times: 99,
    });
    const p = await pipeline({ sim: s, faults: storageDown });
    const r = s.snapshot()[0]!;
    const message = {
      type: 'records',
      stream: 'leads',
      batchId: 'b-dead',
      chunk: 0,
      records: [{ id: r.RecordID, v: r.lastSubmissionId.toString(), del: false, data: r.fields }],
    };
    for (const deliveryCount of [1, 3, 40]) {
      await expect(
        applyRecordsMessage(
          p.engine,
          JSON.stringify(message),
          { deliveryCount, poison: true, poisonReason: 'MaxDeliveryCountExceeded' },
          quietLog,
        ),
      ).rejects.toThrow(/table storage unavailable/);
    }
    // The dead-letter queue has no delivery limit: the wait grows to the schedule's last value and stays there.
    expect(p.waits).toEqual(SECONDS(5, 45, 120));
  });
});
