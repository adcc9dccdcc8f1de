/**
 * The settings in src/lib/config.ts are the single source of truth. This test checks that the
 * other places that name settings agree with them: local.settings.sample.json, the Bicep app
 * settings of the function app (infra/app/api.bicep, read with tree-sitter-bicep), the outputs and
 * parameters of infra/main.bicep, the README's configuration table, host.json and the Service Bus
 * queues' delivery limit.
 *
 * The function app's settings must stay ONE `config` resource named 'appsettings' whose
 * `properties` is an object literal with literal setting names (no `union()`, no spreads). A value
 * is "literal" when it is one quoted string without interpolation; anything else is an expression
 * whose value is unknown here. Setting names are checked with isKnownSettingName
 * (src/lib/config): a flat name of the schema, or `Flows__<flow>__<Key>` with a known
 * per-flow key.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  FLOW_SETTING_PATTERN,
  flowSettings,
  isKnownSettingName,
  loadConfig,
  settings,
  type SettingDefinition,
} from '../../src/lib/config';
import { appSettings as readAppSettings, literalString, readBicep } from '../support/bicep';
import {
  configDocMarkdown,
  configTableMarkdown,
  extractConfigTable,
  TABLE_END,
  TABLE_START,
} from '../../scripts/config-table';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (rel: string) => readFileSync(path.join(root, rel), 'utf8');

const defs = settings as readonly SettingDefinition[];
const byName = new Map(defs.map((s) => [s.name, s]));
const names = defs.map((s) => s.name);
const defaultOf = (name: string) => {
  const d = byName.get(name)?.default;
  if (d === undefined) throw new Error(`${name} has no default`);
  return d;
};

/** Host/platform settings that local.settings.json carries but `settings` does not. */
const isLocalPlatformSetting = (name: string) =>
  name.startsWith('FUNCTIONS_') ||
  name === 'AzureWebJobsFeatureFlags' ||
  name.startsWith('APPLICATIONINSIGHTS_');

/**
 * Platform settings the Bicep may set besides the app's own: identity-based connections (read by
 * the Functions host and its extensions), the identity for DefaultAzureCredential, and App
 * Insights. Anything else in the Bicep must be a name from `settings`.
 */
const BICEP_PLATFORM_SETTINGS = new Set([
  'AzureWebJobsStorage__credential',
  'AzureWebJobsStorage__clientId',
  'ServiceBusConnection__credential',
  'ServiceBusConnection__clientId',
  'AZURE_CLIENT_ID',
  'APPLICATIONINSIGHTS_CONNECTION_STRING',
  'APPLICATIONINSIGHTS_AUTHENTICATION_STRING',
]);

/**
 * Settings of the schema that the Bicep leaves unset on purpose, with the reason. A setting that
 * has no default and is not required must be set in the Bicep or listed here ("the reverse").
 */
/** Optional settings of a feature the deployment does not switch on by itself, with the reason. */
const OPTIONAL_IN_AZURE: Record<string, string> = {
  ...Object.fromEntries(
    defs
      .filter((d) => /^TARGET_(HTTP|PG)_/.test(d.name) && d.default === undefined)
      .map((d) => [
        d.name,
        'used only with TARGET=http or postgres; set it (or Flows__<flow>__...) for such a flow',
      ]),
  ),
  ...Object.fromEntries(
    defs
      .filter((d) => /^WISEFLOW_/.test(d.name) && d.default === undefined)
      .map((d) => [
        d.name,
        'used only by an external-source flow (Flows__<name>__Type=external-source); secrets as Key Vault references',
      ]),
  ),
};

const NOT_SET_IN_AZURE: Record<string, string> = {
  AzureWebJobsStorage: 'a connection string: Azure uses AzureWebJobsStorage__accountName and the identity',
  CURSOR_STORAGE_CONNECTION: 'a connection string: the cursor share is in the AzureWebJobsStorage account',
  ServiceBusConnection: 'a connection string: Azure uses ServiceBusConnection__fullyQualifiedNamespace',
};

/** Flex Consumption rejects these app settings (the runtime comes from functionAppConfig). */
const FLEX_FORBIDDEN_SETTINGS = [
  'FUNCTIONS_WORKER_RUNTIME',
  'FUNCTIONS_EXTENSION_VERSION',
  'WEBSITE_NODE_DEFAULT_VERSION',
  'WEBSITE_RUN_FROM_PACKAGE',
  'WEBSITE_CONTENTSHARE',
  'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING',
];

