/** A flow's health: what /api/health answers per flow and `npm start` / the CLI show. */
import type { Engine } from './engine';
import type { BatchFlow } from './flow';

export type FlowStatus = 'ok' | 'degraded' | 'blocked';

export interface FlowHealth {
  flow: string;
  status: FlowStatus;
  batch: {
    id: string;
    state: string;
    from: string | null;
    to: string | null;
    /** Final once the batch is dispatched; while dispatching, the messages sent so far are unknown. */
    messages: number | null;
    done: number;
    records: number | null;
    applied: number;
    skipped: number;
    quarantined: number;
    startedAt: string;
    ageSeconds: number;
  } | null;
  /** A plan running now (it holds the planner lease), and for how long: a hung source shows here. */
  planning: { since: string; ageSeconds: number } | null;
  quarantine: { count: number };
  blocked: string | null;
  lastError: { message: string; at: string | null } | null;
  lastCompletedAt: string | null;
  totals: { applied: number; skipped: number; quarantined: number; batches: number };
}

/** The engine's view of a flow, plus the flow's own facts (its describe()). */
export async function flowHealth(
  e: Engine,
  flow: BatchFlow,
  stream = flow.name,
): Promise<FlowHealth & Record<string, unknown>> {
  const ledger = e.ledger(stream);
  const [state, quarantined] = await Promise.all([ledger.getState(), e.quarantine(flow.name).count()]);
  const m = state.currentBatchId ? await ledger.getManifest(state.currentBatchId) : undefined;
  const own = (await flow.describe?.(state.flowState)) ?? {};
  // A flow's own warnings (a stale cursor lease...) degrade it too.
  const warned = Array.isArray((own as { warnings?: unknown }).warnings)
    ? (own as { warnings: unknown[] }).warnings.length > 0
    : false;
  const status: FlowStatus = state.blocked
    ? 'blocked'
    : state.lastError || quarantined > 0 || warned
      ? 'degraded'
      : 'ok';
  const age = (since: number) => Math.max(0, Math.round((e.now() - since) / 1000));
  const dispatching = m?.state === 'dispatching';
  const planning =
    state.leaseOwner && (state.leaseUntil ?? 0) > e.now() && state.leaseSince
      ? { since: new Date(state.leaseSince).toISOString(), ageSeconds: age(state.leaseSince) }
      : null;
  return {
    flow: flow.name,
    ...own,
    status,
    batch: m
      ? {
          id: m.batchId,
          state: m.state,
          from: m.from ?? null,
          to: dispatching ? null : m.to,
          messages: dispatching ? null : m.messageCount,
          done: m.done,
          records: dispatching ? null : m.recordCount,
          applied: m.applied,
          skipped: m.skipped,
          quarantined: m.quarantined,
          startedAt: m.createdAt,
          ageSeconds: age(Date.parse(m.createdAt)),
        }
      : null,
    planning,
    quarantine: { count: quarantined },
    blocked: state.blocked ?? null,
    lastError: state.lastError ? { message: state.lastError, at: state.lastErrorAt ?? null } : null,
    lastCompletedAt: state.lastCompletedAt ?? null,
    totals: {
      applied: state.recordsApplied,
      skipped: state.recordsSkipped,
      quarantined: state.recordsQuarantined,
      batches: state.batchesCompleted,
    },
  };
}
