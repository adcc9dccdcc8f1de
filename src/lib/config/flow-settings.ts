/**
 * Per-flow settings, as flat app settings in the Functions convention for hierarchical
 * configuration: `Flows__<flow>__<Key>` (Key Vault references work for the secret ones, like for
 * any app setting). A flow exists when any of its settings is set; the flow named SYNC_VIEW_NAME
 * also exists when FLOWFINITY_VIEW_URL is set, which is how a single-view app's flat settings
 * keep working unchanged.
 *
 * Every key falls back to a shared setting (its `shared`), so a multi-flow app sets only what
 * differs per flow: `Flows__inspections__ViewUrl` alone adds a second view with the shared
 * credentials, schedule and target.
 */
import { z } from 'zod';
import { cursorDirectorySchema, cursorFileNameSchema } from '../cursor/cursor-path';
import { targetSettingDefinitions } from '../targets/target-settings';
import { businessEventFlowSettings } from './business-event-flows';
import { settings, type SettingName } from './settings';

export interface FlowSettingDefinition {
  key: string;
  description: string;
  /** The shared setting this key falls back to (its schema applies too). */
  shared?: SettingName;
  /** Schema when there is no shared setting. */
  schema?: z.ZodType;
  secret?: boolean;
}

/** `TARGET_HTTP_URL` → `TargetHttpUrl`. */
function targetKey(name: string): string {
  return name
    .toLowerCase()
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}

const sharedSchema = (name: SettingName): z.ZodType => settings.find((s) => s.name === name)!.schema;

export const flowSettings = [
  {
    key: 'Type',
    description:
      'What the flow is: `view-sync` (a Flowfinity view read from a cursor), `business-event` (Dynamics 365 F&O data exports, by business event or polling) or `external-source` (WISEflow sync requests → participant allocations; settings WISEFLOW_*).',
    schema: z.enum(['view-sync', 'business-event', 'external-source']),
  },
  {
    key: 'ViewUrl',
    description: "The view's REST URL (the flow named SYNC_VIEW_NAME falls back to FLOWFINITY_VIEW_URL).",
    shared: 'FLOWFINITY_VIEW_URL',
  },
  { key: 'OnBehalfOf', description: 'Account passed as `onbehalfof`.', shared: 'FLOWFINITY_ON_BEHALF_OF' },
  { key: 'Username', description: 'Integration user for HTTP Basic auth.', shared: 'FLOWFINITY_USERNAME' },
  {
    key: 'Password',
    description: "The integration user's password.",
    shared: 'FLOWFINITY_PASSWORD',
    secret: true,
  },
  { key: 'TimeoutMs', description: 'Timeout of one view request.', shared: 'FLOWFINITY_TIMEOUT_MS' },
  { key: 'MaxRetries', description: 'Retries of a view request.', shared: 'FLOWFINITY_MAX_RETRIES' },
  { key: 'Schedule', description: 'NCRONTAB schedule of the flow’s timer.', shared: 'SYNC_SCHEDULE' },
  { key: 'MaxBatch', description: 'Most records planned in one batch.', shared: 'SYNC_MAX_BATCH' },
  { key: 'RecordsPerMessage', description: 'Records per queue message.', shared: 'SYNC_RECORDS_PER_MESSAGE' },
  { key: 'Lookback', description: 'Ids below the cursor re-read each run.', shared: 'SYNC_LOOKBACK' },
  { key: 'StateField', description: "Field carrying the record's state.", shared: 'SYNC_STATE_FIELD' },
  { key: 'DeletedStates', description: 'State names applied as deletions.', shared: 'SYNC_DELETED_STATES' },
  { key: 'PoisonPolicy', description: '`quarantine` or `block`.', shared: 'POISON_POLICY' },
  {
    key: 'CursorFile',
    description:
      'Path of the cursor file in the share/container. Default: CURSOR_DIRECTORY/CURSOR_FILE_NAME for the flow named SYNC_VIEW_NAME, CURSOR_DIRECTORY/<flow>/CURSOR_FILE_NAME for the others.',
    schema: z.string().superRefine((path, ctx) => {
      const slash = path.lastIndexOf('/');
      for (const [schema, part] of [
        [cursorDirectorySchema, slash < 0 ? '' : path.slice(0, slash)],
        [cursorFileNameSchema, path.slice(slash + 1)],
      ] as const) {
        const r = schema.safeParse(part);
        if (!r.success)
          for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', message: issue.message });
      }
    }),
  },
  { key: 'TargetTableName', description: 'Table the `table` target writes to.', shared: 'TARGET_TABLE_NAME' },
  // TARGET_HTTP_URL → TargetHttpUrl, ...: every target setting, per flow.
  ...targetSettingDefinitions.map((d) => ({
    key: targetKey(d.name),
    description: d.description,
    shared: d.name,
    ...('secret' in d ? { secret: d.secret } : {}),
  })),
  // Dynamics 365 F&O data exports (Type=business-event): src/lib/config/business-event-flows.ts.
  ...businessEventFlowSettings,
] as const satisfies readonly FlowSettingDefinition[];

export type FlowSettingKey = (typeof flowSettings)[number]['key'];

/** The keys a `Flows__<flow>__<Key>` setting may have (the settings-consistency check uses them). */
export const flowSettingKeys: readonly string[] = flowSettings.map((d) => d.key);

export const flowSettingSchema = (d: FlowSettingDefinition): z.ZodType =>
  d.schema ?? (d.shared ? sharedSchema(d.shared) : z.string());

/** `Flows__<flow>__<Key>`: matched case-insensitively on the prefix and key, as users type them. */
export const FLOW_SETTING_PATTERN = /^flows__(.+?)__([A-Za-z0-9]+)$/i;

export const flowSettingName = (flow: string, key: string) => `Flows__${flow}__${key}`;
