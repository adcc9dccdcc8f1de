/** What may reach telemetry: secrets, SAS query strings and payloads are masked (src/lib/telemetry/redact.ts). */
import { afterEach, expect, it } from 'vitest';
import { clearSecrets, redactFields, redactText, registerSecrets } from '../../src/lib/telemetry/redact';
import { parseAuthenticationString, secretSettingNames } from '../../src/lib/telemetry/setup';

afterEach(() => clearSecrets());

it('masks SAS query strings, connection-string keys and bearer tokens in free text', () => {
  expect(redactText('GET https://acct.blob.core.windows.net/c/f.zip?sv=2025&sig=abc%2Fdef failed')).toBe(
    'GET https://acct.blob.core.windows.net/c/f.zip?[query redacted] failed',
  );
  expect(
    redactText('DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFy==;EndpointSuffix=x'),
  ).toBe('DefaultEndpointsProtocol=https;AccountName=a;AccountKey=[redacted];EndpointSuffix=x');
  expect(redactText('Endpoint=sb://ns/;SharedAccessKeyName=r;SharedAccessKey=s3cr3tKey=')).toContain(
    'SharedAccessKey=[redacted]',
  );
  expect(redactText('authorization Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig')).toBe(
    'authorization Bearer [redacted]',
  );
});

it('masks the values of secret settings wherever they appear, and only those', () => {
  const env = {
    FLOWFINITY_PASSWORD: 'hunter2-long-enough',
    Flows__leads__Password: 'flow-own-password',
    TARGET_HTTP_SECRET: 'api-key-123456',
    SYNC_VIEW_NAME: 'leads-view-name',
  };
  registerSecrets(env, secretSettingNames(env));
  expect(redactText('login failed for hunter2-long-enough / flow-own-password / api-key-123456')).toBe(
    'login failed for [redacted] / [redacted] / [redacted]',
  );
  expect(redactText('flow leads-view-name')).toBe('flow leads-view-name');
});

it('turns properties into flat fields, dropping payloads and secret-named properties', () => {
  const fields = redactFields({
    flow: 'leads',
    batchId: 'b1',
    applied: 3,
    ok: true,
    payload: '{"Name":"Ann"}',
    password: 'x',
    recordKey: 'leads|7',
    nested: { url: 'https://h/p?sig=1' },
    version: 5n,
  });
  expect(fields).toEqual({
    flow: 'leads',
    batchId: 'b1',
    applied: 3,
    ok: true,
    payload: '[omitted]',
    password: '[omitted]',
    recordKey: 'leads|7',
    nested: '{"url":"https://h/p?[query redacted]"}',
    version: '5',
  });
});

it('reads Entra auth from APPLICATIONINSIGHTS_AUTHENTICATION_STRING', () => {
  expect(parseAuthenticationString('ClientId=1234;Authorization=AAD')).toEqual({ clientId: '1234' });
  expect(parseAuthenticationString('Authorization=AAD')).toEqual({ clientId: undefined });
  expect(parseAuthenticationString(undefined)).toBeUndefined();
  expect(parseAuthenticationString('InstrumentationKey=x')).toBeUndefined();
});