// ---------------------------------------------------------------------------------------------

function stripComments(bicep: string): string {
  return bicep.replace(/(^|\s)\/\/.*$/gm, '$1');
}

interface BicepAppSetting {
  name: string;
  /** The value as written (a Bicep expression). */
  expression: string;
  /** The string value when the expression is a plain quoted literal. */
  literal?: string;
}

function bicepParams(bicep: string): Map<string, { type: string; hasDefault: boolean }> {
  const params = new Map<string, { type: string; hasDefault: boolean }>();
  for (const m of stripComments(bicep).matchAll(/^param\s+(\w+)\s+(\w+)(\s*=.*)?$/gm))
    params.set(m[1]!, { type: m[2]!, hasDefault: m[3] !== undefined });
  return params;
}

/** Resolves `key: <int literal or var name>` occurrences to numbers (vars must be int literals). */
function intProperties(bicep: string, key: string): number[] {
  const text = stripComments(bicep);
  return [...text.matchAll(new RegExp(`^\\s*${key}:\\s*(\\w+)\\s*$`, 'gm'))].map((m) => {
    const v = m[1]!;
    if (/^\d+$/.test(v)) return Number(v);
    const decl = new RegExp(`^var\\s+${v}\\s*=\\s*(\\d+)\\s*$`, 'm').exec(text);
    if (!decl) throw new Error(`${key}: ${v} is not an int literal nor a var with an int literal`);
    return Number(decl[1]);
  });
}

// ---------------------------------------------------------------------------------------------

const sample = JSON.parse(read('local.settings.sample.json')) as {
  IsEncrypted: boolean;
  Values: Record<string, unknown>;
};
const sampleValues = sample.Values as Record<string, string>;

const functionAppBicep = read('infra/app/api.bicep');
const mainBicep = read('infra/main.bicep');
const serviceBusBicep = read('infra/app/servicebus.bicep');
const appSettings: BicepAppSetting[] = [
  ...readAppSettings(readBicep(path.join(root, 'infra/app/api.bicep'))),
].map(([name, node]) => ({ name, expression: node.text, literal: literalString(node) }));
const appSetting = (name: string) => appSettings.find((s) => s.name === name);

describe('local.settings.sample.json', () => {
  it('lists exactly the settings of src/lib/config.ts, plus the host settings', () => {
    const sampleNames = Object.keys(sampleValues).filter((n) => !isLocalPlatformSetting(n));
    expect([...sampleNames].sort()).toEqual([...names].sort());
    expect(sample.IsEncrypted).toBe(false);
    expect(sampleValues.FUNCTIONS_WORKER_RUNTIME).toBe('node');
    expect(sampleValues.AzureWebJobsFeatureFlags).toBe('EnableWorkerIndexing');
    for (const [name, value] of Object.entries(sample.Values))
      expect(typeof value, `${name} must be a string`).toBe('string');
  });

  it('runs locally against Azurite and the simulator, with defaults elsewhere', () => {
    const localOverrides: Record<string, string> = {
      TRANSPORT: 'storagequeue',
      CURSOR_STORE: 'blob',
      AzureWebJobsStorage: 'UseDevelopmentStorage=true',
      FLOWFINITY_VIEW_URL: 'http://127.0.0.1:7080/api/views/LeadSync',
      FLOWFINITY_ON_BEHALF_OF: 'integration',
      FLOWFINITY_USERNAME: 'integration',
      FLOWFINITY_PASSWORD: 'local-dev-password',
    };
    for (const s of defs) {
      const value = sampleValues[s.name];
      if (s.name in localOverrides) expect(value, s.name).toBe(localOverrides[s.name]);
      else if (s.default !== undefined) expect(value, `${s.name} should be its default`).toBe(s.default);
      else if (!s.required) expect(value, `${s.name} has no default: leave it empty`).toBe('');
    }
    // No real credential in a committed file.
    for (const value of Object.values(sampleValues))
      expect(value).not.toMatch(/AccountKey=|SharedAccessKey=|SharedAccessSignature|sig=/i);
  });

  it('is a valid configuration for loadConfig', () => {
    const config = loadConfig(sampleValues);
    expect(config.transport.kind).toBe('storagequeue');
    expect(config.cursor.store).toBe('blob');
    expect(config.storage).toEqual({
      kind: 'connectionString',
      connectionString: 'UseDevelopmentStorage=true',
    });
    expect(config.flows[0]!.batch.maxAttempts).toBe(Number(defaultOf('SYNC_MAX_ATTEMPTS')));
  });

  it('would fail loadConfig without a required value (the check above can fail)', () => {
    const { FLOWFINITY_VIEW_URL: _omitted, ...rest } = sampleValues;
    expect(() => loadConfig(rest)).toThrow(ConfigError);
  });
});

