/**
 * `npm run simulator -- finops fire-export [--rows N] [--mode event|poll] [--format csv|xml|json]`:
 * asks the F&O simulator of a running `npm start` to fire an export (FINOPS_CONTROL_URL, default
 * http://127.0.0.1:7082).
 *
 * `npm run simulator`: the Flowfinity view simulator alone on http://127.0.0.1:7080 (for
 * `func start` users, who run the app under Core Tools). SIMULATOR_RECORDS (default 500) and
 * SIMULATOR_CHANGE_MS (default 2000, 0 = no writer) as for `npm start`.
 */
import { parseArgs } from 'node:util';
import { FlowfinitySimulator } from './flowfinity-simulator';
import { DEFAULT_FINOPS_CONTROL_PORT } from './finops-local';

async function fireExport(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { rows: { type: 'string' }, mode: { type: 'string' }, format: { type: 'string' } },
  });
  const base = process.env.FINOPS_CONTROL_URL ?? `http://127.0.0.1:${DEFAULT_FINOPS_CONTROL_PORT}`;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v !== undefined) q.set(k, v);
  try {
    const res = await fetch(`${base}/finops/fire-export?${q.toString()}`, { method: 'POST' });
    console.log(await res.text());
    if (!res.ok) process.exitCode = 1;
  } catch (e) {
    console.error(
      `could not reach ${base}: is \`npm start\` running? (${e instanceof Error ? e.message : e})`,
    );
    process.exitCode = 1;
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'finops') {
    if (argv[1] !== 'fire-export') {
      console.error(
        'usage: npm run simulator -- finops fire-export [--rows N] [--mode event|poll] [--format csv|xml|json]',
      );
      process.exitCode = 2;
      return;
    }
    return fireExport(argv.slice(2));
  }
  const sim = await FlowfinitySimulator.start({
    port: Number(process.env.SIMULATOR_PORT ?? 7080),
    initialRecords: Number(process.env.SIMULATOR_RECORDS ?? 500),
    seed: 42,
  });
  const every = Number(process.env.SIMULATOR_CHANGE_MS ?? 2000);
  const stopWriter = every > 0 ? sim.startWriter({ intervalMs: every, changesPerTick: 3 }) : () => {};
  console.log(`Flowfinity simulator: ${sim.viewUrl}  user ${sim.username} / ${sim.password} (local only)`);
  console.log(`${sim.size} records, changing every ${every} ms. Ctrl-C to stop.`);
  const stop = () => {
    stopWriter();
    void sim.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

void main();
