/**
 * Telemetry of a sync run through the app's real function registrations in the local host,
 * captured with in-memory OpenTelemetry exporters (metrics, spans, log records) plus every host
 * log line. The run is given known secrets (the view password, an http target's bearer secret,
 * a SAS signature in the target URL) and a target that echoes them back in its error bodies,
 * as a chatty server does: no secret may appear in anything captured. The metrics and spans
 * of the run must be there, labelled by flow, and log properties must be fields.
 */
import { readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { logs } from '@opentelemetry/api-logs';
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemoryLogRecordExporter, LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { AggregationTemporality, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RedactingLogProcessor, RedactingSpanProcessor } from '../../src/lib/telemetry/setup';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { LocalHost } from '../../src/local/host';
import { localSettings } from '../../src/local/local-settings';
import { sharedAzurite } from '../support/azurite';

const PASSWORD = 'Flowfinity-Pa55word-7f3a';
const TARGET_SECRET = 'tgt-bearer-9c1d2e3f4a5b';
const SAS_SIG = 'sig0123456789abcdefSAS';
const SECRETS = [PASSWORD, TARGET_SECRET, SAS_SIG];

class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected onForceFlush() {
    return Promise.resolve();
  }
  protected onShutdown() {
    return Promise.resolve();
  }
}

const spans = new InMemorySpanExporter();
const logRecords = new InMemoryLogRecordExporter();
const reader = new TestReader();
const hostLines: string[] = [];
let sim: FlowfinitySimulator;
let host: LocalHost;
let server: Server;
const refused = new Set<string>();

