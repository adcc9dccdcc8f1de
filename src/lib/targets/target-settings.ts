/**
 * The settings of a flow's target, as strings from the environment, validated with zod into
 * typed options; and one factory that builds the chosen target from them.
 *
 * The composition root decides where each name is read from (a flow's own value, else the shared
 * default): it passes a lookup. Problems come back as one ConfigError with a line per setting.
 */
import type { TokenCredential } from '@azure/identity';
import { z } from 'zod';
import { ConfigError } from '../errors';
import type { Log, TargetSystem } from '../ports';
import {
  HttpTarget,
  httpTargetOptionProblems,
  type HttpTargetAuth,
  type HttpTargetOptions,
} from './http-target';
import { defaultPostgresTableName, PostgresTarget, type PostgresTargetOptions } from './postgres-target';

export interface TargetSettingDefinition {
  name: string;
  description: string;
  default?: string;
  secret?: boolean;
}

/** Every target setting: name, default and description (for the config table and the README). */
export const targetSettingDefinitions = [
  { name: 'TARGET', default: 'table', description: 'Where records go: `table`, `http` or `postgres`.' },
  {
    name: 'TARGET_HTTP_URL',
    description:
      'http: URL template with `{key}`, `{id}`, `{flow}`, `{version}` (URL-encoded), e.g. `https://api.example.com/records/{key}`.',
  },
  { name: 'TARGET_HTTP_METHOD', default: 'PUT', description: 'http: `PUT` or `POST` for writes.' },
  {
    name: 'TARGET_HTTP_DELETE',
    default: 'tombstone',
    description:
      'http: a delete is a write with `deleted: true` (`tombstone`) or an HTTP `DELETE` (`delete`).',
  },
  {
    name: 'TARGET_HTTP_AUTH_HEADER',
    description:
      'http: header that carries TARGET_HTTP_SECRET (e.g. `x-api-key`); empty = `Authorization: Bearer`.',
  },
  {
    name: 'TARGET_HTTP_SECRET',
    secret: true,
    description: 'http: API key or bearer token (Key Vault reference).',
  },
  {
    name: 'TARGET_HTTP_SCOPE',
    description:
      "http: Entra ID scope (e.g. `api://<app-id>/.default`): send a token of the app's managed identity instead of a secret.",
  },
  {
    name: 'TARGET_HTTP_CONFLICT_MEANS_SKIPPED',
    default: 'true',
    description:
      'http: 409/412 mean "the API already holds this version or a newer one" (skipped, not quarantined).',
  },
  {
    name: 'TARGET_HTTP_SKIPPED_STATUS',
    description: 'http: a 2xx status by which the API says "not newer, nothing changed" (e.g. 208).',
  },
  { name: 'TARGET_HTTP_TIMEOUT_MS', default: '10000', description: 'http: timeout of one request.' },
  {
    name: 'TARGET_HTTP_MAX_ATTEMPTS',
    default: '4',
    description: 'http: attempts per record (5xx, 429, timeouts) before the message goes back to the queue.',
  },
  {
    name: 'TARGET_PG_CONNECTION',
    secret: true,
    description: 'postgres: connection string `postgres://user:password@host:5432/db?sslmode=verify-full`.',
  },
  {
    name: 'TARGET_PG_HOST',
    description: 'postgres, Entra ID: server host, e.g. `myserver.postgres.database.azure.com`.',
  },
  { name: 'TARGET_PG_PORT', default: '5432', description: 'postgres, Entra ID: server port.' },
  { name: 'TARGET_PG_DATABASE', description: 'postgres, Entra ID: database name.' },
  {
    name: 'TARGET_PG_USER',
    description: "postgres, Entra ID: the database role of the app's managed identity (its name).",
  },
  {
    name: 'TARGET_PG_SCHEMA',
    default: 'public',
    description: 'postgres: schema of the table (created if absent).',
  },
  {
    name: 'TARGET_PG_TABLE',
    description: 'postgres: table (created if absent); default: the flow name, lower case, `-` → `_`.',
  },
  {
    name: 'TARGET_PG_CREATE_TABLE',
    default: 'true',
    description: 'postgres: create the schema and table at start when absent (`false` when you manage them).',
  },
  {
    name: 'TARGET_PG_STATEMENT_TIMEOUT_MS',
    default: '30000',
    description: 'postgres: server-side limit of one statement.',
  },
] as const satisfies readonly TargetSettingDefinition[];

export type TargetSettingName = (typeof targetSettingDefinitions)[number]['name'];

