/**
 * The one place that reads process.env. Every setting has a name, a type, a default where one
 * is safe, and a description. The same names appear in local.settings.sample.json, the
 * README's configuration table and infra/ app settings; test/settings-consistency.test.ts checks they agree.
 */
import { z } from 'zod';
import { ConfigError } from './errors';

export { ConfigError };

export interface SettingDefinition {
  name: string;
  description: string;
  /** Default as written in the environment; undefined = required or optional without default. */
  default?: string;
  required?: boolean;
  secret?: boolean;
  schema: z.ZodType;
}

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const list = z
  .string()
  .transform((s) =>
    s
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.string()).min(1, 'must name at least one value'));

const tableName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9]{2,62}$/, 'must be 3-63 letters/digits, starting with a letter');
const queueName = z
  .string()
  .regex(
    /^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/,
    'must be 3-63 lower-case letters, digits or single hyphens',
  );
const containerName = queueName;
const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });

/** NCRONTAB: six fields (seconds first), as the Functions timer trigger expects. */
const ncrontab = z
  .string()
  .trim()
  .refine((s) => s.split(/\s+/).length === 6, 'must be an NCRONTAB expression with 6 fields (seconds first)');

export const settings = [
  // Flowfinity view (source)
  {
    name: 'FLOWFINITY_VIEW_URL',
    description: "The sync view's REST URL, copied from the view's Details page.",
    required: true,
    schema: httpUrl,
  },
  {
    name: 'FLOWFINITY_ON_BEHALF_OF',
    description: 'Account name passed as `onbehalfof` (Flowfinity checks its permissions).',
    required: true,
    schema: z.string().min(1),
  },
  {
    name: 'FLOWFINITY_USERNAME',
    description: 'Integration user for HTTP Basic auth.',
    required: true,
    schema: z.string().min(1),
  },
  {
    name: 'FLOWFINITY_PASSWORD',
    description: "Integration user's password (Key Vault reference in Azure).",
    required: true,
    secret: true,
    schema: z.string().min(1),
  },
  {
    name: 'FLOWFINITY_TIMEOUT_MS',
    description: 'Timeout of one view request (headers and body), in milliseconds.',
    default: '120000',
    schema: int(1000, 600_000),
  },
  {
    name: 'FLOWFINITY_MAX_RETRIES',
    description: 'Retries of a view request on network errors, timeouts, 5xx and 429.',
    default: '4',
    schema: int(0, 10),
  },
  // View sync
  {
    name: 'SYNC_VIEW_NAME',
    description: 'Short name of the synced view: part of every record key and state key.',
    default: 'default',
    schema: z.string().regex(/^[A-Za-z0-9-]{1,40}$/, 'must be 1-40 letters, digits or hyphens'),
  },
  {
    name: 'SYNC_SCHEDULE',
    description: 'NCRONTAB schedule of the sync timer.',
    default: '0 */5 * * * *',
    schema: ncrontab,
  },
  {
    name: 'SYNC_MAX_BATCH',
    description: 'Most records planned in one batch; a full batch re-polls at once.',
    default: '5000',
    schema: int(1, 100_000),
  },
  {
    name: 'SYNC_RECORDS_PER_MESSAGE',
    description: 'Records carried by one queue message (also capped at ~48 KB per message).',
    default: '20',
    schema: int(1, 500),
  },
  {
    name: 'SYNC_LOOKBACK',
    description: 'Ids below the cursor to re-read each run, to catch late commits (0 = off).',
    default: '0',
    schema: int(0, 1_000_000),
  },
  {
    name: 'SYNC_STATE_FIELD',
    description: "Record field that carries the record's state name.",
    default: 'State',
    schema: z.string().min(1),
  },
  {
    name: 'SYNC_DELETED_STATES',
    description: 'Comma-separated state names applied as deletions (tombstones).',
    default: 'Deleted',
    schema: list,
  },
  {
    name: 'SYNC_MAX_ATTEMPTS',
    description: 'Deliveries before a failing message is poison; keep equal to host.json maxDequeueCount.',
    default: '5',
    schema: int(1, 100),
  },
  {
    name: 'SYNC_PLAN_LEASE_SECONDS',
    description: 'How long a planner holds the single-flight lease before another may take over.',
    default: '600',
    schema: int(15, 3600),
  },
  {
    name: 'SYNC_STALL_SECONDS',
    description:
      'A batch in flight that makes no progress this long is abandoned and re-planned (a message lost outside the pipeline).',
    default: '1800',
    schema: int(60, 86_400),
  },
  {
    name: 'POISON_POLICY',
    description: '`quarantine`: store the poison record and go on; `block`: stop the view and alert.',
    default: 'quarantine',
    schema: z.enum(['quarantine', 'block']),
  },
  // State storage
  {
    name: 'AzureWebJobsStorage',
    description:
      'Storage connection string (tables, queues, blob cursor); or set AzureWebJobsStorage__accountName.',
    secret: true,
    schema: z.string().min(1),
  },
  {
    name: 'AzureWebJobsStorage__accountName',
    description: 'Storage account name for managed-identity access (instead of a connection string).',
    schema: z.string().regex(/^[a-z0-9]{3,24}$/, 'must be a storage account name'),
  },
  {
    name: 'SYNC_TABLE_PREFIX',
    description: 'Prefix of the state tables (`<prefix>state`, `<prefix>quarantine`).',
    default: 'syncbridge',
    schema: tableName,
  },
  // Cursor
  {
    name: 'CURSOR_STORE',
    description: 'Where the cursor file lives: `fileshare` (Azure Files) or `blob`.',
    default: 'fileshare',
    schema: z.enum(['fileshare', 'blob']),
  },
  {
    name: 'CURSOR_SHARE_NAME',
    description: 'File share (fileshare) or blob container (blob) holding the cursor file.',
    default: 'syncbridge',
    schema: containerName,
  },
  {
    name: 'CURSOR_DIRECTORY',
    description: 'Directory inside the share/container; empty = root.',
    default: '',
    schema: z.string().regex(/^[A-Za-z0-9_\-./]*$/, 'must be a relative path'),
  },
  {
    name: 'CURSOR_FILE_NAME',
    description: 'Cursor file name (plain-text number, as in the tutorial).',
    default: 'lastSubmissionId.txt',
    schema: z.string().regex(/^[A-Za-z0-9_\-.]{1,255}$/, 'must be a file name'),
  },
  {
    name: 'CURSOR_STORAGE_CONNECTION',
    description: 'Connection string for the cursor file, when not the AzureWebJobsStorage account.',
    secret: true,
    schema: z.string().min(1),
  },
  // Transport
  {
    name: 'TRANSPORT',
    description: 'Queue transport: `servicebus` or `storagequeue`.',
    default: 'servicebus',
    schema: z.enum(['servicebus', 'storagequeue']),
  },
  {
    name: 'SYNC_RECORDS_QUEUE',
    description: 'Queue of record messages.',
    default: 'sync-records',
    schema: queueName,
  },
  {
    name: 'SYNC_CONTROL_QUEUE',
    description: 'Queue of control messages (batch-drained, poll).',
    default: 'sync-control',
    schema: queueName,
  },
  {
    name: 'ServiceBusConnection',
    description:
      'Service Bus connection string (TRANSPORT=servicebus); or set ServiceBusConnection__fullyQualifiedNamespace.',
    secret: true,
    schema: z.string().min(1),
  },
  {
    name: 'ServiceBusConnection__fullyQualifiedNamespace',
    description: 'Service Bus namespace host for managed-identity access.',
    schema: z.string().regex(/^[A-Za-z0-9.-]+$/, 'must be a host name such as myns.servicebus.windows.net'),
  },
  // Target
  {
    name: 'TARGET',
    description: 'Target system adapter: `table` (Azure Table storage).',
    default: 'table',
    schema: z.enum(['table']),
  },
  {
    name: 'TARGET_TABLE_NAME',
    description: 'Table the `table` target writes records to.',
    default: 'syncbridgerecords',
    schema: tableName,
  },
] as const satisfies readonly SettingDefinition[];

