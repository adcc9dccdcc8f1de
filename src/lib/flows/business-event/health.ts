/**
 * Health of a business-event flow: its exports are streams `<flow>:<sub>`, so the totals are the
 * sum over the flow's stream states (one range query on the state table), in the same shape as a
 * view-sync flow's health so /api/health, the CLI and `npm start` read both alike.
 *
 * Cost: one row per export ever seen (until state is purged); fine for exports that arrive every
 * few minutes. A per-flow aggregate row would bound it (not done).
 */
import type { Engine } from '../../batch/engine';
import type { FlowHealth, FlowStatus } from '../../batch/health';
import { odata } from '@azure/data-tables';
import { textFromProperties } from '../../storage/table-helpers';
import { BusinessEventFlow } from './flow';

export async function businessEventHealth(
  e: Engine,
  flow: BusinessEventFlow,
): Promise<FlowHealth & Record<string, unknown>> {
  const low = `view|${flow.name}:`;
  const high = `view|${flow.name};`; // ';' follows ':'
  const exports = { seen: 0, done: 0, inFlight: 0 };
  const totals = { applied: 0, skipped: 0, quarantined: 0, batches: 0 };
  let lastCompletedAt: string | null = null;
  let lastError: { message: string; at: string | null; kind: string | null } | null = null;
  let blocked: string | null = null;
  const inFlight: { stream: string; batchId: string }[] = [];
  const rows = e.deps.stateTable.listEntities<Record<string, unknown>>({
    queryOptions: {
      filter: odata`PartitionKey ge ${low} and PartitionKey lt ${high} and RowKey eq 'state'`,
    },
  });
  for await (const r of rows) {
    exports.seen++;
    const flowState = textFromProperties('flowState', r) || undefined;
    if (BusinessEventFlow.isDone(flowState)) exports.done++;
    else if (r.currentBatchId) {
      exports.inFlight++;
      inFlight.push({
        stream: String(r.partitionKey).slice('view|'.length),
        batchId: String(r.currentBatchId),
      });
    }
    totals.applied += Number(r.recordsApplied ?? 0);
    totals.skipped += Number(r.recordsSkipped ?? 0);
    totals.quarantined += Number(r.recordsQuarantined ?? 0);
    totals.batches += Number(r.batchesCompleted ?? 0);
    const completed = typeof r.lastCompletedAt === 'string' && r.lastCompletedAt ? r.lastCompletedAt : null;
    if (completed && (!lastCompletedAt || completed > lastCompletedAt)) lastCompletedAt = completed;
    if (typeof r.lastError === 'string' && r.lastError) {
      const at = typeof r.lastErrorAt === 'string' ? r.lastErrorAt : null;
      if (!lastError || (at && (!lastError.at || at > lastError.at)))
        lastError = {
          message: r.lastError,
          at,
          kind: typeof r.lastErrorKind === 'string' && r.lastErrorKind ? r.lastErrorKind : null,
        };
    }
    if (typeof r.blocked === 'string' && r.blocked) blocked = r.blocked;
  }
  // The exports in flight as one batch line: what their manifests counted so far.
  let batch: Omit<NonNullable<FlowHealth['batch']>, 'progress'> | null = null;
  for (const b of inFlight.slice(0, 50)) {
    const m = await e.ledger(b.stream).getManifest(b.batchId);
    if (!m) continue;
    const dispatching = m.state === 'dispatching';
    batch ??= {
      id: `${inFlight.length} export(s)`,
      state: dispatching ? 'dispatching' : 'dispatched',
      from: null,
      to: null,
      messages: 0,
      done: 0,
      records: 0,
      applied: 0,
      skipped: 0,
      quarantined: 0,
      startedAt: m.createdAt,
      ageSeconds: Math.max(0, Math.round((e.now() - Date.parse(m.createdAt)) / 1000)),
    };
    if (dispatching) batch.state = 'dispatching';
    batch.messages = dispatching || batch.messages === null ? null : batch.messages + m.messageCount;
    batch.records = dispatching || batch.records === null ? null : batch.records + m.recordCount;
    batch.done += m.done;
    batch.applied += m.applied;
    batch.skipped += m.skipped;
    batch.quarantined += m.quarantined;
    if (m.createdAt < batch.startedAt) batch.startedAt = m.createdAt;
  }
  const quarantined = await e.quarantine(flow.name).count();
  const status: FlowStatus = blocked ? 'blocked' : lastError || quarantined > 0 ? 'degraded' : 'ok';
  const problems = [
    ...(blocked ? [`blocked: ${blocked}`] : []),
    ...(lastError ? [`last run failed: ${lastError.message}`] : []),
    ...(quarantined > 0
      ? [`${quarantined} quarantined (see: syncbridge quarantine list --flow ${flow.name})`]
      : []),
  ];
  return {
    flow: flow.name,
    ...(await flow.describe()),
    status,
    exports,
    batch: batch && {
      ...batch,
      progress: batch.messages ? Math.min(1, batch.done / batch.messages) : null,
    },
    planning: null,
    problems,
    // Events arrive when F&O sends them: no source to lag behind; the age of the last export done.
    lag: {
      seconds: null,
      syncedAt: null,
      cursorAgeSeconds: lastCompletedAt
        ? Math.max(0, Math.round((e.now() - Date.parse(lastCompletedAt)) / 1000))
        : null,
      maxSeconds: null,
    },
    quarantine: { count: quarantined },
    blocked,
    lastError,
    lastCompletedAt,
    totals,
  } as FlowHealth & Record<string, unknown>;
}
