/**
 * Benchmark (`npm run bench`, section `webhooks`): how fast the webhook routes acknowledge, p50
 * and p99 of request start → last byte of the 202, per route and concurrency. Issue 12's goal:
 * p99 ≤ 200 ms locally.
 *
 * Each row gets a fresh app: a child process (bench/webhooks-child.ts) running the local host
 * with the app's real registrations (routes, jobs worker, queues) on the bench's Azurite, with
 * its own tables and queues. The parent runs the simulators (WISEflow, its roster view, F&O) and
 * the sender (bench/webhook-ack.ts): every request is valid and new (its own WISEflow flow, or
 * its own F&O export), so each one is stored and enqueued, and the jobs worker processes the
 * burst WHILE the intake answers, as an instance would (a row with the jobs worker off shows
 * the intake alone: its jobs stay on the queue). A warm-up of WARMUP requests (first
 * calls, table creation) is not counted. A row ends when its last request is answered; the jobs
 * still running then are dropped with the child.
 */
import { fork } from 'node:child_process';
import { TableServiceClient } from '@azure/data-tables';
import { QueueServiceClient } from '@azure/storage-queue';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { FinOpsSimulator, generatedRows, type ExportHandle } from '../src/local/finops-simulator';
import { localWiseflowSettings } from '../src/local/local-settings';
import { RosterSimulator } from '../src/local/roster-simulator';
import { WiseflowSimulator } from '../src/local/wiseflow-simulator';
import { CpuMeter, procCpuMs } from './harness';
import { benchWebhookAck, type AckRequest, type AckBenchResult } from './webhook-ack';
import type { WebhooksChildInput, WebhooksChildMessage } from './webhooks-child';

export type WebhookRouteName = 'external-source' | 'business-event';
export const WEBHOOK_ROUTES: WebhookRouteName[] = ['external-source', 'business-event'];

export interface WebhookAckRow extends AckBenchResult {
  route: WebhookRouteName;
  concurrency: number;
  /** Open loop: arrivals per second (then `concurrency` is not used). */
  rate?: number;
  requests: number;
  /** Whether the jobs worker ran (processing the burst) while the intake answered. */
  jobsWorker: boolean;
  /**
   * CPU milliseconds per request during the measured requests (warm-up excluded): the app's
   * process (with the worker on, that includes the jobs it ran meanwhile) and Azurite. Less
   * sensitive to a shared machine's load than the latencies.
   */
  cpuMsPerRequest: { app: number; azurite: number };
}

/**
 * One row per route: the load (closed loop at `concurrency`, or open loop at `rate` arrivals per
 * second; see bench/webhook-ack.ts), requests, and whether the jobs worker runs meanwhile.
 */
export interface WebhookLevel {
  concurrency: number;
  rate?: number;
  requests: number;
  jobsWorker: boolean;
}

const WARMUP = 20;
const WEBHOOK_SECRET = 'bench-webhook-secret-0123456789abcdef';
const ENTITY = 'Bench groups';

let runs = 0;

export async function benchWebhooks(o: {
  connectionString: string;
  levels: WebhookLevel[];
  progress?: (s: string) => void;
}): Promise<WebhookAckRow[]> {
  const childJs = path.join(__dirname, 'webhooks-child.js');
  if (!existsSync(childJs))
    throw new Error(`${childJs} is missing: run the bench with npm run bench (it builds)`);
  const [wiseflow, roster, finops] = await Promise.all([
    WiseflowSimulator.start(),
    RosterSimulator.start(),
    FinOpsSimulator.start(),
  ]);
  const rows: WebhookAckRow[] = [];
  try {
    for (const route of WEBHOOK_ROUTES)
      for (const { concurrency, rate, requests: total, jobsWorker } of o.levels) {
        const load = rate === undefined ? `at concurrency ${concurrency}` : `arriving at ${rate}/s`;
        o.progress?.(
          `webhooks: ${route}, ${total} requests ${load}, jobs worker ${jobsWorker ? 'on' : 'off'} (fresh app process)`,
        );
        const run = `${Date.now().toString(36)}${(++runs).toString(36)}`;
        const child = await startChild(childJs, {
          settings: settingsFor(run, o.connectionString, wiseflow, roster, finops),
          finopsCaPem: finops.caPem,
          withoutJobs: !jobsWorker,
        });
        try {
          const url = `${child.httpUrl}/api/webhooks/${route}`;
          const make = requestMaker(route, run, wiseflow, roster, finops);
          // Warm-up: a closed loop of a few (an open-loop row has no concurrency of its own).
          await benchWebhookAck(url, make, {
            concurrency: Math.max(1, Math.min(4, concurrency)),
            total: WARMUP,
          });
          const meter = new CpuMeter();
          const appCpu0 = procCpuMs(child.pid);
          const r = await benchWebhookAck(url, make, { concurrency, rate, total });
          const round = (x: number) => Math.round((x / total) * 100) / 100;
          rows.push({
            route,
            concurrency,
            rate,
            requests: total,
            jobsWorker,
            cpuMsPerRequest: {
              app: round(procCpuMs(child.pid) - appCpu0),
              azurite: round(meter.elapsed().azuriteMs),
            },
            ...r,
          });
        } finally {
          await child.stop();
          await cleanupWebhookRun(o.connectionString, run);
        }
      }
  } finally {
    await Promise.all([wiseflow.stop(), roster.stop(), finops.close()]);
  }
  return rows;
}

