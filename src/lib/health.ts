/** The app's health: every flow's, and the worst status. What /api/health and the CLI show. */
import { flowHealth, type FlowHealth, type FlowStatus } from './batch/health';
import type { AppServices } from './compose';
import { businessEventHealth } from './flows/business-event/health';

export type FlowReport = FlowHealth & Record<string, unknown>;

/** Webhook jobs that ended `failed` (quarantined by the jobs worker), newest first. */
export interface FailedJobsReport {
  count: number;
  recent: {
    route: string;
    eventId: string;
    jobKind: string;
    reason?: string;
    failedAt?: string;
    attempts: number;
  }[];
}

export interface HealthReport {
  status: FlowStatus;
  flows: FlowReport[];
  /** Present when a webhook flow is configured or a job has failed. */
  jobs?: { failed: FailedJobsReport };
}

const RANK: Record<FlowStatus, number> = { ok: 0, degraded: 1, blocked: 2 };

export async function healthReport(app: AppServices): Promise<HealthReport> {
  const flows = await Promise.all([
    ...app.flows.map((f) => flowHealth(app.engine, f)),
    ...(app.businessEventFlows ?? []).map((f) => businessEventHealth(app.engine, f)),
  ]);
  const status = flows.reduce<FlowStatus>(
    (worst, f) => (RANK[f.status] > RANK[worst] ? f.status : worst),
    'ok',
  );
  const failed = await failedJobs(app);
  if (!failed) return { status, flows };
  return {
    status: failed.count > 0 && status === 'ok' ? 'degraded' : status,
    flows,
    jobs: { failed },
  };
}

const SHOWN_FAILED_JOBS = 10;

/** Failed webhook jobs: counted when a webhook flow is configured (the store's table exists then). */
export async function failedJobs(app: AppServices): Promise<FailedJobsReport | undefined> {
  if (app.jobHandlers.size === 0) return undefined;
  const markers = await app.webhookStore.list({ state: 'failed' });
  return {
    count: markers.length,
    recent: markers.slice(0, SHOWN_FAILED_JOBS).map((m) => ({
      route: m.route,
      eventId: m.eventId,
      jobKind: m.jobKind,
      reason: m.reason,
      failedAt: m.completedAt ? new Date(m.completedAt).toISOString() : undefined,
      attempts: m.attempts,
    })),
  };
}
