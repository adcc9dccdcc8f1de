/**
 * The external-source flow in `npm start`: the WISEflow simulator (seeded with a flow without
 * sources and one with two) and a roster view simulator, the flow's settings against them, the
 * webhook registered to the local host (as `syncbridge register-webhooks` does in Azure), and the
 * one command that requests an update.
 */
import { randomBytes } from 'node:crypto';
import { registerExternalSourceWebhook } from '../lib/wiseflow/register-webhooks';
import { WiseflowClient } from '../lib/wiseflow/client';
import { webhookUrl } from '../lib/wiseflow/register-webhooks';
import type { LocalWiseflowSettings } from './local-settings';
import { RosterSimulator } from './roster-simulator';
import { WiseflowSimulator } from './wiseflow-simulator';

export interface WiseflowDemo {
  sim: WiseflowSimulator;
  roster: RosterSimulator;
  settings: LocalWiseflowSettings;
  flows: { emptyFlowId: number; classesFlowId: number };
  /** Points the simulator's FLOW_EXTERNAL_SOURCE webhook at the local host. */
  register(hostUrl: string): Promise<string>;
  /** What to type, for the console. */
  instructions(): string[];
  /** One line per source whose state changed since the last call. */
  progress(): string[];
  stop(): Promise<void>;
}

export async function startWiseflowDemo(
  o: { port?: number; rosterPort?: number } = {},
): Promise<WiseflowDemo> {
  const sim = await WiseflowSimulator.start({ port: o.port ?? 7090 });
  const roster = await RosterSimulator.start({ port: o.rosterPort ?? 7091 });
  const flows = sim.seedDemo();
  // DEMO-EXAM has no source yet: the first request creates `DEMO-EXAM` and allocates its roster.
  roster.set('DEMO-EXAM', [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  roster.set('CLASS-A', [1, 2, 3, 4, 5]);
  roster.set('CLASS-B', [6, 7, 8, 9, 10, 11, 12]);
  const { clientId, clientSecret } = sim.credentials;
  const settings: LocalWiseflowSettings = {
    flow: 'wiseflow',
    baseUrl: sim.baseUrl,
    clientId,
    clientSecret,
    webhookSecret: randomBytes(24).toString('base64url'),
    rosterViewUrl: roster.viewUrl,
    rosterUsername: roster.username,
    rosterPassword: roster.password,
  };
  const adminUrl = sim.baseUrl.replace(/\/v1$/, '/sim');
  const seen = new Map<string, string>();
  return {
    sim,
    roster,
    settings,
    flows,
    async register(hostUrl) {
      const client = new WiseflowClient({
        baseUrl: sim.baseUrl,
        auth: { kind: 'oauth', clientId, clientSecret },
      });
      const r = await registerExternalSourceWebhook({
        client,
        url: webhookUrl(hostUrl, 'external-source'),
        secret: settings.webhookSecret,
        title: 'syncbridge external-source',
      });
      return r.action;
    },
    instructions: () => [
      `WISEflow simulator: ${sim.baseUrl} (flow ${flows.emptyFlowId} DEMO-EXAM has no source yet; flow ${flows.classesFlowId} DEMO-CLASSES has CLASS-A and CLASS-B); roster view: ${roster.viewUrl}`,
      `request an update: curl -X POST ${adminUrl}/flows/${flows.emptyFlowId}/request-update`,
      `watch it complete: curl ${adminUrl}/flows/${flows.emptyFlowId}   (sources PENDING → SUCCESS, allocated = roster; failed jobs: /api/health and the CLI's jobs list --failed)`,
    ],
    progress() {
      const lines: string[] = [];
      for (const flowId of [flows.emptyFlowId, flows.classesFlowId])
        for (const s of sim.sources(flowId)) {
          const line = `wiseflow flow ${flowId} source ${s.reference}: ${s.state}, ${sim.allocations(flowId, s.reference).length} allocated`;
          const key = `${flowId}/${s.reference}`;
          if (seen.get(key) !== line) lines.push(line);
          seen.set(key, line);
        }
      return lines;
    },
    async stop() {
      await sim.stop();
      await roster.stop();
    },
  };
}
