/**
 * Issue 15 item 4: a plan's source is read under a deadline (SYNC_PLAN_DEADLINE_SECONDS). A view
 * that accepts the request and never answers would otherwise hold the plan for the client's
 * timeout × retries, past the host's functionTimeout. When the deadline passes, the request is
 * aborted, the plan fails with a PlanDeadlineError, the planner lease is released (the next tick
 * need not wait for it to expire) and the next tick syncs everything.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PlanDeadlineError } from '../../src/lib/batch/planner';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { Pipeline } from '../support/pipeline';

let azurite: SharedAzurite;
const open: { stop(): Promise<void> }[] = [];
beforeAll(() => {
  azurite = sharedAzurite();
});
afterEach(async () => {
  while (open.length) await open.pop()!.stop();
});

describe('planning deadline', () => {
  it('a hung view: the request is aborted at the deadline, the lease released, the next tick syncs', async () => {
    const sim = await FlowfinitySimulator.start({ initialRecords: 12, seed: 5 });
    open.push(sim);
    // The view client alone would wait 5 s per attempt, 3 attempts.
    const p = await new Pipeline({ azuriteConnectionString: azurite.connectionString, sim }).start();
    open.push(p);
    p.flow.settings.planDeadlineSeconds = 0.4; // the setting's unit is seconds; tests need less than one
    sim.faults.hangNext(1);
    const started = Date.now();
    const failure = await p.tick().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(PlanDeadlineError);
    expect((failure as PlanDeadlineError).code).toBe('plan_deadline');
    expect(Date.now() - started).toBeLessThan(3000);
    const state = await p.ledger.getState();
    expect(state.leaseOwner).toBeUndefined();
    expect(state.currentBatchId).toBeUndefined();

    // No lease to wait out: the next tick plans at once and the run completes.
    p.flow.settings.planDeadlineSeconds = 60;
    expect(await p.tick()).toMatchObject({ kind: 'planned', records: 12 });
    await p.syncUntilQuiet();
    expect(await p.diffWithSource()).toEqual([]);
    expect(p.violations).toEqual([]);
  });
});
