/**
 * The app settings: every one has a name, a type (its zod schema), a default where one is safe,
 * and a description. The same names appear in local.settings.sample.json, the README's
 * configuration table and the infra/ app settings; test/settings-consistency.test.ts checks
 * that they agree. Only src/lib/config/index.ts reads them from the environment.
 *
 * Shared settings are app-wide; several of them are also the defaults of the per-flow settings
 * (flow-settings.ts), so a single-view app keeps its flat settings and a multi-flow app sets
 * only what differs per flow.
 */
import { z } from 'zod';
import { cursorDirectorySchema, cursorFileNameSchema } from '../cursor/cursor-path';
import { ncrontabSchema } from '../ncrontab';
import { targetSettingDefinitions, targetSettingSchemas } from '../targets/target-settings';
import { externalSourceSettingDefinitions } from './external-source-settings';

export interface SettingDefinition {
  name: string;
  description: string;
  /** Default as written in the environment; undefined = required or optional without default. */
  default?: string;
  required?: boolean;
  secret?: boolean;
  schema: z.ZodType;
}

export const list = z
  .string()
  .transform((s) =>
    s
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.string()).min(1, 'must name at least one value'));

/** Flow names: safe in table keys, message ids, function names and record keys. */
export const flowName = z.string().regex(/^[A-Za-z0-9-]{1,40}$/, 'must be 1-40 letters, digits or hyphens');

export const tableName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9]{2,62}$/, 'must be 3-63 letters/digits, starting with a letter');
const queueName = z
  .string()
  .regex(
    /^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/,
    'must be 3-63 lower-case letters, digits or single hyphens',
  );
const containerName = queueName;
export const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });

export const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

export const settings = [
  // Flowfinity view (source)
  {
    name: 'FLOWFINITY_VIEW_URL',
    description:
      "The sync view's REST URL, copied from the view's Details page: the flow named SYNC_VIEW_NAME. Required unless flows are configured with `Flows__<name>__ViewUrl`.",
    schema: httpUrl,
  },
  {
    name: 'FLOWFINITY_ON_BEHALF_OF',
    description:
      'Account name passed as `onbehalfof` (Flowfinity checks its permissions); default of every view flow.',
    schema: z.string().min(1),
  },
  {
    name: 'FLOWFINITY_USERNAME',
    description: 'Integration user for HTTP Basic auth; default of every view flow.',
    schema: z.string().min(1),
  },
  {
    name: 'FLOWFINITY_PASSWORD',
    description: "Integration user's password (Key Vault reference in Azure); default of every view flow.",
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
    description:
      'Name of the flow that FLOWFINITY_VIEW_URL syncs: part of its record keys and state keys (more flows: `Flows__<name>__ViewUrl`).',
    default: 'default',
    schema: flowName,
  },
  {
    name: 'SYNC_SCHEDULE',
    description: 'NCRONTAB schedule of the sync timer.',
    default: '0 */5 * * * *',
    schema: ncrontabSchema,
  },
  {
    name: 'SYNC_MAX_BATCH',
    description: 'Most records planned in one batch; a full batch is followed at once by the next.',
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
    description:
      'Ids below the cursor re-read each run to catch late commits (0 = off); re-read records already applied are dropped before they reach the target.',
    default: '1000',
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
    name: 'SYNC_RETRY_BACKOFF_SECONDS',
    description:
      'Waits, in seconds, before a failing records message is handed back for redelivery: after delivery 1, 2, ... (the last value repeats). Service Bus redelivers at once, so without them a storage outage of a minute burns every delivery. Also the waits between the in-process retry rounds of the last delivery, and of the dead-letter handlers before they rethrow. Each at most 240 s (well inside functionTimeout).',
    default: '5,15,45,120',
    schema: list.pipe(
      z.array(
        z
          .string()
          .regex(/^\d+$/, 'each value must be a whole number of seconds')
          .transform(Number)
          .pipe(z.number().int().max(240, 'each wait must be at most 240 s (well inside functionTimeout)')),
      ),
    ),
  },
  {
    name: 'SYNC_PLAN_DEADLINE_SECONDS',
    description:
      "Longest a plan (timer tick or `poll` message) may read its source: when it passes, the view request is aborted, the planner lease released and the plan fails (the next tick retries). It bounds the view client's timeout × retries, well inside host.json functionTimeout (10 min). Set, it must be below SYNC_PLAN_LEASE_SECONDS; unset, it is at most 3/4 of that lease.",
    default: '420',
    schema: int(10, 3600),
  },
  {
    name: 'POISON_POLICY',
    description: '`quarantine`: store the poison record and go on; `block`: stop the view and alert.',
    default: 'quarantine',
    schema: z.enum(['quarantine', 'block']),
  },
  // Health
  {
    name: 'HEALTH_MAX_LAG_MINUTES',
    description:
      'A flow whose lag (time since it was last known caught up) exceeds this is `lagging` and /api/health answers 503; 0 turns the check off. Keep it well above the sync schedule.',
    default: '60',
    schema: int(0, 100_000),
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
    schema: cursorDirectorySchema,
  },
  {
    name: 'CURSOR_FILE_NAME',
    description: 'Cursor file name (plain-text number, as in the tutorial).',
    default: 'lastSubmissionId.txt',
    schema: cursorFileNameSchema,
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
    name: 'SYNC_JOBS_QUEUE',
    description:
      'Queue of webhook jobs (an accepted WISEflow sync request or F&O business event, processed by webhookJobs).',
    default: 'jobs',
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
    name: 'SERVICE_BUS_TIER',
    description:
      'The Service Bus namespace tier: `standard` (messages up to 256 KB) or `premium` (a send batch carries up to 1 MB): sets the largest record a queue message can carry.',
    default: 'standard',
    schema: z.enum(['standard', 'premium']),
  },
  {
    name: 'ServiceBusConnection__fullyQualifiedNamespace',
    description: 'Service Bus namespace host for managed-identity access.',
    schema: z.string().regex(/^[A-Za-z0-9.-]+$/, 'must be a host name such as myns.servicebus.windows.net'),
  },
  // Target
  // Target: each flow's own, these are the shared defaults (src/lib/targets/target-settings.ts).
  ...targetSettingDefinitions.map((d) => ({ ...d, schema: targetSettingSchemas[d.name] })),
  {
    name: 'TARGET_TABLE_NAME',
    description: 'Table the `table` target writes records to.',
    default: 'syncbridgerecords',
    schema: tableName,
  },
  // External-source flow (WISEflow) and the webhook intake: src/lib/config/external-source-settings.ts
  ...externalSourceSettingDefinitions,
] as const satisfies readonly SettingDefinition[];

export type SettingName = (typeof settings)[number]['name'];

/** The parsed value of each setting, inferred from its schema. */
export type SettingValues = {
  [S in (typeof settings)[number] as S['name']]: z.output<S['schema']>;
};
