/**
 * The ledger's sharded completion counter (src/lib/batch/ledger.ts) on Azurite: many messages of
 * one batch counted at once from several processes (each with its own table client, so its own
 * lanes and cached ETags) are each counted exactly once, redeliveries are not counted, the
 * batch is seen drained by at least one of them, and a manifest written before shards existed
 * keeps its own counters.
 */
import { randomBytes } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { beforeAll, describe, expect, it } from 'vitest';
import { Ledger, SHARDS, type Manifest } from '../../src/lib/batch/ledger';
import { sharedAzurite } from '../support/azurite';

let tableName: string;
let connectionString: string;
const client = () =>
  TableClient.fromConnectionString(connectionString, tableName, { allowInsecureConnection: true });

beforeAll(async () => {
  connectionString = sharedAzurite().connectionString;
  tableName = `ledger${randomBytes(4).toString('hex')}`;
  await new Ledger(client(), 's').ensureReady();
});

async function dispatchedBatch(ledger: Ledger, messageCount: number): Promise<Manifest> {
  const batchId = `b-${randomBytes(4).toString('hex')}`;
  const m = await ledger.createManifest({ batchId, from: undefined, createdAt: new Date().toISOString() });
  const next = await ledger.transition(m, 'dispatched', { messageCount, recordCount: messageCount * 2 });
  expect(next?.state).toBe('dispatched');
  return next!;
}

describe('sharded completion counter', () => {
  it(`counts ${SHARDS * 3} messages marked at once from three processes exactly once each`, async () => {
    const stream = `s${randomBytes(3).toString('hex')}`;
    const processes = [0, 1, 2].map(() => new Ledger(client(), stream));
    const messages = SHARDS * 3;
    const m = await dispatchedBatch(processes[0]!, messages);
    const results = await Promise.all(
      Array.from({ length: messages }, (_, chunk) =>
        processes[chunk % 3]!.markDone(m.batchId, chunk, {
          applied: 2,
          skipped: 0,
          quarantined: chunk % 5 === 0 ? 1 : 0,
        }),
      ),
    );
    expect(results.every((r) => r.counted)).toBe(true);
    // The last transaction's reader sees the whole batch: at least one message says drained.
    expect(results.filter((r) => r.drained).length).toBeGreaterThanOrEqual(1);
    const final = (await processes[1]!.getManifest(m.batchId))!;
    expect(final).toMatchObject({
      done: messages,
      applied: messages * 2,
      skipped: 0,
      quarantined: Math.ceil(messages / 5),
      state: 'dispatched',
    });

    // Redeliveries of counted messages, from any process, change nothing.
    const again = await Promise.all(
      [0, 7, 31, 50].map((chunk, i) =>
        processes[i % 3]!.markDone(m.batchId, chunk, { applied: 9, skipped: 9, quarantined: 9 }),
      ),
    );
    expect(again.map((r) => r.counted)).toEqual([false, false, false, false]);
    expect(again.some((r) => r.drained)).toBe(false);
    expect((await processes[2]!.getManifest(m.batchId))!.done).toBe(messages);
  });

  it('a batch finalised after its messages were counted is seen drained by the finaliser', async () => {
    const ledger = new Ledger(client(), `s${randomBytes(3).toString('hex')}`);
    const batchId = `b-${randomBytes(4).toString('hex')}`;
    const m = await ledger.createManifest({ batchId, from: undefined, createdAt: new Date().toISOString() });
    const counted = await Promise.all(
      [0, 1, 2].map((c) => ledger.markDone(batchId, c, { applied: 1, skipped: 0, quarantined: 0 })),
    );
    // Still dispatching: the count is not final, so nobody may call it drained.
    expect(counted.some((r) => r.drained)).toBe(false);
    const fresh = (await ledger.getManifest(batchId))!;
    expect(fresh.etag).toBe(m.etag); // counting never touches the manifest row
    const next = await ledger.transition(fresh, 'dispatched', { messageCount: 3 });
    expect(next).toMatchObject({ done: 3, applied: 3, messageCount: 3, state: 'dispatched' });
  });

  it('a manifest written before shards existed keeps its own counters and adds the shards', async () => {
    const stream = `s${randomBytes(3).toString('hex')}`;
    const ledger = new Ledger(client(), stream);
    const batchId = `b-${randomBytes(4).toString('hex')}`;
    // The manifest as the single-counter ledger wrote it: counters on the manifest row itself.
    await client().createEntity({
      partitionKey: `batch|${stream}|${batchId}`,
      rowKey: 'manifest',
      batchId,
      from: '',
      to: '1005',
      messageCount: 5,
      recordCount: 10,
      full: false,
      state: 'dispatched',
      done: 3,
      applied: 5,
      skipped: 1,
      quarantined: 0,
      createdAt: new Date().toISOString(),
    });
    expect(await ledger.markDone(batchId, 3, { applied: 2, skipped: 0, quarantined: 0 })).toMatchObject({
      counted: true,
      drained: false,
    });
    const last = await ledger.markDone(batchId, 4, { applied: 1, skipped: 1, quarantined: 0 });
    expect(last).toMatchObject({ counted: true, drained: true });
    expect(last.manifest).toMatchObject({ done: 5, applied: 8, skipped: 2, quarantined: 0 });
  });

  it('a message of a batch with no manifest is refused, not counted', async () => {
    const ledger = new Ledger(client(), `s${randomBytes(3).toString('hex')}`);
    await expect(
      ledger.markDone('no-such-batch', 0, { applied: 1, skipped: 0, quarantined: 0 }),
    ).rejects.toThrow(/has no manifest/);
  });
});
