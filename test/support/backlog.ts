/**
 * A backlog of `records` with SYNC_MAX_BATCH=`batch` drains completely through chained re-polls
 * (each full batch's completion plans the next at once, without waiting for timer ticks), and
 * the target ends equal to the source. `npm test` runs 2,000 records in batches of 400 (five
 * chained batches); `npm run test:long` runs 25,000 in batches of 1,000.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { sharedAzurite, type SharedAzurite } from './azurite';
import { Pipeline } from './pipeline';

export function backlogSuite(records: number, batch: number): void {
  const batches = Math.ceil(records / batch);
  let azurite: SharedAzurite;
  let sim: FlowfinitySimulator;
  let p: Pipeline;
  beforeAll(async () => {
    azurite = sharedAzurite();
    sim = await FlowfinitySimulator.start({ initialRecords: records, seed: 11 });
  });
  afterAll(async () => {
    await p?.stop();
    await sim?.stop();
  });

  it(`drains a ${records.toLocaleString('en')}-record backlog in batches of ${batch.toLocaleString('en')} through chained re-polls`, async () => {
    p = await new Pipeline({
      azuriteConnectionString: azurite.connectionString,
      sim,
      concurrency: 16,
      env: { SYNC_MAX_BATCH: String(batch) },
    }).start();
    expect(await p.tick()).toMatchObject({
      kind: 'planned',
      records: batch,
      messages: batch / 20, // 20 records per message
      full: true,
    });
    // No more ticks: each full batch's completion sends a poll that plans the next one.
    await p.settle(900_000, 1000);
    const state = await p.ledger.getState();
    expect(state).toMatchObject({ batchesCompleted: batches, recordsApplied: records });
    expect(state.currentBatchId).toBeUndefined();
    expect(await p.diffWithSource()).toEqual([]);
    expect(p.target.duplicates()).toEqual([]);
    expect(p.violations).toEqual([]);
    expect(p.target.writes).toBe(records);
    expect(p.cursor.writes).toHaveLength(batches);
    expect(await p.tick()).toMatchObject({ kind: 'empty' });
  }, 1_000_000);
}