const flag = z.enum(['true', 'false']).transform((v) => v === 'true');
const positive = z
  .string()
  .regex(/^\d+$/, 'must be a whole number')
  .transform(Number)
  .pipe(z.number().int().min(1));

/** The schema of each target setting (the config schema uses them too). */
export const targetSettingSchemas: Record<TargetSettingName, z.ZodType> = {
  TARGET: z.enum(['table', 'http', 'postgres']),
  TARGET_HTTP_URL: z.string().min(1),
  TARGET_HTTP_METHOD: z.enum(['PUT', 'POST']),
  TARGET_HTTP_DELETE: z.enum(['tombstone', 'delete']),
  TARGET_HTTP_AUTH_HEADER: z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be a header name'),
  TARGET_HTTP_SECRET: z.string().min(1),
  TARGET_HTTP_SCOPE: z.string().min(1),
  TARGET_HTTP_CONFLICT_MEANS_SKIPPED: flag,
  TARGET_HTTP_SKIPPED_STATUS: z
    .string()
    .regex(/^2\d\d$/, 'must be a 2xx status')
    .transform(Number),
  TARGET_HTTP_TIMEOUT_MS: positive,
  TARGET_HTTP_MAX_ATTEMPTS: positive,
  TARGET_PG_CONNECTION: z.string().regex(/^postgres(ql)?:\/\//, 'must start with postgres://'),
  TARGET_PG_HOST: z.string().min(1),
  TARGET_PG_PORT: positive,
  TARGET_PG_DATABASE: z.string().min(1),
  TARGET_PG_USER: z.string().min(1),
  TARGET_PG_SCHEMA: z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/, 'must be a plain SQL name'),
  TARGET_PG_TABLE: z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/, 'must be a plain SQL name'),
  TARGET_PG_CREATE_TABLE: flag,
  TARGET_PG_STATEMENT_TIMEOUT_MS: positive,
};

/** Options of the chosen target, without the parts the composition root supplies (credential, pool size). */
export type TargetSettings =
  | { kind: 'table' }
  | { kind: 'http'; options: Omit<HttpTargetOptions, 'auth'>; auth: HttpAuthSetting }
  | { kind: 'postgres'; options: Omit<PostgresTargetOptions, 'connection'>; connection: PgConnectionSetting };

export type HttpAuthSetting = Exclude<HttpTargetAuth, { kind: 'entra' }> | { kind: 'entra'; scope: string };

export type PgConnectionSetting =
  | { kind: 'connectionString'; connectionString: string }
  | { kind: 'entra'; host: string; port: number; database: string; user: string };

/**
 * Reads and validates a flow's target settings. `get` returns the raw value of a setting for
 * this flow (empty or undefined = not set); `where` names it in messages (e.g. the per-flow name).
 */
