/** The app's health: every flow's, and the worst status. What /api/health and the CLI show. */
import { flowHealth, type FlowHealth, type FlowStatus, type HealthOptions } from './batch/health';
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

const RANK: Record<FlowStatus, number> = { ok: 0, degraded: 1, lagging: 2, blocked: 3 };

/** The health options the configuration asks for (HEALTH_MAX_LAG_MINUTES; 0 = no lag check). */
export function healthOptions(app: Pick<AppServices, 'config'>): HealthOptions {
  const minutes = app.config.health.maxLagMinutes;
  return minutes > 0 ? { maxLagSeconds: minutes * 60 } : {};
}

/** One flow's health, whatever its type (app.flow throws a ConfigError naming the flows). */
export async function flowReport(app: AppServices, flow: string): Promise<FlowReport> {
  const be = app.businessEventFlows?.find((f) => f.name === flow);
  if (be) return businessEventHealth(app.engine, be);
  return flowHealth(app.engine, app.flow(flow), undefined, healthOptions(app));
}

export async function healthReport(app: AppServices): Promise<HealthReport> {
  const o = healthOptions(app);
  const flows = await Promise.all([
    ...app.flows.map((f) => flowHealth(app.engine, f, undefined, o)),
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

/**
 * The HTTP status a probe sees: 503 when a flow is blocked (it will not move without an
 * operator) or lagging (over HEALTH_MAX_LAG_MINUTES), so an availability test alerts; degraded
 * (quarantined records, a transient error) stays 200: the flow still moves.
 */
export function healthHttpStatus(status: FlowStatus): 200 | 503 {
  return RANK[status] >= RANK.lagging ? 503 : 200;
}
