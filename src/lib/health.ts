/** The app's health: every flow's, and the worst status. What /api/health and the CLI show. */
import { flowHealth, type FlowHealth, type FlowStatus, type HealthOptions } from './batch/health';
import type { AppServices } from './compose';

export type FlowReport = FlowHealth & Record<string, unknown>;

export interface HealthReport {
  status: FlowStatus;
  flows: FlowReport[];
}

const RANK: Record<FlowStatus, number> = { ok: 0, degraded: 1, lagging: 2, blocked: 3 };

/** The health options the configuration asks for (HEALTH_MAX_LAG_MINUTES; 0 = no lag check). */
export function healthOptions(app: Pick<AppServices, 'config'>): HealthOptions {
  const minutes = app.config.health.maxLagMinutes;
  return minutes > 0 ? { maxLagSeconds: minutes * 60 } : {};
}

export async function flowReport(app: AppServices, flow: string): Promise<FlowReport> {
  return flowHealth(app.engine, app.flow(flow), undefined, healthOptions(app));
}

export async function healthReport(app: AppServices): Promise<HealthReport> {
  const o = healthOptions(app);
  const flows = await Promise.all(app.flows.map((f) => flowHealth(app.engine, f, undefined, o)));
  const status = flows.reduce<FlowStatus>(
    (worst, f) => (RANK[f.status] > RANK[worst] ? f.status : worst),
    'ok',
  );
  return { status, flows };
}

/**
 * The HTTP status a probe sees: 503 when a flow is blocked (it will not move without an
 * operator) or lagging (over HEALTH_MAX_LAG_MINUTES), so an availability test alerts; degraded
 * (quarantined records, a transient error) stays 200: the flow still moves.
 */
export function healthHttpStatus(status: FlowStatus): 200 | 503 {
  return RANK[status] >= RANK.lagging ? 503 : 200;
}