export type SettingName = (typeof settings)[number]['name'];

export type StorageAccess =
  { kind: 'connectionString'; connectionString: string } | { kind: 'identity'; accountName: string };
export type ServiceBusAccess =
  | { kind: 'connectionString'; connectionString: string }
  | { kind: 'identity'; fullyQualifiedNamespace: string };

export interface Config {
  flowfinity: {
    viewUrl: string;
    onBehalfOf: string;
    username: string;
    password: string;
    timeoutMs: number;
    maxRetries: number;
  };
  sync: {
    viewName: string;
    schedule: string;
    maxBatch: number;
    recordsPerMessage: number;
    lookback: number;
    stateField: string;
    deletedStates: string[];
    maxAttempts: number;
    planLeaseSeconds: number;
    stallSeconds: number;
    poisonPolicy: 'quarantine' | 'block';
  };
  storage: StorageAccess;
  tablePrefix: string;
  cursor: {
    store: 'fileshare' | 'blob';
    shareName: string;
    directory: string;
    fileName: string;
    /** Connection string for the cursor's account; falls back to `storage`. */
    connectionString?: string;
  };
  transport: {
    kind: 'servicebus' | 'storagequeue';
    recordsQueue: string;
    controlQueue: string;
    serviceBus?: ServiceBusAccess;
  };
  target: { kind: 'table'; tableName: string };
}

