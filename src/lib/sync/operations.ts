/**
 * Operator actions on the quarantine: replay (apply again through the target's conditional
 * write, which skips a version the target already has or has superseded) and discard. Under
 * POISON_POLICY=block, resolving the last blocked entry of a message counts that message in
 * the ledger and unblocks the view, so the batch drains and the cursor moves on.
 */
import { errorText } from '../errors';
import type { Log } from '../ports';
import { targetRecordOf } from './applier';
import type { SyncContext } from './context';
import { wireRecordSchema } from './messages';
import { isDeleted, sendDrained } from './planner';
import type { StoredQuarantineEntry } from './quarantine';

export interface OperationReport {
  done: string[];
  failed: { id: string; error: string }[];
  skipped: { id: string; reason: string }[];
}

async function select(ctx: SyncContext, ids: string[] | 'all'): Promise<StoredQuarantineEntry[]> {
  const all = await ctx.quarantine.list();
  if (ids === 'all') return all;
  const missing = ids.filter((id) => !all.some((e) => e.id === id));
  if (missing.length)
    throw new Error(`no quarantine entry with id ${missing.join(', ')} (see: quarantine list)`);
  return all.filter((e) => ids.includes(e.id));
}

function recordOf(ctx: SyncContext, e: StoredQuarantineEntry) {
  const data = JSON.parse(e.payload) as unknown;
  if (e.kind === 'record') return targetRecordOf(ctx.settings.viewName, wireRecordSchema.parse(data));
  // oversize: the payload is the record's fields.
  const fields = data as Record<string, unknown>;
  return {
    key: `${ctx.settings.viewName}|${e.recordId}`,
    version: BigInt(e.version!),
    deleted: isDeleted(ctx, fields),
    data: fields,
  };
}

export async function replayQuarantined(
  ctx: SyncContext,
  ids: string[] | 'all',
  log: Log,
): Promise<OperationReport> {
  const report: OperationReport = { done: [], failed: [], skipped: [] };
  for (const e of await select(ctx, ids)) {
    if (e.kind === 'malformed') {
      report.skipped.push({
        id: e.id,
        reason:
          'malformed view data cannot be applied; fix the record in Flowfinity (a new submission re-syncs it), then discard this entry',
      });
      continue;
    }
    try {
      const outcome = await ctx.target.apply(recordOf(ctx, e));
      await resolve(ctx, e, log);
      report.done.push(`${e.id} (${outcome})`);
    } catch (err) {
      report.failed.push({ id: e.id, error: errorText(err) });
    }
  }
  return report;
}

export async function discardQuarantined(
  ctx: SyncContext,
  ids: string[] | 'all',
  log: Log,
): Promise<OperationReport> {
  const report: OperationReport = { done: [], failed: [], skipped: [] };
  for (const e of await select(ctx, ids)) {
    await resolve(ctx, e, log);
    report.done.push(e.id);
  }
  return report;
}

/** Removes the entry; for a blocking entry, counts its message and unblocks when it was the last. */
async function resolve(ctx: SyncContext, e: StoredQuarantineEntry, log: Log): Promise<void> {
  await ctx.quarantine.remove(e.id);
  if (e.policy !== 'block' || !e.batchId || e.chunk === undefined) return;
  const remaining = (await ctx.quarantine.list()).filter(
    (q) => q.policy === 'block' && q.batchId === e.batchId,
  );
  if (remaining.some((q) => q.chunk === e.chunk)) return;

  const m = await ctx.ledger.getManifest(e.batchId);
  if (m?.state === 'blocked' && remaining.length === 0) await ctx.ledger.transition(m, 'dispatched');
  if (remaining.length === 0) await ctx.ledger.updateViewState(() => ({ blocked: '' }));
  const res = await ctx.ledger.markDone(e.batchId, e.chunk, 0);
  if (res.drained && remaining.length === 0) await sendDrained(ctx, res.manifest);
  log.info('resolved a blocking quarantine entry', {
    id: e.id,
    batchId: e.batchId,
    unblocked: remaining.length === 0,
  });
}
