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

export async function applyRecordsMessage(
  e: Engine,
  input: unknown,
  delivery: DeliveryInfo,
  log: Log,
): Promise<ApplyReport> {
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
  const failed: { record: WireRecord; error: string }[] = [];

  for (const r of msg.records) {
    try {
      await e.faults.at('apply.record', `${batchId}:${chunk}:${r.id}`);
      const outcome = await flow.target.apply(targetRecordOf(flow.name, r));
      if (outcome === 'applied') applied++;
      else skipped++;
    } catch (err) {
      if (isSimulatedCrash(err)) throw err;
      if (!isolate && !(err instanceof PermanentError)) throw err;
      failed.push({
        record: r,
        error: delivery.poisonReason ? `${delivery.poisonReason}; ${errorText(err)}` : errorText(err),
      });
    }
  }

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
      kind: 'record',
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
