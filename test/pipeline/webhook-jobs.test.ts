/**
 * The `jobs` worker over a real WebhookStore on Azurite: each accepted event's job runs to one
 * terminal outcome, whatever the deliveries do.
 */
import { TableClient } from '@azure/data-tables';
import { beforeAll, describe, expect, it } from 'vitest';
import { PermanentError, TransientError } from '../../src/lib/errors';
import { runWebhookJob, type JobHandler, type JobResult } from '../../src/lib/jobs/worker';
import { webhookJobMessageId, WEBHOOK_JOB_MESSAGE_TYPE } from '../../src/lib/webhooks/job-message';
import { WebhookStore, type StoredJob } from '../../src/lib/webhooks/store';
import { sharedAzurite } from '../support/azurite';
import { RecordingLog, uniqueName } from '../support/webhook-env';

let store: WebhookStore;
const route = 'test-route';

beforeAll(async () => {
  const { connectionString } = await sharedAzurite();
  store = new WebhookStore(
    TableClient.fromConnectionString(connectionString, uniqueName('jobs'), { allowInsecureConnection: true }),
  );
});

/** An accepted event as the intake leaves it: a marker holding the job, and its queue message. */
async function accepted(body: unknown, jobKind = 'ping') {
  const eventId = uniqueName('ev');
  const messageId = webhookJobMessageId(route, eventId);
  await store.reserve({ route, eventId }, { aliases: [], jobKind, jobText: JSON.stringify(body), messageId });
  await store.markEnqueued({ route, eventId });
  return { eventId, message: { type: WEBHOOK_JOB_MESSAGE_TYPE, v: 1, route, eventId, jobKind } };
}

function handler(
  run: (job: StoredJob, attempt: number) => Promise<JobResult>,
): JobHandler & { runs: number } {
  const h = {
    kind: 'ping',
    runs: 0,
    run: async (job: StoredJob, ctx: { attempt: number }) => {
      h.runs++;
      return run(job, ctx.attempt);
    },
  };
  return h;
}

const deps = (h: JobHandler, log = new RecordingLog()) => ({ store, handlers: new Map([[h.kind, h]]), log });
const first = { deliveryCount: 1, maxDeliveries: 3 };

describe('webhook jobs worker', () => {
  it('runs the job once with its stored body; a second delivery finds it done', async () => {
    const seen: unknown[] = [];
    const h = handler(async (job) => (seen.push(job.body), { outcome: 'done' }));
    const { eventId, message } = await accepted({ n: 1 });
    expect(await runWebhookJob(message, first, deps(h))).toMatchObject({ kind: 'done', attempt: 1 });
    expect(await runWebhookJob(JSON.stringify(message), first, deps(h))).toMatchObject({
      kind: 'already-done',
    });
    // As bytes (a Service Bus body bound as a Buffer): read, not dropped as malformed.
    expect(await runWebhookJob(Buffer.from(JSON.stringify(message)), first, deps(h))).toMatchObject({
      kind: 'already-done',
    });
    expect(seen).toEqual([{ n: 1 }]);
    expect((await store.get({ route, eventId }))?.state).toBe('done');
  });

  it('a transient failure releases the claim and rethrows; the redelivery runs it again', async () => {
    let fail = true;
    const h = handler(async () => {
      if (fail) throw new TransientError('target down');
      return { outcome: 'done' };
    });
    const { eventId, message } = await accepted({ n: 2 });
    await expect(runWebhookJob(message, first, deps(h))).rejects.toThrow('target down');
    expect((await store.get({ route, eventId }))?.state).not.toBe('failed');
    fail = false;
    expect(await runWebhookJob(message, { deliveryCount: 2, maxDeliveries: 3 }, deps(h))).toMatchObject({
      kind: 'done',
      attempt: 2,
    });
  });

  it('on the last delivery a transient failure ends the job failed, with the reason kept', async () => {
    const h = handler(async () => {
      throw new TransientError('still down');
    });
    const { eventId, message } = await accepted({ n: 3 });
    const log = new RecordingLog();
    const r = await runWebhookJob(message, { deliveryCount: 3, maxDeliveries: 3 }, deps(h, log));
    expect(r).toMatchObject({
      kind: 'failed',
      reason: expect.stringMatching(/gave up after 3 deliveries.*still down/),
    });
    const marker = await store.get({ route, eventId });
    expect(marker).toMatchObject({ state: 'failed', reason: expect.stringContaining('still down') });
    expect(log.lines.some((l) => l.level === 'error')).toBe(true);
  });

  it('a permanent failure ends the job failed at once; a handler outcome `failed` too', async () => {
    const perm = handler(async () => {
      throw new PermanentError('flow archived (403)');
    });
    const a = await accepted({ n: 4 });
    expect(await runWebhookJob(a.message, first, deps(perm))).toMatchObject({ kind: 'failed' });
    expect((await store.get({ route, eventId: a.eventId }))?.reason).toMatch(/flow archived/);

    const reported = handler(async () => ({ outcome: 'failed', reason: 'roster invalid' }));
    const b = await accepted({ n: 5 });
    expect(await runWebhookJob(b.message, first, deps(reported))).toMatchObject({ kind: 'failed' });
    expect(await store.get({ route, eventId: b.eventId })).toMatchObject({
      state: 'failed',
      reason: 'roster invalid',
    });
  });

  it('a job kind with no handler fails with a reason that says what to configure', async () => {
    const h = handler(async () => ({ outcome: 'done' }));
    const { eventId, message } = await accepted({ n: 6 }, 'other-kind');
    await runWebhookJob(message, first, deps(h));
    expect((await store.get({ route, eventId }))?.reason).toMatch(
      /no handler for job kind "other-kind".*configured/,
    );
    expect(h.runs).toBe(0);
  });

  it('a delivery while another worker holds the claim is retried, not dropped', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const h = handler(async () => (await gate, { outcome: 'done' }));
    const { message } = await accepted({ n: 7 });
    const running = runWebhookJob(message, first, deps(h));
    await expect.poll(() => h.runs).toBe(1);
    await expect(runWebhookJob(message, first, deps(h))).rejects.toMatchObject({ code: 'job_busy' });
    release();
    expect(await running).toMatchObject({ kind: 'done' });
    expect(h.runs).toBe(1);
  });

  it('drops (and logs) a message that is not a webhook job, and one naming no stored event', async () => {
    const h = handler(async () => ({ outcome: 'done' }));
    const log = new RecordingLog();
    expect(await runWebhookJob('not json', first, deps(h, log))).toMatchObject({ kind: 'malformed' });
    expect(
      await runWebhookJob(
        { type: WEBHOOK_JOB_MESSAGE_TYPE, v: 1, route, eventId: 'never-seen', jobKind: 'ping' },
        first,
        deps(h, log),
      ),
    ).toMatchObject({ kind: 'unknown' });
    expect(h.runs).toBe(0);
    expect(log.lines.map((l) => l.level)).toEqual(['error', 'warn']);
  });
});
