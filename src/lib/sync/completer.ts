/**
 * Complete: on `batch-drained`, check the count, move the manifest to `completing` (ETag:
 * excludes a concurrent abandon), compare-and-set the cursor from the batch's `from` to its
 * `to`, close the manifest and the view state, and re-poll at once when the batch was full.
 * Every step is safe to repeat: a crash anywhere is finished by the next drain signal (the
 * timer re-sends it for a drained batch that is not completed).
 */
import { errorText } from '../errors';
import type { Log } from '../ports';
import type { SyncContext } from './context';
import type { Manifest } from './ledger';
import { plan, type PlanOutcome } from './planner';
import { controlMessageSchema, decodeBody, describeIssues } from './messages';

export type CompleteOutcome =
  | {
      kind: 'completed';
      batchId: string;
      from: string | null;
      to: string;
      records: number;
      repolled: boolean;
    }
  | { kind: 'noop'; batchId: string; reason: string };

export class CursorConflictError extends Error {
  constructor(batchId: string, expected: bigint | undefined, current: bigint | undefined) {
    super(
      `cursor conflict completing batch ${batchId}: expected ${expected ?? '(none)'}, found ${current ?? '(none)'}. ` +
        'Another writer moved the cursor (a second app or flow on the same file?). The batch is left uncompleted; ' +
        'stop the other writer, then fix the cursor file.',
    );
    this.name = 'CursorConflictError';
  }
}

export async function completeBatch(ctx: SyncContext, batchId: string, log: Log): Promise<CompleteOutcome> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const m = await ctx.ledger.getManifest(batchId);
    if (!m) return { kind: 'noop', batchId, reason: 'no such batch' };
    if (m.state === 'completed' || m.state === 'abandoned' || m.state === 'blocked')
      return { kind: 'noop', batchId, reason: `batch is ${m.state}` };
    if (m.done < m.messageCount)
      return { kind: 'noop', batchId, reason: `not drained (${m.done}/${m.messageCount})` };
    const completing = m.state === 'completing' ? m : await ctx.ledger.transition(m, 'completing');
    if (!completing) continue; // changed meanwhile: look again
    return await finish(ctx, completing, log);
  }
  throw new Error(`batch ${batchId}: the manifest kept changing while completing`);
}

async function finish(ctx: SyncContext, m: Manifest, log: Log): Promise<CompleteOutcome> {
  await ctx.faults.at('complete.cursorWrite', m.batchId);
  if (m.from === undefined || m.to > m.from) {
    const res = await ctx.cursor.compareAndSet(m.from, m.to);
    if (!res.ok && res.current !== m.to) {
      const err = new CursorConflictError(m.batchId, m.from, res.current);
      await ctx.ledger.recordError(err.message, new Date(ctx.now()));
      throw err;
    }
  }
  await ctx.faults.at('complete.close', m.batchId);
  let closed = m;
  if (m.state !== 'completed') {
    const next = await ctx.ledger.transition(m, 'completed', {
      completedAt: new Date(ctx.now()).toISOString(),
    });
    if (!next) return { kind: 'noop', batchId: m.batchId, reason: 'completed concurrently' };
    closed = next;
  }
  await ctx.ledger.updateViewState((s) => ({
    currentBatchId: s.currentBatchId === m.batchId ? '' : (s.currentBatchId ?? ''),
    lastCompletedAt: new Date(ctx.now()).toISOString(),
    lastCompletedBatchId: m.batchId,
    recordsSynced: s.recordsSynced + m.recordCount,
    batchesCompleted: s.batchesCompleted + 1,
    lastError: '',
  }));
  log.info('completed a batch', {
    batchId: m.batchId,
    from: m.from?.toString() ?? null,
    to: m.to.toString(),
    records: m.recordCount,
    quarantined: closed.quarantined,
  });
  let repolled = false;
  if (m.full) {
    await ctx.faults.at('complete.poll', m.batchId);
    await ctx.transport.send('control', [
      {
        messageId: `${m.batchId}:poll`,
        kind: 'poll',
        batchId: m.batchId,
        body: { type: 'poll', view: ctx.settings.viewName, reason: `batch ${m.batchId} was full` },
      },
    ]);
    repolled = true;
  }
  return {
    kind: 'completed',
    batchId: m.batchId,
    from: m.from?.toString() ?? null,
    to: m.to.toString(),
    records: m.recordCount,
    repolled,
  };
}

export type ControlOutcome = CompleteOutcome | PlanOutcome | { kind: 'invalid'; error: string };

/** Handles one control-queue message: `batch-drained` completes, `poll` plans. */
export async function handleControlMessage(
  ctx: SyncContext,
  input: unknown,
  log: Log,
): Promise<ControlOutcome> {
  const parsed = controlMessageSchema.safeParse(decodeBody(input));
  if (!parsed.success) {
    const error = `not a control message: ${describeIssues(parsed.error)}`;
    log.error('dropped an invalid control message (it carries no records)', { error });
    return { kind: 'invalid', error };
  }
  const msg = parsed.data;
  if (msg.view !== ctx.settings.viewName) {
    const error = `control message for view ${JSON.stringify(msg.view)}, this app syncs ${JSON.stringify(ctx.settings.viewName)}`;
    log.error('dropped a control message for another view', { error });
    return { kind: 'invalid', error };
  }
  try {
    if (msg.type === 'batch-drained') return await completeBatch(ctx, msg.batchId, log);
    return await plan(ctx, log);
  } catch (e) {
    log.error('control message failed', { type: msg.type, error: errorText(e) });
    throw e;
  }
}
