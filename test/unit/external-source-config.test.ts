/** The external-source flow's settings: read only for `Type=external-source`, every problem named. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, loadExternalSourceFlows } from '../../src/lib/config';

const base = {
  AzureWebJobsStorage: 'UseDevelopmentStorage=true',
  TRANSPORT: 'storagequeue',
  CURSOR_STORE: 'blob',
  FLOWFINITY_ON_BEHALF_OF: 'integration',
  FLOWFINITY_USERNAME: 'integration',
  FLOWFINITY_PASSWORD: 'pw',
};
const wiseflow = {
  Flows__wiseflow__Type: 'external-source',
  WISEFLOW_CLIENT_ID: 'client',
  WISEFLOW_CLIENT_SECRET: 'client-secret',
  WISEFLOW_WEBHOOK_SECRET: 'a-webhook-secret-of-32-characters',
  WISEFLOW_ROSTER_VIEW_URL: 'https://example.flowfinity.com/api/views/Roster',
};

const problems = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
};

describe('Flows__<name>__Type=external-source', () => {
  it('reads the shared WISEFLOW_* settings with their defaults; no view-sync flow appears', () => {
    const c = loadConfig({ ...base, ...wiseflow });
    expect(c.flows).toEqual([]);
    expect(c.externalSourceFlows).toHaveLength(1);
    const f = c.externalSourceFlows[0]!;
    expect(f).toMatchObject({
      name: 'wiseflow',
      wiseflow: {
        baseUrl: 'https://europe-api.wiseflow.net/v1',
        auth: { kind: 'oauth', clientId: 'client' },
        rateLimits: { perSecond: 200, perMinute: 5000 },
        maxWaitMs: 60_000,
      },
      webhook: {
        route: 'external-source',
        secrets: ['a-webhook-secret-of-32-characters'],
        signature: {
          header: 'x-wiseflow-signature',
          encoding: 'base64',
          signedContent: 'body',
          timestamp: { from: 'header', header: 'x-wiseflow-timestamp' },
          toleranceSeconds: 300,
        },
        requireEventName: false,
      },
      roster: {
        viewUrl: 'https://example.flowfinity.com/api/views/Roster',
        username: 'integration',
        referenceParam: 'reference',
        participantField: 'WiseflowParticipantId',
        idKind: 'participantId',
        excludeStates: ['Deleted'],
      },
      routine: { verify: 'known', discoverOnFirstSync: true },
    });
    // A per-flow roster view and credentials win over the shared ones.
    const own = loadConfig({
      ...base,
      ...wiseflow,
      Flows__wiseflow__ViewUrl: 'https://other.example/api/views/R2',
      Flows__wiseflow__Username: 'roster-user',
      WISEFLOW_API_KEY: 'k',
      WEBHOOK_SIGNATURE_ENCODING: 'hex',
      WISEFLOW_WEBHOOK_SECRET_PREVIOUS: 'the-previous-secret-0123',
    }).externalSourceFlows[0]!;
    expect(own.roster).toMatchObject({
      viewUrl: 'https://other.example/api/views/R2',
      username: 'roster-user',
    });
    expect(own.webhook.signature.encoding).toBe('hex');
    expect(own.webhook.secrets).toEqual(['a-webhook-secret-of-32-characters', 'the-previous-secret-0123']);
  });

  it('names each missing or invalid setting, never a secret value', () => {
    const p = problems({
      ...base,
      Flows__wiseflow__Type: 'external-source',
      WISEFLOW_WEBHOOK_SECRET: 'short-secret',
    });
    expect(p).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^WISEFLOW_CLIENT_ID and WISEFLOW_CLIENT_SECRET are missing/),
        expect.stringMatching(/^WISEFLOW_WEBHOOK_SECRET is invalid: must be at least 16 characters/),
        expect.stringMatching(/^WISEFLOW_ROSTER_VIEW_URL is missing/),
      ]),
    );
    expect(p.join('\n')).not.toContain('short-secret');
    expect(problems({ ...base, ...wiseflow, WISEFLOW_CLIENT_SECRET: '' })).toEqual([
      expect.stringMatching(/^WISEFLOW_CLIENT_SECRET is missing: WISEflow OAuth needs both/),
    ]);
    expect(problems({ ...base, ...wiseflow, WISEFLOW_BASE_URL: 'http://wiseflow.example/v1' })).toEqual([
      expect.stringMatching(/^WISEFLOW_BASE_URL is invalid .*https URL \(http only on loopback/),
    ]);
    expect(problems({ ...base, ...wiseflow, Flows__second__Type: 'external-source' })).toEqual([
      expect.stringMatching(/flows wiseflow, second are all Type=external-source: an app has at most one/),
    ]);
    expect(problems({ ...base, ...wiseflow, Flows__wiseflow__Type: 'webhook' })[0]).toMatch(
      /Flows__wiseflow__Type is invalid/,
    );
  });

  it('loads on its own for register-webhooks (no storage settings needed)', () => {
    expect(loadExternalSourceFlows(wiseflow)).toHaveLength(1);
    expect(loadExternalSourceFlows({})).toEqual([]);
    expect(() => loadExternalSourceFlows({ Flows__wiseflow__Type: 'external-source' })).toThrow(ConfigError);
  });
});
