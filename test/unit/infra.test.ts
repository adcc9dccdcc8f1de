/**
 * Offline check of infra/**.bicep (no Bicep compiler can be installed here):
 * - tree-sitter-bicep parses every file; any ERROR or MISSING node fails with file:line;
 * - every resource type is mapped to its REST model in an `@azure/arm-*` SDK (an unmapped type
 *   fails), and every property name written in a resource body, at any depth, must be a REST
 *   property name of that model (read from the SDK's serializer mappers, test/support/arm-models.ts);
 * - every module path exists, every module parameter passed is declared by the module, and every
 *   parameter without a default is passed.
 * The broken fixtures under test/fixtures/infra-broken prove each check can fail.
 *
 * The SDK's API version can differ from the one in the Bicep: names are checked, not versions.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { armModels, type Shape } from '../support/arm-models';
import {
  bodyObject,
  literalString,
  propertyKey,
  propertyProblems,
  readBicep,
  resources,
  syntaxErrors,
  type BicepFile,
  type BicepResource,
} from '../support/bicep';

const root = path.join(__dirname, '..', '..');
const infraDir = path.join(root, 'infra');
const fixtures = path.join(__dirname, '..', 'fixtures', 'infra-broken');

function bicepFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? bicepFiles(path.join(dir, e.name))
      : e.name.endsWith('.bicep')
        ? [path.join(dir, e.name)]
        : [],
  );
}

/** Bicep resource type → [SDK package, model]. A type missing here fails the check. */
const MODELS: Record<string, [string, string]> = {
  'Microsoft.Resources/resourceGroups': ['@azure/arm-resources', 'ResourceGroup'],
  'Microsoft.ManagedIdentity/userAssignedIdentities': ['@azure/arm-msi', 'Identity'],
  'Microsoft.OperationalInsights/workspaces': ['@azure/arm-operationalinsights', 'Workspace'],
  'Microsoft.Insights/components': ['@azure/arm-appinsights', 'ApplicationInsightsComponent'],
  'Microsoft.Insights/webtests': ['@azure/arm-appinsights', 'WebTest'],
  'Microsoft.Insights/workbooks': ['@azure/arm-appinsights', 'Workbook'],
  'Microsoft.Insights/actionGroups': ['@azure/arm-monitor', 'ActionGroupResource'],
  'Microsoft.Insights/metricAlerts': ['@azure/arm-monitor', 'MetricAlertResource'],
  'Microsoft.Insights/scheduledQueryRules': ['@azure/arm-monitor', 'ScheduledQueryRuleResource'],
  'Microsoft.Storage/storageAccounts': ['@azure/arm-storage', 'StorageAccountCreateParameters'],
  'Microsoft.Storage/storageAccounts/blobServices': ['@azure/arm-storage', 'BlobServiceProperties'],
  'Microsoft.Storage/storageAccounts/blobServices/containers': ['@azure/arm-storage', 'BlobContainer'],
  'Microsoft.Storage/storageAccounts/fileServices': ['@azure/arm-storage', 'FileServiceProperties'],
  'Microsoft.Storage/storageAccounts/fileServices/shares': ['@azure/arm-storage', 'FileShare'],
  'Microsoft.ServiceBus/namespaces': ['@azure/arm-servicebus', 'SBNamespace'],
  'Microsoft.ServiceBus/namespaces/queues': ['@azure/arm-servicebus', 'SBQueue'],
  'Microsoft.KeyVault/vaults': ['@azure/arm-keyvault', 'VaultCreateOrUpdateParameters'],
  'Microsoft.KeyVault/vaults/secrets': ['@azure/arm-keyvault', 'SecretCreateOrUpdateParameters'],
  'Microsoft.Web/serverfarms': ['@azure/arm-appservice', 'AppServicePlan'],
  'Microsoft.Web/sites': ['@azure/arm-appservice', 'Site'],
  // sites/config is a family: the resource name picks the model (appsettings = a string map).
  'Microsoft.Web/sites/config': ['@azure/arm-appservice', 'StringDictionary'],
  'Microsoft.Authorization/roleAssignments': ['@azure/arm-authorization', 'RoleAssignmentCreateParameters'],
  'Microsoft.DBforPostgreSQL/flexibleServers': ['@azure/arm-postgresql-flexible', 'Server'],
  'Microsoft.DBforPostgreSQL/flexibleServers/databases': ['@azure/arm-postgresql-flexible', 'Database'],
  'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules': [
    '@azure/arm-postgresql-flexible',
    'FirewallRule',
  ],
  'Microsoft.DBforPostgreSQL/flexibleServers/administrators': [
    '@azure/arm-postgresql-flexible',
    'AdministratorMicrosoftEntraAdd',
  ],
};

const CONFIG_MODELS: Record<string, string> = { appsettings: 'StringDictionary', web: 'SiteConfigResource' };

function modelOf(r: BicepResource): Shape {
  const entry = MODELS[r.type];
  if (!entry)
    throw new Error(
      `${r.file}:${r.line}: resource type ${r.type} has no REST model mapped in test/infra.test.ts`,
    );
  const [pkg, defaultModel] = entry;
  const model =
    r.type === 'Microsoft.Web/sites/config' ? (CONFIG_MODELS[r.name ?? ''] ?? defaultModel) : defaultModel;
  const source = armModels(pkg);
  if (!source.has(model)) throw new Error(`${pkg} has no model ${model} (for ${r.type})`);
  return source.shape(model);
}

