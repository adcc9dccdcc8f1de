/**
 * The fault-injection suite (test/pipeline/fault-injection.test.ts), shared with its long run
 * over PostgreSQL (fault-injection-postgres.long.test.ts): for each step of the pipeline, a run
 * where that step throws and one where the process dies there, then recovery and the invariants.
 * Call faultSuite() inside a describe; set `fault.servers` (Azure test servers, or undefined for
 * the local adapters) and `fault.makeStore` (a target instead of the table target) in its beforeAll.
 */
import { afterEach, expect, it, describe } from 'vitest';
import { SimulatedCrash, type FaultPoint, type Faults } from '../../src/lib/faults';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { sharedAzurite } from './azurite';
import { faultAt, Pipeline, type AzureTestServers } from './pipeline';
import type { TestTarget } from './targets';

export const fault: {
  servers: AzureTestServers | undefined;
  /** The target of the suite running now: undefined = the default table target. */
  makeStore: () => Promise<TestTarget | undefined>;
} = { servers: undefined, makeStore: async () => undefined };

const open: { stop(): Promise<void> }[] = [];

/** A pipeline over the current adapter set and target, stopped after the test. */
async function startPipeline(sim: FlowfinitySimulator, faults: Faults, env: Record<string, string> = {}) {
  const store = await fault.makeStore();
  if (store) open.push({ stop: () => store.close() });
  const p = await new Pipeline({
    azuriteConnectionString: sharedAzurite().connectionString,
    azure: fault.servers,
    sim,
    faults,
    maxDequeueCount: 3,
    env,
    store,
  }).start();
  open.push(p);
  return p;
}

/** The target holds exactly the source; on postgres, as a plain SELECT reads it. */
async function expectExactRows(p: Pipeline) {
  expect(await p.diffWithSource()).toEqual([]);
  expect(await p.diffRowsExactly()).toEqual([]);
}

export interface FaultCase {
  point: FaultPoint;
  nth?: number;
}

// 40 records, 5 per message, batches of 25: two batches (the first full, so it re-polls).
export const faultCases: FaultCase[] = [
  { point: 'plan.collect', nth: 1 },
  { point: 'plan.manifestWrite', nth: 1 },
  { point: 'plan.send', nth: 1 },
  { point: 'plan.send', nth: 2 },
  { point: 'plan.dispatched', nth: 1 },
  { point: 'apply.record', nth: 7 },
  { point: 'apply.ledger', nth: 3 },
  { point: 'apply.drainSignal', nth: 1 },
  { point: 'complete.flow', nth: 1 },
  { point: 'complete.close', nth: 1 },
  { point: 'complete.poll', nth: 1 },
];

export function faultSuite(o: { cases?: FaultCase[] } = {}) {
  const cases = o.cases ?? faultCases;
  afterEach(async () => {
    while (open.length) await open.pop()!.stop();
  });

  it('a message whose process dies on every delivery reaches the poison / dead-letter queue and is applied from there', async () => {
    const sim = await FlowfinitySimulator.start({ initialRecords: 5, seed: 4 });
    open.push(sim);
    // One message (5 records); each of its 3 deliveries dies at its first record.
    const faults = faultAt('apply.record', () => new SimulatedCrash('apply.record'), { times: 3 });
    const p = await startPipeline(sim, faults);
    await p.syncUntilQuiet();
    expect(faults.fired).toBe(3);
    if (fault.servers) expect(fault.servers.serviceBus.stats.deadLettered).toBeGreaterThan(0);
    await expectExactRows(p);
    expect(p.target.duplicates()).toEqual([]);
    expect(p.violations).toEqual([]);
    expect(await p.quarantine.count()).toBe(0);
    expect((await p.ledger.getState()).batchesCompleted).toBe(1);
  });

  it('a drain signal that fails on every delivery (dead-lettered) is repaired by the next tick', async () => {
    const sim = await FlowfinitySimulator.start({ initialRecords: 12, seed: 9 });
    open.push(sim);
    // Completion throws on each of the control message's 3 deliveries: it ends in the
    // poison / dead-letter queue, and only the timer's repair can finish the batch.
    const faults = faultAt('complete.flow', () => new Error('cursor store down'), { times: 3 });
    const p = await startPipeline(sim, faults);
    await p.tick();
    await p.settle();
    expect(faults.fired).toBe(3);
    expect(await p.cursor.read()).toBeUndefined();
    expect(await p.tick()).toMatchObject({ kind: 'repaired-drain' });
    await p.settle();
    expect((await p.ledger.getState()).batchesCompleted).toBe(1);
    await expectExactRows(p);
    expect(p.violations).toEqual([]);
  });

  describe.each([
    ['throws', (p: string) => new Error(`injected failure at ${p}`)],
    ['dies', (p: string) => new SimulatedCrash(p)],
  ] as const)('a step that %s', (_mode, make) => {
    it.each(cases)(
      'at $point (hit $nth) recovers with nothing lost or duplicated',
      async ({ point, nth }) => {
        const sim = await FlowfinitySimulator.start({ initialRecords: 40, seed: 3 });
        open.push(sim);
        const faults = faultAt(point, () => make(point), { nth: nth ?? 1 });
        const p = await startPipeline(sim, faults, {
          SYNC_MAX_BATCH: '25',
          SYNC_RECORDS_PER_MESSAGE: '5',
          SYNC_PLAN_LEASE_SECONDS: '30',
        });

        // plan.send hit 2 needs a second send group: 25 records / 5 = 5 messages, one group. Use
        // a change arriving mid-run instead so that the second batch's send is hit.
        await p.syncUntilQuiet();
        sim.update(sim.snapshot()[0]!.RecordID);
        sim.insert();
        await p.syncUntilQuiet();

        expect(faults.fired).toBe(1);
        await expectExactRows(p);
        expect(p.target.duplicates()).toEqual([]);
        expect(p.violations).toEqual([]);
        const max = sim.snapshot().reduce((m, r) => (r.lastSubmissionId > m ? r.lastSubmissionId : m), 0n);
        expect(await p.cursor.read()).toBe(max);
        const writes = p.cursor.writes.map((w) => w.to);
        expect([...writes].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(writes);
        expect(await p.quarantine.count()).toBe(0);
      },
    );
  });
}
