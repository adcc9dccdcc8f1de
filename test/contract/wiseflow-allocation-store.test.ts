/**
 * The allocation memory contract, for the Azure Table store (on Azurite) and the in-process
 * store the routine tests use; and the update routine end to end with the Table store.
 */
import { TableClient } from '@azure/data-tables';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConflictError } from '../../src/lib/errors';
import {
  MemoryAllocationStore,
  TableAllocationStore,
  type AllocationMemory,
  type AllocationStore,
} from '../../src/lib/wiseflow/allocation-store';
import { WiseflowClient } from '../../src/lib/wiseflow/client';
import { runUpdateRoutine } from '../../src/lib/wiseflow/update-routine';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { WiseflowSimulator } from '../../src/local/wiseflow-simulator';

let azurite: SharedAzurite;
let tableSeq = 0;
beforeAll(async () => {
  azurite = sharedAzurite();
});
afterAll(async () => {});

const tableStore = () =>
  new TableAllocationStore(
    TableClient.fromConnectionString(azurite.connectionString, `wfalloc${Date.now()}${tableSeq++}`, {
      allowInsecureConnection: true,
    }),
  );

const memory = (allocated: string[], pending?: AllocationMemory['pending']): AllocationMemory => ({
  reference: 'CLASS-A',
  allocated,
  pending,
  updatedAt: '2024-06-20T10:00:00.000Z',
});

describe.each([
  ['table (Azurite)', tableStore],
  ['memory', () => new MemoryAllocationStore()],
])('allocation store: %s', (_name, make: () => AllocationStore) => {
  it('creates once, updates only with the current ETag, and keeps flows and sources apart', async () => {
    const store = make();
    expect(await store.get('100', '1')).toBeUndefined();

    const e1 = await store.put('100', '1', memory(['1', '2'], { add: ['2'], remove: [] }), undefined);
    await expect(store.put('100', '1', memory(['9']), undefined)).rejects.toBeInstanceOf(ConflictError);
    expect(await store.get('100', '1')).toEqual({
      memory: memory(['1', '2'], { add: ['2'], remove: [] }),
      etag: e1,
    });

    const e2 = await store.put('100', '1', memory(['1', '2']), e1);
    expect(e2).not.toBe(e1);
    await expect(store.put('100', '1', memory(['3']), e1)).rejects.toMatchObject({
      kind: 'conflict',
      code: 'allocation_memory_conflict',
    });
    expect((await store.get('100', '1'))!.memory.allocated).toEqual(['1', '2']);

    await store.put('100', '2', memory(['5']), undefined);
    await store.put('101', '1', memory(['6']), undefined);
    expect((await store.get('100', '2'))!.memory.allocated).toEqual(['5']);
    expect((await store.get('101', '1'))!.memory.allocated).toEqual(['6']);
    expect((await store.get('100', '1'))!.memory.allocated).toEqual(['1', '2']);
  });

  it('two writers with the same ETag: exactly one wins', async () => {
    const store = make();
    const e = await store.put('7', '7', memory([]), undefined);
    const results = await Promise.allSettled([
      store.put('7', '7', memory(['1']), e),
      store.put('7', '7', memory(['2']), e),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected')[0]).toMatchObject({
      reason: expect.any(ConflictError),
    });
  });

  it('keeps a large roster (30,000 ids) intact', async () => {
    const store = make();
    const ids = Array.from({ length: 30_000 }, (_, i) => String(1_000_000 + i));
    await store.put('8', '8', memory(ids), undefined);
    expect((await store.get('8', '8'))!.memory.allocated).toEqual(ids);
  });
});

it('the update routine with the Table store, against the simulator: synced, rerun changes nothing', async () => {
  const sim = await WiseflowSimulator.start();
  try {
    const flow = sim.addFlow({ code: 'EXAM-9', participants: [1, 2, 3, 4] });
    const client = new WiseflowClient({
      baseUrl: sim.baseUrl,
      auth: { kind: 'apiKey', apiKey: sim.credentials.apiKey },
    });
    const rosters = new Map([['EXAM-9', ['1', '3']]]);
    const deps = {
      client,
      store: tableStore(),
      roster: { desiredParticipants: async (ref: string) => rosters.get(ref) ?? [] },
    };
    const r1 = await runUpdateRoutine({ flowId: String(flow), flowCode: 'EXAM-9' }, deps);
    expect(r1).toMatchObject({ outcome: 'done', sourcesCreated: ['EXAM-9'] });
    expect(sim.allocations(flow, 'EXAM-9')).toEqual([1, 3]);
    const calls = sim.allocationCalls.length;
    await runUpdateRoutine({ flowId: String(flow), flowCode: 'EXAM-9' }, deps);
    expect(sim.allocationCalls).toHaveLength(calls);
    rosters.set('EXAM-9', ['4']);
    await runUpdateRoutine({ flowId: String(flow), flowCode: 'EXAM-9' }, deps);
    expect(sim.allocations(flow, 'EXAM-9')).toEqual([4]);
  } finally {
    await sim.stop();
  }
});

it('the Table store refuses memory larger than an entity can hold, with a clear permanent error', async () => {
  const store = tableStore();
  const ids = Array.from({ length: 60_000 }, (_, i) => String(1_000_000 + i));
  await expect(store.put('9', '9', memory(ids), undefined)).rejects.toMatchObject({
    kind: 'permanent',
    code: 'allocation_memory_too_large',
  });
});
