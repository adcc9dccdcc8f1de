/**
 * Starts Azurite (Blob, Queue, Table) from the `azurite` npm package as a child process, without
 * telemetry, on free loopback ports (or the ports given). In memory by default; with `location`
 * it keeps its state in that directory, so a restart resumes where the last run stopped (what
 * `LOCAL_STATE_DIR` means for `npm start`). Used by `npm start` and by the tests; never relies on
 * an Azurite left running.
 *
 * The child never outlives its parent: it runs behind a small watchdog that shuts Azurite down
 * when its stdin pipe from the parent closes (the kernel closes it when the parent dies, even by
 * SIGKILL) or when its parent process changes, so a killed `npm start` leaves no orphan holding
 * the ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

export const AZURITE_ACCOUNT = 'devstoreaccount1';
/** Azurite's published well-known development key (not a secret). */
export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteInstance {
  /** Process id of the Azurite child. */
  pid: number;
  blobPort: number;
  queuePort: number;
  tablePort: number;
  connectionString: string;
  stop(): Promise<void>;
}

export interface AzuriteOptions {
  blobPort?: number;
  queuePort?: number;
  tablePort?: number;
  /** Called with each line Azurite prints (startup lines are consumed here). */
  onOutput?: (line: string) => void;
  startTimeoutMs?: number;
  /**
   * Directory for Azurite's data (`--location`), created when missing; state survives restarts.
   * Default: none, Azurite keeps everything in memory (`--inMemoryPersistence`).
   */
  location?: string;
}

/**
 * Runs in the child before Azurite: `node -e WATCHDOG <azurite.js> <args...>`. When the parent
 * goes away (stdin EOF, or a new parent pid after re-parenting), it sends itself SIGTERM so Azurite
 * closes its servers (and flushes a `--location` store); the process then ends when they are
 * closed, and for sure 5 s later.
 */
const WATCHDOG = `
const entry = process.argv[1];
process.argv = [process.argv[0], entry, ...process.argv.slice(2)];
const parent = process.ppid;
let leaving = false;
const leave = () => {
  if (!leaving) process.kill(process.pid, 'SIGTERM');
};
// Azurite closes its servers on SIGTERM but does not exit: our stdin would keep the process up.
// Let go of stdin, so the process ends as soon as Azurite has closed (at the latest in 5 s).
process.on('SIGTERM', () => {
  if (leaving) return;
  leaving = true;
  setTimeout(() => process.exit(0), 5000).unref();
  process.stdin.destroy();
});
process.stdin.on('end', leave);
process.stdin.on('close', leave);
process.stdin.on('error', leave);
process.stdin.resume();
setInterval(() => { if (process.ppid !== parent) leave(); }, 500).unref();
require(entry);
`;

export function azuriteConnectionString(ports: {
  blobPort: number;
  queuePort: number;
  tablePort: number;
}): string {
  const host = '127.0.0.1';
  return [
    'DefaultEndpointsProtocol=http',
    `AccountName=${AZURITE_ACCOUNT}`,
    `AccountKey=${AZURITE_KEY}`,
    `BlobEndpoint=http://${host}:${ports.blobPort}/${AZURITE_ACCOUNT}`,
    `QueueEndpoint=http://${host}:${ports.queuePort}/${AZURITE_ACCOUNT}`,
    `TableEndpoint=http://${host}:${ports.tablePort}/${AZURITE_ACCOUNT}`,
  ].join(';');
}

export async function startAzurite(options: AzuriteOptions = {}): Promise<AzuriteInstance> {
  const entry = path.join(path.dirname(require.resolve('azurite/package.json')), 'dist', 'src', 'azurite.js');
  if (options.location) mkdirSync(options.location, { recursive: true });
  const persistence = options.location
    ? ['--location', path.resolve(options.location)]
    : ['--inMemoryPersistence'];
  const args = [
    '-e',
    WATCHDOG,
    entry,
    ...persistence,
    '--disableTelemetry',
    '--skipApiVersionCheck',
    '--loose',
    '--blobHost',
    '127.0.0.1',
    '--queueHost',
    '127.0.0.1',
    '--tableHost',
    '127.0.0.1',
    '--blobPort',
    String(options.blobPort ?? 0),
    '--queuePort',
    String(options.queuePort ?? 0),
    '--tablePort',
    String(options.tablePort ?? 0),
  ];
  // stdin is the watchdog's lifeline: a pipe whose write end only this process holds.
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin?.on('error', () => undefined); // EPIPE once the child has gone
  const ports: Partial<Record<'Blob' | 'Queue' | 'Table', number>> = {};
  let output = '';

  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`Azurite did not start within ${options.startTimeoutMs ?? 30000} ms:\n${output}`)),
      options.startTimeoutMs ?? 30000,
    );
    const onLine = (line: string) => {
      const m = /Azurite (Blob|Queue|Table) service is successfully listening at http:\/\/[^:]+:(\d+)/.exec(
        line,
      );
      if (m) {
        ports[m[1] as 'Blob' | 'Queue' | 'Table'] = Number(m[2]);
        if (ports.Blob && ports.Queue && ports.Table) {
          clearTimeout(timer);
          resolve();
        }
      } else options.onOutput?.(line);
    };
    let buffered = '';
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      lines.forEach(onLine);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Azurite exited with code ${code} before it was ready:\n${output}`));
    });
  });
  await ready;
  const p = { blobPort: ports.Blob!, queuePort: ports.Queue!, tablePort: ports.Table! };
  return {
    pid: child.pid!,
    ...p,
    connectionString: azuriteConnectionString(p),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const exited = once(child, 'exit');
      const timeout = new Promise((r) => setTimeout(r, 5000).unref());
      await Promise.race([exited, timeout]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
