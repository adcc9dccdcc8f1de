/**
 * Child process of the webhook ack benchmark (bench/webhooks.ts): the app in the local host, with
 * its real function registrations from dist/src/functions (HTTP routes, jobs worker, records and
 * control queues), so the parent's requests meet the app in another process, as a sender meets
 * a Functions instance. The simulators (WISEflow, roster, F&O) run in the parent.
 *
 * Input: env BENCH_WEBHOOKS = JSON { settings, finopsCaPem }. Over IPC: sends { ready: httpUrl },
 * then on { stop: true } stops the host and exits.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { setFinopsLocalOverrides } from '../src/lib/flows/business-event/runtime';
import { LocalHost } from '../src/local/host';

export interface WebhooksChildInput {
  settings: Record<string, string>;
  /** The F&O simulator's certificate: downloads from it are trusted in this process only. */
  finopsCaPem: string;
  /** Leave the jobs worker out: the intake alone, its jobs stay on the queue. */
  withoutJobs?: boolean;
}

export type WebhooksChildMessage = { ready: string } | { error: string };

async function main(): Promise<void> {
  const input = JSON.parse(process.env.BENCH_WEBHOOKS ?? '{}') as WebhooksChildInput;
  // In code, never from a setting (as `npm start` does): loopback downloads from the simulator.
  setFinopsLocalOverrides({ unsafeTestOnly: { allowLoopback: true, extraCaPem: input.finopsCaPem } });
  const functionsDir = path.join(__dirname, '..', 'src', 'functions');
  const host = await LocalHost.start({
    modules: readdirSync(functionsDir)
      .filter((f) => f.endsWith('.js') && !(input.withoutJobs && f === 'webhook-jobs.js'))
      .map((f) => path.join(functionsDir, f)),
    settings: input.settings,
    httpPort: 0,
    enableTimers: false,
    // As the throughput bench: the Functions host's minimum polling interval.
    queuePollIntervalMs: 100,
    log: () => {},
  });
  const stop = () => {
    // Jobs still in flight are abandoned with the process: their queues are this run's own.
    const forced = setTimeout(() => process.exit(0), 10_000);
    forced.unref();
    void host.stop().finally(() => process.exit(0));
  };
  process.on('message', (m: unknown) => {
    if (typeof m === 'object' && m !== null && (m as { stop?: boolean }).stop) stop();
  });
  process.on('disconnect', stop);
  process.send?.({ ready: host.httpUrl } satisfies WebhooksChildMessage);
}

main().catch((e: unknown) => {
  process.send?.({
    error: e instanceof Error ? (e.stack ?? e.message) : String(e),
  } satisfies WebhooksChildMessage);
  process.exit(1);
});
