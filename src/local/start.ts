/**
 * `npm start`: runs syncbridge locally on its embedded defaults. Starts Azurite (in memory, no
 * telemetry), the Flowfinity view simulator seeded with the Lead Registration demo app and a
 * writer that keeps changing records, and the local Functions host on port 7071 with the app's
 * real function registrations. Prints progress every few seconds; Ctrl-C stops everything.
 *
 * Environment overrides: FLOWFINITY_VIEW_URL (+ credentials) to sync a real view instead of the
 * simulator; any app setting (SYNC_SCHEDULE, SYNC_MAX_BATCH, ...); PORT for the HTTP port;
 * SIMULATOR_RECORDS (default 500) and SIMULATOR_CHANGE_MS (default 2000, 0 = no writer).
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../lib/config';
import { createApp } from '../lib/compose';
import { timerName } from '../functions/shared/names';
import { startAzurite } from './azurite';
import { FlowfinitySimulator } from './flowfinity-simulator';
import { LocalHost } from './host';
import { localSettings } from './local-settings';
import { startLocalFinops, LOCAL_FINOPS_FLOW } from './finops-local';
import { startWiseflowDemo } from './wiseflow-demo';
import { progressLines } from './progress-line';

async function main(): Promise<void> {
  const stops: (() => Promise<void> | void)[] = [];
  const stopAll = async () => {
    while (stops.length) await Promise.resolve(stops.pop()!()).catch(() => {});
  };
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping...');
    void stopAll().then(() => process.exit(0));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    // LOCAL_STATE_DIR keeps Azurite's state on disk between runs (watch crash recovery locally).
    const location = process.env.LOCAL_STATE_DIR || undefined;
    console.log(
      `starting Azurite (${location ? `state on disk in ${location}` : 'in memory'}, telemetry off)...`,
    );
    const azurite = await startAzurite({ location });
    stops.push(() => azurite.stop());

    // Two simulator views side by side, each its own flow, unless a real view is configured.
    const sims: { flow: string; sim: FlowfinitySimulator }[] = [];
    let view = { viewUrl: process.env.FLOWFINITY_VIEW_URL ?? '', username: '', password: '' };
    let extraViews: { flow: string; viewUrl: string }[] = [];
    if (!process.env.FLOWFINITY_VIEW_URL) {
      const every = Number(process.env.SIMULATOR_CHANGE_MS ?? 2000);
      const records = Number(process.env.SIMULATOR_RECORDS ?? 500);
      for (const [flow, port, viewName, seed] of [
        ['leads', 7080, 'LeadSync', 42],
        ['inspections', 7081, 'InspectionSync', 43],
      ] as const) {
        const sim = await FlowfinitySimulator.start({ port, viewName, initialRecords: records, seed });
        stops.push(() => sim.stop());
        if (every > 0) stops.push(sim.startWriter({ intervalMs: every, changesPerTick: 3 }));
        sims.push({ flow, sim });
        console.log(
          `Flowfinity simulator: ${sim.viewUrl} (flow ${flow}: ${sim.size} records, changing every ${every} ms)`,
        );
      }
      const first = sims[0]!.sim;
      view = { viewUrl: first.viewUrl, username: first.username, password: first.password };
      extraViews = sims.slice(1).map((s) => ({ flow: s.flow, viewUrl: s.sim.viewUrl }));
    }

    // The F&O simulator and one business-event flow (`erp`); FINOPS_SIMULATOR=0 leaves it out.
    let webhookUrl = '';
    const finops =
      process.env.FINOPS_SIMULATOR === '0'
        ? undefined
        : await startLocalFinops({
            webhookUrl: () => webhookUrl,
            controlPort: process.env.FINOPS_CONTROL_PORT
              ? Number(process.env.FINOPS_CONTROL_PORT)
              : undefined,
          });
    if (finops) stops.push(() => finops.stop());
    // The external-source flow against the WISEflow and roster simulators (WISEFLOW_SIMULATOR=0: off).
    const wiseflow = process.env.WISEFLOW_SIMULATOR === '0' ? undefined : await startWiseflowDemo();
    if (wiseflow) stops.push(() => wiseflow.stop());

    const settings = {
      ...finops?.settings,
      ...localSettings({
        storageConnectionString: azurite.connectionString,
        ...view,
        extraViews,
        wiseflow: wiseflow?.settings,
      }),
    };
    const config = loadConfig(settings);
    const app = createApp(config);
    await app.engine.ensureReady();
    await app.close();

    const functionsDir = path.join(__dirname, '..', 'functions');
    const modules = readdirSync(functionsDir)
      .filter((f) => f.endsWith('.js'))
      .map((f) => path.join(functionsDir, f));
    const host = await LocalHost.start({
      modules,
      settings,
      httpPort: Number(process.env.PORT ?? 7071),
      log: (level, line) => {
        if (level !== 'info' || process.env.VERBOSE) console.log(`[${level}] ${line}`);
      },
    });
    stops.push(() => host.stop());
    console.log(`functions: ${host.functions.map((f) => `${f.name} (${f.triggerType})`).join(', ')}`);
    const schedules = config.flows.map((f) => `${f.name} ${f.schedule}`).join(', ');
    console.log(`health: ${host.httpUrl}/api/health   schedules: ${schedules}   Ctrl-C to stop`);
    const cliSettings = writeCliSettings(settings, Number(new URL(host.httpUrl).port || 7071));
    console.log(`operator CLI against this run: npm run cli -- --settings ${cliSettings} status`);
    if (finops) {
      webhookUrl = `${host.httpUrl}/api/webhooks/business-event`;
      console.log(
        `F&O simulator: ${finops.sim.baseUrl}  flow ${LOCAL_FINOPS_FLOW}: business events at ${webhookUrl}, polling every 10 s\n` +
          `  fire an export:   npm run simulator -- finops fire-export --rows 1000   (--mode poll: through dequeue/ack)\n` +
          `  see rows arrive:  the "${LOCAL_FINOPS_FLOW}" line below (applied=...), ${host.httpUrl}/api/health, table finopsrecords`,
      );
    }
    if (wiseflow) {
      console.log(
        `WISEflow webhook ${await wiseflow.register(host.httpUrl)} → ${host.httpUrl}/api/webhooks/external-source`,
      );
      for (const line of wiseflow.instructions()) console.log(line);
    }
    console.log('');

    // A first sync at once, as a timer with runOnStartup would: records flow before the first tick.
    // A failure is logged once, by the host (as every failed invocation).
    for (const f of config.flows) void host.runTimer(timerName(f.name)).catch(() => {});
    const timer = setInterval(() => {
      void progress(host.httpUrl, sims);
      for (const line of wiseflow?.progress() ?? []) console.log(line);
    }, 3000);
    stops.push(() => clearInterval(timer));
  } catch (e) {
    if (e instanceof ConfigError) console.error(e.message);
    else console.error('npm start failed:', e instanceof Error ? e.message : e);
    await stopAll();
    process.exit(1);
  }
}

/** One line per flow (progress-line.ts): status, cursor, batch in flight, records applied, lag. */
async function progress(httpUrl: string, sims: { flow: string; sim: FlowfinitySimulator }[]): Promise<void> {
  const time = new Date().toISOString().slice(11, 19);
  try {
    const res = await fetch(`${httpUrl}/api/health`);
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: shown as text
    }
    const pending = (flow: string, cursor: string | null | undefined) => {
      const sim = sims.find((s) => s.flow === flow)?.sim;
      const after = cursor ? BigInt(cursor) : -1n;
      return sim ? sim.snapshot().filter((r) => r.lastSubmissionId > after).length : undefined;
    };
    for (const line of progressLines(time, res.status, body, pending)) console.log(line);
  } catch (e) {
    console.log(`${time} health not reachable yet (${e instanceof Error ? e.message : String(e)})`);
  }
}

/**
 * Writes the local run's settings where the operator CLI reads them (`--settings FILE`), so
 * `npm run cli` reaches this run's Azurite (random ports) with one command. Local values only:
 * the Azurite well-known key and the simulator's credentials; owner-only file mode anyway.
 */
function writeCliSettings(settings: Record<string, string>, port: number): string {
  const dir = process.env.LOCAL_STATE_DIR || path.join(os.tmpdir(), `syncbridge-${port}`);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'cli.settings.json');
  writeFileSync(file, JSON.stringify({ IsEncrypted: false, Values: settings }, null, 2), { mode: 0o600 });
  return file;
}

void main();
