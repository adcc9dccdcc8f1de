/**
 * Starts OpenTelemetry export to Application Insights (Azure Monitor) when
 * APPLICATIONINSIGHTS_CONNECTION_STRING is set: traces, metrics and logs of the worker process.
 *
 *   - Entra auth: APPLICATIONINSIGHTS_AUTHENTICATION_STRING `Authorization=AAD` (with the user-
 *     assigned identity's `ClientId=`), as infra/app/api.bicep sets it; the resource can then
 *     disable local (key) auth.
 *   - Operational signals survive sampling: metrics are aggregated, never sampled; logs are not
 *     dropped with their sampled-out trace (trace-based log sampling off). Only traces are rate
 *     limited.
 *   - Redaction (redact.ts) of every span attribute and log record before export: the http
 *     instrumentation records request URLs, whose query strings may carry SAS tokens.
 */
import type { Context } from '@opentelemetry/api';
import type { LogRecordProcessor, SdkLogRecord } from '@opentelemetry/sdk-logs';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { settings } from '../config/settings';
import { flowSettings } from '../config/flow-settings';
import { redactText, registerSecrets } from './redact';

type Env = Record<string, string | undefined>;

/** Names of the settings the schema marks secret (plus per-flow secret keys, matched by suffix). */
export function secretSettingNames(env: Env): string[] {
  const shared = settings.filter((s) => 'secret' in s && s.secret).map((s) => s.name as string);
  const perFlow = flowSettings
    .filter((d) => 'secret' in d && d.secret)
    .map((d) => `__${d.key}`.toLowerCase());
  return [
    ...shared,
    ...Object.keys(env).filter((k) => perFlow.some((suffix) => k.toLowerCase().endsWith(suffix))),
  ];
}

const redactValue = (v: unknown) => (typeof v === 'string' ? redactText(v) : v);

/** Masks secrets in span attributes while the span can still change (onStart, onEnding). */
export class RedactingSpanProcessor implements SpanProcessor {
  private scrub(span: Span): void {
    for (const [k, v] of Object.entries(span.attributes))
      if (typeof v === 'string') {
        const r = redactText(v);
        if (r !== v) span.setAttribute(k, r);
      }
  }
  onStart(span: Span, _parent: Context): void {
    this.scrub(span);
  }
  onEnding(span: Span): void {
    this.scrub(span);
  }
  onEnd(_span: ReadableSpan): void {}
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Masks secrets in every log record (ours are redacted already; a library's may not be). */
export class RedactingLogProcessor implements LogRecordProcessor {
  onEmit(record: SdkLogRecord): void {
    if (typeof record.body === 'string') record.setBody(redactText(record.body));
    for (const [k, v] of Object.entries(record.attributes ?? {})) {
      const r = redactValue(v);
      if (r !== v) record.setAttribute(k, r as string);
    }
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** `ClientId=<guid>;Authorization=AAD` → the identity to use, or undefined for key auth. */
export function parseAuthenticationString(s: string | undefined): { clientId?: string } | undefined {
  if (!s) return undefined;
  const parts = Object.fromEntries(
    s.split(';').map((p) => {
      const i = p.indexOf('=');
      return [p.slice(0, i).trim().toLowerCase(), p.slice(i + 1).trim()];
    }),
  );
  if ((parts.authorization ?? '').toUpperCase() !== 'AAD') return undefined;
  return { clientId: parts.clientid || undefined };
}

let started = false;

/** Starts export once per process; false when there is nowhere to export to. */
export async function startTelemetry(env: Env = process.env): Promise<boolean> {
  registerSecrets(env, secretSettingNames(env));
  const connectionString = env.APPLICATIONINSIGHTS_CONNECTION_STRING;
  if (!connectionString || started) return started;
  started = true;
  // Loaded only when exporting: the distro patches modules as it loads.
  const { useAzureMonitor } = await import('@azure/monitor-opentelemetry');
  const auth = parseAuthenticationString(env.APPLICATIONINSIGHTS_AUTHENTICATION_STRING);
  let credential;
  if (auth) {
    const { ManagedIdentityCredential } = await import('@azure/identity');
    credential = auth.clientId
      ? new ManagedIdentityCredential({ clientId: auth.clientId })
      : new ManagedIdentityCredential();
  }
  useAzureMonitor({
    azureMonitorExporterOptions: { connectionString, credential },
    enableTraceBasedSamplingForLogs: false,
    spanProcessors: [new RedactingSpanProcessor()],
    logRecordProcessors: [new RedactingLogProcessor()],
    instrumentationOptions: {
      http: { enabled: true },
      azureSdk: { enabled: true },
      postgreSql: { enabled: true },
    },
  });
  return true;
}
