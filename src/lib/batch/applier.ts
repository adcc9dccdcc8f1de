/**
 * Apply: a records message from the queue is routed to its flow by the stream it names, applied
 * record by record through the flow's target (a conditional write: a version not newer than the
 * stored one changes nothing), then counted in the stream's ledger atomically; the message that
 * completes the count of a dispatched batch sends `batch-drained`.
 *
 * Failures: on an ordinary attempt any failing record fails the whole message (the transport
 * redelivers it; records already applied are skipped next time by the version check). On the
 * final attempt (delivery count >= maxAttempts), and for messages that reached the poison /
 * dead-letter queue, each record is tried on its own and only the failing ones are quarantined.
 * A PermanentError (the target will never accept the record) is quarantined at once.
 * Under POISON_POLICY=block, a poison record blocks the batch instead: the message is not
 * counted, so the batch cannot drain and the stream cannot pass the record until an operator
 * replays or discards it.
 *
 * Back-off. Service Bus redelivers an abandoned message at once and the Functions extension has
 * no retry policy for it, so a handler that simply rethrows burns every delivery within seconds
 * of a storage or target outage. Before rethrowing, the handler therefore waits
 * `retryBackoffMs[deliveryCount - 1]` (the last value repeats; each at most 240 s, well inside
 * functionTimeout and the lock renewal). It never re-sends a copy instead: a copy with the same
 * message id is dropped silently by duplicate detection, one with a new id escapes the ledger's
 * chunk accounting. The dead-letter queue has no delivery limit, so there the same wait is what
 * keeps a storage outage from spinning the handler.
 *
 * The last delivery. A record failing with a transient error there is not a bad record: it gets
 * in-process retry rounds first (waiting the same schedule between rounds, each wait at most
 * 60 s and at most FINAL_RETRY_ROUNDS of them, so the whole delivery stays bounded), and only a record whose own
 * retries are exhausted too is quarantined, as kind `transient-exhausted` (not `record`), so an
 * operator sees it was the target's outage and `replay` is the fix. Quarantining it there
 * rather than rethrowing is deliberate: the message would only go to the dead-letter queue and
 * come back through the same isolation, while the batch and the stream wait.
 */
import { errorText, PermanentError } from '../errors';
import { isSimulatedCrash } from '../faults';
import type { Log } from '../ports';
import { targetRecordOf, type WireRecord } from '../records';
import { sendDrained } from './dispatch';
import { UNROUTED, type Engine } from './engine';
import { decodeBody, describeIssues, recordsMessageSchema } from './messages';

export type ApplyReport =
  | {
      kind: 'applied';
      stream: string;
      batchId: string;
      chunk: number;
      applied: number;
      skipped: number;
      quarantined: number;
      counted: boolean;
      drained: boolean;
    }
  | { kind: 'blocked'; stream: string; batchId: string; chunk: number; failed: number }
  | { kind: 'invalid'; error: string };

export interface DeliveryInfo {
  /** 1 on the first delivery. */
  deliveryCount: number;
  /** The message comes from the poison / dead-letter queue: isolate and quarantine. */
  poison?: boolean;
  /** Why the transport gave up on it (dead-letter reason), for the quarantine entry. */
  poisonReason?: string;
}

/** In-process retry rounds of the transiently failing records of a last delivery. */
export const FINAL_RETRY_ROUNDS = 3;
/**
 * Longest wait before one such round: with the longest schedule the setting accepts (240 s
 * each), the rounds (3 × 60 s) plus the wait before rethrowing (240 s) stay at 7 min, inside
 * the 10-min functionTimeout with room for the applying itself.
 */
export const FINAL_ROUND_MAX_WAIT_MS = 60_000;

/** The wait before in-process retry round `round` (1-based) of a last delivery. */
export const finalRoundWaitMs = (schedule: readonly number[], round: number) =>
  Math.min(backoffMs(schedule, round), FINAL_ROUND_MAX_WAIT_MS);

/** The wait before the `n`-th redelivery (1-based), or between the `n`-th retry rounds. */
export function backoffMs(schedule: readonly number[], n: number): number {
  if (schedule.length === 0) return 0;
  return schedule[Math.min(Math.max(n, 1), schedule.length) - 1]!;
}

const isPermanent = (err: unknown) => err instanceof PermanentError;

export async function applyRecordsMessage(
  e: Engine,
  input: unknown,
  delivery: DeliveryInfo,
  log: Log,
): Promise<ApplyReport> {
  try {
    return await applyOnce(e, input, delivery, log);
  } catch (err) {
    // A simulated crash is a process dying: it does not wait for anything.
    if (isSimulatedCrash(err)) throw err;
    const wait = backoffMs(retryScheduleOf(e, input), delivery.deliveryCount);
    log.warn('records message failed; waiting before handing it back for redelivery', {
      deliveryCount: delivery.deliveryCount,
      poison: delivery.poison === true,
      waitMs: wait,
      error: errorText(err),
    });
    await e.sleep(wait);
    throw err;
  }
}

/** The back-off schedule of the message's flow (any flow's for a message naming none). */
function retryScheduleOf(e: Engine, input: unknown): readonly number[] {
  let stream: unknown;
  try {
    const body = decodeBody(input);
    stream = body && typeof body === 'object' ? (body as { stream?: unknown }).stream : undefined;
  } catch {
    stream = undefined;
  }
  const flow = (typeof stream === 'string' ? e.flowOf(stream) : undefined) ?? e.flows[0];
  return flow?.settings.retryBackoffMs ?? [];
}

