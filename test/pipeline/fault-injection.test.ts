/**
 * For each step of the pipeline, a run where that step throws, and a run where the process
 * "dies" there (SimulatedCrash: no catch, finally or cleanup of ours runs, a planner's lease
 * stays held until it expires, a queue message comes back), followed by recovery. Afterwards
 * the target equals the source, no record version was applied twice, and the cursor never
 * decreased nor passed an unapplied record.
 *
 * The same runs go to a PostgreSQL target too (issue 14: embedded PostgreSQL, over the local
 * adapters), where the table's rows, read with a plain SELECT as reports read them, must equal
 * the source exactly: keys, versions, deleted flags and the whole data document. Here, the steps
 * around the target (a record's apply, the completion, a second send) to keep the run short; every step in
 * fault-injection-postgres.long.test.ts. The suite itself: test/support/fault-suite.ts.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { adapterSets } from '../support/adapters';
import { fault, faultCases, faultSuite } from '../support/fault-suite';
import { startTargetEnvironment, type TargetEnvironment } from '../support/targets';

describe.each(adapterSets)('over $name', (adapters) => {
  beforeAll(async () => {
    fault.servers = await adapters.start();
  });
  afterAll(async () => {
    await adapters.stop(fault.servers);
    fault.servers = undefined;
  });
  faultSuite();
});

describe('to a PostgreSQL target (storagequeue + blob)', () => {
  let pg: TargetEnvironment | undefined;
  beforeAll(async () => {
    pg = await startTargetEnvironment('postgres');
    fault.makeStore = () => pg!.create();
  }, 60_000);
  afterAll(async () => {
    fault.makeStore = async () => undefined;
    await pg?.stop();
  });
  const nearTarget = new Set(['apply.record', 'complete.flow']);
  faultSuite({
    cases: faultCases.filter((c) => nearTarget.has(c.point) || (c.point === 'plan.send' && c.nth === 2)),
  });
});
