/**
 * The whole fault-injection suite (every step, throwing and dying) to a PostgreSQL target: the
 * table's rows, read with a plain SELECT, equal the source exactly after each recovery. The
 * default run (fault-injection.test.ts) covers the steps around the target only.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { fault, faultSuite } from '../support/fault-suite';
import { startTargetEnvironment, type TargetEnvironment } from '../support/targets';

describe('every fault point, to a PostgreSQL target (storagequeue + blob)', () => {
  let pg: TargetEnvironment | undefined;
  beforeAll(async () => {
    pg = await startTargetEnvironment('postgres');
    fault.makeStore = () => pg!.create();
  }, 60_000);
  afterAll(async () => {
    fault.makeStore = async () => undefined;
    await pg?.stop();
  });
  faultSuite();
});
