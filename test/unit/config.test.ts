import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, registrationSettings } from '../../src/lib/config';
import { localSettings } from '../../src/local/local-settings';

const valid = {
  FLOWFINITY_VIEW_URL: 'https://acme.flowfinity.com/api/views/LeadSync',
  FLOWFINITY_ON_BEHALF_OF: 'integration',
  FLOWFINITY_USERNAME: 'sync',
  FLOWFINITY_PASSWORD: 's3cret-value',
  AzureWebJobsStorage:
    'DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=a2V5;EndpointSuffix=core.windows.net',
  TRANSPORT: 'storagequeue',
};

const problemsOf = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
};

describe('configuration', () => {
  it('applies defaults and types every value', () => {
    const c = loadConfig(valid);
    expect(c.flows).toHaveLength(1);
    const f = c.flows[0]!;
    expect(f).toMatchObject({
      name: 'default',
      type: 'view-sync',
      schedule: '0 */5 * * * *',
      lookback: 1000,
      deletedStates: ['Deleted'],
      cursorFile: 'lastSubmissionId.txt',
      view: { url: valid.FLOWFINITY_VIEW_URL, username: 'sync', password: 's3cret-value', timeoutMs: 120000 },
      batch: { maxBatch: 5000, recordsPerMessage: 20, poisonPolicy: 'quarantine', maxAttempts: 5 },
      target: { kind: 'table', tableName: 'syncbridgerecords' },
    });
    expect(c.cursor).toMatchObject({ store: 'fileshare', shareName: 'syncbridge' });
    expect(c.storage).toEqual({ kind: 'connectionString', connectionString: valid.AzureWebJobsStorage });
  });

  it('reports one line per problem, naming the setting, and never echoes a secret', () => {
    const problems = problemsOf({
      ...valid,
      FLOWFINITY_VIEW_URL: 'ftp://nope',
      SYNC_MAX_BATCH: 'lots',
      POISON_POLICY: 'ignore',
      FLOWFINITY_USERNAME: '',
      SYNC_SCHEDULE: '*/5 * * * *',
    });
    expect(problems.map((p) => p.split(' ')[0]).sort()).toEqual(
      [
        'FLOWFINITY_VIEW_URL',
        'FLOWFINITY_USERNAME',
        'SYNC_SCHEDULE',
        'SYNC_MAX_BATCH',
        'POISON_POLICY',
      ].sort(),
    );
    expect(problems.find((p) => p.startsWith('FLOWFINITY_USERNAME'))).toMatch(/is missing/);
    expect(problems.find((p) => p.startsWith('SYNC_SCHEDULE'))).toMatch(/6 fields/);
    const secretProblems = problemsOf({
      ...valid,
      AzureWebJobsStorage: '',
      AzureWebJobsStorage__accountName: 'Bad Name!',
    });
    expect(secretProblems.join('\n')).toMatch(/AzureWebJobsStorage__accountName is invalid/);
  });

  it('needs a Service Bus connection for TRANSPORT=servicebus, by string or managed identity', () => {
    expect(problemsOf({ ...valid, TRANSPORT: 'servicebus' })).toEqual([
      expect.stringMatching(/^ServiceBusConnection is missing/),
    ]);
    const c = loadConfig({
      ...valid,
      TRANSPORT: 'servicebus',
      ServiceBusConnection__fullyQualifiedNamespace: 'ns.servicebus.windows.net',
    });
    expect(c.transport.serviceBus).toEqual({
      kind: 'identity',
      fullyQualifiedNamespace: 'ns.servicebus.windows.net',
    });
  });

  it('says which setting is wrong when the file-share cursor would point at Azurite (it has no Azure Files)', () => {
    expect(problemsOf({ ...valid, AzureWebJobsStorage: 'UseDevelopmentStorage=true' })).toEqual([
      expect.stringMatching(
        /^CURSOR_STORE=fileshare cannot use the connection string in AzureWebJobsStorage: .*Azurite.*CURSOR_STORE=blob/,
      ),
    ]);
    expect(
      problemsOf({ ...valid, AzureWebJobsStorage: 'UseDevelopmentStorage=true', CURSOR_STORE: 'blob' }),
    ).toEqual([]);
  });

  it('validates schedules as the Functions host reads NCRONTAB', () => {
    expect(problemsOf({ ...valid, SYNC_SCHEDULE: '0 0 12 L * *' })).toEqual([
      expect.stringMatching(/^SYNC_SCHEDULE is invalid/),
    ]);
    expect(
      problemsOf({ ...valid, Flows__x__ViewUrl: 'https://x/v', Flows__x__Schedule: '0 0 9 * * 1#2' }),
    ).toEqual([expect.stringMatching(/^Flows__x__Schedule is invalid/)]);
  });

  it('accepts managed identity for storage', () => {
    const env: Record<string, string> = { ...valid, AzureWebJobsStorage__accountName: 'syncstore01' };
    delete env.AzureWebJobsStorage;
    expect(loadConfig(env).storage).toEqual({ kind: 'identity', accountName: 'syncstore01' });
  });

  it('gives registration literal queue names and schedules, defaults applied', () => {
    expect(registrationSettings({})).toEqual({
      transport: 'servicebus',
      recordsQueue: 'sync-records',
      controlQueue: 'sync-control',
      jobsQueue: 'jobs',
      flows: [{ name: 'default', schedule: '0 */5 * * * *' }],
      businessEventFlows: [],
    });
    expect(
      registrationSettings({
        FLOWFINITY_VIEW_URL: 'https://x/v',
        Flows__inspections__ViewUrl: 'https://x/i',
        Flows__inspections__Schedule: '0 0 * * * *',
      }).flows,
    ).toEqual([
      { name: 'inspections', schedule: '0 0 * * * *' },
      { name: 'default', schedule: '0 */5 * * * *' },
    ]);
    expect(() => registrationSettings({ Flows__x__Schedule: 'hourly' })).toThrow(
      /Flows__x__Schedule is invalid/,
    );
    expect(() => registrationSettings({ TRANSPORT: 'carrier-pigeon' })).toThrow(/TRANSPORT is invalid/);
  });
});

