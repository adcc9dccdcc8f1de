/**
 * The F&O part of `npm start`: the F&O simulator, the settings of one business-event flow (`erp`,
 * entity `Customer groups` keyed by CustomerGroupId, events AND polling), and a small control
 * endpoint on loopback that fires an export, so one command shows rows arriving:
 *
 *   npm run simulator -- finops fire-export [--rows N] [--mode event|poll] [--format csv|xml|json]
 *
 * (or `curl -X POST 'http://127.0.0.1:7082/finops/fire-export?rows=N'`). `event`: the simulator
 * posts a Data export business event to the app's webhook; `poll`: it queues the export on the
 * recurring-integration activity, which the `finopsPoll-erp` timer dequeues.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFinopsLocalOverrides } from '../lib/flows/business-event/runtime';
import { FinOpsSimulator, generatedRows, type TextFormat } from './finops-simulator';

export const LOCAL_FINOPS_FLOW = 'erp';
export const LOCAL_FINOPS_ENTITY = 'Customer groups';
export const LOCAL_FINOPS_ACTIVITY = '8f1b1a2e-6a3c-4a55-9a0e-2f5d1c7e9b10';
export const DEFAULT_FINOPS_CONTROL_PORT = 7082;

export interface LocalFinops {
  sim: FinOpsSimulator;
  /** App settings of the `erp` flow. */
  settings: Record<string, string>;
  controlUrl: string;
  /** Fires one export: its rows, mode and where they went. */
  fireExport(o: FireExportOptions): Promise<FireExportResult>;
  stop(): Promise<void>;
}

export interface FireExportOptions {
  rows?: number;
  mode?: 'event' | 'poll';
  format?: TextFormat;
}

export interface FireExportResult {
  mode: 'event' | 'poll';
  rows: number;
  controlNumber?: string;
  status?: number;
  correlationId?: string;
}

let exportsFired = 0;

/** Starts the simulator and the control endpoint; `webhookUrl` is the app's business-event route. */
export async function startLocalFinops(o: {
  webhookUrl: () => string;
  controlPort?: number;
  simPort?: number;
}): Promise<LocalFinops> {
  const sim = await FinOpsSimulator.start({ port: o.simPort ?? 0, redeliveryMs: 60_000 });
  // The app reaches the simulator on loopback with its self-signed certificate and takes its
  // tokens: in code, for this process only (never a setting).
  setFinopsLocalOverrides({
    unsafeTestOnly: { allowLoopback: true, extraCaPem: sim.caPem },
    credential: sim.credential(),
  });
  const host = new URL(sim.baseUrl).hostname;
  const flow = (key: string) => `Flows__${LOCAL_FINOPS_FLOW}__${key}`;
  const settings: Record<string, string> = {
    [flow('Type')]: 'business-event',
    [flow('EntityKeys')]: `${LOCAL_FINOPS_ENTITY}=CustomerGroupId`,
    [flow('DownloadAllowedHosts')]: `${host};localhost`,
    [flow('FnoBaseUrl')]: sim.baseUrl,
    [flow('PollActivityId')]: LOCAL_FINOPS_ACTIVITY,
    [flow('PollSchedule')]: '*/10 * * * * *',
    [flow('TargetTableName')]: 'finopsrecords',
  };

  const fireExport = async (f: FireExportOptions): Promise<FireExportResult> => {
    const rows = Math.max(0, Math.min(f.rows ?? 100, 5_000_000));
    const run = ++exportsFired;
    const handle = sim.addExport({
      entity: LOCAL_FINOPS_ENTITY,
      format: f.format ?? 'csv',
      columns: ['CustomerGroupId', 'Description', 'PaymentTermsId', 'Run'],
      rows: generatedRows(rows, (i) => ({
        CustomerGroupId: `CG${String(i).padStart(6, '0')}`,
        Description: `Customer group ${i}, "export ${run}"`,
        PaymentTermsId: ['Net10', 'Net30', 'Net45'][i % 3]!,
        Run: String(run),
      })),
    });
    if (f.mode === 'poll') {
      const { correlationId } = sim.enqueue(LOCAL_FINOPS_ACTIVITY, handle);
      return { mode: 'poll', rows, correlationId };
    }
    const sent = await sim.sendBusinessEvent(o.webhookUrl(), handle);
    return { mode: 'event', rows, controlNumber: sent.controlNumber.toString(), status: sent.status };
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'POST' || url.pathname !== '/finops/fire-export') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: { code: 'not_found', message: 'POST /finops/fire-export?rows=N&mode=event|poll' },
        }),
      );
      return;
    }
    const mode = url.searchParams.get('mode') === 'poll' ? 'poll' : 'event';
    const format = (['csv', 'xml', 'json'] as const).find((x) => x === url.searchParams.get('format'));
    fireExport({ rows: Number(url.searchParams.get('rows') ?? 100), mode, format })
      .then((r) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(r));
      })
      .catch((e: unknown) => {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            error: { code: 'fire_failed', message: e instanceof Error ? e.message : String(e) },
          }),
        );
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.controlPort ?? DEFAULT_FINOPS_CONTROL_PORT, '127.0.0.1', () => resolve());
  });
  const controlUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    sim,
    settings,
    controlUrl,
    fireExport,
    stop: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      await sim.close();
      setFinopsLocalOverrides(undefined);
    },
  };
}
