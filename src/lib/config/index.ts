/**
 * The one place that reads process.env: one schema (settings.ts, flow-settings.ts), one
 * validation, and the app's configuration with its types inferred from that schema. A missing
 * or invalid setting fails at start-up with one line per problem, each naming the setting;
 * secret values are never echoed.
 */
import { assertFileShareCursorAvailable } from '../cursor/fileshare-availability';
import { parseTargetSettings, type TargetSettingName, type TargetSettings } from '../targets/target-settings';
import { ConfigError } from '../errors';
import {
  businessEventRegistration,
  readBusinessEventFlow,
  type BusinessEventFlowConfig,
} from './business-event-flows';
import {
  FLOW_SETTING_PATTERN,
  flowSettingName,
  flowSettings,
  flowSettingSchema,
  type FlowSettingDefinition,
  type FlowSettingKey,
} from './flow-settings';
import { flowName, settings, type SettingDefinition, type SettingName, type SettingValues } from './settings';
import { readExternalSourceFlows, type ExternalSourceFlowConfig } from './external-source-flows';

export { ConfigError };
export { settings, type SettingDefinition, type SettingName } from './settings';
export { flowSettingKeys, flowSettings, FLOW_SETTING_PATTERN, flowSettingName } from './flow-settings';
export type { BusinessEventFlowConfig } from './business-event-flows';
export {
  EXTERNAL_SOURCE_JOB_KIND,
  EXTERNAL_SOURCE_ROUTE,
  type ExternalSourceFlowConfig,
} from './external-source-flows';

type Env = Record<string, string | undefined>;

export type StorageAccess =
  { kind: 'connectionString'; connectionString: string } | { kind: 'identity'; accountName: string };
export type ServiceBusAccess =
  | { kind: 'connectionString'; connectionString: string }
  | { kind: 'identity'; fullyQualifiedNamespace: string };

const defs = settings as readonly SettingDefinition[];
const present = (v: string | undefined): v is string => v !== undefined && v !== '';