describe('flows', () => {
  const shared = {
    FLOWFINITY_ON_BEHALF_OF: 'integration',
    FLOWFINITY_USERNAME: 'sync',
    FLOWFINITY_PASSWORD: 's3cret-value',
    AzureWebJobsStorage: valid.AzureWebJobsStorage,
    TRANSPORT: 'storagequeue',
  };

  it('adds a flow per Flows__<name>__ViewUrl beside the flat single-view flow, each falling back to the shared settings', () => {
    const c = loadConfig({
      ...valid,
      SYNC_VIEW_NAME: 'leads',
      SYNC_LOOKBACK: '50',
      CURSOR_DIRECTORY: 'sync',
      Flows__inspections__ViewUrl: 'https://acme.flowfinity.com/api/views/Inspections',
      Flows__inspections__Username: 'inspector',
      Flows__inspections__Password: 'other-secret',
      flows__inspections__maxbatch: '100',
      Flows__inspections__TargetTableName: 'inspections',
    });
    const byName = Object.fromEntries(c.flows.map((f) => [f.name, f]));
    expect(Object.keys(byName).sort()).toEqual(['inspections', 'leads']);
    expect(byName.leads).toMatchObject({
      cursorFile: 'sync/lastSubmissionId.txt',
      lookback: 50,
      view: { url: valid.FLOWFINITY_VIEW_URL, username: 'sync' },
      batch: { maxBatch: 5000 },
    });
    expect(byName.inspections).toMatchObject({
      cursorFile: 'sync/inspections/lastSubmissionId.txt',
      lookback: 50,
      view: {
        url: 'https://acme.flowfinity.com/api/views/Inspections',
        username: 'inspector',
        password: 'other-secret',
      },
      batch: { maxBatch: 100 },
      target: { tableName: 'inspections' },
    });
  });

  it('needs no flat view when every flow is configured per flow', () => {
    const c = loadConfig({ ...shared, Flows__a__ViewUrl: 'https://x/a', Flows__b__ViewUrl: 'https://x/b' });
    expect(c.flows.map((f) => f.name).sort()).toEqual(['a', 'b']);
    expect(problemsOf(shared)).toEqual([expect.stringMatching(/^FLOWFINITY_VIEW_URL is missing/)]);
  });

  it('names the per-flow setting that is wrong, and refuses unknown keys, bad names and shared cursor files', () => {
    const problems = problemsOf({
      ...shared,
      Flows__a__ViewUrl: 'https://x/a',
      Flows__a__MaxBatch: 'many',
      Flows__a__Colour: 'blue',
      Flows__bad_name__ViewUrl: 'https://x/b',
      Flows__c__Lookback: '10',
      Flows__d__ViewUrl: 'https://x/d',
      Flows__d__CursorFile: 'a/lastSubmissionId.txt',
      Flows__e__ViewUrl: 'https://x/e',
      Flows__e__CursorFile: '../escape.txt',
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^Flows__a__MaxBatch is invalid \(got "many"\)/),
        expect.stringMatching(/^Flows__a__Colour is not a known per-flow setting/),
        expect.stringMatching(/^Flows__bad_name__ViewUrl: the flow name "bad_name"/),
        expect.stringMatching(/^Flows__c__ViewUrl is missing/),
        expect.stringMatching(/^flows a and d share the cursor file a\/lastSubmissionId.txt/),
        expect.stringMatching(/^Flows__e__CursorFile is invalid/),
      ]),
    );
    expect(problems).toHaveLength(6);
  });

  it('gives each flow its own target, by its own settings or the shared TARGET_* ones', () => {
    const c = loadConfig({
      ...valid,
      TARGET: 'postgres',
      TARGET_PG_CONNECTION: 'postgres://app:pw@db.example.com:5432/sync',
      Flows__orders__ViewUrl: 'https://x/o',
      Flows__orders__Target: 'http',
      Flows__orders__TargetHttpUrl: 'https://api.example.com/orders/{id}',
      Flows__orders__TargetHttpSecret: 'api-key-value',
      Flows__orders__TargetHttpAuthHeader: 'x-api-key',
    });
    const byName = Object.fromEntries(c.flows.map((f) => [f.name, f]));
    expect(byName.default!.target).toMatchObject({ kind: 'postgres', options: { table: 'default' } });
    expect(byName.orders!.target).toMatchObject({
      kind: 'http',
      auth: { kind: 'header', header: 'x-api-key', secret: 'api-key-value' },
      options: { urlTemplate: 'https://api.example.com/orders/{id}' },
    });
    const problems = problemsOf({
      ...valid,
      Flows__orders__ViewUrl: 'https://x/o',
      Flows__orders__Target: 'http',
    });
    expect(problems).toEqual([expect.stringMatching(/^TARGET_HTTP_URL: required when TARGET is http/)]);
    expect(
      problemsOf({
        ...valid,
        Flows__orders__ViewUrl: 'https://x/o',
        Flows__orders__Target: 'http',
        Flows__orders__TargetHttpUrl: 'https://api.example.com/{id}',
        Flows__orders__TargetHttpSecret: '@Microsoft.KeyVault(SecretUri=https://kv/secrets/k)',
      }),
    ).toEqual([
      expect.stringMatching(/^Flows__orders__TargetHttpSecret is an unresolved Key Vault reference/),
    ]);
  });

  it('detects a Key Vault reference that did not resolve, without echoing it', () => {
    const problems = problemsOf({
      ...valid,
      FLOWFINITY_PASSWORD: '@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/pw)',
    });
    expect(problems).toEqual([
      expect.stringMatching(/^FLOWFINITY_PASSWORD is an unresolved Key Vault reference/),
    ]);
    expect(problems[0]).not.toContain('kv.vault.azure.net');
  });
});