export function parseTargetSettings(
  flow: string,
  get: (name: TargetSettingName) => string | undefined,
  where: (name: TargetSettingName) => string = (n) => n,
): TargetSettings {
  const problems: string[] = [];
  const read = <T>(name: TargetSettingName): T | undefined => {
    const raw = get(name)?.trim();
    const def = targetSettingDefinitions.find((d) => d.name === name) as TargetSettingDefinition;
    const value = raw === undefined || raw === '' ? def.default : raw;
    if (value === undefined) return undefined;
    const r = targetSettingSchemas[name].safeParse(value);
    if (r.success) return r.data as T;
    problems.push(`${where(name)}: ${r.error.issues.map((i) => i.message).join('; ')}`);
    return undefined;
  };
  const required = <T>(name: TargetSettingName, why: string): T | undefined => {
    const v = read<T>(name);
    if (v === undefined && !problems.some((p) => p.startsWith(`${where(name)}:`)))
      problems.push(`${where(name)}: required ${why}`);
    return v;
  };
  const fail = () => new ConfigError(problems);

  const kind = read<'table' | 'http' | 'postgres'>('TARGET');
  if (kind === undefined) throw fail();
  if (kind === 'table') return { kind };

  if (kind === 'http') {
    const urlTemplate = required<string>('TARGET_HTTP_URL', 'when TARGET is http');
    const secret = read<string>('TARGET_HTTP_SECRET');
    const scope = read<string>('TARGET_HTTP_SCOPE');
    const header = read<string>('TARGET_HTTP_AUTH_HEADER');
    if (secret !== undefined && scope !== undefined)
      problems.push(
        `${where('TARGET_HTTP_SECRET')}: set either it or ${where('TARGET_HTTP_SCOPE')}, not both`,
      );
    if (header !== undefined && secret === undefined)
      problems.push(`${where('TARGET_HTTP_AUTH_HEADER')}: set ${where('TARGET_HTTP_SECRET')} as well`);
    const auth: HttpAuthSetting =
      scope !== undefined
        ? { kind: 'entra', scope }
        : secret === undefined
          ? { kind: 'none' }
          : header !== undefined
            ? { kind: 'header', header, secret }
            : { kind: 'bearer', secret };
    const options: Omit<HttpTargetOptions, 'auth'> = {
      urlTemplate: urlTemplate ?? '',
      method: read('TARGET_HTTP_METHOD'),
      deleteMode: read('TARGET_HTTP_DELETE'),
      conflictMeansSkipped: read('TARGET_HTTP_CONFLICT_MEANS_SKIPPED'),
      skippedStatus: read('TARGET_HTTP_SKIPPED_STATUS'),
      timeoutMs: read('TARGET_HTTP_TIMEOUT_MS'),
      maxAttempts: read('TARGET_HTTP_MAX_ATTEMPTS'),
    };
    if (urlTemplate !== undefined) {
      // The URL and its scheme rules (a secret only over https) are checked here, at start-up.
      const probe: HttpTargetOptions = {
        ...options,
        auth: auth.kind === 'entra' ? { kind: 'bearer', secret: 'probe' } : auth,
      };
      for (const p of httpTargetOptionProblems(probe))
        if (p.startsWith('URL template'))
          problems.push(`${where('TARGET_HTTP_URL')}: ${p.slice('URL template: '.length)}`);
    }
    if (problems.length) throw fail();
    return { kind, options, auth };
  }

  const connectionString = read<string>('TARGET_PG_CONNECTION');
  const host = read<string>('TARGET_PG_HOST');
  let connection: PgConnectionSetting | undefined;
  if (connectionString !== undefined && host !== undefined)
    problems.push(
      `${where('TARGET_PG_CONNECTION')}: set either it or ${where('TARGET_PG_HOST')} (Entra ID), not both`,
    );
  else if (connectionString !== undefined) connection = { kind: 'connectionString', connectionString };
  else if (host !== undefined) {
    const database = required<string>('TARGET_PG_DATABASE', 'with TARGET_PG_HOST (Entra ID)');
    const user = required<string>('TARGET_PG_USER', 'with TARGET_PG_HOST (Entra ID)');
    const port = read<number>('TARGET_PG_PORT') ?? 5432;
    if (database !== undefined && user !== undefined)
      connection = { kind: 'entra', host, port, database, user };
  } else if (!problems.some((p) => p.startsWith(where('TARGET_PG_CONNECTION'))))
    problems.push(
      `${where('TARGET_PG_CONNECTION')}: required when TARGET is postgres (or ${where('TARGET_PG_HOST')}, ${where('TARGET_PG_DATABASE')} and ${where('TARGET_PG_USER')} for Entra ID)`,
    );
  const options: Omit<PostgresTargetOptions, 'connection'> = {
    schema: read('TARGET_PG_SCHEMA'),
    table: read<string>('TARGET_PG_TABLE') ?? defaultPostgresTableName(flow),
    createTable: read('TARGET_PG_CREATE_TABLE'),
    statementTimeoutMs: read('TARGET_PG_STATEMENT_TIMEOUT_MS'),
  };
  if (problems.length || !connection) throw fail();
  return { kind, options, connection };
}

export interface TargetDependencies {
  /** How many records the flow applies at once: sizes the http connection pool and the postgres pool. */
  concurrency: number;
  /** The app's managed identity (DefaultAzureCredential), asked only when a setting needs Entra ID. */
  credential: () => TokenCredential;
  /** The table target, built by the composition root from the storage settings. */
  createTableTarget: () => TargetSystem;
  log?: Log;
}

/** Builds a flow's target from its parsed settings. */
export function createTarget(s: TargetSettings, deps: TargetDependencies): TargetSystem {
  if (s.kind === 'table') return deps.createTableTarget();
  if (s.kind === 'http') {
    const auth: HttpTargetAuth =
      s.auth.kind === 'entra'
        ? { kind: 'entra', scope: s.auth.scope, credential: deps.credential() }
        : s.auth;
    return new HttpTarget({ ...s.options, auth, connections: s.options.connections ?? deps.concurrency });
  }
  const c = s.connection;
  return new PostgresTarget({
    ...s.options,
    poolSize: s.options.poolSize ?? deps.concurrency,
    log: deps.log,
    connection: c.kind === 'entra' ? { ...c, credential: deps.credential() } : c,
  });
}