type Env = Record<string, string | undefined>;

/** Reads and validates every setting; throws ConfigError with one line per problem. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const values = new Map<string, unknown>();
  for (const s of settings as readonly SettingDefinition[]) {
    const raw = env[s.name];
    const present = raw !== undefined && raw !== '';
    if (!present && s.default === undefined) {
      if (s.required) problems.push(`${s.name} is missing: ${s.description}`);
      continue;
    }
    const input = present ? raw : s.default;
    const parsed = s.schema.safeParse(input);
    if (parsed.success) values.set(s.name, parsed.data);
    else {
      const why = parsed.error.issues.map((i) => i.message).join('; ');
      // Never echo a secret's value back.
      const shown = s.secret ? '' : ` (got ${JSON.stringify(input)})`;
      problems.push(`${s.name} is invalid${shown}: ${why}`);
    }
  }
  const v = <T>(name: SettingName) => values.get(name) as T;

  let storage: StorageAccess | undefined;
  if (v<string>('AzureWebJobsStorage'))
    storage = { kind: 'connectionString', connectionString: v('AzureWebJobsStorage') };
  else if (v<string>('AzureWebJobsStorage__accountName'))
    storage = { kind: 'identity', accountName: v('AzureWebJobsStorage__accountName') };
  else if (!problems.some((p) => p.startsWith('AzureWebJobsStorage')))
    problems.push(
      'AzureWebJobsStorage is missing: set a storage connection string, or AzureWebJobsStorage__accountName for managed identity',
    );

  let serviceBus: ServiceBusAccess | undefined;
  if (v<string>('ServiceBusConnection'))
    serviceBus = { kind: 'connectionString', connectionString: v('ServiceBusConnection') };
  else if (v<string>('ServiceBusConnection__fullyQualifiedNamespace'))
    serviceBus = {
      kind: 'identity',
      fullyQualifiedNamespace: v('ServiceBusConnection__fullyQualifiedNamespace'),
    };
  if (
    v('TRANSPORT') === 'servicebus' &&
    !serviceBus &&
    !problems.some((p) => p.startsWith('ServiceBusConnection'))
  )
    problems.push(
      'ServiceBusConnection is missing: TRANSPORT=servicebus needs a Service Bus connection string, or ServiceBusConnection__fullyQualifiedNamespace for managed identity (or set TRANSPORT=storagequeue)',
    );

  if (v<string>('SYNC_RECORDS_QUEUE') && v('SYNC_RECORDS_QUEUE') === v('SYNC_CONTROL_QUEUE'))
    problems.push('SYNC_CONTROL_QUEUE must differ from SYNC_RECORDS_QUEUE');

  if (problems.length > 0 || !storage) throw new ConfigError(problems);

  return {
    flowfinity: {
      viewUrl: v('FLOWFINITY_VIEW_URL'),
      onBehalfOf: v('FLOWFINITY_ON_BEHALF_OF'),
      username: v('FLOWFINITY_USERNAME'),
      password: v('FLOWFINITY_PASSWORD'),
      timeoutMs: v('FLOWFINITY_TIMEOUT_MS'),
      maxRetries: v('FLOWFINITY_MAX_RETRIES'),
    },
    sync: {
      viewName: v('SYNC_VIEW_NAME'),
      schedule: v('SYNC_SCHEDULE'),
      maxBatch: v('SYNC_MAX_BATCH'),
      recordsPerMessage: v('SYNC_RECORDS_PER_MESSAGE'),
      lookback: v('SYNC_LOOKBACK'),
      stateField: v('SYNC_STATE_FIELD'),
      deletedStates: v('SYNC_DELETED_STATES'),
      maxAttempts: v('SYNC_MAX_ATTEMPTS'),
      planLeaseSeconds: v('SYNC_PLAN_LEASE_SECONDS'),
      stallSeconds: v('SYNC_STALL_SECONDS'),
      poisonPolicy: v('POISON_POLICY'),
    },
    storage,
    tablePrefix: v('SYNC_TABLE_PREFIX'),
    cursor: {
      store: v('CURSOR_STORE'),
      shareName: v('CURSOR_SHARE_NAME'),
      directory: v('CURSOR_DIRECTORY'),
      fileName: v('CURSOR_FILE_NAME'),
      connectionString: v<string | undefined>('CURSOR_STORAGE_CONNECTION'),
    },
    transport: {
      kind: v('TRANSPORT'),
      recordsQueue: v('SYNC_RECORDS_QUEUE'),
      controlQueue: v('SYNC_CONTROL_QUEUE'),
      serviceBus,
    },
    target: { kind: v('TARGET'), tableName: v('TARGET_TABLE_NAME') },
  };
}

/**
 * The settings function registration needs at load time (before the full configuration is
 * validated on first use): the transport, queue names and timer schedule, defaults applied.
 * Bindings get literal values rather than `%NAME%` placeholders, because the Functions host
 * cannot resolve a placeholder whose app setting is unset, and these settings have defaults.
 */
export interface RegistrationSettings {
  transport: 'servicebus' | 'storagequeue';
  schedule: string;
  recordsQueue: string;
  controlQueue: string;
}

export function registrationSettings(env: Env = process.env): RegistrationSettings {
  const problems: string[] = [];
  const read = (name: SettingName): string => {
    const def = (settings as readonly SettingDefinition[]).find((s) => s.name === name)!;
    const raw = env[name] || def.default;
    const parsed = def.schema.safeParse(raw);
    if (parsed.success) return parsed.data as string;
    problems.push(
      `${name} is invalid (got ${JSON.stringify(raw)}): ${parsed.error.issues.map((i) => i.message).join('; ')}`,
    );
    return '';
  };
  const out = {
    transport: read('TRANSPORT') as RegistrationSettings['transport'],
    schedule: read('SYNC_SCHEDULE'),
    recordsQueue: read('SYNC_RECORDS_QUEUE'),
    controlQueue: read('SYNC_CONTROL_QUEUE'),
  };
  if (problems.length) throw new ConfigError(problems);
  return out;
}
