/**
 * Issue 15 item 6: while a flow's completion keeps conflicting (another writer moved the cursor),
 * a tick does not re-send the drained batch's signal: every such repair would only fail its
 * deliveries into the control queue's dead-letter queue, one per tick, forever. Once the
 * operator puts the cursor back, the next tick repairs and the batch completes.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCursorStore } from '../../src/lib/compose';
import type { FaultPoint, Faults } from '../../src/lib/faults';
import type { OutgoingMessage, QueueRole, Transport } from '../../src/lib/ports';
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

describe('drain repairs pause during a cursor conflict', () => {
  it('no drain signal per tick while the cursor conflicts; repaired and completed once it is put back', async () => {
    const sim = await FlowfinitySimulator.start({ initialRecords: 6, seed: 3 });
    open.push(sim);
    const faults: Faults & { onCompleteFlow?: () => Promise<void> } = {
      async at(point: FaultPoint) {
        if (point === 'complete.flow' && faults.onCompleteFlow) {
          const f = faults.onCompleteFlow;
          faults.onCompleteFlow = undefined;
          await f();
        }
      },
    };
    const p = await new Pipeline({ azuriteConnectionString: azurite.connectionString, sim, faults }).start();
    open.push(p);
    const drainSignals: string[] = [];
    p.wrapTransport((t): Transport => ({
      ...t,
      send: (role: QueueRole, messages: OutgoingMessage[]) => {
        for (const m of messages) if (m.kind === 'batch-drained') drainSignals.push(m.messageId);
        return t.send(role, messages);
      },
    }));
    await p.syncUntilQuiet();
    const first = (await p.cursor.read())!;

    // Another writer moves the cursor just before the next batch completes.
    const other = createCursorStore(p.config, p.config.flows[0]!);
    const moved = first + 10_000n;
    faults.onCompleteFlow = async () => {
      expect((await other.compareAndSet(first, moved)).ok).toBe(true);
    };
    sim.update(sim.snapshot()[2]!.RecordID);
    const { ticks } = await p.syncUntilQuiet();
    expect(ticks).toBeGreaterThan(1);
    const state = await p.ledger.getState();
    expect(state.lastErrorCode).toBe('cursor_conflict');
    expect((await p.health()).lastError?.message).toMatch(/cursor conflict/);

    // Ticks while the conflict lasts: paused, and not one more drain signal.
    const signalsBefore = drainSignals.length;
    for (let i = 0; i < 3; i++)
      expect(await p.tick()).toMatchObject({
        kind: 'blocked',
        reason: expect.stringMatching(/paused.*cursor conflict/),
      });
    await p.settle();
    expect(drainSignals.length).toBe(signalsBefore);

    // The operator puts the cursor back: the next tick repairs, the batch completes.
    expect((await other.compareAndSet(moved, first)).ok).toBe(true);
    expect(await p.tick()).toMatchObject({ kind: 'repaired-drain' });
    await p.settle();
    await p.syncUntilQuiet();
    expect(drainSignals.length).toBe(signalsBefore + 1);
    const after = await p.ledger.getState();
    expect(after.currentBatchId).toBeUndefined();
    expect(after.lastError).toBeUndefined();
    expect(after.lastErrorCode).toBeUndefined();
    expect(await p.diffWithSource()).toEqual([]);
  });
});
