/** Business-event flows (`Flows__<flow>__Type=business-event`): reading, fallbacks, problems, registration. */
import { describe, expect, it } from 'vitest';
import { ConfigError, isKnownSettingName, loadConfig, registrationSettings } from '../../src/lib/config';

const base = {
  AzureWebJobsStorage: 'UseDevelopmentStorage=true',
  TRANSPORT: 'storagequeue',
  CURSOR_STORE: 'blob',
};
const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
};

describe('business-event flows', () => {
  it('reads a flow from its own keys, falling back to the flat FNO_* settings', () => {
    const c = loadConfig({
      ...base,
      FNO_DOWNLOAD_MAX_BYTES: '1000',
      Flows__erp__Type: 'business-event',
      Flows__erp__EntityKeys: 'Customer groups=CustomerGroupId; Vendors=dataAreaId,VendorAccountNumber',
      Flows__erp__EventIds: 'DataExportBusinessEvent',
      Flows__erp__DownloadAllowedHosts: 'contoso.blob.core.windows.net',
      Flows__erp__TargetTableName: 'erprecords',
    });
    expect(c.flows).toEqual([]); // not read as a view-sync flow
    expect(c.businessEventFlows).toHaveLength(1);
    const f = c.businessEventFlows[0]!;
    expect(f).toMatchObject({
      name: 'erp',
      type: 'business-event',
      polling: undefined,
      target: { kind: 'table', tableName: 'erprecords' },
      batch: { recordsPerMessage: 20, poisonPolicy: 'quarantine' },
    });
    expect(f.finops.download).toMatchObject({
      allowedHosts: ['contoso.blob.core.windows.net'],
      maxBytes: 1000,
    });
    expect(f.finops.filter.allowedEventIds).toEqual(['DataExportBusinessEvent']);
    expect(f.finops.filter.allowedEntities).toEqual(['Customer groups', 'Vendors']);
    expect(f.finops.entityKeys.get('vendors')?.fields).toEqual(['dataAreaId', 'VendorAccountNumber']);
    expect(f.finops.api).toBeUndefined();
  });

  it('gives the webhook intake limits to every route: WEBHOOK_MAX_BODY_BYTES and WEBHOOK_MAX_JSON_DEPTH', () => {
    const flow = {
      Flows__erp__Type: 'business-event',
      Flows__erp__EntityKeys: 'Customer groups=CustomerGroupId',
    };
    expect(loadConfig({ ...base, ...flow }).webhook).toEqual({ maxBodyBytes: 256 * 1024, maxDepth: 32 });
    expect(
      loadConfig({ ...base, ...flow, WEBHOOK_MAX_BODY_BYTES: '16384', WEBHOOK_MAX_JSON_DEPTH: '8' }).webhook,
    ).toEqual({ maxBodyBytes: 16384, maxDepth: 8 });
    expect(problemsOf({ ...base, ...flow, WEBHOOK_MAX_BODY_BYTES: '999999' }).join('\n')).toMatch(
      /WEBHOOK_MAX_BODY_BYTES/,
    );
  });

  it('turns polling on with an activity id, and needs the F&O base URL for it', () => {
    const c = loadConfig({
      ...base,
      Flows__erp__Type: 'business-event',
      Flows__erp__EntityKeys: 'Customer groups=CustomerGroupId',
      Flows__erp__FnoBaseUrl: 'https://contoso.operations.dynamics.com',
      Flows__erp__PollActivityId: '{0d2c6f4e-1b7a-4c1e-9f3a-5b8e7d6c4a21}',
    });
    expect(c.businessEventFlows[0]!.polling).toEqual({
      activityId: '{0d2c6f4e-1b7a-4c1e-9f3a-5b8e7d6c4a21}',
      schedule: '0 * * * * *',
      entity: 'Customer groups',
    });
    expect(c.businessEventFlows[0]!.finops.api?.scope).toBe(
      'https://contoso.operations.dynamics.com/.default',
    );
    const problems = problemsOf({
      ...base,
      Flows__erp__Type: 'business-event',
      Flows__erp__EntityKeys: 'Customer groups=CustomerGroupId',
      Flows__erp__PollActivityId: 'not-a-guid',
    });
    expect(problems.join('\n')).toContain(
      'Flows__erp__PollActivityId must be the recurring data job activity id',
    );
    expect(problems.join('\n')).toContain('needs Flows__erp__FnoBaseUrl (or FNO_BASE_URL)');
  });

  it('reports what is missing or wrong under the setting the user set', () => {
    const problems = problemsOf({
      ...base,
      Flows__erp__Type: 'business-event',
      Flows__erp__DownloadMaxBytes: 'lots',
      Flows__erp__PollEnabled: 'true',
    });
    const text = problems.join('\n');
    expect(text).toContain('Flows__erp__EntityKeys is missing');
    expect(text).toContain('Flows__erp__DownloadMaxBytes must be a whole number');
    expect(text).toContain('Flows__erp__PollEnabled is true but no activity id is set');
    expect(problemsOf({ ...base, Flows__erp__Type: 'bulk' }).join('\n')).toMatch(
      /Flows__erp__Type is invalid/,
    );
  });

  it('registers the webhook route and a poll timer only for flows that poll', () => {
    const r = registrationSettings({
      Flows__erp__Type: 'business-event',
      Flows__erp__PollActivityId: '0d2c6f4e-1b7a-4c1e-9f3a-5b8e7d6c4a21',
      Flows__erp__PollSchedule: '*/30 * * * * *',
      Flows__plain__Type: 'business-event',
      Flows__off__Type: 'business-event',
      Flows__off__PollActivityId: '0d2c6f4e-1b7a-4c1e-9f3a-5b8e7d6c4a21',
      Flows__off__PollEnabled: 'false',
    });
    expect(r.flows).toEqual([]);
    expect(r.businessEventFlows).toEqual([
      { name: 'erp', pollSchedule: '*/30 * * * * *' },
      { name: 'plain' },
      { name: 'off' },
    ]);
  });

  it('refuses an invalid poll schedule at registration', () => {
    expect(() =>
      registrationSettings({
        Flows__erp__Type: 'business-event',
        Flows__erp__PollActivityId: '0d2c6f4e-1b7a-4c1e-9f3a-5b8e7d6c4a21',
        Flows__erp__PollSchedule: 'hourly',
      }),
    ).toThrow(/Flows__erp__PollSchedule is invalid/);
  });

  it('knows the per-flow keys for the settings-consistency check', () => {
    expect(isKnownSettingName('Flows__erp__EntityKeys')).toBe(true);
    expect(isKnownSettingName('Flows__erp__FnoClientSecret')).toBe(true);
    expect(isKnownSettingName('Flows__erp__PollSchedule')).toBe(true);
  });
});
