/**
 * Operator actions on a flow's quarantine: replay (apply again through the target's conditional
 * write, which skips a version the target already has or has superseded) and discard. Under
 * POISON_POLICY=block, resolving the last blocked entry of a message counts that message in
 * the ledger and unblocks the stream, so the batch drains and the stream moves on.
 */
import { errorText } from '../errors';
import type { Log, TargetRecord } from '../ports';
import { recordKey, targetRecordOf, wireRecordSchema } from '../records';
import { sendDrained } from './dispatch';
import type { Engine } from './engine';
import type { BatchFlow } from './flow';
import type { StoredQuarantineEntry } from './quarantine';

export interface OperationReport {
  done: string[];
  failed: { id: string; error: string }[];
  skipped: { id: string; reason: string }[];
}

async function select(e: Engine, flow: BatchFlow, ids: string[] | 'all'): Promise<StoredQuarantineEntry[]> {
  const all = await e.quarantine(flow.name).list();
  if (ids === 'all') return all;
  const missing = ids.filter((id) => !all.some((q) => q.id === id));
  if (missing.length)
    throw new Error(
      `flow ${flow.name} has no quarantine entry with id ${missing.join(', ')} (see: quarantine list)`,
    );
  return all.filter((q) => ids.includes(q.id));
}

/** The record a quarantine entry holds: a wire record, or (oversize entries written before flows) its bare fields. */
function recordOf(flow: BatchFlow, q: StoredQuarantineEntry): TargetRecord {
  const data = JSON.parse(q.payload) as unknown;
  const wire = wireRecordSchema.safeParse(data);
  if (wire.success) return targetRecordOf(flow.name, wire.data);
  if (q.kind === 'oversize' && q.recordId && q.version && data && typeof data === 'object') {
    const fields = data as Record<string, unknown>;
    return {
      key: recordKey(flow.name, q.recordId),
      version: BigInt(q.version),
      deleted: flow.isDeleted?.(fields) ?? false,
      data: fields,
    };
  }
  throw new Error(`quarantine entry ${q.id} does not hold a record`);
}

export async function replayQuarantined(
  e: Engine,
  flow: BatchFlow,
  ids: string[] | 'all',
  log: Log,
  onProgress?: (done: number, total: number) => void,
): Promise<OperationReport> {
  const report: OperationReport = { done: [], failed: [], skipped: [] };
  const entries = await select(e, flow, ids);
  for (const [i, q] of entries.entries()) {
    onProgress?.(i, entries.length);
    if (q.kind === 'malformed') {
      report.skipped.push({
        id: q.id,
        reason:
          'malformed source data cannot be applied; fix the record at the source (a new version re-syncs it), then discard this entry',
      });
      continue;
    }
    try {
      const outcome = await flow.target.apply(recordOf(flow, q));
      await resolve(e, flow, q, log);
      report.done.push(`${q.id} (${outcome})`);
    } catch (err) {
      report.failed.push({ id: q.id, error: errorText(err) });
    }
  }
  onProgress?.(entries.length, entries.length);
  return report;
}

export async function discardQuarantined(
  e: Engine,
  flow: BatchFlow,
  ids: string[] | 'all',
  log: Log,
): Promise<OperationReport> {
  const report: OperationReport = { done: [], failed: [], skipped: [] };
  for (const q of await select(e, flow, ids)) {
    await resolve(e, flow, q, log);
    report.done.push(q.id);
  }
  return report;
}

/** Removes the entry; for a blocking entry, counts its message and unblocks when it was the last. */
async function resolve(e: Engine, flow: BatchFlow, q: StoredQuarantineEntry, log: Log): Promise<void> {
  const quarantine = e.quarantine(flow.name);
  await quarantine.remove(q.id);
  if (q.policy !== 'block' || !q.batchId || q.chunk === undefined) return;
  const stream = q.stream ?? flow.name;
  const ledger = e.ledger(stream);
  const remaining = (await quarantine.list()).filter((x) => x.policy === 'block' && x.batchId === q.batchId);
  if (remaining.some((x) => x.chunk === q.chunk)) return;

  const m = await ledger.getManifest(q.batchId);
  // Back to where it was blocked from: a batch blocked while still being sent is `dispatching`.
  if (m?.state === 'blocked' && remaining.length === 0)
    await ledger.transition(m, m.dispatchedAt ? 'dispatched' : 'dispatching');
  if (remaining.length === 0) await ledger.updateState(() => ({ blocked: '' }));
  const res = await ledger.markDone(q.batchId, q.chunk, { applied: 0, skipped: 0, quarantined: 0 });
  if (res.drained && remaining.length === 0) await sendDrained(e, stream, q.batchId);
  log.info('resolved a blocking quarantine entry', {
    flow: flow.name,
    id: q.id,
    batchId: q.batchId,
    unblocked: remaining.length === 0,
  });
}
