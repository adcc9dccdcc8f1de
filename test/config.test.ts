import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, registrationSettings } from '../src/lib/config';
import { localSettings } from '../src/local/local-settings';

const valid = {
  FLOWFINITY_VIEW_URL: 'https://acme.flowfinity.com/api/views/LeadSync',
  FLOWFINITY_ON_BEHALF_OF: 'integration',
  FLOWFINITY_USERNAME: 'sync',
  FLOWFINITY_PASSWORD: 's3cret-value',
  AzureWebJobsStorage: 'UseDevelopmentStorage=true',
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
    expect(c.sync).toMatchObject({
      maxBatch: 5000,
      recordsPerMessage: 20,
      lookback: 0,
      deletedStates: ['Deleted'],
    });
    expect(c.sync.poisonPolicy).toBe('quarantine');
    expect(c.cursor).toMatchObject({ store: 'fileshare', fileName: 'lastSubmissionId.txt' });
    expect(c.storage).toEqual({ kind: 'connectionString', connectionString: 'UseDevelopmentStorage=true' });
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
    expect(problems.map((p) => p.split(' ')[0])).toEqual([
      'FLOWFINITY_VIEW_URL',
      'FLOWFINITY_USERNAME',
      'SYNC_SCHEDULE',
      'SYNC_MAX_BATCH',
      'POISON_POLICY',
    ]);
    expect(problems[1]).toMatch(/is missing/);
    expect(problems[2]).toMatch(/6 fields/);
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

  it('accepts managed identity for storage', () => {
    const env: Record<string, string> = { ...valid, AzureWebJobsStorage__accountName: 'syncstore01' };
    delete env.AzureWebJobsStorage;
    expect(loadConfig(env).storage).toEqual({ kind: 'identity', accountName: 'syncstore01' });
  });

  it('gives registration literal queue names and schedule, defaults applied', () => {
    expect(registrationSettings({})).toEqual({
      transport: 'servicebus',
      schedule: '0 */5 * * * *',
      recordsQueue: 'sync-records',
      controlQueue: 'sync-control',
    });
    expect(() => registrationSettings({ TRANSPORT: 'carrier-pigeon' })).toThrow(/TRANSPORT is invalid/);
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
    const s = localSettings(input, {
      SYNC_MAX_BATCH: '100',
      FLOWFINITY_VIEW_URL: 'https://real/v',
      HOME: '/root',
    });
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
