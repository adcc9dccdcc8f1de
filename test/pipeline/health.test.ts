/**
 * Health per flow over Azurite: 200 when in sync, 503 when a flow lags over
 * HEALTH_MAX_LAG_MINUTES or is blocked; applied/skipped counted per message while the batch is
 * in flight (not only when it completes); the `npm start` progress line from the same report.
 */
import { afterEach, expect, it } from 'vitest';
import { applyRecordsMessage } from '../../src/lib/batch/applier';
import { healthHttpStatus, healthReport } from '../../src/lib/health';
import { queueServiceClient } from '../../src/lib/storage/clients';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { progressLines } from '../../src/local/progress-line';
import { sharedAzurite } from '../support/azurite';
import { Pipeline, quietLog } from '../support/pipeline';
import { waitFor } from '../support/wait';

const open: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  while (open.length) await open.pop()!.stop();
});

async function setup(records: number, env: Record<string, string> = {}, start = true) {
  const sim = await FlowfinitySimulator.start({ initialRecords: records, seed: 3 });
  open.push(sim);
  const p = new Pipeline({
    azuriteConnectionString: sharedAzurite().connectionString,
    sim,
    env: { SYNC_RECORDS_PER_MESSAGE: '10', ...env },
  });
  open.push(p);
  if (start) await p.start();
  else await p.engine.ensureReady();
  return { sim, p };
}

it('answers 200 in sync, 503 once the lag passes HEALTH_MAX_LAG_MINUTES, 200 again after a sync', async () => {
  const { p } = await setup(20, { HEALTH_MAX_LAG_MINUTES: '30' });
  await p.syncUntilQuiet();
  const ok = await healthReport(p.app);
  expect(ok.status).toBe('ok');
  expect(healthHttpStatus(ok.status)).toBe(200);
  expect(ok.flows[0]!.lag).toMatchObject({ maxSeconds: 1800, cursorAgeSeconds: expect.any(Number) });
  expect(ok.flows[0]!.lag.seconds).toBeLessThan(30);

  // 31 minutes pass without a run reaching the source (ticks failing, the app stopped...).
  p.clockOffsetMs += 31 * 60_000;
  const late = await healthReport(p.app);
  expect(late.status).toBe('lagging');
  expect(healthHttpStatus(late.status)).toBe(503);
  expect(late.flows[0]!.problems).toEqual([expect.stringMatching(/lag 18\d\ds is over 1800s/)]);

  expect((await p.tick()).kind).toBe('empty'); // caught up as of this plan
  expect(healthHttpStatus((await healthReport(p.app)).status)).toBe(200);
});

it('a hung view request shows as a plan in progress with its age', async () => {
  const { sim, p } = await setup(10, { FLOWFINITY_TIMEOUT_MS: '2000' });
  sim.faults.hangNext(1);
  const tick = p.tick();
  const planning = await waitFor(async () => (await p.health()).planning);
  expect(planning.ageSeconds).toBeGreaterThanOrEqual(0);
  expect(Date.parse(planning.since)).toBeLessThanOrEqual(Date.now());
  expect((await tick).kind).toBe('planned'); // the request timed out and its retry was answered
  await p.settle();
  expect((await p.health()).planning).toBeNull();
});

it('a poison block answers 503; quarantined records alone stay 200 (degraded)', () => {
  expect(healthHttpStatus('blocked')).toBe(503);
  expect(healthHttpStatus('degraded')).toBe(200);
  expect(healthHttpStatus('ok')).toBe(200);
});

it('counts applied records per message while the batch is in flight, and the progress line shows them', async () => {
  const { p } = await setup(30, {}, false);
  expect((await p.tick()).kind).toBe('planned');
  const queue = queueServiceClient(p.config.storage).getQueueClient(p.config.transport.recordsQueue);
  const [m] = (await queue.receiveMessages({ numberOfMessages: 1 })).receivedMessageItems;
  const report = await applyRecordsMessage(
    p.engine,
    Buffer.from(m!.messageText, 'base64').toString('utf8'),
    { deliveryCount: 1 },
    quietLog,
  );
  expect(report).toMatchObject({ kind: 'applied', applied: 10 });

  const h = await p.health();
  expect(h.batch).toMatchObject({ state: 'dispatched', done: 1, messages: 3, applied: 10, skipped: 0 });
  expect(h.batch!.progress).toBeCloseTo(1 / 3);
  expect(h.totals).toMatchObject({ applied: 0, skipped: 0 }); // completed batches only
  const [line] = progressLines('12:00:00', 200, { flows: [h] });
  expect(line).toMatch(
    /leads +ok +cursor=- batch=dispatched 1\/3 msgs \(30 records\) applied=10 skipped=0 quarantined=0/,
  );
});

it('the progress line shows what health answered when storage is down, not a TypeError', () => {
  const down = {
    error: { code: 'unavailable', message: 'state storage is not reachable; see the function logs' },
  };
  expect(progressLines('12:00:00', 503, down)).toEqual([
    '12:00:00 health answered 503: state storage is not reachable; see the function logs',
  ]);
  expect(progressLines('12:00:00', 500, 'The function failed.')).toEqual([
    '12:00:00 health answered 500: "The function failed."',
  ]);
  expect(progressLines('12:00:00', 200, { flows: [{ flow: 'x' }] })[0]).toMatch(/health answered 200/);
});
