/**
 * Structured logs: each line is an OpenTelemetry log record whose properties are fields
 * (customDimensions in Application Insights), with the correlation fields of its invocation
 * (function, invocation id, flow, batch id, message id, event id), redacted (redact.ts). The
 * same line, redacted, also goes to a text sink (the Functions context log: Log stream, the
 * local host's console). A no-op for OpenTelemetry until a logger provider is registered.
 */
import { logs, SeverityNumber } from '@opentelemetry/api-logs';
import type { Log } from '../ports';
import { redactFields, redactText, type Fields } from './redact';

type Level = 'info' | 'warn' | 'error';
const SEVERITY: Record<Level, SeverityNumber> = {
  info: SeverityNumber.INFO,
  warn: SeverityNumber.WARN,
  error: SeverityNumber.ERROR,
};

export type TextSink = (level: Level, line: string) => void;

export function structuredLog(correlation: Record<string, unknown>, text?: TextSink): Log {
  const base = redactFields(correlation);
  const emit = (level: Level) => (message: string, props?: Record<string, unknown>) => {
    const msg = redactText(message);
    const fields: Fields = { ...base, ...redactFields(props) };
    logs.getLogger('syncbridge').emit({
      severityNumber: SEVERITY[level],
      severityText: level.toUpperCase(),
      body: msg,
      attributes: fields,
    });
    if (text) {
      const own = redactFields(props);
      text(level, Object.keys(own).length ? `${msg} ${JSON.stringify(own)}` : msg);
    }
  };
  return { info: emit('info'), warn: emit('warn'), error: emit('error') };
}
