/**
 * The control queue: `batch-drained` goes to completion, `poll` goes to planning, each routed to
 * the flow its stream belongs to. A control message carries no records, so an invalid one (or
 * one for a flow this app does not have) is dropped with an error log: nothing is lost, a tick
 * repairs a drained batch whose signal went missing.
 */
import { errorText } from '../errors';
import type { Log } from '../ports';
import { completeBatch, type CompleteOutcome } from './completer';
import type { Engine } from './engine';
import { controlMessageSchema, decodeBody, describeIssues } from './messages';
import { CURSOR_CONFLICT, plan, type PlanOutcome } from './planner';
import { backoffMs } from './applier';

export type ControlOutcome = CompleteOutcome | PlanOutcome | { kind: 'invalid'; error: string };

export async function handleControlMessage(e: Engine, input: unknown, log: Log): Promise<ControlOutcome> {
  const parsed = controlMessageSchema.safeParse(decodeBody(input));
  if (!parsed.success) {
    const error = `not a control message: ${describeIssues(parsed.error)}`;
    log.error('dropped an invalid control message (it carries no records)', { error });
    return { kind: 'invalid', error };
  }
  const msg = parsed.data;
  const flow = e.flowOf(msg.stream);
  if (!flow) {
    const error = `control message for stream ${JSON.stringify(msg.stream)}, which belongs to no flow of this app (flows: ${e.flows.map((f) => f.name).join(', ')})`;
    log.error('dropped a control message for an unknown flow', { error });
    return { kind: 'invalid', error };
  }
  try {
    if (msg.type === 'batch-drained') return await completeBatch(e, flow, msg.stream, msg.batchId, log);
    return await plan(e, flow, log, { stream: msg.stream });
  } catch (err) {
    log.error('control message failed', { type: msg.type, stream: msg.stream, error: errorText(err) });
    throw err;
  }
}

export type DeadControlOutcome =
  | { kind: 'invalid'; error: string }
  /** A poll: the flow's timer plans anyway. */
  | { kind: 'dropped-poll'; stream: string }
  /** The batch completed or was abandoned since: nothing left to do. */
  | { kind: 'stale'; stream: string; batchId: string }
  /** The batch still waits for completion: recorded on the stream for health and the operator. */
  | { kind: 'recorded'; stream: string; batchId: string };

/** The code recorded on a stream whose drain signal was dead-lettered. */
export const DRAIN_DEAD_LETTERED = 'drain_dead_lettered';

/**
 * The control queue's dead-letter queue (`<control>/$deadletterqueue`, `<control>-poison`): a
 * control message that failed every delivery (during a cursor conflict, each repair ended
 * there). Service Bus keeps dead letters forever, so they are read here: logged, and a drain
 * signal of a batch still waiting for completion is recorded as the stream's last error (unless
 * that is a cursor conflict, which must stay: it pauses repairs). Nothing else is needed: a tick
 * re-sends the drain signal of a drained batch, with its own message id. When storage is down,
 * the handler waits before rethrowing (the dead-letter queue has no delivery limit).
 */
export async function handleDeadControlMessage(
  e: Engine,
  input: unknown,
  delivery: { deliveryCount: number; deadLetterReason?: string },
  log: Log,
): Promise<DeadControlOutcome> {
  try {
    return await deadControl(e, input, delivery.deadLetterReason ?? 'delivery limit exceeded', log);
  } catch (err) {
    const wait = backoffMs(e.flows[0]?.settings.retryBackoffMs ?? [], delivery.deliveryCount);
    log.warn('dead-lettered control message failed; waiting before handing it back', {
      deliveryCount: delivery.deliveryCount,
      waitMs: wait,
      error: errorText(err),
    });
    await e.sleep(wait);
    throw err;
  }
}

async function deadControl(e: Engine, input: unknown, reason: string, log: Log): Promise<DeadControlOutcome> {
  const parsed = controlMessageSchema.safeParse(decodeBody(input));
  const flow = parsed.success ? e.flowOf(parsed.data.stream) : undefined;
  if (!parsed.success || !flow) {
    const error = parsed.success
      ? `dead-lettered control message for stream ${JSON.stringify(parsed.data.stream)}, which belongs to no flow of this app`
      : `dead-lettered message is not a control message: ${describeIssues(parsed.error)}`;
    log.error('dropped a dead-lettered control message (it carries no records)', { error, reason });
    return { kind: 'invalid', error };
  }
  const msg = parsed.data;
  if (msg.type === 'poll') {
    log.warn("a poll message was dead-lettered; the flow's timer plans anyway", {
      stream: msg.stream,
      reason,
    });
    return { kind: 'dropped-poll', stream: msg.stream };
  }
  const ledger = e.ledger(msg.stream);
  const m = await ledger.getManifest(msg.batchId);
  if (!m || m.state === 'completed' || m.state === 'abandoned') {
    log.info('a dead-lettered drain signal of a finished batch: nothing to do', {
      stream: msg.stream,
      batchId: msg.batchId,
      reason,
    });
    return { kind: 'stale', stream: msg.stream, batchId: msg.batchId };
  }
  const text =
    `the drain signal of batch ${msg.batchId} was dead-lettered (${reason}): its completion failed on every delivery. ` +
    'A tick re-sends it; the reason of each failure is in the logs ("control message failed").';
  const state = await ledger.getState();
  if (state.lastErrorCode !== CURSOR_CONFLICT)
    await ledger.recordError(text, new Date(e.now()), { code: DRAIN_DEAD_LETTERED });
  log.error('drain signal dead-lettered; the batch still waits for completion', {
    stream: msg.stream,
    batchId: msg.batchId,
    reason,
    lastError: state.lastError,
  });
  return { kind: 'recorded', stream: msg.stream, batchId: msg.batchId };
}
