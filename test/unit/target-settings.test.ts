/**
 * Target settings: strings from the environment into typed target options, with one line per
 * wrong setting; and the factory building each target kind from them.
 */
import type { TokenCredential } from '@azure/identity';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/lib/errors';
import type { TargetSystem } from '../../src/lib/ports';
import { HttpTarget } from '../../src/lib/targets/http-target';
import { PostgresTarget } from '../../src/lib/targets/postgres-target';
import {
  createTarget,
  parseTargetSettings,
  targetSettingDefinitions,
  type TargetSettingName,
} from '../../src/lib/targets/target-settings';

const parse = (env: Partial<Record<TargetSettingName, string>>, flow = 'lead-registrations') =>
  parseTargetSettings(
    flow,
    (n) => env[n],
    (n) => `Flows__leads__${n}`,
  );

function problems(env: Partial<Record<TargetSettingName, string>>): string[] {
  try {
    parse(env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

const created: TargetSystem[] = [];
afterAll(async () => {
  await Promise.all(created.map((t) => t.close?.()));
});

describe('parseTargetSettings', () => {
  it('defaults to the table target', () => {
    expect(parse({})).toEqual({ kind: 'table' });
    expect(problems({ TARGET: 'kafka' })).toEqual([
      'Flows__leads__TARGET: Invalid option: expected one of "table"|"http"|"postgres"',
    ]);
  });

  it('http: defaults, and the auth chosen by which settings are set', () => {
    const url = 'https://api.example.com/records/{key}';
    expect(parse({ TARGET: 'http', TARGET_HTTP_URL: url })).toEqual({
      kind: 'http',
      auth: { kind: 'none' },
      options: {
        urlTemplate: url,
        method: 'PUT',
        deleteMode: 'tombstone',
        conflictMeansSkipped: true,
        skippedStatus: undefined,
        timeoutMs: 10_000,
        maxAttempts: 4,
      },
    });
    const with_ = (e: Partial<Record<TargetSettingName, string>>) =>
      (parse({ TARGET: 'http', TARGET_HTTP_URL: url, ...e }) as { auth: unknown }).auth;
    expect(with_({ TARGET_HTTP_SECRET: 's' })).toEqual({ kind: 'bearer', secret: 's' });
    expect(with_({ TARGET_HTTP_SECRET: 's', TARGET_HTTP_AUTH_HEADER: 'x-api-key' })).toEqual({
      kind: 'header',
      header: 'x-api-key',
      secret: 's',
    });
    expect(with_({ TARGET_HTTP_SCOPE: 'api://x/.default' })).toEqual({
      kind: 'entra',
      scope: 'api://x/.default',
    });
  });

  it('http: one line per wrong setting, named as the flow sees it', () => {
    expect(
      problems({
        TARGET: 'http',
        TARGET_HTTP_URL: 'http://api.example.com/{record}',
        TARGET_HTTP_METHOD: 'PATCH',
        TARGET_HTTP_SECRET: 's',
        TARGET_HTTP_SCOPE: 'api://x/.default',
        TARGET_HTTP_SKIPPED_STATUS: '409',
        TARGET_HTTP_TIMEOUT_MS: 'soon',
      }),
    ).toEqual([
      'Flows__leads__TARGET_HTTP_SECRET: set either it or Flows__leads__TARGET_HTTP_SCOPE, not both',
      'Flows__leads__TARGET_HTTP_METHOD: Invalid option: expected one of "PUT"|"POST"',
      'Flows__leads__TARGET_HTTP_SKIPPED_STATUS: must be a 2xx status',
      'Flows__leads__TARGET_HTTP_TIMEOUT_MS: must be a whole number',
      'Flows__leads__TARGET_HTTP_URL: unknown placeholder {record} (use {key}, {id}, {flow} or {version})',
      'Flows__leads__TARGET_HTTP_URL: a secret or token is sent only over https (http is allowed to loopback only)',
    ]);
    expect(problems({ TARGET: 'http' })).toEqual([
      'Flows__leads__TARGET_HTTP_URL: required when TARGET is http',
    ]);
  });

  it('postgres: a connection string, or Entra ID by host, database and user; the table defaults to the flow', () => {
    expect(parse({ TARGET: 'postgres', TARGET_PG_CONNECTION: 'postgres://u:p@h/db' })).toEqual({
      kind: 'postgres',
      connection: { kind: 'connectionString', connectionString: 'postgres://u:p@h/db' },
      options: {
        schema: 'public',
        table: 'lead_registrations',
        createTable: true,
        statementTimeoutMs: 30_000,
      },
    });
    expect(
      parse({
        TARGET: 'postgres',
        TARGET_PG_HOST: 'srv.postgres.database.azure.com',
        TARGET_PG_DATABASE: 'sync',
        TARGET_PG_USER: 'syncbridge-func',
        TARGET_PG_TABLE: 'Leads',
        TARGET_PG_CREATE_TABLE: 'false',
      }),
    ).toMatchObject({
      connection: {
        kind: 'entra',
        host: 'srv.postgres.database.azure.com',
        port: 5432,
        database: 'sync',
        user: 'syncbridge-func',
      },
      options: { table: 'Leads', createTable: false },
    });
    expect(problems({ TARGET: 'postgres', TARGET_PG_HOST: 'h', TARGET_PG_TABLE: 'a-b' })).toEqual([
      'Flows__leads__TARGET_PG_DATABASE: required with TARGET_PG_HOST (Entra ID)',
      'Flows__leads__TARGET_PG_USER: required with TARGET_PG_HOST (Entra ID)',
      'Flows__leads__TARGET_PG_TABLE: must be a plain SQL name',
    ]);
    expect(problems({ TARGET: 'postgres' })).toHaveLength(1);
    expect(problems({ TARGET: 'postgres', TARGET_PG_CONNECTION: 'Server=x;Password=secret' })).toEqual([
      'Flows__leads__TARGET_PG_CONNECTION: must start with postgres://',
    ]);
  });

  it('never echoes a secret in a problem', () => {
    const all = problems({
      TARGET: 'postgres',
      TARGET_PG_CONNECTION: 'Server=x;Password=hunter2-secret',
    }).join('\n');
    expect(all).not.toContain('hunter2-secret');
  });

  it('documents every setting it reads', () => {
    const names = targetSettingDefinitions.map((d) => d.name);
    expect(new Set(names).size).toBe(names.length);
    for (const d of targetSettingDefinitions) expect(d.description.length).toBeGreaterThan(10);
    expect(targetSettingDefinitions.filter((d) => 'secret' in d && d.secret).map((d) => d.name)).toEqual([
      'TARGET_HTTP_SECRET',
      'TARGET_PG_CONNECTION',
    ]);
  });
});

describe('createTarget', () => {
  const credential: TokenCredential = {
    getToken: async () => ({ token: 't', expiresOnTimestamp: Date.now() + 3.6e6 }),
  };
  const deps = {
    concurrency: 8,
    credential: () => credential,
    createTableTarget: (): TargetSystem => ({ apply: async () => 'applied' }),
  };

  it('builds the chosen kind', () => {
    const table = createTarget(parse({}), deps);
    expect(table).not.toBeInstanceOf(HttpTarget);
    const http = createTarget(
      parse({
        TARGET: 'http',
        TARGET_HTTP_URL: 'https://x.example/{key}',
        TARGET_HTTP_SCOPE: 'api://x/.default',
      }),
      deps,
    );
    created.push(http);
    expect(http).toBeInstanceOf(HttpTarget);
    const pgTarget = createTarget(
      parse({
        TARGET: 'postgres',
        TARGET_PG_HOST: 'h.example',
        TARGET_PG_DATABASE: 'd',
        TARGET_PG_USER: 'u',
      }),
      deps,
    ) as PostgresTarget;
    created.push(pgTarget);
    expect(pgTarget).toBeInstanceOf(PostgresTarget);
    expect(pgTarget.pool.options.max).toBe(8); // sized to the flow's concurrency
    expect(pgTarget.describe()).toBe('postgres h.example/d "public"."lead_registrations" (Entra ID as u)');
  });
});
