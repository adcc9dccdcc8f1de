/**
 * W3C trace context carried in queue message bodies (`traceparent`), so one trace spans
 * plan → apply → complete and webhook → job although each step runs in another invocation.
 * Built from the active span's context directly, so it works whatever propagator is (or is not)
 * registered; a missing or malformed value only means a step starts a trace of its own.
 */
import { context, trace, TraceFlags, type Context } from '@opentelemetry/api';
import { decodeBody } from '../batch/messages';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The active span's context as a `traceparent`, or undefined when nothing is traced. */
export function currentTraceparent(): string | undefined {
  const sc = trace.getActiveSpan()?.spanContext();
  if (!sc || !trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** The context to start a child span in: the remote parent a `traceparent` names, else `base`. */
export function contextOfTraceparent(traceparent: unknown, base: Context = context.active()): Context {
  const m = typeof traceparent === 'string' ? TRACEPARENT.exec(traceparent) : null;
  if (!m) return base;
  const [, traceId, spanId, flags] = m as unknown as [string, string, string, string];
  const sc = { traceId, spanId, traceFlags: parseInt(flags, 16) as TraceFlags, isRemote: true };
  return trace.isSpanContextValid(sc) ? trace.setSpanContext(base, sc) : base;
}

/** The `traceparent` a queue message body carries (object, JSON text or bytes), if any. */
export function traceparentOf(body: unknown): string | undefined {
  const b = decodeBody(body);
  const tp = b && typeof b === 'object' ? (b as { traceparent?: unknown }).traceparent : undefined;
  return typeof tp === 'string' ? tp : undefined;
}