/** Property problems of every resource of a file (existing resources: only the type is checked). */
function checkFile(b: BicepFile): string[] {
  const problems: string[] = [];
  for (const r of resources(b)) {
    let shape: Shape;
    try {
      shape = modelOf(r);
    } catch (e) {
      problems.push((e as Error).message);
      continue;
    }
    if (!r.existing) problems.push(...propertyProblems(r, shape));
  }
  return problems;
}

interface ModuleUse {
  line: number;
  target: string;
  params: string[];
}

function moduleUses(b: BicepFile): ModuleUse[] {
  const out: ModuleUse[] = [];
  for (const n of b.tree.rootNode.namedChildren) {
    if (n.type !== 'module_declaration') continue;
    const [, pathNode, ...rest] = n.namedChildren;
    const target = literalString(pathNode) ?? '';
    const body = bodyObject(rest[rest.length - 1]);
    const paramsProp = body?.namedChildren.find(
      (p) => p.type === 'object_property' && propertyKey(p) === 'params',
    );
    const obj = paramsProp?.namedChildren[paramsProp.namedChildren.length - 1];
    const params =
      obj?.type === 'object'
        ? obj.namedChildren.filter((p) => p.type === 'object_property').map((p) => propertyKey(p) ?? '?')
        : [];
    out.push({ line: n.startPosition.row + 1, target, params });
  }
  return out;
}

function declaredParams(b: BicepFile): Map<string, { hasDefault: boolean }> {
  const out = new Map<string, { hasDefault: boolean }>();
  for (const n of b.tree.rootNode.namedChildren) {
    if (n.type !== 'parameter_declaration') continue;
    const name = n.namedChildren[0]?.text ?? '';
    // `param x type = default`: a default is a child after the type.
    const hasDefault = n.children.some((c) => c.type === '=');
    out.set(name, { hasDefault });
  }
  return out;
}

function moduleProblems(b: BicepFile): string[] {
  const problems: string[] = [];
  for (const use of moduleUses(b)) {
    const file = path.resolve(path.dirname(b.file), use.target);
    if (!existsSync(file)) {
      problems.push(`${b.file}:${use.line}: module ${use.target} does not exist`);
      continue;
    }
    const declared = declaredParams(readBicep(file));
    for (const p of use.params)
      if (!declared.has(p))
        problems.push(`${b.file}:${use.line}: module ${use.target} has no parameter ${p}`);
    for (const [name, d] of declared)
      if (!d.hasDefault && !use.params.includes(name))
        problems.push(`${b.file}:${use.line}: module ${use.target} needs parameter ${name}`);
  }
  return problems;
}

const files = bicepFiles(infraDir).map(readBicep);

describe('infra/**.bicep', () => {
  it('finds the template: main.bicep and one module per concern under app/', () => {
    const names = files.map((f) => path.relative(infraDir, f.file).split(path.sep).join('/')).sort();
    expect(names).toEqual(
      expect.arrayContaining([
        'main.bicep',
        'app/api.bicep',
        'app/identity.bicep',
        'app/storage.bicep',
        'app/servicebus.bicep',
        'app/monitoring.bicep',
        'app/keyvault.bicep',
        'app/rbac.bicep',
        'app/alerts.bicep',
        'app/workbook.bicep',
        'app/postgres.bicep',
      ]),
    );
  });

  it.each(files.map((f) => [path.relative(root, f.file), f] as const))(
    '%s parses without syntax errors',
    (_, f) => {
      expect(syntaxErrors(f)).toEqual([]);
    },
  );

  it('maps every resource type to a REST model and uses only REST property names', () => {
    const problems = files.flatMap(checkFile);
    expect(problems).toEqual([]);
    // The check saw real resources, not nothing.
    expect(files.flatMap((f) => resources(f)).filter((r) => !r.existing).length).toBeGreaterThan(20);
  });

  it('wires modules correctly: paths exist, parameters are declared, required ones are passed', () => {
    expect(files.flatMap(moduleProblems)).toEqual([]);
  });
});

describe('the check fails on broken files (test/fixtures/infra-broken)', () => {
  it('reports a syntax error with file and line', () => {
    const f = readBicep(path.join(fixtures, 'syntax-error.bicep'));
    const errors = syntaxErrors(f);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]).toMatch(/syntax-error\.bicep:\d+:\d+: /);
  });

  it('reports a misspelled property name at any depth, with its line', () => {
    const f = readBicep(path.join(fixtures, 'misspelled-property.bicep'));
    const problems = checkFile(f);
    expect(problems).toEqual([
      expect.stringMatching(
        /misspelled-property\.bicep:\d+: Microsoft\.Storage\/storageAccounts: unknown property "properties\.allowSharedKeyAcess"/,
      ),
      expect.stringMatching(
        /misspelled-property\.bicep:\d+: Microsoft\.ServiceBus\/namespaces\/queues: unknown property "properties\.maxDeliveryCnt"/,
      ),
      expect.stringMatching(
        /misspelled-property\.bicep:\d+: Microsoft\.Insights\/scheduledQueryRules: unknown property "properties\.criteria\.allOf\[\]\.treshold"/,
      ),
    ]);
  });

  it('reports a resource type it has no model for', () => {
    const f = readBicep(path.join(fixtures, 'unknown-type.bicep'));
    expect(checkFile(f)).toEqual([expect.stringMatching(/Microsoft\.Nowhere\/widgets has no REST model/)]);
  });

  it('reports a module parameter the module does not declare', () => {
    const f = readBicep(path.join(fixtures, 'bad-module-params.bicep'));
    expect(moduleProblems(f)).toEqual([
      expect.stringMatching(/has no parameter nam$/),
      expect.stringMatching(/needs parameter name$/),
    ]);
  });
});
