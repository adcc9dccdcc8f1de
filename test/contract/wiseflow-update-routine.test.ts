/**
 * The WISEflow update routine against the WISEflow simulator over real HTTP, with the Flowfinity
 * roster (roster.ts) reading a roster view and the allocation memory in process. End states are
 * read from the simulator; "no duplicate allocation call that changes state" is checked on the
 * simulator's log of allocation calls: every accepted call changed exactly what it named.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedCrash } from '../../src/lib/faults';
import type { ViewItem, ViewParams, ViewSource } from '../../src/lib/ports';
import { MemoryAllocationStore } from '../../src/lib/wiseflow/allocation-store';
import { WiseflowClient } from '../../src/lib/wiseflow/client';
import { flowfinityRoster } from '../../src/lib/wiseflow/roster';
import {
  runUpdateRoutine,
  UPDATE_ROUTINE_FAULT_POINTS,
  type RoutineFaults,
  type UpdateRequest,
  type UpdateRoutineDeps,
  type UpdateRoutineFaultPoint,
} from '../../src/lib/wiseflow/update-routine';
import { WiseflowSimulator } from '../../src/local/wiseflow-simulator';

/** A roster view: the records of each reference, as a Flowfinity view with a `reference` parameter answers. */
class RosterView implements ViewSource {
  private readonly rows = new Map<string, ViewItem[]>();
  private nextVersion = 1n;
  queries = 0;

  set(
    reference: string,
    participantIds: (number | string)[],
    o: { deleted?: number[]; malformed?: boolean } = {},
  ) {
    const items: ViewItem[] = participantIds.map((p, i) => ({
      kind: 'record',
      record: {
        recordId: String(i + 1).padStart(9, '0'),
        version: this.nextVersion++,
        data: { ParticipantId: String(p), State: o.deleted?.includes(Number(p)) ? 'Deleted' : 'Active' },
      },
    }));
    if (o.malformed)
      items.push({
        kind: 'malformed',
        raw: '{"RecordID":1}',
        error: 'lastSubmissionId: missing',
        index: items.length,
      });
    this.rows.set(reference, items);
  }

