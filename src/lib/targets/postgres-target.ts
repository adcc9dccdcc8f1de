/**
 * The `postgres` target: one row per record in a table of the flow's own, with the version
 * check inside the database, so two writers can never both apply and an older version can never
 * overwrite a newer one:
 *
 *   INSERT INTO t (key, version, deleted, data) VALUES ($1, $2::numeric, $3, $4::jsonb)
 *   ON CONFLICT (key) DO UPDATE SET version = excluded.version, ... WHERE t.version < excluded.version
 *
 * rowCount 1 → 'applied', 0 → 'skipped'. Versions travel as decimal text into a `numeric`
 * column: any size stays exact. A delete is a tombstone (deleted = true) with its version and
 * the data the deleting record carried, so a late older version cannot resurrect it.
 *
 * Errors: connection failures, timeouts, serialization failures, deadlocks, too many
 * connections, a server shutting down → TransientError (the queue retries the message).
 * Data the database refuses (class 22: a `\u0000` in a string, an invalid Unicode escape, a
 * value out of range; class 23: a constraint a schema owner added) → PermanentError, the record
 * is quarantined. A missing table, column or privilege, or refused credentials → ConfigError.
 *
 * Auth: a connection string, or Entra ID for Azure Database for PostgreSQL: a TokenCredential's
 * token for https://ossrdbms-aad.database.windows.net/.default is the password of every new
 * connection, cached and refreshed 5 minutes before it expires (a connection that is already
 * open stays valid after its token expires).
 */
import type { TokenCredential } from '@azure/identity';
import pg from 'pg';
import { AppError, ConfigError, PermanentError, TransientError } from '../errors';
import type { Log } from '../ports';
import type { ApplyOutcome, StoredTargetRecord, TargetReader, TargetRecord, TargetSystem } from '../ports';
import { EntraToken } from './entra-token';

/** The scope whose token Azure Database for PostgreSQL accepts as a password. */
export const POSTGRES_ENTRA_SCOPE = 'https://ossrdbms-aad.database.windows.net/.default';

export type PostgresConnection =
  /** `postgres://user:password@host:5432/db?sslmode=verify-full` (a secret). */
  | { kind: 'connectionString'; connectionString: string }
  /** Entra ID: `user` is the Entra principal's name as a database role (e.g. the managed identity's name). */
  | {
      kind: 'entra';
      host: string;
      port?: number;
      database: string;
      user: string;
      credential: TokenCredential;
      /** TLS, verified against the system's CAs. Default true (Azure requires it). */
      ssl?: boolean;
    };

export interface PostgresTargetOptions {
  connection: PostgresConnection;
  /** Schema (created if absent). Default `public`. */
  schema?: string;
  /** Table (created if absent). Letters, digits, `_`, `$`; starts with a letter or `_`; ≤ 63 chars. */
  table: string;
  /** Most connections held at once: size it to the records function's concurrency. Default 10. */
  poolSize?: number;
  /** Server-side limit of one statement. Default 30 s. */
  statementTimeoutMs?: number;
  /** Time allowed to open a connection. Default 10 s. */
  connectTimeoutMs?: number;
  /** An idle connection is closed after this long. Default 30 s. */
  idleTimeoutMs?: number;
  /** Create the schema and table on ensureReady() when absent. Default true. */
  createTable?: boolean;
  log?: Log;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

/** `"name"`: a validated identifier, quoted so its case is kept and no word is reserved. */
export function quoteIdentifier(name: string, what = 'identifier'): string {
  if (!IDENTIFIER.test(name))
    throw new ConfigError(
      `${what} ${JSON.stringify(name)} is not a valid SQL name: use letters, digits, _ and $, start with a letter or _, at most 63 characters`,
    );
  return `"${name}"`;
}

/** A table name for a flow: lower case, anything but [a-z0-9_] becomes `_` (`lead-registrations` → `lead_registrations`). */
export function defaultPostgresTableName(flow: string): string {
  const name = flow.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  return (/^[a-z_]/.test(name) ? name : `_${name}`).slice(0, 63);
}

/** The DDL of a target table (what ensureReady runs; also for those who manage schemas themselves). */
export function postgresTargetDdl(schema: string, table: string): string[] {
  const s = quoteIdentifier(schema, 'schema');
  const t = `${s}.${quoteIdentifier(table, 'table')}`;
  return [
    `CREATE SCHEMA IF NOT EXISTS ${s}`,
    `CREATE TABLE IF NOT EXISTS ${t} (
  key text PRIMARY KEY,
  version numeric NOT NULL,
  deleted boolean NOT NULL DEFAULT false,
  data jsonb,
  updated_at timestamptz NOT NULL DEFAULT now()
)`,
  ];
}

const REQUIRED_COLUMNS: Record<string, string> = {
  key: 'text',
  version: 'numeric',
  deleted: 'boolean',
  data: 'jsonb',
  updated_at: 'timestamp with time zone',
};

export class PostgresTarget implements TargetSystem, TargetReader {
  readonly pool: pg.Pool;
  private readonly schema: string;
  private readonly table: string;
  /** `"schema"."table"`, quoted, for SQL and messages. */
  readonly qualifiedTable: string;
  private readonly upsertSql: string;
  private readonly token?: EntraToken;
  private ready?: Promise<void>;

