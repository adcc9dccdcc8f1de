/** A flow's health: what /api/health answers per flow and `npm start` / the CLI show. */
import type { Engine } from './engine';
import type { BatchFlow } from './flow';

/**
 * ok; degraded (quarantined records or a transient error: it still moves); lagging (the lag is
 * over the threshold); blocked (a poison record blocks it, or a failure retrying cannot heal,
 * such as the view answering 401/403). /api/health answers 503 for lagging and blocked.
 */
export type FlowStatus = 'ok' | 'degraded' | 'lagging' | 'blocked';

/**
 * Error kinds (errors.ts) of a failed plan that no retry heals: the flow stops until someone
 * fixes a setting or the source (401/403/404 from the view, a view not sorted).
 */
const UNHEALING = new Set(['configuration', 'permanent', 'validation']);

export interface HealthOptions {
  /** Lag above which the flow is `lagging` (HEALTH_MAX_LAG_MINUTES); undefined: never. */
  maxLagSeconds?: number;
}

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
    /** done / messages, 0..1; null while dispatching. */
    progress: number | null;
    startedAt: string;
    ageSeconds: number;
  } | null;
  /** A plan running now (it holds the planner lease), and for how long: a hung source shows here. */
  planning: { since: string; ageSeconds: number } | null;
  quarantine: { count: number };
  blocked: string | null;
  /** Why the status is not ok, one line each. */
  problems: string[];
  /**
   * seconds: since the stream was last known caught up (`syncedAt`: a plan that found nothing
   * new, or the start of a batch that was not full). Every change not applied yet was committed
   * after that, so this bounds the age of the oldest unapplied change. cursorAgeSeconds: since
   * a batch last completed (the cursor last moved). null: not known yet.
   */
  lag: {
    seconds: number | null;
    syncedAt: string | null;
    cursorAgeSeconds: number | null;
    maxSeconds: number | null;
  };
  lastError: { message: string; at: string | null; kind: string | null } | null;
  lastCompletedAt: string | null;
  totals: { applied: number; skipped: number; quarantined: number; batches: number };
}

/** The engine's view of a flow, plus the flow's own facts (its describe()). */
export async function flowHealth(
  e: Engine,
  flow: BatchFlow,
  stream = flow.name,
  o: HealthOptions = {},
): Promise<FlowHealth & Record<string, unknown>> {
  const ledger = e.ledger(stream);
  const [state, quarantined] = await Promise.all([ledger.getState(), e.quarantine(flow.name).count()]);
  const m = state.currentBatchId ? await ledger.getManifest(state.currentBatchId) : undefined;
  const age = (since: number) => Math.max(0, Math.round((e.now() - since) / 1000));
  const ageOf = (iso: string | undefined) =>
    iso && !Number.isNaN(Date.parse(iso)) ? age(Date.parse(iso)) : null;
  const dispatching = m?.state === 'dispatching';
  const planning =
    state.leaseOwner && (state.leaseUntil ?? 0) > e.now() && state.leaseSince
      ? { since: new Date(state.leaseSince).toISOString(), ageSeconds: age(state.leaseSince) }
      : null;
  const lag = {
    seconds: ageOf(state.syncedAt),
    syncedAt: state.syncedAt ?? null,
    cursorAgeSeconds: ageOf(state.lastCompletedAt),
    maxSeconds: o.maxLagSeconds ?? null,
  };
  const unhealing = state.lastError && UNHEALING.has(state.lastErrorKind ?? '');
  const lagging = o.maxLagSeconds !== undefined && lag.seconds !== null && lag.seconds > o.maxLagSeconds;
  const problems: string[] = [];
  if (state.blocked) problems.push(`blocked: ${state.blocked}`);
  if (unhealing) problems.push(`failing until fixed: ${state.lastError}`);
  if (lagging) problems.push(`lag ${lag.seconds}s is over ${o.maxLagSeconds}s (HEALTH_MAX_LAG_MINUTES)`);
  if (state.lastError && !unhealing) problems.push(`last run failed: ${state.lastError}`);
  if (quarantined > 0) problems.push(`${quarantined} quarantined (see: syncbridge quarantine list)`);
  const own = (await flow.describe?.(state.flowState)) ?? {};
  // A flow's own warnings (a stale cursor lease...) degrade it too.
  const warnings = (own as { warnings?: unknown }).warnings;
  const warned = Array.isArray(warnings) && warnings.length > 0;
  if (warned) problems.push(...warnings.map(String));
  const status: FlowStatus =
    state.blocked || unhealing
      ? 'blocked'
      : lagging
        ? 'lagging'
        : state.lastError || quarantined > 0 || warned
          ? 'degraded'
          : 'ok';
  return {
    flow: flow.name,
    ...own,
    status,
    problems,
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
          progress: dispatching || m.messageCount === 0 ? null : Math.min(1, m.done / m.messageCount),
          startedAt: m.createdAt,
          ageSeconds: age(Date.parse(m.createdAt)),
        }
      : null,
    planning,
    quarantine: { count: quarantined },
    blocked: state.blocked ?? null,
    lag,
    lastError: state.lastError
      ? { message: state.lastError, at: state.lastErrorAt ?? null, kind: state.lastErrorKind ?? null }
      : null,
    lastCompletedAt: state.lastCompletedAt ?? null,
    totals: {
      applied: state.recordsApplied,
      skipped: state.recordsSkipped,
      quarantined: state.recordsQuarantined,
      batches: state.batchesCompleted,
    },
  };
}
