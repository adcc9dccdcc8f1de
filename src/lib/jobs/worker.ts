/**
 * The `jobs` queue worker: runs the job of an accepted webhook exactly once to a terminal outcome.
 *
 *   message → claim the event in the webhook store → the handler for its job kind →
 *   complete `done` | complete `failed` (quarantined, with its reason) | release and retry
 *
 * Why it never loses or repeats a job:
 * - the job itself lives with the event's marker (the intake wrote it before answering 202), so
 *   the message only names it and any delivery can run it;
 * - `claim` is ETag-conditional: a message delivered twice runs once, and a claim held by a live
 *   worker makes the other delivery fail (the queue brings it back) rather than drop it;
 * - a transient failure releases the claim and rethrows: the queue redelivers. Only when the
 *   queue's delivery limit is reached does the job end `failed` with the last error, so the
 *   event reaches a terminal state that health and the CLI show instead of a silent dead letter;
 * - a permanent or configuration failure ends `failed` at once (retrying cannot help).
 *
 * A handler must itself be idempotent (it can run again after a crash before `complete`).
 */
import { z } from 'zod';
import { decodeBody } from '../batch/messages';
import { AppError, errorText, TransientError } from '../errors';
import { isSimulatedCrash } from '../faults';
import type { Log } from '../ports';
import { webhookJobMessageSchema } from '../webhooks/job-message';
import type { EventRef, StoredJob, WebhookStore } from '../webhooks/store';

export interface JobContext {
  ref: EventRef;
  /** Claims of this event so far, this one included. */
  attempt: number;
  /** True on the queue's last delivery: a transient failure now ends the job `failed`. */
  lastDelivery: boolean;
  log: Log;
}

/** `failed` is a permanent outcome the handler already reported to its sender (e.g. `sync/fail`). */
export type JobResult = { outcome: 'done' } | { outcome: 'failed'; reason: string };

export interface JobHandler {
  /** The job kind a route gives its jobs (WebhookRoute.toJob; by default the route name). */
  kind: string;
  /**
   * Runs the job. Throw a TransientError (or any error that is not an AppError of kind
   * permanent/configuration/validation) to be retried through the queue.
   */
  run(job: StoredJob, ctx: JobContext): Promise<JobResult>;
}

export interface JobDeps {
  store: WebhookStore;
  handlers: ReadonlyMap<string, JobHandler>;
  log: Log;
}

export interface JobDelivery {
  deliveryCount: number;
  /** The queue's delivery limit (SYNC_MAX_ATTEMPTS). */
  maxDeliveries: number;
}

export type JobReport =
  | { kind: 'malformed'; problem: string }
  | { kind: 'unknown'; ref: EventRef }
  | { kind: 'already-done'; ref: EventRef }
  | { kind: 'done' | 'failed'; ref: EventRef; jobKind: string; attempt: number; reason?: string };

const PERMANENT_KINDS = new Set(['permanent', 'configuration', 'validation']);

/** Handles one `jobs` queue message. Throws only to have the queue deliver it again. */
export async function runWebhookJob(body: unknown, delivery: JobDelivery, deps: JobDeps): Promise<JobReport> {
  const parsed = webhookJobMessageSchema.safeParse(decodeBody(body));
  if (!parsed.success) {
    // Not a message our intake wrote (it only sends this shape): nothing names an event to
    // finish, and redelivering cannot make it valid.
    const problem = z.prettifyError(parsed.error);
    deps.log.error('jobs message is not a webhook job: dropped', { problem });
    return { kind: 'malformed', problem };
  }
  const ref: EventRef = { route: parsed.data.route, eventId: parsed.data.eventId };
  const claim = await deps.store.claim(ref);
  if (claim.status === 'unknown') {
    deps.log.warn('jobs message names no stored event (purged?): dropped', { ...ref });
    return { kind: 'unknown', ref };
  }
  if (claim.status === 'done') return { kind: 'already-done', ref };
  if (claim.status === 'busy')
    throw new TransientError(`job ${ref.route}/${ref.eventId} is being run by another worker`, {
      code: 'job_busy',
      retryAfterMs: claim.retryAfterMs,
    });

  const lastDelivery = delivery.deliveryCount >= delivery.maxDeliveries;
  const handler = deps.handlers.get(claim.job.kind);
  const finish = async (result: JobResult): Promise<JobReport> => {
    const reason = result.outcome === 'failed' ? result.reason : undefined;
    await deps.store.complete(ref, { outcome: result.outcome, reason });
    const report = { kind: result.outcome, ref, jobKind: claim.job.kind, attempt: claim.attempt, reason };
    if (result.outcome === 'failed') deps.log.error('job failed (quarantined)', report);
    else deps.log.info('job done', report);
    return report;
  };
  if (!handler)
    return finish({
      outcome: 'failed',
      reason: `no handler for job kind "${claim.job.kind}": is the flow for route ${ref.route} configured?`,
    });
  try {
    return await finish(
      await handler.run(claim.job, { ref, attempt: claim.attempt, lastDelivery, log: deps.log }),
    );
  } catch (e) {
    // A test's simulated process death: nothing of ours may run after it (src/lib/faults.ts).
    if (isSimulatedCrash(e)) throw e;
    const permanent = e instanceof AppError && PERMANENT_KINDS.has(e.kind);
    if (permanent || lastDelivery)
      return finish({
        outcome: 'failed',
        reason: permanent
          ? errorText(e)
          : `gave up after ${delivery.deliveryCount} deliveries: ${errorText(e)}`,
      });
    await deps.store.release(ref, claim.token).catch((r: unknown) =>
      // The lease then runs out on its own; the redelivery waits for it (claim says busy).
      deps.log.warn('could not release a job claim', { ...ref, error: errorText(r) }),
    );
    throw e;
  }
}