beforeAll(async () => {
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
  // As the Azure Monitor distro does: an active context follows async calls (spans nest).
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({
      spanProcessors: [new RedactingSpanProcessor(), new SimpleSpanProcessor(spans)],
    }),
  );
  logs.setGlobalLoggerProvider(
    new LoggerProvider({
      processors: [new RedactingLogProcessor(), new SimpleLogRecordProcessor({ exporter: logRecords })],
    }),
  );

  sim = await FlowfinitySimulator.start({ initialRecords: 24, seed: 9, password: PASSWORD });
  for (const r of sim.snapshot().slice(0, 2)) refused.add(String(r.RecordID));
  // A target that refuses two records and echoes the request (secret and SAS query) in its error.
  server = createServer((req, res) => {
    const id = decodeURIComponent(req.url!.split('?')[0]!.split('%7C').pop()!.split('|').pop()!);
    req.resume();
    req.on('end', () => {
      if (refused.has(id)) {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(`rejected ${req.method} ${req.url} with authorization ${req.headers.authorization}`);
      } else res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const id = Math.random().toString(36).slice(2, 8);
  const functionsDir = path.join(__dirname, '..', '..', 'src', 'functions');
  host = await LocalHost.start({
    modules: readdirSync(functionsDir)
      .filter((f) => f.endsWith('.ts'))
      .map((f) => path.join(functionsDir, f)),
    settings: {
      ...localSettings(
        {
          storageConnectionString: sharedAzurite().connectionString,
          viewUrl: sim.viewUrl,
          username: sim.username,
          password: PASSWORD,
        },
        {},
      ),
      SYNC_RECORDS_PER_MESSAGE: '8',
      SYNC_MAX_ATTEMPTS: '1',
      SYNC_TABLE_PREFIX: `tel${id}`,
      CURSOR_SHARE_NAME: `tel-${id}`,
      SYNC_RECORDS_QUEUE: `tel-records-${id}`,
      SYNC_CONTROL_QUEUE: `tel-control-${id}`,
      SYNC_JOBS_QUEUE: `tel-jobs-${id}`,
      TARGET: 'http',
      TARGET_HTTP_URL: `http://127.0.0.1:${port}/records/{key}?sv=2025-01-05&sp=w&sig=${SAS_SIG}`,
      TARGET_HTTP_SECRET: TARGET_SECRET,
      TARGET_HTTP_MAX_ATTEMPTS: '1',
    },
    httpPort: 0,
    enableTimers: false,
    queuePollIntervalMs: 50,
    visibilityTimeoutMs: 100,
    log: (level, line) => hostLines.push(`${level} ${line}`),
  });
}, 60_000);

afterAll(async () => {
  await host?.stop();
  await sim?.stop();
  await new Promise((r) => server?.close(r));
});

/** name → summed data points (counter sums, histogram counts, gauge values), per flow. */
async function collected() {
  const { resourceMetrics } = await reader.collect();
  const out = new Map<string, { flow: string; value: number; count?: number }[]>();
  for (const sm of resourceMetrics.scopeMetrics)
    for (const m of sm.metrics)
      out.set(
        m.descriptor.name,
        m.dataPoints.map((p) => {
          const v = p.value as number | { count: number; sum?: number };
          return typeof v === 'number'
            ? { flow: String(p.attributes.flow), value: v }
            : { flow: String(p.attributes.flow), value: v.sum ?? 0, count: v.count };
        }),
      );
  return out;
}

it('a sync run emits metrics by flow, spans and structured logs, and no secret reaches any of it', async () => {
  await host.runTimer('syncTimer-leads');
  await host.waitForIdle({ timeoutMs: 60_000, quietMs: 300 });
  const health = await fetch(`${host.httpUrl}/api/health`);
  expect(health.status).toBe(200); // degraded: 2 quarantined records

  const m = await collected();
  const sum = (name: string) => (m.get(name) ?? []).reduce((n, p) => n + p.value, 0);
  expect(sum('syncbridge.records.fetched')).toBe(24);
  expect(sum('syncbridge.records.applied')).toBe(22);
  expect(sum('syncbridge.records.quarantined')).toBe(2);
  expect(m.get('syncbridge.batch.duration')?.[0]).toMatchObject({ flow: 'leads', count: 1 });
  expect(m.get('syncbridge.batch.size')?.[0]).toMatchObject({ flow: 'leads', value: 24 });
  expect(m.get('syncbridge.target.latency')?.[0]?.count).toBeGreaterThanOrEqual(24);
  expect(sum('syncbridge.target.errors')).toBeGreaterThanOrEqual(2);
  expect(m.get('syncbridge.quarantine.size')?.[0]).toMatchObject({ flow: 'leads', value: 2 });
  expect(m.get('syncbridge.flow.blocked')?.[0]).toMatchObject({ flow: 'leads', value: 0 });
  expect(m.get('syncbridge.sync.lag')?.[0]?.flow).toBe('leads');
  for (const points of m.values()) for (const p of points) expect(p.flow).not.toBe('undefined');

  const names = new Set(spans.getFinishedSpans().map((s) => s.name));
  expect([...names]).toEqual(
    expect.arrayContaining(['syncbridge.plan', 'syncbridge.apply', 'syncbridge.control']),
  );
  expect(spans.getFinishedSpans().find((s) => s.name === 'syncbridge.plan')?.attributes.flow).toBe('leads');
  // One trace spans plan → apply → complete: the messages carry the sender's traceparent.
  const finished = spans.getFinishedSpans();
  const planSpan = finished.find((s) => s.name === 'syncbridge.plan')!.spanContext();
  const applies = finished.filter((s) => s.name === 'syncbridge.apply');
  expect(applies.length).toBeGreaterThanOrEqual(3);
  for (const a of applies) {
    expect(a.spanContext().traceId).toBe(planSpan.traceId);
    expect(a.parentSpanContext?.spanId).toBe(planSpan.spanId);
  }
  const completes = finished.filter((s) => s.name === 'syncbridge.control');
  expect(completes.length).toBeGreaterThanOrEqual(1);
  for (const c of completes) expect(c.spanContext().traceId).toBe(planSpan.traceId);

  const records = logRecords.getFinishedLogRecords();
  const quarantined = records.find((r) => r.body === 'quarantined a poison record');
  expect(quarantined?.attributes).toMatchObject({ flow: 'leads', functionName: 'applyRecords' });
  expect(quarantined?.attributes.batchId).toEqual(expect.any(String));
  expect(quarantined?.attributes.error).toMatch(/answered 400/); // the error is kept, its secrets not

  const everything = JSON.stringify({
    spans: spans
      .getFinishedSpans()
      .map((s) => ({ name: s.name, attributes: s.attributes, status: s.status, events: s.events })),
    logs: records.map((r) => ({ body: r.body, attributes: r.attributes })),
    metrics: [...m],
    hostLines,
  });
  // The capture did see the failure that quoted them (the test could fail).
  expect(everything).toContain('rejected PUT');
  for (const s of SECRETS) expect(everything).not.toContain(s);
});
