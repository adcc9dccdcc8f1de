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
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfig } from '../lib/config';
import { createServices, ensureInfrastructure } from '../lib/services';
import { startAzurite } from './azurite';
import { FlowfinitySimulator } from './flowfinity-simulator';
import { LocalHost } from './host';
import { localSettings } from './local-settings';

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
    console.log('starting Azurite (in memory, telemetry off)...');
    const azurite = await startAzurite();
    stops.push(() => azurite.stop());

    let sim: FlowfinitySimulator | undefined;
    let view = { viewUrl: process.env.FLOWFINITY_VIEW_URL ?? '', username: '', password: '' };
    if (!process.env.FLOWFINITY_VIEW_URL) {
      sim = await FlowfinitySimulator.start({
        port: 7080,
        initialRecords: Number(process.env.SIMULATOR_RECORDS ?? 500),
        seed: 42,
      });
      stops.push(() => sim!.stop());
      view = { viewUrl: sim.viewUrl, username: sim.username, password: sim.password };
      const every = Number(process.env.SIMULATOR_CHANGE_MS ?? 2000);
      if (every > 0) stops.push(sim.startWriter({ intervalMs: every, changesPerTick: 3 }));
      console.log(
        `Flowfinity simulator: ${sim.viewUrl} (${sim.size} Lead Registration records, changing every ${every} ms)`,
      );
    }

    const settings = localSettings({ storageConnectionString: azurite.connectionString, ...view });
    const config = loadConfig(settings);
    const services = createServices(config);
    await ensureInfrastructure(services);
    await services.close();

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
    console.log(`health: ${host.httpUrl}/api/health   schedule: ${config.sync.schedule}   Ctrl-C to stop\n`);

    // A first sync at once, as a timer with runOnStartup would: records flow before the first tick.
    void host
      .runTimer('syncTimer')
      .catch((e) => console.error(`first sync failed: ${e instanceof Error ? e.message : e}`));
    const timer = setInterval(() => void progress(host.httpUrl, sim), 3000);
    stops.push(() => clearInterval(timer));
  } catch (e) {
    if (e instanceof ConfigError) console.error(e.message);
    else console.error('npm start failed:', e instanceof Error ? e.message : e);
    await stopAll();
    process.exit(1);
  }
}

interface Health {
  status: string;
  cursor: string | null;
  batch: { id: string; state: string; done: number; messages: number; records: number } | null;
  quarantine: { count: number };
  recordsSynced: number;
  lastError: { message: string } | null;
}

async function progress(httpUrl: string, sim: FlowfinitySimulator | undefined): Promise<void> {
  try {
    const h = (await (await fetch(`${httpUrl}/api/health`)).json()) as Health;
    const cursor = h.cursor ? BigInt(h.cursor) : -1n;
    const pending = sim ? sim.snapshot().filter((r) => r.lastSubmissionId > cursor).length : undefined;
    const batch = h.batch
      ? `${h.batch.state} ${h.batch.done}/${h.batch.messages} msgs (${h.batch.records} records)`
      : 'none';
    console.log(
      `${new Date().toISOString().slice(11, 19)} ${h.status.padEnd(8)} cursor=${h.cursor ?? '-'} batch=${batch} ` +
        `applied=${h.recordsSynced} quarantined=${h.quarantine.count}` +
        (pending !== undefined ? ` lag=${pending} changes not yet synced` : '') +
        (h.lastError ? ` lastError="${h.lastError.message.slice(0, 120)}"` : ''),
    );
  } catch (e) {
    console.log(`health not reachable yet (${e instanceof Error ? e.message : String(e)})`);
  }
}

void main();
