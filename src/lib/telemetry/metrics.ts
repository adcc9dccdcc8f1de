/**
 * The app's metrics, through the OpenTelemetry API: a no-op until a meter provider is registered
 * (src/functions/00-telemetry.ts registers Azure Monitor's; tests an in-memory one). Names are
 * stable: infra/app/alerts.bicep and workbook.bicep query them in customMetrics, with the `flow`
 * attribute as customDimensions.flow. Metrics are aggregated, never sampled.
 */
import { metrics, type Attributes, type Counter, type Gauge, type Histogram } from '@opentelemetry/api';

export const METRIC = {
  recordsFetched: 'syncbridge.records.fetched',
  recordsApplied: 'syncbridge.records.applied',
  recordsSkipped: 'syncbridge.records.skipped',
  recordsDeleted: 'syncbridge.records.deleted',
  recordsQuarantined: 'syncbridge.records.quarantined',
  batchDuration: 'syncbridge.batch.duration',
  batchSize: 'syncbridge.batch.size',
  syncLag: 'syncbridge.sync.lag',
  cursorAge: 'syncbridge.sync.cursor_age',
  flowBlocked: 'syncbridge.flow.blocked',
  quarantineSize: 'syncbridge.quarantine.size',
  targetLatency: 'syncbridge.target.latency',
  targetErrors: 'syncbridge.target.errors',
  webhookRequests: 'syncbridge.webhook.requests',
  downloadBytes: 'syncbridge.download.bytes',
  rowsParsed: 'syncbridge.rows.parsed',
  planFailures: 'syncbridge.plan.failures',
} as const;

function create() {
  const m = metrics.getMeter('syncbridge');
  const counter = (name: string, description: string, unit = '{record}') =>
    m.createCounter(name, { description, unit });
  return {
    recordsFetched: counter(METRIC.recordsFetched, 'Records a plan read from the source into a batch'),
    recordsApplied: counter(METRIC.recordsApplied, 'Records written to the target'),
    recordsSkipped: counter(METRIC.recordsSkipped, 'Records the target already had at that version or newer'),
    recordsDeleted: counter(METRIC.recordsDeleted, 'Deletions (tombstones) written to the target'),
    recordsQuarantined: counter(METRIC.recordsQuarantined, 'Records quarantined (or blocking the flow)'),
    batchDuration: m.createHistogram(METRIC.batchDuration, {
      description: 'Batch planned → completed',
      unit: 's',
    }),
    batchSize: m.createHistogram(METRIC.batchSize, {
      description: 'Records of a completed batch',
      unit: '{record}',
    }),
    syncLag: m.createGauge(METRIC.syncLag, {
      description:
        'Seconds since the flow was last known caught up (bounds the age of the oldest unapplied change)',
      unit: 's',
    }),
    cursorAge: m.createGauge(METRIC.cursorAge, {
      description: 'Seconds since a batch last moved the cursor',
      unit: 's',
    }),
    flowBlocked: m.createGauge(METRIC.flowBlocked, { description: '1 while the flow is blocked, else 0' }),
    quarantineSize: m.createGauge(METRIC.quarantineSize, {
      description: 'Entries in the flow quarantine',
      unit: '{entry}',
    }),
    targetLatency: m.createHistogram(METRIC.targetLatency, { description: 'One target write', unit: 'ms' }),
    targetErrors: counter(METRIC.targetErrors, 'Target writes that failed, by error kind', '{error}'),
    webhookRequests: counter(METRIC.webhookRequests, 'Webhook requests by outcome and reason', '{request}'),
    downloadBytes: counter(METRIC.downloadBytes, 'Bytes downloaded from a source file', 'By'),
    rowsParsed: counter(METRIC.rowsParsed, 'Rows parsed from a downloaded file', '{row}'),
    planFailures: counter(METRIC.planFailures, 'Plans that failed, by error kind', '{plan}'),
  };
}

export type Instruments = ReturnType<typeof create>;
let instruments: Instruments | undefined;

/** The instruments, made on first use (after the entry module registered the provider). */
export function syncMetrics(): Instruments {
  instruments ??= create();
  return instruments;
}

/** Forget the instruments (a test registering another provider). */
export function resetMetrics(): void {
  instruments = undefined;
}

export const add = (c: Counter, n: number, a: Attributes) => {
  if (n > 0) c.add(n, a);
};
export const set = (g: Gauge, v: number | null | undefined, a: Attributes) => {
  if (v !== null && v !== undefined) g.record(v, a);
};
export const observe = (h: Histogram, v: number, a: Attributes) => h.record(v, a);
