/**
 * For each step of the pipeline, a run where that step throws, and a run where the process
 * "dies" there (SimulatedCrash: no catch, finally or cleanup of ours runs, a planner's lease
 * stays held until it expires, a queue message comes back), followed by recovery. Afterwards
 * the target equals the source, no record version was applied twice, and the cursor never
 * decreased nor passed an unapplied record.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedCrash, type FaultPoint, type Faults } from '../../src/lib/faults';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { adapterSets } from '../support/adapters';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { faultAt, Pipeline, type AzureTestServers } from '../support/pipeline';

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

/** A pipeline over the current adapter set, stopped after the test. */
async function startPipeline(sim: FlowfinitySimulator, faults: Faults, env: Record<string, string> = {}) {
  const p = await new Pipeline({
    azuriteConnectionString: azurite.connectionString,
    azure: servers,
    sim,
    faults,
    maxDequeueCount: 3,
    env,
  }).start();
  open.push(p);
  return p;
}

// 40 records, 5 per message, batches of 25: two batches (the first full, so it re-polls).
const cases: { point: FaultPoint; nth?: number }[] = [
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

describe.each(adapterSets)('over $name', (adapters) => {
  beforeAll(async () => {
    servers = await adapters.start();
  });
  afterAll(async () => {
    await adapters.stop(servers);
  });
  it('a message whose process dies on every delivery reaches the poison / dead-letter queue and is applied from there', async () => {
    const sim = await FlowfinitySimulator.start({ initialRecords: 5, seed: 4 });
    open.push(sim);
    // One message (5 records); each of its 3 deliveries dies at its first record.
    const faults = faultAt('apply.record', () => new SimulatedCrash('apply.record'), { times: 3 });
    const p = await startPipeline(sim, faults);
    await p.syncUntilQuiet();
    expect(faults.fired).toBe(3);
    if (servers) expect(servers.serviceBus.stats.deadLettered).toBeGreaterThan(0);
    expect(await p.diffWithSource()).toEqual([]);
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
    expect(await p.diffWithSource()).toEqual([]);
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
        expect(await p.diffWithSource()).toEqual([]);
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
});