/**
 * Deletes a row's queues and tables. Azurite keeps the messages of all queues in one collection
 * that each receive filters: the jobs a row leaves behind (the intake-alone row leaves all of
 * them) made every later row slower, by up to 250 ms of Azurite CPU per request.
 */
async function cleanupWebhookRun(connectionString: string, run: string): Promise<void> {
  const queues = QueueServiceClient.fromConnectionString(connectionString);
  const tables = TableServiceClient.fromConnectionString(connectionString, { allowInsecureConnection: true });
  const doomed: Promise<unknown>[] = [];
  for await (const q of queues.listQueues({ prefix: `wh-${run}-` })) doomed.push(queues.deleteQueue(q.name));
  for await (const t of tables.listTables())
    if (t.name?.startsWith(`wh${run}`)) doomed.push(tables.deleteTable(t.name));
  await Promise.allSettled(doomed);
}

/** Both webhook flows on the simulators, with this run's own tables and queues. */
function settingsFor(
  run: string,
  connectionString: string,
  wiseflow: WiseflowSimulator,
  roster: RosterSimulator,
  finops: FinOpsSimulator,
): Record<string, string> {
  return {
    FUNCTIONS_WORKER_RUNTIME: 'node',
    AzureWebJobsStorage: connectionString,
    TRANSPORT: 'storagequeue',
    CURSOR_STORE: 'blob',
    SYNC_TABLE_PREFIX: `wh${run}`,
    SYNC_RECORDS_QUEUE: `wh-${run}-records`,
    SYNC_CONTROL_QUEUE: `wh-${run}-control`,
    SYNC_JOBS_QUEUE: `wh-${run}-jobs`,
    TARGET_TABLE_NAME: `wh${run}records`,
    ...localWiseflowSettings({
      flow: 'wiseflow',
      baseUrl: wiseflow.baseUrl,
      clientId: wiseflow.credentials.clientId,
      clientSecret: wiseflow.credentials.clientSecret,
      webhookSecret: WEBHOOK_SECRET,
      rosterViewUrl: roster.viewUrl,
      rosterUsername: roster.username,
      rosterPassword: roster.password,
    }),
    Flows__erp__Type: 'business-event',
    Flows__erp__EntityKeys: `${ENTITY}=GroupId`,
    Flows__erp__DownloadAllowedHosts: new URL(finops.baseUrl).hostname,
  };
}

/** Request i: a signed sync request for a flow of its own, or a Data export event for an export of its own. */
function requestMaker(
  route: WebhookRouteName,
  run: string,
  wiseflow: WiseflowSimulator,
  roster: RosterSimulator,
  finops: FinOpsSimulator,
): (i: number) => AckRequest {
  let n = 0;
  if (route === 'external-source')
    return () => {
      const code = `BENCH-${run}-${n++}`;
      const flowId = wiseflow.addFlow({ code, participants: [1, 2, 3] });
      wiseflow.addSource(flowId, code);
      roster.set(code, [1, 2]);
      const call = wiseflow.buildWebhookCall(wiseflow.externalSourcePayload(flowId), {
        secret: WEBHOOK_SECRET,
      });
      return { headers: call.headers, body: call.body };
    };
  return () => {
    const i = n++;
    const handle: ExportHandle = finops.addExport({
      entity: ENTITY,
      format: 'csv',
      columns: ['GroupId', 'Description'],
      rows: generatedRows(5, (j) => ({ GroupId: `B${run}-${i}-${j}`, Description: `export ${i}` })),
    });
    return { headers: { 'content-type': 'application/json' }, body: finops.businessEventJson(handle).json };
  };
}

async function startChild(
  childJs: string,
  input: WebhooksChildInput,
): Promise<{ httpUrl: string; pid: number; stop(): Promise<void> }> {
  // BENCH_CPU_PROF_DIR=<dir>: the app child writes a V8 CPU profile there when it stops (NODE_OPTIONS
  // cannot carry --cpu-prof), to see where an ack's CPU goes.
  const profDir = process.env.BENCH_CPU_PROF_DIR;
  const child = fork(childJs, [], {
    execArgv: profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
    env: { ...process.env, BENCH_WEBHOOKS: JSON.stringify(input) },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const httpUrl = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: WebhooksChildMessage) =>
      'ready' in m ? resolve(m.ready) : reject(new Error(`webhooks child: ${m.error}`)),
    );
    child.once('exit', (code) => reject(new Error(`webhooks child exited with ${code} before it was ready`)));
  });
  return {
    httpUrl,
    pid: child.pid ?? 0,
    async stop() {
      if (child.exitCode === null && child.connected) child.send({ stop: true });
      const killed = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killed);
    },
  };
}
