/** The app's health: every flow's, and the worst status. What /api/health and the CLI show. */
import { flowHealth, type FlowHealth, type FlowStatus } from './batch/health';
import type { AppServices } from './compose';
import { businessEventHealth } from './flows/business-event/health';

export type FlowReport = FlowHealth & Record<string, unknown>;

export interface HealthReport {
  status: FlowStatus;
  flows: FlowReport[];
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
  return { status, flows };
}