describe('Bicep app settings (infra/app/api.bicep)', () => {
  it('parses the appsettings block', () => {
    expect(appSettings.length).toBeGreaterThan(10);
    const dupes = appSettings.map((s) => s.name).filter((n, i, all) => all.indexOf(n) !== i);
    expect(dupes).toEqual([]);
  });

  it('names only known settings or listed platform settings', () => {
    const unknown = appSettings
      .map((s) => s.name)
      .filter((n) => !isKnownSettingName(n) && !BICEP_PLATFORM_SETTINGS.has(n));
    expect(unknown).toEqual([]);
    for (const forbidden of FLEX_FORBIDDEN_SETTINGS) expect(appSetting(forbidden), forbidden).toBeUndefined();
  });

  it('knows per-flow settings by their key, whatever the flow (Flows__<flow>__<Key>)', () => {
    expect(isKnownSettingName('SYNC_SCHEDULE')).toBe(true);
    expect(isKnownSettingName('Flows__leads__ViewUrl')).toBe(true);
    expect(isKnownSettingName('Flows__work-orders__Schedule')).toBe(true);
    expect(isKnownSettingName('Flows__leads__Colour')).toBe(false);
    expect(isKnownSettingName('Flows____ViewUrl')).toBe(false);
    expect(isKnownSettingName('Flows__bad_name__ViewUrl')).toBe(false);
    expect(isKnownSettingName('Flow__leads__ViewUrl')).toBe(false);
  });

  it('sets every schema setting that Azure needs: a default, a Bicep value, or a stated reason (the reverse)', () => {
    const unset = defs.filter(
      (d) =>
        d.default === undefined &&
        !appSetting(d.name) &&
        !(d.name in NOT_SET_IN_AZURE) &&
        !(d.name in OPTIONAL_IN_AZURE),
    );
    expect(unset.map((d) => d.name)).toEqual([]);
    for (const name of Object.keys(NOT_SET_IN_AZURE)) expect(byName.has(name), name).toBe(true);
  });

  it('uses Entra auth for Application Insights with the app identity', () => {
    expect(appSetting('APPLICATIONINSIGHTS_AUTHENTICATION_STRING')?.expression).toBe(
      "'ClientId=${identityClientId};Authorization=AAD'",
    );
    expect(read('infra/app/monitoring.bicep')).toMatch(/DisableLocalAuth:\s*true/);
    expect(read('infra/app/rbac.bicep')).toMatch(/monitoringMetricsPublisher/);
  });

  it('sets every required setting and the Azure adapters with managed identity', () => {
    for (const s of defs.filter((d) => d.required)) expect(appSetting(s.name), s.name).toBeDefined();
    expect(appSetting('TRANSPORT')?.literal).toBe('servicebus');
    expect(appSetting('CURSOR_STORE')?.literal).toBe('fileshare');
    expect(appSetting('AzureWebJobsStorage__accountName')).toBeDefined();
    expect(appSetting('AzureWebJobsStorage__credential')?.literal).toBe('managedidentity');
    expect(appSetting('ServiceBusConnection__fullyQualifiedNamespace')).toBeDefined();
    expect(appSetting('ServiceBusConnection__credential')?.literal).toBe('managedidentity');
    expect(appSetting('APPLICATIONINSIGHTS_CONNECTION_STRING')).toBeDefined();
  });

  it('keeps secrets out: every secret setting is a Key Vault reference, no connection strings', () => {
    // A reference, or (an optional flow's secret) empty while the flow is off.
    const keyVaultReference =
      /^(?:empty\(\w+\) \? '' : )?'@Microsoft\.KeyVault\(SecretUri=\$\{\w+\}secrets\/\$\{\w+\}\)'$/;
    expect(appSetting('FLOWFINITY_PASSWORD')?.expression).toMatch(keyVaultReference);
    const secretNames = new Set(defs.filter((d) => d.secret).map((d) => d.name));
    for (const s of appSettings) {
      const key = FLOW_SETTING_PATTERN.exec(s.name)?.[2]?.toLowerCase();
      const secret =
        secretNames.has(s.name) ||
        (key !== undefined &&
          flowSettings.some((d) => d.key.toLowerCase() === key && 'secret' in d && d.secret));
      if (secret) expect(s.expression, `${s.name} must be a Key Vault reference`).toMatch(keyVaultReference);
    }
    for (const name of Object.keys(NOT_SET_IN_AZURE))
      expect(appSetting(name), `${name} must not be set: use managed identity`).toBeUndefined();
  });

  it('uses literal values that the settings schemas accept', () => {
    for (const s of appSettings) {
      const def = byName.get(s.name);
      if (!def || s.literal === undefined) continue;
      expect(def.schema.safeParse(s.literal).success, `${s.name}: '${s.literal}'`).toBe(true);
    }
  });

  it('adds up to a valid configuration (expressions replaced by stand-ins)', () => {
    const standIns: Record<string, string> = {
      FLOWFINITY_VIEW_URL: 'https://example.flowfinity.com/api/views/LeadSync',
      FLOWFINITY_ON_BEHALF_OF: 'integration',
      FLOWFINITY_USERNAME: 'integration',
      FLOWFINITY_PASSWORD: 'resolved-from-key-vault',
      AzureWebJobsStorage__accountName: 'stabcdefghijklm',
      ServiceBusConnection__fullyQualifiedNamespace: 'sb-abcdefghijklm.servicebus.windows.net',
      CURSOR_SHARE_NAME: defaultOf('CURSOR_SHARE_NAME'),
      SYNC_RECORDS_QUEUE: defaultOf('SYNC_RECORDS_QUEUE'),
      SYNC_CONTROL_QUEUE: defaultOf('SYNC_CONTROL_QUEUE'),
      SYNC_JOBS_QUEUE: defaultOf('SYNC_JOBS_QUEUE'),
      SYNC_MAX_ATTEMPTS: defaultOf('SYNC_MAX_ATTEMPTS'),
      // As deployed with the optional PostgreSQL server (enablePostgres): Entra ID, no password.
      TARGET: 'postgres',
      TARGET_PG_HOST: 'psql-abcdefghijklm.postgres.database.azure.com',
      TARGET_PG_DATABASE: 'syncbridge',
      TARGET_PG_USER: 'id-abcdefghijklm',
      // As deployed with WISEFLOW_BASE_URL set: the external-source flow, secrets from Key Vault.
      Flows__wiseflow__Type: 'external-source',
      WISEFLOW_BASE_URL: 'https://europe-api.wiseflow.net',
      WISEFLOW_CLIENT_ID: 'syncbridge',
      WISEFLOW_CLIENT_SECRET: 'resolved-from-key-vault',
      WISEFLOW_WEBHOOK_SECRET: 'resolved-from-key-vault-0123456789',
      WISEFLOW_ROSTER_VIEW_URL: 'https://example.flowfinity.com/api/views/Roster',
    };
    const env: Record<string, string> = {};
    for (const s of appSettings.filter((a) => isKnownSettingName(a.name))) {
      const value = s.literal ?? standIns[s.name];
      if (value === undefined) throw new Error(`add a stand-in for ${s.name} = ${s.expression}`);
      env[s.name] = value;
    }
    const config = loadConfig(env);
    expect(config.storage).toEqual({ kind: 'identity', accountName: 'stabcdefghijklm' });
    expect(config.transport.serviceBus?.kind).toBe('identity');
    expect(config.cursor.store).toBe('fileshare');
    expect(config.externalSourceFlows.map((f) => f.name)).toEqual(['wiseflow']);
    expect(config.flows[0]!.target).toMatchObject({
      kind: 'postgres',
      connection: { kind: 'entra', port: 5432 },
    });
  });

  it('creates the queues and share the app settings name, with the settings defaults', () => {
    const vars = Object.fromEntries(
      [...stripComments(mainBicep).matchAll(/^var\s+(\w+)\s*=\s*'([^'$]*)'\s*$/gm)].map((m) => [
        m[1]!,
        m[2]!,
      ]),
    );
    expect(vars.recordsQueueName).toBe(defaultOf('SYNC_RECORDS_QUEUE'));
    expect(vars.controlQueueName).toBe(defaultOf('SYNC_CONTROL_QUEUE'));
    expect(vars.jobsQueueName).toBe(defaultOf('SYNC_JOBS_QUEUE'));
    expect(vars.cursorShareName).toBe(defaultOf('CURSOR_SHARE_NAME'));
    expect(mainBicep).toMatch(/queueNames:\s*\[recordsQueueName,\s*controlQueueName,\s*jobsQueueName\]/);
    expect(mainBicep).toMatch(/^\s*recordsQueueName:\s*recordsQueueName\s*$/m);
    expect(mainBicep).toMatch(/^\s*controlQueueName:\s*controlQueueName\s*$/m);
    expect(mainBicep).toMatch(/^\s*jobsQueueName:\s*jobsQueueName\s*$/m);
  });

  it('is the azd service `api` of azure.yaml', () => {
    expect(functionAppBicep).toMatch(/'azd-service-name':\s*'api'/);
    const azureYaml = read('azure.yaml');
    expect(azureYaml).toMatch(/^services:\s*\n\s+api:\s*\n(\s+\w+:.*\n)*/m);
    expect(azureYaml).toMatch(/^\s+project:\s*\.\s*$/m);
    expect(azureYaml).toMatch(/^\s+language:\s*ts\s*$/m);
    expect(azureYaml).toMatch(/^\s+host:\s*function\s*$/m);
    expect(azureYaml).toMatch(/^\s+remoteBuild:\s*true\s*$/m);
  });
});

