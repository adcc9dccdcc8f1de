/**
 * Child process of the memory benchmark: plans ONE batch with the real planner (view client over
 * HTTP, ledger and queue on Azurite) and reports its memory, so the figure is not polluted by the
 * simulator or Azurite (they run in other processes).
 *
 * Input: env BENCH_PLAN_ENV = JSON of the app settings. Output: one JSON line on stdout.
 */
import { readFileSync } from 'node:fs';
import { loadConfig } from '../src/lib/config';
import { silentLog } from '../src/lib/log';
import { createApp } from '../src/lib/compose';
import { plan } from '../src/lib/batch/planner';

export interface PlanChildResult {
  outcome: string;
  records: number;
  messages: number;
  durationMs: number;
  /** RSS after start-up and infrastructure checks, before planning. */
  baselineRssBytes: number;
  /** Highest sampled RSS during planning (sampled every 5 ms). */
  peakRssBytes: number;
  /** Kernel's high-water mark of the whole child (VmHWM), when /proc is available. */
  vmHwmBytes?: number;
  peakHeapUsedBytes: number;
}

function vmHwm(): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const env = JSON.parse(process.env.BENCH_PLAN_ENV ?? '{}') as Record<string, string>;
  const app = createApp(loadConfig(env));
  const flow = app.flows[0]!;
  await app.engine.ensureReady();
  await app.engine.ledger(flow.name).getState();
  await flow.cursor.read();
  global.gc?.();
  const baselineRssBytes = process.memoryUsage().rss;
  let peakRssBytes = baselineRssBytes;
  let peakHeapUsedBytes = process.memoryUsage().heapUsed;
  const sample = () => {
    const m = process.memoryUsage();
    if (m.rss > peakRssBytes) peakRssBytes = m.rss;
    if (m.heapUsed > peakHeapUsedBytes) peakHeapUsedBytes = m.heapUsed;
  };
  const timer = setInterval(sample, 5);
  const t0 = performance.now();
  const outcome = await plan(app.engine, flow, silentLog);
  const durationMs = performance.now() - t0;
  sample();
  clearInterval(timer);
  const result: PlanChildResult = {
    outcome: outcome.kind,
    records: outcome.kind === 'planned' ? outcome.records : 0,
    messages: outcome.kind === 'planned' ? outcome.messages : 0,
    durationMs,
    baselineRssBytes,
    peakRssBytes,
    vmHwmBytes: vmHwm(),
    peakHeapUsedBytes,
  };
  await app.close();
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
}

main().catch((e: unknown) => {
  process.stderr.write(`plan-child failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