async function applyOnce(e: Engine, input: unknown, delivery: DeliveryInfo, log: Log): Promise<ApplyReport> {
  const body = decodeBody(input);
  const parsed = recordsMessageSchema.safeParse(body);
  const flow = parsed.success ? e.flowOf(parsed.data.stream) : undefined;
  if (!parsed.success || !flow) {
    const error = parsed.success
      ? `message is for stream ${JSON.stringify(parsed.data.stream)}, which belongs to no flow of this app (flows: ${e.flows.map((f) => f.name).join(', ')})`
      : `not a records message: ${describeIssues(parsed.error)}`;
    // The flow is unknown (or unreadable): keep the message where an operator finds it.
    const named =
      body && typeof body === 'object' ? e.flowOf(String((body as { stream?: unknown }).stream)) : undefined;
    await e.quarantine(named?.name ?? UNROUTED).put({
      kind: 'malformed',
      payload: typeof input === 'string' ? input : JSON.stringify(body ?? null),
      error,
      attempts: delivery.deliveryCount,
      policy: named?.settings.poisonPolicy ?? 'quarantine',
    });
    log.error('quarantined an invalid records message', { error });
    return { kind: 'invalid', error };
  }
  const msg = parsed.data;
  const { stream, batchId, chunk } = msg;
  const settings = flow.settings;
  const isolate = delivery.poison === true || delivery.deliveryCount >= settings.maxAttempts;
  let applied = 0;
  let skipped = 0;
  const failing: { record: WireRecord; error: unknown }[] = [];

  const applyOne = async (r: WireRecord) => {
    await e.faults.at('apply.record', `${batchId}:${chunk}:${r.id}`);
    const outcome = await flow.target.apply(targetRecordOf(flow.name, r));
    if (outcome === 'applied') applied++;
    else skipped++;
  };
  for (const r of msg.records) {
    try {
      await applyOne(r);
    } catch (err) {
      if (isSimulatedCrash(err)) throw err;
      if (!isolate && !isPermanent(err)) throw err;
      failing.push({ record: r, error: err });
    }
  }
  // The last delivery: transient failures get their own retries before anything is quarantined.
  for (let round = 1; isolate && round <= FINAL_RETRY_ROUNDS; round++) {
    const retry = failing.filter((f) => !isPermanent(f.error));
    if (retry.length === 0) break;
    const wait = finalRoundWaitMs(settings.retryBackoffMs, round);
    log.warn('last delivery: retrying transiently failing records in-process', {
      stream,
      batchId,
      chunk,
      records: retry.length,
      round,
      waitMs: wait,
    });
    await e.sleep(wait);
    for (const f of retry) {
      try {
        await applyOne(f.record);
        failing.splice(failing.indexOf(f), 1);
      } catch (err) {
        if (isSimulatedCrash(err)) throw err;
        f.error = err;
      }
    }
  }
  const failed = failing.map((f) => {
    const text = errorText(f.error);
    const permanent = isPermanent(f.error);
    const error = permanent ? text : `transient, retries exhausted: ${text}`;
    return {
      record: f.record,
      kind: permanent ? ('record' as const) : ('transient-exhausted' as const),
      error: delivery.poisonReason ? `${delivery.poisonReason}; ${error}` : error,
    };
  });

  const ledger = e.ledger(stream);
  if (failed.length > 0 && (await ledger.isMarked(batchId, chunk))) {
    // A redelivery of a message that already reached its terminal outcome: its records were
    // applied or quarantined then; quarantining them again would only add noise.
    log.warn('failing redelivery of an already counted message ignored', { stream, batchId, chunk });
    return {
      kind: 'applied',
      stream,
      batchId,
      chunk,
      applied,
      skipped,
      quarantined: 0,
      counted: false,
      drained: false,
    };
  }
  const policy = settings.poisonPolicy;
  const quarantine = e.quarantine(flow.name);
  for (const f of failed) {
    await quarantine.put({
      kind: f.kind,
      recordId: f.record.id,
      version: f.record.v,
      stream,
      batchId,
      chunk,
      payload: JSON.stringify(f.record),
      error: f.error,
      attempts: delivery.deliveryCount,
      policy,
    });
    log.error(policy === 'block' ? 'poison record blocks the flow' : 'quarantined a poison record', {
      flow: flow.name,
      recordId: f.record.id,
      version: f.record.v,
      batchId,
      kind: f.kind,
      error: f.error,
    });
  }

  if (failed.length > 0 && policy === 'block') {
    const first = failed[0]!;
    await blockBatch(e, stream, batchId, `record ${first.record.id} v${first.record.v}: ${first.error}`);
    return { kind: 'blocked', stream, batchId, chunk, failed: failed.length };
  }

  await e.faults.at('apply.ledger', `${batchId}:${chunk}`);
  const res = await ledger.markDone(batchId, chunk, { applied, skipped, quarantined: failed.length });
  if (res.drained) {
    await e.faults.at('apply.drainSignal', batchId);
    await sendDrained(e, stream, batchId);
  }
  return {
    kind: 'applied',
    stream,
    batchId,
    chunk,
    applied,
    skipped,
    quarantined: failed.length,
    counted: res.counted,
    drained: res.drained,
  };
}

export async function blockBatch(e: Engine, stream: string, batchId: string, reason: string): Promise<void> {
  const ledger = e.ledger(stream);
  for (let i = 0; i < 50; i++) {
    const m = await ledger.getManifest(batchId);
    if (!m || m.state === 'blocked' || m.state === 'completed' || m.state === 'abandoned') break;
    if (await ledger.transition(m, 'blocked')) break;
  }
  await ledger.updateState(() => ({ blocked: reason.slice(0, 1000) }));
}