describe('infra/main.bicep outputs (what the operator CLI reads from `azd env get-values`)', () => {
  const outputs = [...stripComments(mainBicep).matchAll(/^output\s+(\w+)\s+\w+\s*=/gm)].map((m) => m[1]!);

  it('names every setting-like output after a known setting', () => {
    const settingLike = outputs.filter((o) => !/^(AZURE_|SERVICE_|APPLICATIONINSIGHTS_)/.test(o));
    expect(settingLike.filter((o) => !isKnownSettingName(o))).toEqual([]);
  });

  it('gives the CLI the identity-based connections and the cursor location', () => {
    for (const o of [
      'AzureWebJobsStorage__accountName',
      'ServiceBusConnection__fullyQualifiedNamespace',
      'TRANSPORT',
      'CURSOR_STORE',
      'CURSOR_SHARE_NAME',
      'SYNC_RECORDS_QUEUE',
      'SYNC_CONTROL_QUEUE',
      'SYNC_JOBS_QUEUE',
      'AZURE_FUNCTION_APP_NAME',
      'SERVICE_API_URI',
      'AZURE_KEY_VAULT_NAME',
    ])
      expect(outputs, o).toContain(o);
  });
});

describe('delivery limit', () => {
  const maxAttempts = Number(defaultOf('SYNC_MAX_ATTEMPTS'));

  it('host.json maxDequeueCount equals the default of SYNC_MAX_ATTEMPTS', () => {
    const host = JSON.parse(read('host.json')) as { extensions?: { queues?: { maxDequeueCount?: number } } };
    expect(host.extensions?.queues?.maxDequeueCount).toBe(maxAttempts);
  });

  it('every Service Bus queue has maxDeliveryCount = SYNC_MAX_ATTEMPTS and duplicate detection', () => {
    const counts = intProperties(serviceBusBicep, 'maxDeliveryCount');
    expect(counts.length).toBeGreaterThan(0);
    for (const c of counts) expect(c).toBe(maxAttempts);
    expect(serviceBusBicep).toMatch(/requiresDuplicateDetection:\s*true/);
    expect(serviceBusBicep).toMatch(/duplicateDetectionHistoryTimeWindow:\s*'PT10M'/);
    expect(serviceBusBicep).toMatch(/name:\s*'Standard'/);
    // A lock within the service's maximum (PT5M); the host renews it while an invocation runs,
    // for longer than the function may run, so a running message is never delivered twice.
    const lock = /^var lockDuration = 'PT(\d+)M'$/m.exec(serviceBusBicep);
    expect(Number(lock?.[1])).toBeLessThanOrEqual(5);
    const host = JSON.parse(read('host.json')) as {
      functionTimeout: string;
      extensions: { serviceBus: { maxAutoLockRenewalDuration: string } };
    };
    const ms = (t: string) => t.split(':').reduce((acc, x) => acc * 60 + Number(x), 0) * 1000;
    expect(ms(host.extensions.serviceBus.maxAutoLockRenewalDuration)).toBeGreaterThan(
      ms(host.functionTimeout),
    );
    expect(serviceBusBicep).toMatch(/lockDuration:\s*lockDuration/);
    // The app setting is wired to the same number, not typed twice.
    expect(mainBicep).toMatch(/maxAttempts:\s*serviceBus\.outputs\.maxDeliveryCount/);
    expect(appSetting('SYNC_MAX_ATTEMPTS')?.expression).toBe('string(maxAttempts)');
  });
});