  constructor(private readonly o: PostgresTargetOptions) {
    this.schema = o.schema ?? 'public';
    this.table = o.table;
    this.qualifiedTable = `${quoteIdentifier(this.schema, 'schema')}.${quoteIdentifier(o.table, 'table')}`;
    const t = this.qualifiedTable;
    this.upsertSql =
      `INSERT INTO ${t} AS t (key, version, deleted, data) VALUES ($1, $2::numeric, $3, $4::jsonb) ` +
      `ON CONFLICT (key) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, ` +
      `data = excluded.data, updated_at = now() WHERE t.version < excluded.version`;
    const common: pg.PoolConfig = {
      max: o.poolSize ?? 10,
      connectionTimeoutMillis: o.connectTimeoutMs ?? 10_000,
      idleTimeoutMillis: o.idleTimeoutMs ?? 30_000,
      statement_timeout: o.statementTimeoutMs ?? 30_000,
      application_name: 'syncbridge',
    };
    const c = o.connection;
    if (c.kind === 'connectionString') {
      this.pool = new pg.Pool({ ...common, connectionString: c.connectionString });
    } else {
      const token = new EntraToken(c.credential, POSTGRES_ENTRA_SCOPE);
      this.token = token;
      this.pool = new pg.Pool({
        ...common,
        host: c.host,
        port: c.port ?? 5432,
        database: c.database,
        user: c.user,
        // Called for every new connection: the cached token, refreshed before it expires.
        password: () => token.get(),
        ssl: c.ssl === false ? false : { rejectUnauthorized: true },
      });
    }
    // An idle connection that the server drops emits 'error' on the pool; unhandled it would
    // crash the process. The pool replaces it on the next checkout.
    this.pool.on('error', (e) =>
      o.log?.warn('postgres target: an idle connection failed', { error: this.errorText(e) }),
    );
    // The pool listens only while a connection is idle in it. One that is checked out between two
    // queries (createSerialized's transaction) or being closed (pool.end() while the server shuts
    // down: 57P01, seen in CI) emits 'error' with nobody listening, which would also crash the
    // process. Its next query fails anyway (and the pool discards it on release), so the event
    // itself only needs a listener.
    this.pool.on('connect', (client) =>
      client.on('error', (e) =>
        o.log?.warn('postgres target: a connection failed', { error: this.errorText(e) }),
      ),
    );
  }

  /** Creates the schema and table if absent (idempotent, safe to run concurrently) and checks the columns. */
  ensureReady(): Promise<void> {
    this.ready ??= this.prepare().catch((e: unknown) => {
      this.ready = undefined;
      throw e;
    });
    return this.ready;
  }

  async apply(record: TargetRecord): Promise<ApplyOutcome> {
    await this.ensureReady();
    let data: string;
    try {
      data = JSON.stringify(record.data);
    } catch (e) {
      throw new PermanentError(`record ${record.key} has data that is not JSON`, { cause: e });
    }
    try {
      const r = await this.pool.query({
        text: this.upsertSql,
        values: [record.key, record.version.toString(), record.deleted, data],
      });
      return r.rowCount === 1 ? 'applied' : 'skipped';
    } catch (e) {
      throw this.classify(e, `record ${record.key} v${record.version}`);
    }
  }