/** A Key Vault reference the platform could not resolve reaches the app as its literal text. */
const UNRESOLVED_KEY_VAULT = /^@Microsoft\.KeyVault\(/i;
const unresolvedReference = (name: string) =>
  `${name} is an unresolved Key Vault reference: the app's identity cannot read the secret yet (check the reference's secret URI, that the secret exists, and that the identity has the Key Vault Secrets User role), or set the value directly`;

function parseSetting(def: SettingDefinition, name: string, raw: string, problems: string[]): unknown {
  if (def.secret && UNRESOLVED_KEY_VAULT.test(raw)) {
    problems.push(unresolvedReference(name));
    return undefined;
  }
  const parsed = def.schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const why = parsed.error.issues.map((i) => i.message).join('; ');
  // Never echo a secret's value back.
  problems.push(`${name} is invalid${def.secret ? '' : ` (got ${JSON.stringify(raw)})`}: ${why}`);
  return undefined;
}

/** Every shared setting, parsed, defaults applied; `failed` holds those that were invalid. */
function readShared(env: Env, problems: string[]) {
  const values = new Map<string, unknown>();
  const failed = new Set<string>();
  for (const s of defs) {
    const raw = env[s.name];
    if (!present(raw) && s.default === undefined) continue;
    const before = problems.length;
    const v = parseSetting(s, s.name, present(raw) ? raw : s.default!, problems);
    if (problems.length > before) failed.add(s.name);
    else values.set(s.name, v);
  }
  const get = <K extends SettingName>(name: K) => values.get(name) as SettingValues[K] | undefined;
  return { get, failed };
}

type Shared = ReturnType<typeof readShared>;

/** A flow's `Type` as written (validated with the rest of its settings); none is view-sync. */
function flowTypeOf(own: ReturnType<typeof flowEnv>, name: string): string {
  return own.get(name)?.get('Type')?.raw.trim().toLowerCase() ?? 'view-sync';
}

/** `Flows__<flow>__<Key>` settings grouped by flow (names as first written; keys case-insensitive). */
function flowEnv(env: Env, problems: string[]): Map<string, Map<string, { name: string; raw: string }>> {
  const flows = new Map<string, Map<string, { name: string; raw: string }>>();
  const spelling = new Map<string, string>();
  for (const [name, raw] of Object.entries(env)) {
    const m = FLOW_SETTING_PATTERN.exec(name);
    if (!m || !present(raw)) continue;
    const [, flow, key] = m as unknown as [string, string, string];
    const first = spelling.get(flow.toLowerCase());
    if (first !== undefined && first !== flow) {
      problems.push(
        `${name}: flow ${JSON.stringify(flow)} is also spelled ${JSON.stringify(first)}; use one spelling`,
      );
      continue;
    }
    spelling.set(flow.toLowerCase(), flow);
    if (!flowName.safeParse(flow).success) {
      problems.push(`${name}: the flow name ${JSON.stringify(flow)} must be 1-40 letters, digits or hyphens`);
      continue;
    }
    const def = flowSettings.find((d) => d.key.toLowerCase() === key.toLowerCase());
    if (!def) {
      problems.push(
        `${name} is not a known per-flow setting (known: ${flowSettings.map((d) => d.key).join(', ')})`,
      );
      continue;
    }
    if (!flows.has(flow)) flows.set(flow, new Map());
    flows.get(flow)!.set(def.key, { name, raw });
  }
  return flows;
}

function readFlow(
  name: string,
  own: Map<string, { name: string; raw: string }>,
  shared: Shared,
  env: Env,
  isLegacy: boolean,
  problems: string[],
) {
  /** The flow's value of `key`: its own setting, else the shared one (already validated). */
  const value = <K extends FlowSettingKey>(key: K, o: { required?: boolean } = {}): unknown => {
    const def = flowSettings.find((d) => d.key === key) as FlowSettingDefinition;
    const mine = own.get(key);
    if (mine) {
      return parseSetting(
        { name: mine.name, description: def.description, schema: flowSettingSchema(def), secret: def.secret },
        mine.name,
        mine.raw,
        problems,
      );
    }
    // Only the flow named SYNC_VIEW_NAME takes its view from the flat FLOWFINITY_VIEW_URL.
    const shared_ = def.shared && (key !== 'ViewUrl' || isLegacy) ? def.shared : undefined;
    if (shared_ && shared.failed.has(shared_)) return undefined; // reported once, as the shared setting
    const v = shared_ ? shared.get(shared_) : undefined;
    if (v === undefined && o.required) {
      const sharedDef = shared_ ? defs.find((d) => d.name === shared_) : undefined;
      problems.push(
        isLegacy && own.size === 0 && sharedDef
          ? `${sharedDef.name} is missing: ${sharedDef.description}`
          : `${flowSettingName(name, key)} is missing: ${def.description}${shared_ ? ` (or set ${shared_} for every flow)` : ''}`,
      );
    }
    return v;
  };
  const str = (k: FlowSettingKey, o?: { required?: boolean }) => value(k, o) as string;
  const num = (k: FlowSettingKey) => value(k) as number;

  const cursorFile =
    (value('CursorFile') as string | undefined) ??
    [
      shared.get('CURSOR_DIRECTORY')?.replace(/^\/+|\/+$/g, ''),
      isLegacy ? undefined : name,
      shared.get('CURSOR_FILE_NAME'),
    ]
      .filter(Boolean)
      .join('/');
  return {
    name,
    type: (value('Type') as 'view-sync' | undefined) ?? ('view-sync' as const),
    schedule: str('Schedule'),
    view: {
      url: str('ViewUrl', { required: true }),
      onBehalfOf: str('OnBehalfOf', { required: true }),
      username: str('Username', { required: true }),
      password: str('Password', { required: true }),
      timeoutMs: num('TimeoutMs'),
      maxRetries: num('MaxRetries'),
    },
    batch: {
      maxBatch: num('MaxBatch'),
      recordsPerMessage: num('RecordsPerMessage'),
      ...sharedBatchSettings(env, shared),
      poisonPolicy: value('PoisonPolicy') as 'quarantine' | 'block',
    },
    lookback: num('Lookback'),
    stateField: str('StateField'),
    deletedStates: value('DeletedStates') as string[],
    cursorFile,
    target: { ...readTarget(name, own, env, problems), tableName: str('TargetTableName') },
  };
}

/** The batch settings every flow shares, whatever its type. */
function sharedBatchSettings(env: Env, shared: Shared) {
  return {
    maxAttempts: shared.get('SYNC_MAX_ATTEMPTS')!,
    planLeaseSeconds: shared.get('SYNC_PLAN_LEASE_SECONDS')!,
    stallSeconds: shared.get('SYNC_STALL_SECONDS')!,
    retryBackoffMs: (shared.get('SYNC_RETRY_BACKOFF_SECONDS') ?? [0]).map((s) => s * 1000),
    planDeadlineSeconds: planDeadlineSeconds(env, shared.get),
  };
}

/**
 * SYNC_PLAN_DEADLINE_SECONDS as set; unset, its default (420 s: inside the 10-min functionTimeout
 * with room to finish dispatching), lowered to 3/4 of a shorter planner lease so that the
 * deadline always ends a plan before its lease can pass to another planner.
 */
function planDeadlineSeconds(
  env: Env,
  get: <K extends SettingName>(name: K) => SettingValues[K] | undefined,
): number {
  const deadline = get('SYNC_PLAN_DEADLINE_SECONDS')!;
  if (present(env.SYNC_PLAN_DEADLINE_SECONDS)) return deadline;
  return Math.min(deadline, Math.floor(get('SYNC_PLAN_LEASE_SECONDS')! * 0.75));
}

/** The flow's target settings: its own `Flows__<flow>__Target...`, else the shared TARGET_*. */
function readTarget(
  name: string,
  own: Map<string, { name: string; raw: string }>,
  env: Env,
  problems: string[],
): TargetSettings {
  const mine = (setting: TargetSettingName) => {
    const def = flowSettings.find((d) => 'shared' in d && d.shared === setting);
    return def ? own.get(def.key) : undefined;
  };
  try {
    return parseTargetSettings(
      name,
      (setting) => {
        const raw = mine(setting)?.raw ?? env[setting];
        if (raw !== undefined && UNRESOLVED_KEY_VAULT.test(raw)) {
          const where = mine(setting)?.name ?? setting;
          if (!problems.includes(unresolvedReference(where))) problems.push(unresolvedReference(where));
          return undefined;
        }
        return raw;
      },
      (setting) => mine(setting)?.name ?? setting,
    );
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // A shared setting's invalid value is reported once, by the shared check.
    problems.push(
      ...e.problems.filter(
        (p) => !problems.includes(p) && !problems.some((q) => q.startsWith(p.split(':')[0]!)),
      ),
    );
    return { kind: 'table' };
  }
}

export type FlowConfig = ReturnType<typeof readFlow>;

/** Reads and validates every setting; throws ConfigError with one line per problem. */
export function loadConfig(env: Env = process.env) {
  const problems: string[] = [];
  const shared = readShared(env, problems);
  const v = shared.get;

  let storage: StorageAccess | undefined;
  if (v('AzureWebJobsStorage'))
    storage = { kind: 'connectionString', connectionString: v('AzureWebJobsStorage')! };
  else if (v('AzureWebJobsStorage__accountName'))
    storage = { kind: 'identity', accountName: v('AzureWebJobsStorage__accountName')! };
  else if (
    !shared.failed.has('AzureWebJobsStorage') &&
    !shared.failed.has('AzureWebJobsStorage__accountName')
  )
    problems.push(
      'AzureWebJobsStorage is missing: set a storage connection string, or AzureWebJobsStorage__accountName for managed identity',
    );

  let serviceBus: ServiceBusAccess | undefined;
  if (v('ServiceBusConnection'))
    serviceBus = { kind: 'connectionString', connectionString: v('ServiceBusConnection')! };
  else if (v('ServiceBusConnection__fullyQualifiedNamespace'))
    serviceBus = {
      kind: 'identity',
      fullyQualifiedNamespace: v('ServiceBusConnection__fullyQualifiedNamespace')!,
    };
  if (
    v('TRANSPORT') === 'servicebus' &&
    !serviceBus &&
    ![...shared.failed].some((n) => n.startsWith('ServiceBus'))
  )
    problems.push(
      'ServiceBusConnection is missing: TRANSPORT=servicebus needs a Service Bus connection string, or ServiceBusConnection__fullyQualifiedNamespace for managed identity (or set TRANSPORT=storagequeue)',
    );
  // A planner still reading its source when its lease expires would race the next one, and a
  // lease is only renewed while dispatching: the deadline must end the plan first.
  if (
    present(env.SYNC_PLAN_DEADLINE_SECONDS) &&
    (v('SYNC_PLAN_DEADLINE_SECONDS') ?? 0) >= (v('SYNC_PLAN_LEASE_SECONDS') ?? Infinity)
  )
    problems.push(
      `SYNC_PLAN_DEADLINE_SECONDS (${v('SYNC_PLAN_DEADLINE_SECONDS')}) must be below SYNC_PLAN_LEASE_SECONDS (${v('SYNC_PLAN_LEASE_SECONDS')}): lower the deadline or raise the lease`,
    );
  if (v('SYNC_RECORDS_QUEUE') && v('SYNC_RECORDS_QUEUE') === v('SYNC_CONTROL_QUEUE'))
    problems.push('SYNC_CONTROL_QUEUE must differ from SYNC_RECORDS_QUEUE');

  const flows: FlowConfig[] = [];
  const own = flowEnv(env, problems);
  const legacyName = v('SYNC_VIEW_NAME');
  const names = new Set(own.keys());
  if (legacyName && (present(env.FLOWFINITY_VIEW_URL) || names.size === 0)) names.add(legacyName);
  // Each flow type reads its own settings: view-sync here, the webhook flows in their modules.
  // A flow without `Type` is view-sync (so every configuration from before flow types still is).
  // A Type no reader knows would leave its flow silently unconfigured: validate it here.
  const typeDef = flowSettings.find((d) => d.key === 'Type')!;
  for (const [, settingsOfFlow] of own) {
    const t = settingsOfFlow.get('Type');
    if (t)
      parseSetting(
        { ...typeDef, name: t.name, schema: flowSettingSchema(typeDef) },
        t.name,
        t.raw.trim(),
        problems,
      );
  }
  for (const name of names)
    if (flowTypeOf(own, name) === 'view-sync')
      flows.push(readFlow(name, own.get(name) ?? new Map(), shared, env, name === legacyName, problems));
  const businessEventFlows: BusinessEventFlowConfig[] = [];
  for (const name of names) {
    const type = own.get(name)?.get('Type');
    const typeDef = flowSettings.find((d) => d.key === 'Type') as FlowSettingDefinition;
    // A Type no reader knows would leave the flow silently unread: report it.
    if (type && !['view-sync', 'business-event', 'external-source'].includes(flowTypeOf(own, name)))
      parseSetting(
        { ...typeDef, name: type.name, schema: flowSettingSchema(typeDef) },
        type.name,
        type.raw,
        problems,
      );
  }
  for (const name of names)
    if (flowTypeOf(own, name) === 'business-event') {
      const mine = own.get(name) ?? new Map();
      const f = readBusinessEventFlow(
        name,
        mine,
        businessEventContext(name, mine, shared, env, problems),
        problems,
      );
      if (f) businessEventFlows.push(f);
    }
  const externalSourceFlows = externalSourceFlowsOf(names, own, shared, problems);
  const files = new Map<string, string>();
  for (const f of flows) {
    const other = files.get(f.cursorFile.toLowerCase());
    if (other)
      problems.push(
        `flows ${other} and ${f.name} share the cursor file ${f.cursorFile}: give each its own CursorFile`,
      );
    files.set(f.cursorFile.toLowerCase(), f.name);
  }

  if (v('CURSOR_STORE') === 'fileshare') {
    const own = v('CURSOR_STORAGE_CONNECTION');
    try {
      assertFileShareCursorAvailable({
        store: 'fileshare',
        connectionString:
          own ?? (storage?.kind === 'connectionString' ? storage.connectionString : undefined),
        connectionSetting: own ? 'CURSOR_STORAGE_CONNECTION' : 'AzureWebJobsStorage',
      });
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(...e.problems);
    }
  }

  if (problems.length > 0 || !storage) throw new ConfigError(problems);

  return {
    storage,
    tablePrefix: v('SYNC_TABLE_PREFIX')!,
    health: { maxLagMinutes: v('HEALTH_MAX_LAG_MINUTES')! },
    cursor: {
      store: v('CURSOR_STORE')!,
      shareName: v('CURSOR_SHARE_NAME')!,
      /** Connection string for the cursor's account; falls back to `storage`. */
      connectionString: v('CURSOR_STORAGE_CONNECTION'),
    },
    transport: {
      kind: v('TRANSPORT')!,
      recordsQueue: v('SYNC_RECORDS_QUEUE')!,
      controlQueue: v('SYNC_CONTROL_QUEUE')!,
      jobsQueue: v('SYNC_JOBS_QUEUE')!,
      /** Deliveries of one message before the queue dead-letters it (the jobs worker's patience). */
      maxDeliveries: v('SYNC_MAX_ATTEMPTS')!,
      serviceBus,
      serviceBusTier: v('SERVICE_BUS_TIER')!,
    },
    flows,
    /** Dynamics 365 F&O data-export flows (`Type=business-event`). */
    businessEventFlows,
    /** At most one: WISEflow sync requests (src/lib/config/external-source-flows.ts). */
    externalSourceFlows,
    /**
     * The intake's limits for EVERY webhook route (the business-event route reads them here; the
     * external-source flow carries its own copy in its config).
     */
    webhook: {
      maxBodyBytes: v('WEBHOOK_MAX_BODY_BYTES') as number,
      maxDepth: v('WEBHOOK_MAX_JSON_DEPTH') as number,
    },
  };
}

/** What a business-event flow takes from the shared settings and the per-flow keys it shares with view-sync. */
function businessEventContext(
  name: string,
  own: Map<string, { name: string; raw: string }>,
  shared: Shared,
  env: Env,
  problems: string[],
) {
  const value = (key: 'MaxBatch' | 'RecordsPerMessage' | 'PoisonPolicy' | 'TargetTableName'): unknown => {
    const def = flowSettings.find((d) => d.key === key) as FlowSettingDefinition;
    const mine = own.get(key);
    if (mine)
      return parseSetting(
        { name: mine.name, description: def.description, schema: flowSettingSchema(def), secret: def.secret },
        mine.name,
        mine.raw,
        problems,
      );
    return def.shared ? shared.get(def.shared) : undefined;
  };
  return {
    env,
    flowValue: value,
    shared: sharedBatchSettings(env, shared),
    target: readTarget(name, own, env, problems),
  };
}

export type Config = ReturnType<typeof loadConfig>;

function externalSourceFlowsOf(
  names: Iterable<string>,
  own: ReturnType<typeof flowEnv>,
  shared: Shared,
  problems: string[],
  purpose: 'run' | 'register' = 'run',
): ExternalSourceFlowConfig[] {
  return readExternalSourceFlows({
    purpose,
    flows: [...names]
      .filter((name) => flowTypeOf(own, name) === 'external-source')
      .map((name) => ({ name, own: own.get(name) ?? new Map() })),
    get: (name) => shared.get(name as SettingName),
    failed: shared.failed,
    parse: (def, name, raw) => parseSetting(def, name, raw, problems),
    problems,
  });
}

/**
 * Only the external-source flow, for tools that need nothing else: `syncbridge register-webhooks`
 * runs from a deployer's machine, where the storage, queue and roster settings are not set
 * (`purpose: 'register'`, the default here). Throws ConfigError for a problem in what it reads.
 */
export function loadExternalSourceFlows(
  env: Env = process.env,
  purpose: 'run' | 'register' = 'register',
): ExternalSourceFlowConfig[] {
  const problems: string[] = [];
  const shared = readShared(env, problems);
  const own = flowEnv(env, problems);
  const flows = externalSourceFlowsOf(own.keys(), own, shared, problems, purpose);
  if (problems.length > 0) throw new ConfigError(problems);
  return flows;
}

/**
 * The settings function registration needs at load time (before the full configuration is
 * validated on first use): the transport, queue names and each flow's timer schedule, defaults
 * applied. Bindings get literal values rather than `%NAME%` placeholders, because the Functions
 * host cannot resolve a placeholder whose app setting is unset, and these settings have defaults.
 */
export function registrationSettings(env: Env = process.env) {
  const problems: string[] = [];
  const shared = readShared(env, problems);
  const pick = <K extends SettingName>(name: K) => shared.get(name) as SettingValues[K];
  const own = flowEnv(env, problems);
  const legacyName = pick('SYNC_VIEW_NAME');
  const names = new Set(own.keys());
  if (legacyName && (present(env.FLOWFINITY_VIEW_URL) || names.size === 0)) names.add(legacyName);
  // Only view-sync flows have a timer (see loadConfig for `Type`).
  const viewSync = [...names].filter((name) => flowTypeOf(own, name) === 'view-sync');
  const flows = viewSync.map((name) => {
    const mine = own.get(name)?.get('Schedule');
    const def = flowSettings.find((d) => d.key === 'Schedule')!;
    const schedule = mine
      ? (parseSetting(
          { ...def, name: mine.name, schema: flowSettingSchema(def) },
          mine.name,
          mine.raw,
          problems,
        ) as string)
      : pick('SYNC_SCHEDULE');
    return { name, schedule };
  });
  const businessEvent = businessEventRegistration(
    [...names].filter((name) => flowTypeOf(own, name) === 'business-event'),
    own,
    env,
    problems,
  );
  // Only what registration reads must be valid now; the rest is reported on first use.
  const relevant = problems.filter((p) =>
    /^(TRANSPORT|SYNC_SCHEDULE|SYNC_RECORDS_QUEUE|SYNC_CONTROL_QUEUE|SYNC_JOBS_QUEUE|SYNC_VIEW_NAME|Flows__)/i.test(
      p,
    ),
  );
  if (relevant.length) throw new ConfigError(relevant);
  return {
    transport: pick('TRANSPORT'),
    recordsQueue: pick('SYNC_RECORDS_QUEUE'),
    controlQueue: pick('SYNC_CONTROL_QUEUE'),
    jobsQueue: pick('SYNC_JOBS_QUEUE'),
    flows,
    /** Business-event flows: the webhook route exists when there is one; a poll timer per polling flow. */
    businessEventFlows: businessEvent,
  };
}

export type RegistrationSettings = ReturnType<typeof registrationSettings>;

/**
 * True when the configuration reads a setting of this name: a shared setting, or
 * `Flows__<flow>__<Key>` with a known per-flow key (the settings-consistency check of the Bicep
 * app settings uses the same rule as loadConfig).
 */
export function isKnownSettingName(name: string): boolean {
  if (defs.some((d) => d.name === name)) return true;
  const m = FLOW_SETTING_PATTERN.exec(name);
  return (
    m !== null &&
    flowName.safeParse(m[1]).success &&
    flowSettings.some((d) => d.key.toLowerCase() === m[2]!.toLowerCase())
  );
}
