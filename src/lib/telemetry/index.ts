/**
 * Telemetry of the app's steps, recorded from what the engine's steps return (plan outcomes,
 * apply reports, completions, health): the engine itself stays free of telemetry. Every
 * recorder is labelled by flow; each is a no-op until a provider is registered.
 */
import { SpanStatusCode, trace, type Attributes } from '@opentelemetry/api';
import type { ApplyReport } from '../batch/applier';
import type { ControlOutcome } from '../batch/control';
import { flowOfStream } from '../batch/flow';
import type { FlowHealth } from '../batch/health';
import type { PlanOutcome } from '../batch/planner';
import { AppError } from '../errors';
import type { ApplyOutcome, TargetRecord, TargetSystem } from '../ports';
import type { WebhookOutcome } from '../webhooks/intake';
import { add, observe, set, syncMetrics } from './metrics';
import { redactFields, redactText } from './redact';
import { contextOfTraceparent } from './trace-context';

export { METRIC, syncMetrics, resetMetrics } from './metrics';
export { redactFields, redactText, registerSecrets } from './redact';
export { currentTraceparent, traceparentOf } from './trace-context';

const kindOf = (e: unknown) => (e instanceof AppError ? e.kind : 'unexpected');

export function recordPlan(flow: string, outcome: PlanOutcome): void {
  if (outcome.kind === 'planned') add(syncMetrics().recordsFetched, outcome.records, { flow });
}

export function recordPlanFailure(flow: string, e: unknown): void {
  syncMetrics().planFailures.add(1, { flow, kind: kindOf(e) });
}

/** Per records message: applied, skipped and quarantined as soon as the message is done. */
export function recordApply(report: ApplyReport): void {
  if (report.kind === 'invalid') return;
  const a = { flow: flowOfStream(report.stream) };
  const m = syncMetrics();
  if (report.kind === 'blocked') {
    add(m.recordsQuarantined, report.failed, a);
    return;
  }
  add(m.recordsApplied, report.applied, a);
  add(m.recordsSkipped, report.skipped, a);
  add(m.recordsQuarantined, report.quarantined, a);
}

export function recordControl(outcome: ControlOutcome, now = Date.now()): void {
  if (outcome.kind !== 'completed') return;
  const a = { flow: flowOfStream(outcome.stream) };
  const started = Date.parse(outcome.startedAt);
  if (!Number.isNaN(started)) observe(syncMetrics().batchDuration, Math.max(0, (now - started) / 1000), a);
  observe(syncMetrics().batchSize, outcome.records, a);
}

/** The gauges of a flow's health: lag, cursor age, blocked, quarantine size. */
export function recordHealth(h: Pick<FlowHealth, 'flow' | 'status' | 'lag' | 'quarantine'>): void {
  const a = { flow: h.flow };
  const m = syncMetrics();
  set(m.syncLag, h.lag.seconds, a);
  set(m.cursorAge, h.lag.cursorAgeSeconds, a);
  set(m.flowBlocked, h.status === 'blocked' ? 1 : 0, a);
  set(m.quarantineSize, h.quarantine.count, a);
}

/**
 * One webhook request by outcome (accepted, duplicate, ignored, rejected, failed) and reason
 * (the error code of a rejection): pass the intake's result (webhooks/intake.ts IntakeResult).
 */
export function recordWebhookRequest(r: { route: string; outcome: WebhookOutcome; reason?: string }): void {
  syncMetrics().webhookRequests.add(1, {
    flow: r.route,
    outcome: r.outcome,
    ...(r.reason ? { reason: r.reason } : {}),
  });
}

export function recordDownload(flow: string, bytes: number): void {
  add(syncMetrics().downloadBytes, bytes, { flow });
}

export function recordRowsParsed(flow: string, rows: number): void {
  add(syncMetrics().rowsParsed, rows, { flow });
}

/** A target that measures its writes: latency, errors by kind, deletions written. */
export function instrumentTarget<T extends TargetSystem>(flow: string, target: T): T {
  const apply = async (r: TargetRecord): Promise<ApplyOutcome> => {
    const m = syncMetrics();
    const started = performance.now();
    try {
      const outcome = await target.apply(r);
      if (outcome === 'applied' && r.deleted) m.recordsDeleted.add(1, { flow });
      return outcome;
    } catch (e) {
      m.targetErrors.add(1, { flow, kind: kindOf(e) });
      throw e;
    } finally {
      observe(m.targetLatency, performance.now() - started, { flow });
    }
  };
  return new Proxy(target, {
    get: (t, p) => {
      if (p === 'apply') return apply;
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

/**
 * Runs `fn` in a span named `name` (plan, apply, complete, webhook, job), with correlation
 * attributes (flow, batch id, message id, event id), redacted. The span ends with the error's
 * kind and redacted text on failure. `parent`: the `traceparent` of the step that sent the message
 * this step handles (the span is then its child, in the same trace).
 */
export async function inSpan<T>(
  name: string,
  attributes: Attributes,
  fn: () => Promise<T>,
  parent?: string,
): Promise<T> {
  return trace
    .getTracer('syncbridge')
    .startActiveSpan(
      `syncbridge.${name}`,
      { attributes: redactFields(attributes as Record<string, unknown>) },
      contextOfTraceparent(parent),
      async (span) => {
        try {
          return await fn();
        } catch (e) {
          span.setStatus({
            code: SpanStatusCode.ERROR,
            message: redactText(e instanceof Error ? e.message : String(e)),
          });
          span.setAttribute('error.kind', kindOf(e));
          throw e;
        } finally {
          span.end();
        }
      },
    );
}