describe('npm start settings', () => {
  const input = {
    storageConnectionString: 'azurite-cs',
    viewUrl: 'http://127.0.0.1:7080/v',
    username: 'u',
    password: 'p',
  };
  it('uses the embedded defaults and lets any app setting from the environment override them', () => {
    const s = localSettings(
      { ...input, extraViews: [{ flow: 'inspections', viewUrl: 'http://127.0.0.1:7081/i' }] },
      {
        SYNC_MAX_BATCH: '100',
        FLOWFINITY_VIEW_URL: 'https://real/v',
        Flows__inspections__MaxBatch: '7',
        HOME: '/root',
      },
    );
    expect(loadConfig(s).flows.map((f) => [f.name, f.batch.maxBatch])).toEqual([
      ['inspections', 7],
      ['leads', 100],
    ]);
    expect(s).toMatchObject({
      AzureWebJobsStorage: 'azurite-cs',
      TRANSPORT: 'storagequeue',
      SYNC_MAX_BATCH: '100',
    });
    expect(s.FLOWFINITY_VIEW_URL).toBe('https://real/v');
    expect(s).not.toHaveProperty('HOME');
    expect(() => loadConfig(s)).not.toThrow();
  });
  it('switches storage to managed identity when only AzureWebJobsStorage__accountName is set', () => {
    const s = localSettings(input, { AzureWebJobsStorage__accountName: 'syncstore01' });
    expect(s).not.toHaveProperty('AzureWebJobsStorage');
    expect(loadConfig(s).storage).toEqual({ kind: 'identity', accountName: 'syncstore01' });
  });
});
