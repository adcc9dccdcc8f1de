/**
 * Apply: a records message from the queue is applied record by record through the target's
 * conditional write (a version not newer than the stored one changes nothing), then counted
 * in the batch ledger atomically; the message that completes the count sends `batch-drained`.
 *
 * Failures: on an ordinary attempt any failing record fails the whole message (the transport
 * redelivers it; records already applied are skipped next time by the version check). On the
 * final attempt (delivery count >= SYNC_MAX_ATTEMPTS), and for messages that reached the
 * poison/dead-letter queue, each record is tried on its own and only the failing ones are
 * quarantined. A PermanentError (the target will never accept the record) is quarantined at once.
 * Under POISON_POLICY=block, a poison record blocks the batch instead: the message is not
 * counted, so the batch cannot drain and the cursor cannot pass the record until an operator
 * replays or discards it.
 */
import { isSimulatedCrash } from '../faults';
import { errorText } from '../errors';
import type { Log } from '../ports';
import type { SyncContext } from './context';
import { decodeBody, describeIssues, recordsMessageSchema, type WireRecord } from './messages';
import { sendDrained } from './planner';
import { PermanentError } from '../errors';
import type { TargetRecord } from '../ports';

export type ApplyReport =
  | {
      kind: 'applied';
      batchId: string;
      chunk: number;
      applied: number;
      skipped: number;
      quarantined: number;
      counted: boolean;
      drained: boolean;
    }
  | { kind: 'blocked'; batchId: string; chunk: number; failed: number }
  | { kind: 'invalid'; error: string };

export interface DeliveryInfo {
  /** 1 on the first delivery. */
  deliveryCount: number;
  /** The message comes from the poison / dead-letter queue: isolate and quarantine. */
  poison?: boolean;
  /** Why the transport gave up on it (dead-letter reason), for the quarantine entry. */
  poisonReason?: string;
}

export const targetRecordOf = (view: string, r: WireRecord): TargetRecord => ({
  key: `${view}|${r.id}`,
  version: BigInt(r.v),
  deleted: r.del,
  data: r.data,
});

export async function applyRecordsMessage(
  ctx: SyncContext,
  input: unknown,
  delivery: DeliveryInfo,
  log: Log,
): Promise<ApplyReport> {
  const parsed = recordsMessageSchema.safeParse(decodeBody(input));
  if (!parsed.success || parsed.data.view !== ctx.settings.viewName) {
    const error = parsed.success
      ? `message is for view ${JSON.stringify(parsed.data.view)}, this app syncs ${JSON.stringify(ctx.settings.viewName)}`
      : `not a records message: ${describeIssues(parsed.error)}`;
    await ctx.quarantine.put({
      kind: 'malformed',
      payload: typeof input === 'string' ? input : JSON.stringify(input ?? null),
      error,
      attempts: delivery.deliveryCount,
      policy: ctx.settings.poisonPolicy,
    });
    log.error('quarantined an invalid records message', { error });
    return { kind: 'invalid', error };
  }
  const msg = parsed.data;
  const isolate = delivery.poison === true || delivery.deliveryCount >= ctx.settings.maxAttempts;
  let applied = 0;
  let skipped = 0;
  const failed: { record: WireRecord; error: string }[] = [];

  for (const r of msg.records) {
    try {
      await ctx.faults.at('apply.record', `${msg.batchId}:${msg.chunk}:${r.id}`);
      const outcome = await ctx.target.apply(targetRecordOf(msg.view, r));
      if (outcome === 'applied') applied++;
      else skipped++;
    } catch (e) {
      if (isSimulatedCrash(e)) throw e;
      if (!isolate && !(e instanceof PermanentError)) throw e;
      failed.push({
        record: r,
        error: delivery.poisonReason ? `${delivery.poisonReason}; ${errorText(e)}` : errorText(e),
      });
    }
  }

  const policy = ctx.settings.poisonPolicy;
  if (failed.length > 0 && (await ctx.ledger.isMarked(msg.batchId, msg.chunk))) {
    // A redelivery of a message that already reached its terminal outcome: its records were
    // applied or quarantined then; quarantining them again would only add noise.
    log.warn('failing redelivery of an already counted message ignored', {
      batchId: msg.batchId,
      chunk: msg.chunk,
    });
    return {
      kind: 'applied',
      batchId: msg.batchId,
      chunk: msg.chunk,
      applied,
      skipped,
      quarantined: 0,
      counted: false,
      drained: false,
    };
  }
  for (const f of failed) {
    await ctx.quarantine.put({
      kind: 'record',
      recordId: f.record.id,
      version: f.record.v,
      batchId: msg.batchId,
      chunk: msg.chunk,
      payload: JSON.stringify(f.record),
      error: f.error,
      attempts: delivery.deliveryCount,
      policy,
    });
    log.error(`${policy === 'block' ? 'poison record blocks the view' : 'quarantined a poison record'}`, {
      recordId: f.record.id,
      version: f.record.v,
      batchId: msg.batchId,
      error: f.error,
    });
  }

  if (failed.length > 0 && policy === 'block') {
    await blockBatch(
      ctx,
      msg.batchId,
      `record ${failed[0]!.record.id} v${failed[0]!.record.v}: ${failed[0]!.error}`,
    );
    return { kind: 'blocked', batchId: msg.batchId, chunk: msg.chunk, failed: failed.length };
  }

  await ctx.faults.at('apply.ledger', `${msg.batchId}:${msg.chunk}`);
  const res = await ctx.ledger.markDone(msg.batchId, msg.chunk, failed.length);
  if (res.drained) {
    await ctx.faults.at('apply.drainSignal', msg.batchId);
    await sendDrained(ctx, res.manifest);
  }
  return {
    kind: 'applied',
    batchId: msg.batchId,
    chunk: msg.chunk,
    applied,
    skipped,
    quarantined: failed.length,
    counted: res.counted,
    drained: res.drained,
  };
}

export async function blockBatch(ctx: SyncContext, batchId: string, reason: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const m = await ctx.ledger.getManifest(batchId);
    if (!m || m.state === 'blocked' || m.state === 'completed' || m.state === 'abandoned') break;
    if (await ctx.ledger.transition(m, 'blocked')) break;
  }
  await ctx.ledger.updateViewState(() => ({ blocked: reason.slice(0, 1000) }));
}