describe('main.parameters.json', () => {
  const parameters = (
    JSON.parse(read('infra/main.parameters.json')) as { parameters: Record<string, { value: unknown }> }
  ).parameters;
  const params = bicepParams(mainBicep);

  it('maps only parameters that main.bicep declares, and every one without a default', () => {
    expect(params.size).toBeGreaterThan(0);
    for (const name of Object.keys(parameters))
      expect(params.has(name), `param ${name} in main.bicep`).toBe(true);
    for (const [name, p] of params)
      if (!p.hasDefault) expect(Object.keys(parameters), `${name} has no default`).toContain(name);
  });

  it('reads azd variables and settings by their setting names', () => {
    for (const [name, { value }] of Object.entries(parameters)) {
      const vars = [...JSON.stringify(value).matchAll(/\$\{(\w+)(=[^}]*)?\}/g)].map((m) => m[1]!);
      expect(vars.length, `${name} should come from an environment variable`).toBeGreaterThan(0);
      // azd variables (AZURE_*), app settings by their names, and infra-only switches (SYNCBRIDGE_*).
      for (const v of vars)
        expect(
          v.startsWith('AZURE_') || v.startsWith('SYNCBRIDGE_') || byName.has(v),
          `${name}: \${${v}}`,
        ).toBe(true);
    }
    expect(params.get('flowfinityPassword')?.type).toBe('string');
    expect(mainBicep).toMatch(/@secure\(\)\s*\n(@description\(.*\)\s*\n)?param flowfinityPassword string/);
  });
});

