/** The view's health: what /api/health answers and `npm start` shows. */
import type { SyncContext } from './context';

export interface HealthReport {
  status: 'ok' | 'degraded' | 'blocked';
  view: string;
  cursor: string | null;
  cursorLocation: string;
  batch: {
    id: string;
    state: string;
    from: string | null;
    to: string;
    messages: number;
    done: number;
    records: number;
    quarantined: number;
    startedAt: string;
    ageSeconds: number;
  } | null;
  quarantine: { count: number };
  blocked: string | null;
  lastError: { message: string; at: string | null } | null;
  lastCompletedAt: string | null;
  recordsSynced: number;
  batchesCompleted: number;
}

export async function healthReport(ctx: SyncContext): Promise<HealthReport> {
  const [state, cursor, quarantined] = await Promise.all([
    ctx.ledger.getViewState(),
    ctx.cursor.read(),
    ctx.quarantine.count(),
  ]);
  const m = state.currentBatchId ? await ctx.ledger.getManifest(state.currentBatchId) : undefined;
  const status = state.blocked ? 'blocked' : state.lastError || quarantined > 0 ? 'degraded' : 'ok';
  return {
    status,
    view: ctx.settings.viewName,
    cursor: cursor?.toString() ?? null,
    cursorLocation: ctx.cursor.describe(),
    batch: m
      ? {
          id: m.batchId,
          state: m.state,
          from: m.from?.toString() ?? null,
          to: m.to.toString(),
          messages: m.messageCount,
          done: m.done,
          records: m.recordCount,
          quarantined: m.quarantined,
          startedAt: m.createdAt,
          ageSeconds: Math.max(0, Math.round((ctx.now() - Date.parse(m.createdAt)) / 1000)),
        }
      : null,
    quarantine: { count: quarantined },
    blocked: state.blocked ?? null,
    lastError: state.lastError ? { message: state.lastError, at: state.lastErrorAt ?? null } : null,
    lastCompletedAt: state.lastCompletedAt ?? null,
    recordsSynced: state.recordsSynced,
    batchesCompleted: state.batchesCompleted,
  };
}
