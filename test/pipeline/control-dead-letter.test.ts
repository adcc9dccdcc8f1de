/**
 * Issue 15 item 6: the control queue's dead-letter queue is read (controlPoison). A drain signal
 * that failed every delivery is recorded on its stream while its batch still waits (health shows
 * it), is a no-op once the batch completed, and a storage outage makes the handler wait before
 * rethrowing (the dead-letter queue has no delivery limit).
 */
import { AzureNamedKeyCredential, TableClient } from '@azure/data-tables';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { handleDeadControlMessage } from '../../src/lib/batch/control';
import type { FaultPoint, Faults } from '../../src/lib/faults';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { Pipeline, quietLog } from '../support/pipeline';

let azurite: SharedAzurite;
const open: { stop(): Promise<void> }[] = [];
beforeAll(() => {
  azurite = sharedAzurite();
});
afterEach(async () => {
  while (open.length) await open.pop()!.stop();
});

describe('control dead-letter handler', () => {
  it('records a dead-lettered drain signal of a waiting batch, ignores it once completed, waits when storage is down', async () => {
    const sim = await FlowfinitySimulator.start({ initialRecords: 5, seed: 9 });
    open.push(sim);
    const completion = { failing: true };
    const faults: Faults = {
      async at(point: FaultPoint) {
        if (point === 'complete.flow' && completion.failing) throw new Error('injected completion failure');
      },
    };
    const p = await new Pipeline({ azuriteConnectionString: azurite.connectionString, sim, faults }).start();
    open.push(p);
    expect(await p.tick()).toMatchObject({ kind: 'planned' });
    await p.settle();
    const batchId = (await p.ledger.getState()).currentBatchId!;
    expect(batchId).toBeTruthy();
    const dead = JSON.stringify({ type: 'batch-drained', stream: 'leads', batchId });
    const delivery = { deliveryCount: 1, deadLetterReason: 'MaxDeliveryCountExceeded' };

    expect(await handleDeadControlMessage(p.engine, dead, delivery, quietLog)).toEqual({
      kind: 'recorded',
      stream: 'leads',
      batchId,
    });
    const h = await p.health();
    expect(h.status).toBe('degraded');
    expect(h.lastError?.message).toMatch(
      /drain signal of batch .* was dead-lettered \(MaxDeliveryCountExceeded\)/,
    );
    expect(
      await handleDeadControlMessage(
        p.engine,
        JSON.stringify({ type: 'poll', stream: 'leads', reason: 'x' }),
        delivery,
        quietLog,
      ),
    ).toEqual({ kind: 'dropped-poll', stream: 'leads' });
    expect(await handleDeadControlMessage(p.engine, '{"type":"nonsense"}', delivery, quietLog)).toMatchObject(
      {
        kind: 'invalid',
      },
    );

    // The completion works again: a tick repairs, the batch completes, the old dead letter is stale.
    completion.failing = false;
    await p.syncUntilQuiet();
    expect(await p.diffWithSource()).toEqual([]);
    expect((await p.ledger.getState()).lastError).toBeUndefined();
    expect(await handleDeadControlMessage(p.engine, dead, delivery, quietLog)).toEqual({
      kind: 'stale',
      stream: 'leads',
      batchId,
    });

    // Storage down: a table endpoint nobody listens on, no client retries.
    const down = new TableClient(
      'http://127.0.0.1:9/devstoreaccount1',
      'nostate',
      new AzureNamedKeyCredential('devstoreaccount1', Buffer.from('key').toString('base64')),
      { allowInsecureConnection: true, retryOptions: { maxRetries: 0 } },
    );
    const waitsBefore = p.waits.length;
    await expect(
      handleDeadControlMessage(
        p.engine.withDeps({ stateTable: down }),
        dead,
        { deliveryCount: 30 },
        quietLog,
      ),
    ).rejects.toThrow();
    expect(p.waits.slice(waitsBefore)).toEqual([120_000]);
  });
});
