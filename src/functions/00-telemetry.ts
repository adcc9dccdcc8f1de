/**
 * Telemetry entry module: not a function. Named to load first (the package's `main` glob and the
 * local host load src/functions in name order), before the function modules import the SDKs
 * that OpenTelemetry instruments. Starts Azure Monitor export when
 * APPLICATIONINSIGHTS_CONNECTION_STRING is set (src/lib/telemetry/setup.ts), and runs each
 * invocation inside the host's trace context, so the worker's spans and logs join the host's
 * invocation trace (what @azure/functions-opentelemetry-instrumentation does; that package pins
 * an old @opentelemetry/instrumentation, so the few lines live here).
 */
import { app } from '@azure/functions';
import { context as otelContext, propagation } from '@opentelemetry/api';
import { startTelemetry } from '../lib/telemetry/setup';

const ready = startTelemetry().catch((e: unknown) => {
  console.error(`syncbridge: telemetry did not start: ${e instanceof Error ? e.message : String(e)}`);
  return false;
});

app.hook.appStart(async () => {
  await ready;
});

app.hook.preInvocation((c) => {
  const tc = c.invocationContext.traceContext;
  if (!tc?.traceParent) return;
  const parent = propagation.extract(otelContext.active(), {
    traceparent: tc.traceParent,
    tracestate: tc.traceState ?? '',
  });
  const handler = c.functionHandler;
  c.functionHandler = (input, ctx) => otelContext.with(parent, () => handler(input, ctx));
});
