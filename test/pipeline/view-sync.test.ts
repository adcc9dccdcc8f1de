/**
 * View sync end to end on real parts: Azurite, the Flowfinity simulator over HTTP, the storage
 * queue trigger semantics of the local host. Every test checks the invariants of DESIGN.md:
 * target equals source, no version applied twice, cursor monotonic and never past an
 * unapplied record.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PermanentError } from '../../src/lib/errors';
import { type OutgoingMessage, type QueueRole, type TargetSystem, type Transport } from '../../src/lib/ports';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { adapterSets } from '../support/adapters';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { Pipeline, type AzureTestServers, type PipelineOptions } from '../support/pipeline';

let azurite: SharedAzurite;
const open: { stop(): Promise<void> }[] = [];
let servers: AzureTestServers | undefined;

beforeAll(async () => {
  azurite = sharedAzurite();
});
afterEach(async () => {
  while (open.length) await open.pop()!.stop();
});
afterAll(async () => {});

async function sim(initialRecords: number, seed = 7) {
  const s = await FlowfinitySimulator.start({ initialRecords, seed });
  open.push(s);
  return s;
}
async function pipeline(o: Omit<PipelineOptions, 'azuriteConnectionString'>) {
  const p = await new Pipeline({
    azuriteConnectionString: azurite.connectionString,
    azure: servers,
    ...o,
  }).start();
  open.push(p);
  return p;
}
async function expectInvariants(p: Pipeline, except?: Set<string>) {
  expect(await p.diffWithSource(except)).toEqual([]);
  expect(p.target.duplicates()).toEqual([]);
  expect(p.violations).toEqual([]);
}

describe.each(adapterSets)('over $name', (adapters) => {
  beforeAll(async () => {
    servers = await adapters.start();
  });
  afterAll(async () => {
    await adapters.stop(servers);
  });
  describe('view sync', () => {
    it('syncs every record on the first run, then only changes; deletes become tombstones; an empty run leaves the cursor alone', async () => {
      const s = await sim(120);
      const p = await pipeline({ sim: s, env: { SYNC_RECORDS_PER_MESSAGE: '7' } });

      expect(await p.cursor.read()).toBeUndefined();
      const first = await p.tick();
      expect(first).toMatchObject({ kind: 'planned', from: null, records: 120, messages: 18 });
      expect(s.stats.lastQuery?.has('previouslastsubmissionid')).toBe(false);
      await p.settle();
      await expectInvariants(p);
      const cursor1 = await p.cursor.read();
      expect(cursor1).toBe(BigInt(Math.max(...s.snapshot().map((r) => Number(r.lastSubmissionId)))));
      expect(p.target.writes).toBe(120);

      // Empty: no change in the source → nothing planned, cursor untouched (no write at all).
      // The view is re-read from cursor − SYNC_LOOKBACK (default 1000) to catch late commits,
      // but records already applied are dropped at planning: the target is not touched either.
      const writesBefore = p.cursor.writes.length;
      expect(await p.tick()).toEqual({ kind: 'empty', from: cursor1!.toString() });
      expect(s.stats.lastQuery?.get('previouslastsubmissionid')).toBe((cursor1! - 1000n).toString());
      expect(p.cursor.writes.length).toBe(writesBefore);
      expect(p.target.writes).toBe(120);
      expect((await p.health()).totals).toMatchObject({ applied: 120, skipped: 0 });

      // Changes: one update, one insert, one delete.
      const [a, b] = s.snapshot();
      s.update(a!.RecordID, { Company: 'Changed Inc' });
      s.insert();
      s.remove(b!.RecordID);
      expect(await p.tick()).toMatchObject({ kind: 'planned', records: 3 });
      await p.settle();
      await expectInvariants(p);
      expect(p.target.writes).toBe(123);
      const target = await p.targetRecords();
      expect(target.get(`leads|${a!.RecordID}`)?.data.Company).toBe('Changed Inc');
      const tomb = target.get(`leads|${b!.RecordID}`);
      expect(tomb?.deleted).toBe(true);
      expect(tomb?.version).toBe(s.snapshot().find((r) => r.RecordID === b!.RecordID)!.lastSubmissionId);

      const h = await p.health();
      expect(h).toMatchObject({ status: 'ok', totals: { applied: 123, batches: 2 }, batch: null });
    });

    it('re-reads the lookback window without touching the target, and applies and counts a late commit below the cursor', async () => {
      const s = await sim(30);
      const p = await pipeline({ sim: s, env: { SYNC_LOOKBACK: '100' } });
      const late = s.beginLateCommit(); // its id is allocated now, the record commits later
      s.insert();
      s.insert();
      await p.syncUntilQuiet();
      const cursor = (await p.cursor.read())!;
      expect(cursor).toBeGreaterThan(late.id);
      const writes = p.target.writes;
      await p.syncUntilQuiet(); // re-reads 32 records of the window: dropped at planning
      expect((await p.health()).totals.skipped).toBe(0);

      late.commit();
      await p.syncUntilQuiet();
      await expectInvariants(p);
      expect(p.target.writes).toBe(writes + 1);
      expect(await p.cursor.read()).toBe(cursor); // a late record does not move the cursor
      expect(await p.health()).toMatchObject({
        totals: { skipped: 0 },
        lateCommits: { caught: 1, maxDepth: String(cursor - late.id) },
      });
    });

    it('applies every message once when each is delivered twice, and in reverse order', async () => {
      const s = await sim(60);
      class DuplicatingReversingTransport implements Transport {
        readonly maxMessageBytes: number;
        constructor(private readonly inner: Transport) {
          this.maxMessageBytes = inner.maxMessageBytes;
        }
        async send(queue: QueueRole, messages: OutgoingMessage[]) {
          const reversed = [...messages].reverse();
          await this.inner.send(queue, [...reversed, ...reversed]);
        }
        ensureQueues() {
          return this.inner.ensureQueues!();
        }
        close() {
          return this.inner.close();
        }
      }
      const p = await pipeline({ sim: s, env: { SYNC_RECORDS_PER_MESSAGE: '4' } });
      p.wrapTransport((t) => new DuplicatingReversingTransport(t));
      await p.syncUntilQuiet();
      s.update(s.snapshot()[5]!.RecordID);
      await p.syncUntilQuiet();
      await expectInvariants(p);
      expect(p.target.writes).toBe(61);
      const state = await p.ledger.getState();
      expect(state.batchesCompleted).toBe(2);
    });

    it('a tick while a dispatch is in progress in the same instance neither plans again nor abandons it', async () => {
      const s = await sim(30);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let entered!: () => void;
      const inSend = new Promise<void>((r) => (entered = r));
      let blocked = false;
      const faults = {
        async at(point: string) {
          if (point !== 'plan.send' || blocked) return;
          blocked = true;
          entered();
          await gate;
        },
      };
      const p = await pipeline({ sim: s, faults });
      const first = p.tick();
      await inSend;
      const second = await p.tick();
      expect(['busy', 'in-flight']).toContain(second.kind);
      release();
      expect(await first).toMatchObject({ kind: 'planned', records: 30 });
      await p.settle();
      await expectInvariants(p);
      const state = await p.ledger.getState();
      expect(state.batchesCompleted).toBe(1);
      expect(p.target.writes).toBe(30);
    });

    it('quarantines a record too large for one queue message, passes it, and replays it straight to the target', async () => {
      const s = await sim(5);
      const p = await pipeline({ sim: s });
      // Larger than a message on either transport (48 KB storage queue, 200 KB Service Bus).
      const big = s.insert({ Notes: 'x'.repeat(260_000) });
      await p.syncUntilQuiet();
      const q = await p.quarantine.list();
      expect(q.map((e) => [e.kind, e.recordId, e.version])).toEqual([
        ['oversize', big.RecordID, big.lastSubmissionId.toString()],
      ]);
      // The whole record in its wire form: replay needs nothing else.
      expect(JSON.parse(q[0]!.payload)).toMatchObject({
        id: big.RecordID,
        del: false,
        data: { RecordID: big.RecordID },
      });
      expect(await p.cursor.read()).toBe(big.lastSubmissionId);
      expect(await p.diffWithSource()).toEqual([`leads|${big.RecordID}: missing in target`]);

      expect(await p.replay('all')).toMatchObject({ failed: [], skipped: [] });
      await expectInvariants(p);
      expect(String((await p.targetRecords()).get(`leads|${big.RecordID}`)?.data.Notes)).toHaveLength(
        260_000,
      );
    });

    it('never lets an older version overwrite a newer one (out-of-order versions of one record)', async () => {
      const s = await sim(1);
      const p = await pipeline({ sim: s });
      const id = s.snapshot()[0]!.RecordID;
      const key = `leads|${id}`;
      expect(await p.target.apply({ key, version: 50n, deleted: false, data: { v: 'new' } })).toBe('applied');
      expect(await p.target.apply({ key, version: 40n, deleted: false, data: { v: 'old' } })).toBe('skipped');
      expect(await p.target.apply({ key, version: 50n, deleted: false, data: { v: 'again' } })).toBe(
        'skipped',
      );
      expect(await p.target.apply({ key, version: 60n, deleted: true, data: { v: 'gone' } })).toBe('applied');
      expect(await p.target.apply({ key, version: 55n, deleted: false, data: { v: 'resurrect?' } })).toBe(
        'skipped',
      );
      const t = (await p.targetRecords()).get(key)!;
      expect(t).toMatchObject({ version: 60n, deleted: true, data: { v: 'gone' } });
    });

    it('retries view 5xx and timeouts; a view that stays down fails the tick and the next tick recovers', async () => {
      const s = await sim(30);
      const p = await pipeline({ sim: s });
      s.faults.failNext(2, 503);
      expect(await p.tick()).toMatchObject({ kind: 'planned', records: 30 });
      await p.settle();

      s.insert();
      s.faults.failNext(10, 500);
      await expect(p.tick()).rejects.toMatchObject({ name: 'TransientError', kind: 'transient' });
      expect((await p.ledger.getState()).leaseOwner).toBeUndefined();
      // What the timer function does with a failed run: health reports it until a run succeeds.
      await p.ledger.recordError('plan failed: TransientError: view unavailable', new Date());
      expect((await p.health()).status).toBe('degraded');
      s.faults.failNext(0);
      s.faults.hangNext(1);
      await p.syncUntilQuiet();
      await expectInvariants(p);
      expect(await p.health()).toMatchObject({ status: 'ok', lastError: null });
    }, 60_000);

    it('a full batch plans the next one at once; when that plan fails, a poll message takes over', async () => {
      const s = await sim(30);
      const p = await pipeline({
        sim: s,
        env: { SYNC_MAX_BATCH: '10', SYNC_RECORDS_PER_MESSAGE: '5', FLOWFINITY_MAX_RETRIES: '0' },
      });
      expect(await p.tick()).toMatchObject({ kind: 'planned', records: 10, full: true });
      // The plan that the completion of batch 1 runs inline finds the view down: the completion
      // must still succeed, and the poll message it sends instead plans batches 2 and 3.
      s.faults.failNext(1, 500);
      const before = s.stats.requests;
      await p.settle();
      expect(s.stats.requests - before).toBeGreaterThanOrEqual(3); // the failed plan + batches 2 and 3
      expect(await p.cursor.read()).toBe(s.snapshot().at(-1)!.lastSubmissionId);
      await expectInvariants(p);
      expect((await p.ledger.getState()).batchesCompleted).toBe(3);
    }, 60_000);

    it('quarantines a malformed view record with its raw JSON and syncs the rest', async () => {
      const s = await sim(20);
      const p = await pipeline({ sim: s });
      s.faults.malformedNext(1);
      await p.syncUntilQuiet();
      const q = await p.quarantine.list();
      expect(q).toHaveLength(1);
      expect(q[0]).toMatchObject({ kind: 'malformed' });
      expect(q[0]!.payload).toContain('RecordID');
      expect(q[0]!.error).toMatch(/lastSubmissionId/);
      const bad = JSON.parse(q[0]!.payload) as { RecordID: string };
      await expectInvariants(p, new Set([`leads|${bad.RecordID}`]));
      expect((await p.health()).quarantine.count).toBe(1);
    });
  });

  describe('poison records', () => {
    /** A target that fails for one record until `fixed.now` is set (the operator's fix). */
    const fixed = { now: false };
    const failingFor =
      (recordId: string, permanent = false) =>
      (inner: TargetSystem): TargetSystem => ({
        ensureReady: () => inner.ensureReady?.() ?? Promise.resolve(),
        apply: async (r) => {
          if (r.key.endsWith(`|${recordId}`) && !fixed.now)
            throw permanent ? new PermanentError('target says 422') : new Error('target timed out');
          return inner.apply(r);
        },
      });

    beforeEach(() => {
      fixed.now = false;
    });

    it('POISON_POLICY=quarantine: the poison record is quarantined after the delivery limit, the rest syncs, the cursor moves on', async () => {
      const s = await sim(15);
      const poison = s.snapshot()[3]!;
      const p = await pipeline({
        sim: s,
        wrapTarget: failingFor(poison.RecordID),
        maxDequeueCount: 3,
        env: { SYNC_RECORDS_PER_MESSAGE: '5' },
      });
      await p.syncUntilQuiet();
      const q = await p.quarantine.list();
      expect(q.map((e) => [e.kind, e.recordId, e.version, e.attempts])).toEqual([
        ['transient-exhausted', poison.RecordID, poison.lastSubmissionId.toString(), 3],
      ]);
      expect(JSON.parse(q[0]!.payload)).toMatchObject({
        id: poison.RecordID,
        v: poison.lastSubmissionId.toString(),
      });
      await expectInvariants(p, new Set([`leads|${poison.RecordID}`]));
      expect(await p.cursor.read()).toBe(
        s
          .snapshot()
          .map((r) => r.lastSubmissionId)
          .reduce((a, b) => (a > b ? a : b)),
      );
      expect((await p.health()).status).toBe('degraded');

      // The operator fixes the target and replays: the record lands, the quarantine empties.
      fixed.now = true;
      const report = await p.replay('all');
      expect(report).toMatchObject({ done: [expect.stringContaining('(applied)')], failed: [] });
      await expectInvariants(p);
      expect(await p.quarantine.count()).toBe(0);
      expect((await p.health()).status).toBe('ok');
    });

    it('a PermanentError is quarantined at once, without waiting for the delivery limit', async () => {
      const s = await sim(6);
      const poison = s.snapshot()[1]!;
      const p = await pipeline({ sim: s, wrapTarget: failingFor(poison.RecordID, true), maxDequeueCount: 5 });
      await p.syncUntilQuiet();
      const q = await p.quarantine.list();
      expect(q.map((e) => [e.recordId, e.attempts])).toEqual([[poison.RecordID, 1]]);
      await expectInvariants(p, new Set([`leads|${poison.RecordID}`]));
    });

    it('POISON_POLICY=block: the view stops before the poison record and says so', async () => {
      const s = await sim(10);
      const poison = s.snapshot()[4]!;
      const p = await pipeline({
        sim: s,
        wrapTarget: failingFor(poison.RecordID),
        maxDequeueCount: 2,
        env: { POISON_POLICY: 'block', SYNC_RECORDS_PER_MESSAGE: '3' },
      });
      await p.syncUntilQuiet();
      expect(await p.cursor.read()).toBeUndefined();
      const h = await p.health();
      expect(h.status).toBe('blocked');
      expect(h.blocked).toContain(poison.RecordID);
      expect(await p.tick()).toMatchObject({ kind: 'blocked' });
      const q = await p.quarantine.list();
      expect(q.map((e) => [e.recordId, e.policy])).toEqual([[poison.RecordID, 'block']]);
      expect(p.violations).toEqual([]);

      // Fix and replay: the blocked message is counted, the batch drains and completes.
      fixed.now = true;
      expect(await p.replay([q[0]!.id])).toMatchObject({ failed: [] });
      await p.settle();
      await p.syncUntilQuiet();
      await expectInvariants(p);
      const h2 = await p.health();
      expect(h2).toMatchObject({ status: 'ok', blocked: null, batch: null, quarantine: { count: 0 } });
      expect(h2.cursor).toBe(
        s
          .snapshot()
          .map((r) => r.lastSubmissionId)
          .reduce((a, b) => (a > b ? a : b))
          .toString(),
      );
    });
  });
});
