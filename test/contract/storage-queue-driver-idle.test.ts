/**
 * The storage-queue trigger driver's idle check, which the local host's waitForIdle and the test
 * pipeline's settle rely on: "idle" must mean a look at the queue that began AFTER the moment
 * asked about. Before, a message sent after the driver's last empty poll left it "idle" until its
 * next poll, so a busy machine (polls late) could end a wait with the message still queued.
 */
import { QueueClient } from '@azure/storage-queue';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { asWorker } from '../../src/local/host/rpc';
import { StorageQueueDriver } from '../../src/local/host/storage-queue-driver';
import { sharedAzurite } from '../support/azurite';
import { waitFor } from '../support/wait';

let driver: StorageQueueDriver | undefined;
let queue: QueueClient;
const seen: unknown[] = [];

beforeAll(async () => {
  const cs = sharedAzurite().connectionString;
  const queueName = `idle-${Date.now().toString(36)}`;
  queue = new QueueClient(cs, queueName);
  await queue.create();
  driver = new StorageQueueDriver({
    queueName,
    invoke: asWorker(async (body: unknown) => {
      seen.push(body);
    }),
    connectionString: cs,
    maxConcurrency: 4,
    // Slow polls on purpose: the window between a send and the next look is wide.
    pollIntervalMs: 500,
    newBatchThreshold: 2,
    maxDequeueCount: 5,
    visibilityTimeoutMs: 0,
    messageEncoding: 'none',
  });
  await driver.start();
});
afterAll(async () => {
  await driver?.stop();
  await queue?.delete().catch(() => undefined);
});

it('is idle "since" a moment only after a look that began after it found the queue empty', async () => {
  await waitFor(() => driver!.isIdle(), { what: 'the first empty poll' });
  await queue.sendMessage(JSON.stringify({ n: 1 }));
  const sent = Date.now();
  // The last look (before the send) found the queue empty: that must not count for `sent`.
  expect(driver!.isIdle(sent)).toBe(false);
  await waitFor(() => seen.length === 1, { what: 'the message to be processed' });
  const processed = Date.now();
  expect(driver!.isIdle(processed)).toBe(false);
  await waitFor(() => driver!.isIdle(processed), { what: 'a look after the message was processed' });
  expect(seen).toEqual([{ n: 1 }]);
  expect((await queue.getProperties()).approximateMessagesCount).toBe(0);
});
