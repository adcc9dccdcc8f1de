/**
 * The model-based fault-schedule properties of test/model/model.test.ts (every flow, the webhook
 * flows interleaved with the view syncs in the quarantine property) with many more schedules
 * (`npm run test:long`). MODEL_LONG_RUNS (default 10,000) and MODEL_SEED (default: random,
 * printed) control the run; fast-check prints the seed, path and shrunk schedule of a failure.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { ModelWorld, scheduleArb } from '../support/model';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { startTargetEnvironment, type TargetEnvironment } from '../support/targets';

const seed = Number(process.env.MODEL_SEED ?? Math.floor(Math.random() * 2 ** 31));
const runs = Number(process.env.MODEL_LONG_RUNS ?? 10_000);

let world: ModelWorld;
let azurite: SharedAzurite;
beforeAll(async () => {
  console.log(`model.long: seed ${seed}, ${runs} schedules (reproduce with MODEL_SEED=${seed})`);
  azurite = sharedAzurite();
  world = await ModelWorld.start(azurite.connectionString);
});
afterAll(async () => {
  if (world) console.log(`model schedules exercised: ${world.summary()}`);
  await world?.stop();
});

describe('view sync under generated fault schedules (long)', () => {
  it(`POISON_POLICY=quarantine: ${runs} schedules keep every invariant`, async () => {
    await fc.assert(
      fc.asyncProperty(scheduleArb({ maxSteps: 40 }), (s) => world.check(s, { poisonPolicy: 'quarantine' })),
      { seed, numRuns: runs, verbose: 1 },
    );
  });

  it(`POISON_POLICY=block: ${Math.round(runs / 10)} schedules never pass a poison record and report the block`, async () => {
    await fc.assert(
      fc.asyncProperty(scheduleArb({ webhooks: false }), (s) => world.check(s, { poisonPolicy: 'block' })),
      { seed: seed + 1, numRuns: Math.round(runs / 10), verbose: 1 },
    );
  });
});

describe('to a PostgreSQL target (long)', () => {
  const pgRuns = Number(process.env.MODEL_LONG_PG_RUNS ?? 1000);
  let pg: TargetEnvironment | undefined;
  beforeAll(async () => {
    pg = await startTargetEnvironment('postgres');
  }, 60_000);
  afterAll(async () => {
    await pg?.stop();
  });

  it(`POISON_POLICY=quarantine: ${pgRuns} schedules keep every invariant, rows exactly the source's`, async () => {
    await fc.assert(
      fc.asyncProperty(scheduleArb({ maxSteps: 40, webhooks: false }), (s) =>
        world.check(s, { poisonPolicy: 'quarantine', store: () => pg!.create() }),
      ),
      { seed: seed + 2, numRuns: pgRuns, verbose: 1 },
    );
  });
});