  async *query(params: ViewParams): AsyncIterable<ViewItem> {
    this.queries++;
    await sleep(0);
    for (const item of this.rows.get(String(params.reference)) ?? []) yield item;
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

async function setup(o: Partial<UpdateRoutineDeps> = {}) {
  const sim = await WiseflowSimulator.start();
  cleanups.push(() => sim.stop());
  const client = new WiseflowClient({
    baseUrl: sim.baseUrl,
    auth: { kind: 'apiKey', apiKey: sim.credentials.apiKey },
    retryBaseDelayMs: 1,
    maxRetries: 2,
    timeoutMs: 5_000,
  });
  const store = new MemoryAllocationStore();
  const view = new RosterView();
  const roster = flowfinityRoster(view, { referenceParam: 'reference', participantField: 'ParticipantId' });
  const run = (req: UpdateRequest, over: Partial<UpdateRoutineDeps> = {}) =>
    runUpdateRoutine(req, { client, roster, store, ...o, ...over });
  return { sim, client, store, view, run };
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/** Every accepted allocation call changed exactly the participants it named. */
function expectNoDuplicateAllocationCalls(sim: WiseflowSimulator) {
  for (const c of sim.allocationCalls.filter((x) => x.status === 200)) {
    if (c.kind === 'removeAll') expect(c.changed, JSON.stringify(c)).toBeGreaterThan(0);
    else expect(c.changed, JSON.stringify(c)).toBe(c.participantIds.length);
  }
}

/** How many accepted calls added (or removed) participant p on the source. */
function times(sim: WiseflowSimulator, kind: 'add' | 'remove', p: number, sourceId?: number) {
  return sim.allocationCalls.filter(
    (c) =>
      c.status === 200 &&
      (sourceId === undefined || c.sourceId === sourceId) &&
      (kind === 'add' ? c.kind === 'add' : c.kind !== 'add') &&
      c.participantIds.includes(p),
  ).length;
}

describe('update routine', () => {
  it('a flow without sources: creates one from the flow code, allocates the roster, reports done', async () => {
    const { sim, view, run } = await setup();
    const flow = sim.addFlow({ code: 'EXAM-2024', participants: range(1, 10) });
    view.set('EXAM-2024', [3, 1, 2, 2]);

    const report = await run({ flowId: String(flow), flowCode: 'EXAM-2024', requestId: 'r-1' });

    expect(report).toMatchObject({ outcome: 'done', sourcesCreated: ['EXAM-2024'], failures: [] });
    expect(report.sources).toMatchObject([
      { reference: 'EXAM-2024', created: true, added: ['1', '2', '3'], removed: [] },
    ]);
    expect(sim.allocations(flow, 'EXAM-2024')).toEqual([1, 2, 3]);
    expect(sim.allocationCalls.filter((c) => c.kind === 'add')).toHaveLength(1);
    expect(sim.syncCalls.map((c) => [c.reference, c.kind, c.status])).toEqual([['EXAM-2024', 'done', 200]]);
    expect(sim.sources(flow)[0]!.state).toBe('SUCCESS');
  });

  it('a flow code that is not a valid reference gets a derived one; a 409 on create is "it exists"', async () => {
    const { sim, view, run, client } = await setup();
    const flow = sim.addFlow({ code: 'EXAM 2024/A', participants: range(1, 5) });
    const first = await run({ flowId: String(flow), flowCode: 'EXAM 2024/A' });
    const reference = first.sourcesCreated[0]!;
    expect(reference).toMatch(/^EXAM-2024-A_[0-9a-f]{10}$/);

    // A second flow whose listing is empty at first but whose create answers 409 (created meanwhile).
    const flow2 = sim.addFlow({ code: 'F2', participants: range(1, 5) });
    view.set('F2', [1]);
    let listed = 0;
    const racing: typeof client = Object.create(client);
    racing.listSources = async (f) => {
      if (listed++ === 0) {
        const empty = await client.listSources(f);
        sim.addSource(flow2, 'F2'); // a manager adds it right now
        return empty;
      }
      return client.listSources(f);
    };
    const report = await run({ flowId: String(flow2), flowCode: 'F2' }, { client: racing });
    expect(report.outcome).toBe('done');
    expect(report.sourcesCreated).toEqual([]);
    expect(sim.sources(flow2)).toHaveLength(1);
    expect(sim.allocations(flow2, 'F2')).toEqual([1]);
  });

  it('a roster change makes exactly the adds (one call) and removes needed', async () => {
    const { sim, view, run } = await setup();
    const flow = sim.addFlow({ code: 'F', participants: range(1, 10) });
    const src = sim.addSource(flow, 'CLASS-A', [1, 2, 3]);
    view.set('CLASS-A', [1, 2, 3]);
    await run({ flowId: String(flow) });
    expect(sim.allocationCalls).toHaveLength(0);

    view.set('CLASS-A', [2, 3, 4, 5, 9], { deleted: [9] });
    const report = await run({ flowId: String(flow) });
    expect(report.sources).toMatchObject([{ added: ['4', '5'], removed: ['1'], result: 'done' }]);
    expect(sim.allocationCalls.map((c) => [c.kind, c.participantIds])).toEqual([
      ['add', [4, 5]],
      ['removeOne', [1]],
    ]);
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([2, 3, 4, 5]);

    view.set('CLASS-A', []);
    await run({ flowId: String(flow) });
    expect(sim.allocationCalls.at(-1)).toMatchObject({ kind: 'removeAll', sourceId: src, changed: 4 });
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([]);
    expectNoDuplicateAllocationCalls(sim);
  });

  it('running the same request again changes nothing', async () => {
    const { sim, view, run, store } = await setup();
    const flow = sim.addFlow({ code: 'F', participants: range(1, 10) });
    const src = sim.addSource(flow, 'CLASS-A', [7]);
    view.set('CLASS-A', [1, 2, 3]);
    const req = { flowId: String(flow), requestId: 'r-1' };
    const first = await run(req);
    expect(first.sources).toMatchObject([{ added: ['1', '2', '3'], removed: ['7'] }]);
    const calls = sim.allocationCalls.length;
    const memory = await store.get(String(flow), String(src));

    const again = await run(req);
    expect(again.sources).toMatchObject([{ added: [], removed: [], result: 'done' }]);
    expect(sim.allocationCalls).toHaveLength(calls);
    expect(await store.get(String(flow), String(src))).toEqual(memory);
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([1, 2, 3]);
    expect(sim.syncCalls.filter((c) => c.kind === 'done')).toHaveLength(2);
  });

  it('syncs every source of the flow, or only the one the request names', async () => {
    const { sim, view, run } = await setup();
    const flow = sim.addFlow({ code: 'F', participants: range(1, 10) });
    sim.addSource(flow, 'CLASS-A');
    sim.addSource(flow, 'CLASS-B');
    view.set('CLASS-A', [1, 2]);
    view.set('CLASS-B', [3, 4]);

    await run({ flowId: String(flow), reference: 'CLASS-B' });
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([]);
    expect(sim.allocations(flow, 'CLASS-B')).toEqual([3, 4]);
    expect(sim.syncCalls.map((c) => c.reference)).toEqual(['CLASS-B']);

    await run({ flowId: String(flow) });
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([1, 2]);
    expect(sim.syncCalls.map((c) => c.reference)).toEqual(['CLASS-B', 'CLASS-A', 'CLASS-B']);

    const unknown = await run({ flowId: String(flow), reference: 'CLASS-C' });
    expect(unknown).toMatchObject({
      outcome: 'failed',
      failures: [{ code: 'source_not_found', reference: 'CLASS-C' }],
    });
  });

  it('verify "known" repairs an allocation removed by hand; verify "memory" trusts its memory', async () => {
    const { sim, view, run } = await setup();
    const flow = sim.addFlow({ code: 'F', participants: range(1, 10) });
    sim.addSource(flow, 'CLASS-A');
    view.set('CLASS-A', [1, 2, 3]);
    await run({ flowId: String(flow) });
    sim.setAllocations(flow, 'CLASS-A', [1, 3]); // a manager removed 2

    await run({ flowId: String(flow) }, { verify: 'memory' });
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([1, 3]);
    await run({ flowId: String(flow) }, { verify: 'known' });
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([1, 2, 3]);
    expectNoDuplicateAllocationCalls(sim);
  });

  it('the first sync of a source sees allocations made before syncbridge; later only verify "flow" does', async () => {
    const { sim, view, run } = await setup();
    const flow = sim.addFlow({ code: 'F', participants: range(1, 10) });
    sim.addSource(flow, 'CLASS-A', [7, 8]); // allocated by hand in the app
    view.set('CLASS-A', [1, 8]);
    const first = await run({ flowId: String(flow) });
    expect(first.sources).toMatchObject([{ added: ['1'], removed: ['7'] }]);
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([1, 8]);

    sim.setAllocations(flow, 'CLASS-A', [1, 8, 9]); // 9 added by hand later: unknown to "known"
    await run({ flowId: String(flow) });
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([1, 8, 9]);
    await run({ flowId: String(flow) }, { verify: 'flow' });
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([1, 8]);

    // Without discovery the first sync cannot see what was there before.
    const flow2 = sim.addFlow({ code: 'G', participants: range(1, 10) });
    sim.addSource(flow2, 'CLASS-B', [7]);
    view.set('CLASS-B', [1]);
    await run({ flowId: String(flow2) }, { discoverOnFirstSync: false });
    expect(sim.allocations(flow2, 'CLASS-B')).toEqual([1, 7]);
    expectNoDuplicateAllocationCalls(sim);
  });

  it('a roster of user ids is mapped to participant ids; a user not on the flow fails the roster', async () => {
    const { sim, view, run } = await setup({ rosterIds: 'userId' });
    const flow = sim.addFlow({
      code: 'F',
      participants: [
        { participantId: 11, userId: 501 },
        { participantId: 12, userId: 502 },
        ...range(100, 260), // more than one page of participants
      ],
    });
    sim.addSource(flow, 'CLASS-A');
    view.set('CLASS-A', [502, 501, WiseflowSimulator.userIdOf(250)]);
    await run({ flowId: String(flow) });
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([11, 12, 250]);

    view.set('CLASS-A', [501, 999]);
    const report = await run({ flowId: String(flow) });
    expect(report.failures).toMatchObject([{ code: 'invalid_roster', syncFailReported: true }]);
    expect(report.failures[0]!.reason).toContain('999');
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([11, 12, 250]);
  });

  describe('permanent failures → sync/fail and a failure outcome', () => {
    it('an invalid roster: sync/fail is observed, nothing is allocated, the reason names the problem', async () => {
      const { sim, view, run } = await setup();
      const flow = sim.addFlow({ code: 'F', participants: range(1, 10) });
      sim.addSource(flow, 'CLASS-A');
      sim.addSource(flow, 'CLASS-B');
      view.set('CLASS-A', [1, 'abc']);
      view.set('CLASS-B', [2], { malformed: true });

      const report = await run({ flowId: String(flow) });
      expect(report.outcome).toBe('failed');
      expect(report.failures.map((f) => [f.reference, f.code, f.syncFailReported])).toEqual([
        ['CLASS-A', 'invalid_roster', true],
        ['CLASS-B', 'invalid_roster', true],
      ]);
      expect(report.failures[0]!.reason).toContain('ParticipantId is not a WISEflow participant id');
      expect(sim.syncCalls.map((c) => [c.reference, c.kind, c.status])).toEqual([
        ['CLASS-A', 'fail', 200],
        ['CLASS-B', 'fail', 200],
      ]);
      expect(sim.allocationCalls).toHaveLength(0);
      expect(sim.sources(flow).map((s) => s.state)).toEqual(['FAILED', 'FAILED']);
    });

    it('a participant WISEflow does not know (400): sync/fail for that source, the others are done', async () => {
      const { sim, view, run } = await setup();
      const flow = sim.addFlow({ code: 'F', participants: range(1, 10) });
      sim.addSource(flow, 'CLASS-A');
      sim.addSource(flow, 'CLASS-B');
      view.set('CLASS-A', [1, 99]);
      view.set('CLASS-B', [2]);
      const report = await run({ flowId: String(flow) });
      expect(report.outcome).toBe('failed');
      expect(report.sources.map((s) => [s.reference, s.result])).toEqual([
        ['CLASS-A', 'failed'],
        ['CLASS-B', 'done'],
      ]);
      expect(report.failures[0]).toMatchObject({
        code: 'wiseflow_bad_request',
        upstreamStatus: 400,
        syncFailReported: true,
      });
      expect(sim.allocations(flow, 'CLASS-B')).toEqual([2]);
    });

    it('an archived flow (403): sync/fail is attempted, refused too, and the outcome says so', async () => {
      const { sim, view, run } = await setup();
      const flow = sim.addFlow({ code: 'F', participants: range(1, 10) });
      sim.addSource(flow, 'CLASS-A');
      view.set('CLASS-A', [1]);
      sim.setArchived(flow, true);
      const report = await run({ flowId: String(flow) });
      expect(report.outcome).toBe('failed');
      expect(report.failures[0]).toMatchObject({
        code: 'wiseflow_forbidden',
        upstreamStatus: 403,
        syncFailReported: false,
      });
      expect(report.failures[0]!.reason).toContain('sync/fail refused too');
      expect(sim.syncCalls.map((c) => [c.kind, c.status])).toEqual([['fail', 403]]);
    });

    it('SIS allocation on, no source yet: the source cannot be created (403)', async () => {
      const { sim, run } = await setup();
      const flow = sim.addFlow({ code: 'F', sisAllocation: true });
      const report = await run({ flowId: String(flow), flowCode: 'F' });
      expect(report).toMatchObject({
        outcome: 'failed',
        failures: [{ code: 'wiseflow_forbidden', reference: 'F' }],
      });
      expect(sim.sources(flow)).toHaveLength(0);
    });

    it('an unknown flow (404): failure outcome, nothing to report sync/fail on', async () => {
      const { sim, run } = await setup();
      const report = await run({ flowId: '424242' });
      expect(report).toMatchObject({
        outcome: 'failed',
        failures: [{ code: 'wiseflow_not_found', upstreamStatus: 404 }],
      });
      expect(sim.syncCalls).toHaveLength(0);
    });
  });

  it('a transient failure is thrown (the queue retries), and the retry completes', async () => {
    const { sim, view, run } = await setup();
    const flow = sim.addFlow({ code: 'F', participants: range(1, 10) });
    sim.addSource(flow, 'CLASS-A');
    view.set('CLASS-A', [1, 2]);
    sim.faults.failNext(3, 503); // more than the client's 2 retries
    await expect(run({ flowId: String(flow) })).rejects.toMatchObject({
      kind: 'transient',
      upstreamStatus: 503,
    });
    expect(sim.syncCalls).toHaveLength(0);
    const report = await run({ flowId: String(flow) });
    expect(report.outcome).toBe('done');
    expect(sim.allocations(flow, 'CLASS-A')).toEqual([1, 2]);
  });

  it('two flows requested at once, steps interleaved: no cross-talk', async () => {
    const jitter: RoutineFaults = { at: () => sleep(Math.floor(Math.random() * 4)) };
    const { sim, view, run } = await setup({ faults: jitter });
    // The same participant ids exist on both flows: a mix-up would show.
    const a = sim.addFlow({ code: 'FLOW-A', participants: range(1, 30) });
    const b = sim.addFlow({ code: 'FLOW-B', participants: range(1, 30) });
    sim.addSource(a, 'A-1');
    for (let round = 0; round < 6; round++) {
      const ra = range(1, 30).filter((p) => (p + round) % 3 !== 0);
      const rb = range(1, 30).filter((p) => (p * (round + 1)) % 4 === 1);
      view.set('A-1', ra);
      view.set('FLOW-B', rb);
      const [x, y] = await Promise.all([
        run({ flowId: String(a), flowCode: 'FLOW-A' }),
        run({ flowId: String(b), flowCode: 'FLOW-B' }),
      ]);
      expect([x.outcome, y.outcome]).toEqual(['done', 'done']);
      expect(sim.allocations(a, 'A-1')).toEqual(ra);
      expect(sim.allocations(b, 'FLOW-B')).toEqual(rb);
    }
    expect(sim.sources(a).map((s) => s.reference)).toEqual(['A-1']);
    expect(sim.sources(b).map((s) => s.reference)).toEqual(['FLOW-B']);
    for (const c of sim.allocationCalls) {
      const flowOfSource = sim.sources(c.flowId).some((s) => s.id === c.sourceId);
      expect(flowOfSource).toBe(true);
    }
    for (const s of sim.syncCalls) expect(s.reference).toBe(s.flowId === a ? 'A-1' : 'FLOW-B');
    expectNoDuplicateAllocationCalls(sim);
  });

  it('two runs of the same flow at once: the loser retries (transient), the end state is right', async () => {
    const jitter: RoutineFaults = { at: () => sleep(Math.floor(Math.random() * 3)) };
    const { sim, view, run } = await setup({ faults: jitter });
    const flow = sim.addFlow({ code: 'F', participants: range(1, 20) });
    sim.addSource(flow, 'CLASS-A');
    for (let round = 0; round < 5; round++) {
      const roster = range(1, 20).filter((p) => (p + round) % 2 === 0);
      view.set('CLASS-A', roster);
      const results = await Promise.allSettled([
        run({ flowId: String(flow) }),
        run({ flowId: String(flow) }),
      ]);
      for (const r of results)
        if (r.status === 'rejected') expect(r.reason).toMatchObject({ kind: 'transient' });
      if (results.some((r) => r.status === 'rejected')) await run({ flowId: String(flow) });
      expect(sim.allocations(flow, 'CLASS-A')).toEqual(roster);
    }
    expectNoDuplicateAllocationCalls(sim);
  });
});

describe('fault injection at each step: fail or crash there, rerun, end state right, no duplicate call', () => {
  const kinds = ['throw', 'crash'] as const;
  const modes = ['known', 'memory'] as const;

  async function scenario(point: UpdateRoutineFaultPoint, mode: 'known' | 'memory') {
    const t = await setup({ verify: mode });
    const flow = t.sim.addFlow({ code: 'EXAM-1', participants: range(1, 10) });
    if (point === 'createSource') {
      t.view.set('EXAM-1', [1, 2]);
      return { ...t, flow, reference: 'EXAM-1', final: [1, 2], expectDone: true };
    }
    t.sim.addSource(flow, 'CLASS-A');
    t.view.set('CLASS-A', [1, 2, 3]);
    await t.run({ flowId: String(flow) });
    if (point === 'syncFail') {
      t.view.set('CLASS-A', [1, 'x']);
      return { ...t, flow, reference: 'CLASS-A', final: [1, 2, 3], expectDone: false };
    }
    t.view.set(
      'CLASS-A',
      point === 'removeParticipants' || point === 'afterRemove' ? [2, 3, 4, 5] : [2, 3, 4, 5],
    );
    return { ...t, flow, reference: 'CLASS-A', final: [2, 3, 4, 5], expectDone: true };
  }

  for (const mode of modes)
    for (const kind of kinds)
      for (const point of UPDATE_ROUTINE_FAULT_POINTS)
        it(`${point} (${kind}, verify ${mode})`, async () => {
          const s = await scenario(point, mode);
          let hit = 0;
          const faults: RoutineFaults = {
            at: async (p) => {
              if (p !== point || hit++ > 0) return;
              throw kind === 'crash' ? new SimulatedCrash(p) : new Error(`injected fault at ${p}`);
            },
          };
          const req = { flowId: String(s.flow), flowCode: 'EXAM-1' };
          const first = await s.run(req, { faults }).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(hit, 'the fault point was reached').toBe(1);
          expect(first).toBeInstanceOf(kind === 'crash' ? SimulatedCrash : Error);

          const report = await s.run(req);
          expect(report.outcome).toBe(s.expectDone ? 'done' : 'failed');
          expect(s.sim.allocations(s.flow, s.reference)).toEqual(s.final);
          const last = s.sim.syncCalls.at(-1)!;
          expect([last.reference, last.kind, last.status]).toEqual([
            s.reference,
            s.expectDone ? 'done' : 'fail',
            200,
          ]);
          expectNoDuplicateAllocationCalls(s.sim);
          for (const p of s.final.filter((x) => x > 3 || point === 'createSource'))
            expect(times(s.sim, 'add', p), `participant ${p} added once`).toBe(1);
          if (s.expectDone && point !== 'createSource') expect(times(s.sim, 'remove', 1)).toBe(1);

          // And once more: nothing left to do.
          const calls = s.sim.allocationCalls.length;
          await s.run(req);
          expect(s.sim.allocationCalls).toHaveLength(calls);
        });
});