describe('configuration table', () => {
  const table = configTableMarkdown();

  it('has one row per setting, secrets marked, required flagged', () => {
    // The shared settings' table comes first; the per-flow keys' table follows a blank line.
    const rows = table.split('\n\n')[0]!.trimEnd().split('\n').slice(2);
    expect(rows).toHaveLength(defs.length);
    for (const [i, s] of defs.entries()) {
      const row = rows[i]!;
      expect(row.startsWith(`| \`${s.name}\``), row).toBe(true);
      expect(row.includes('(secret)')).toBe(Boolean(s.secret));
      expect(row.split(' | ')[2]).toBe(s.required ? 'yes' : 'no');
      expect(row.split(/(?<!\\)\|/)).toHaveLength(6); // 4 cells, no unescaped pipe inside
    }
  });

  it('docs/config-table.md is up to date', () => {
    const doc = read('docs/config-table.md');
    expect(doc).toBe(configDocMarkdown());
    // The same extraction that checks README.md below.
    expect(extractConfigTable(doc)).toBe(table);
    expect(extractConfigTable(`# x\n\n${TABLE_START}\n| stale |\n${TABLE_END}\n`)).not.toBe(table);
    expect(extractConfigTable('# no markers')).toBeUndefined();
  });

  const readmePath = path.join(root, 'README.md');
  const readme = existsSync(readmePath) ? readFileSync(readmePath, 'utf8') : '';
  const hasMarkers = readme.includes(TABLE_START) && readme.includes(TABLE_END);

  it.skipIf(!hasMarkers)('README.md table between the markers is up to date', () => {
    expect(extractConfigTable(readme)).toBe(table);
  });
});
