/**
 * `npm run simulator`: the Flowfinity view simulator alone on http://127.0.0.1:7080 (for
 * `func start` users, who run the app under Core Tools). SIMULATOR_RECORDS (default 500) and
 * SIMULATOR_CHANGE_MS (default 2000, 0 = no writer) as for `npm start`.
 */
import { FlowfinitySimulator } from './flowfinity-simulator';

async function main(): Promise<void> {
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