  /** Every row, tombstones included, in key order (keyset pages of 500). */
  async *list(): AsyncIterable<StoredTargetRecord> {
    await this.ensureReady();
    let after = ''; // keys are never empty
    for (;;) {
      let rows: { key: string; version: string; deleted: boolean; data: Record<string, unknown> | null }[];
      try {
        const r = await this.pool.query<{
          key: string;
          version: string;
          deleted: boolean;
          data: Record<string, unknown> | null;
        }>(
          `SELECT key, version::text AS version, deleted, data FROM ${this.qualifiedTable} ` +
            `WHERE key > $1 ORDER BY key LIMIT 500`,
          [after],
        );
        rows = r.rows;
      } catch (e) {
        throw this.classify(e, 'list');
      }
      for (const row of rows)
        yield { key: row.key, version: BigInt(row.version), deleted: row.deleted, data: row.data ?? {} };
      if (rows.length < 500) return;
      after = rows[rows.length - 1]!.key;
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /** Where the records go, without secrets (for logs and health). */
  describe(): string {
    const c = this.o.connection;
    if (c.kind === 'entra')
      return `postgres ${c.host}/${c.database} ${this.qualifiedTable} (Entra ID as ${c.user})`;
    try {
      const u = new URL(c.connectionString);
      return `postgres ${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname} ${this.qualifiedTable}`;
    } catch {
      return `postgres ${this.qualifiedTable}`;
    }
  }

  private async prepare(): Promise<void> {
    try {
      if (this.o.createTable ?? true) {
        const exists = await this.pool.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [
          this.qualifiedTable,
        ]);
        // Only when absent: CREATE needs privileges that a user with a managed schema may not grant.
        if (exists.rows[0]?.t == null) {
          await this.createSerialized();
        }
      }
      const cols = await this.pool.query<{ column_name: string; data_type: string }>(
        'SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2',
        [this.schema, this.table],
      );
      if (cols.rows.length === 0)
        throw new ConfigError(
          `postgres target: table ${this.qualifiedTable} does not exist (see the DDL in the README)`,
        );
      const have = new Map(cols.rows.map((r) => [r.column_name, r.data_type]));
      const problems = Object.entries(REQUIRED_COLUMNS)
        .filter(([name, type]) => have.get(name) !== type)
        .map(([name, type]) =>
          have.has(name)
            ? `postgres target: column ${this.qualifiedTable}.${name} is ${have.get(name)}, expected ${type}`
            : `postgres target: table ${this.qualifiedTable} has no column ${name} ${type}`,
        );
      if (problems.length) throw new ConfigError(problems);
    } catch (e) {
      throw this.classify(e, 'ensureReady');
    }
  }

  /**
   * `CREATE ... IF NOT EXISTS` is not safe to race in PostgreSQL: two sessions can both pass the
   * existence check and the loser fails on the catalog (42P07, 42710 for the row type, 23505).
   * A transaction-scoped advisory lock on the schema's name (tables of one schema share its
   * CREATE SCHEMA) makes instances create one at a time.
   */
  private async createSerialized(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [this.schema]);
      for (const sql of postgresTargetDdl(this.schema, this.table)) await client.query(sql);
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      client.release();
    }
  }

  /** Maps a pg or network error to the taxonomy; the message never holds a password or a token. */
  private classify(e: unknown, what: string): AppError {
    if (e instanceof AppError) return e;
    const state = sqlState(e);
    const text = `${this.describe()}, ${what}: ${this.errorText(e)}`;
    const o = { cause: e, details: state ? { sqlState: state } : undefined };
    if (state) {
      const cls = state.slice(0, 2);
      if (cls === '22' || cls === '23') return new PermanentError(text, { ...o, code: 'target_refused' });
      if (cls === '28') {
        // An Entra token can be refused before its expiry (revoked, role re-created): the
        // next connection asks the credential again instead of reusing it.
        this.token?.invalidate();
        return new ConfigError(`${text}; check the target's PostgreSQL credentials (or the Entra role)`, o);
      }
      if (cls === '42' || cls === '3D' || cls === '3F')
        return new ConfigError(`${text}; check the target's schema, table and privileges`, o);
      // 08 connection, 40 serialization/deadlock, 53 resources, 55 lock, 57 shutdown/cancel, 58 I/O
      return new TransientError(text, { ...o, code: 'target_unavailable' });
    }
    // No SQLSTATE: a socket error, a connect timeout, a token that could not be had.
    return new TransientError(text, { ...o, code: 'target_unavailable' });
  }

  private errorText(e: unknown): string {
    const parts: string[] = [];
    let cur: unknown = e;
    for (let depth = 0; cur && depth < 3; depth++) {
      if (!(cur instanceof Error)) {
        parts.push(String(cur));
        break;
      }
      const code = (cur as { code?: unknown }).code;
      parts.push(typeof code === 'string' ? `${cur.message} [${code}]` : cur.message);
      cur = cur.cause;
    }
    let out = parts.join(': ');
    const token = this.token?.current();
    if (token) out = out.split(token).join('***');
    return out;
  }
}

/** The SQLSTATE of an error the server sent (socket errors have none). */
function sqlState(e: unknown): string | undefined {
  return e instanceof pg.DatabaseError && typeof e.code === 'string' ? e.code : undefined;
}

/** Factory: the postgres target for a flow. Throws ConfigError for an invalid schema or table name. */
export function createPostgresTarget(options: PostgresTargetOptions): PostgresTarget {
  return new PostgresTarget(options);
}
