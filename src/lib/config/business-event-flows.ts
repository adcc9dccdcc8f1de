/**
 * Business-event flows (`Flows__<name>__Type=business-event`): Dynamics 365 F&O data exports
 * announced by a business event (POST /api/webhooks/business-event) or dequeued by a timer from a
 * recurring-integration activity (polling mode).
 *
 * Every key below is `Flows__<flow>__<Key>`; the F&O keys fall back to the flat FNO_* settings of
 * src/lib/finops/settings.ts (so a one-flow app may keep the flat names), and the batch and target
 * keys are the ones view-sync flows use (MaxBatch, RecordsPerMessage, PoisonPolicy,
 * TargetTableName, Target...). The FNO_* validation is reused as is: its problems are reported
 * under the per-flow name the user actually set.
 *
 * This module only reads what index.ts hands it (the grouped `Flows__*` settings and the shared
 * values); it never reads process.env.
 */
import { z } from 'zod';
import { readFinopsSettings, type FinopsSettings } from '../finops/settings';
import { ncrontabProblem, ncrontabSchema } from '../ncrontab';
import type { TargetSettings } from '../targets/target-settings';
import type { FlowSettingDefinition } from './flow-settings';

/** Per-flow key → the flat FNO_* setting it falls back to. */
const FNO_FALLBACK = {
  EventIds: 'FNO_ALLOWED_EVENT_IDS',
  Entities: 'FNO_ALLOWED_ENTITIES',
  EntityKeys: 'FNO_ENTITY_KEYS',
  DownloadAllowedHosts: 'FNO_DOWNLOAD_ALLOWED_HOSTS',
  DownloadAllowedPrivateCidrs: 'FNO_DOWNLOAD_ALLOWED_PRIVATE_CIDRS',
  DownloadMaxBytes: 'FNO_DOWNLOAD_MAX_BYTES',
  DownloadTimeoutMs: 'FNO_DOWNLOAD_TIMEOUT_MS',
  DownloadMaxRedirects: 'FNO_DOWNLOAD_MAX_REDIRECTS',
  PackageMaxEntries: 'FNO_PACKAGE_MAX_ENTRIES',
  PackageMaxUncompressedBytes: 'FNO_PACKAGE_MAX_UNCOMPRESSED_BYTES',
  PackageMaxRatio: 'FNO_PACKAGE_MAX_RATIO',
  PackageTempDir: 'FNO_PACKAGE_TEMP_DIR',
  FnoBaseUrl: 'FNO_BASE_URL',
  FnoScope: 'FNO_SCOPE',
  FnoTenantId: 'FNO_TENANT_ID',
  FnoClientId: 'FNO_CLIENT_ID',
  FnoClientSecret: 'FNO_CLIENT_SECRET',
  PollActivityId: 'FNO_ACTIVITY_ID',
} as const;

type FnoKey = keyof typeof FNO_FALLBACK;

const also = (key: FnoKey) => ` Falls back to ${FNO_FALLBACK[key]}.`;

/** The keys of business-event flows, for flow-settings.ts (and so the config table). */
export const businessEventFlowSettings = [
  {
    key: 'EventIds',
    description: `business-event flows: BusinessEventIds processed, separated by ";" ("*", the default: any event that carries a DownloadURL). Other events answer 202 and are ignored, logged and counted.${also('EventIds')}`,
    schema: z.string(),
  },
  {
    key: 'Entities',
    description: `business-event flows: EntityNames processed, separated by ";" ("*": any). Default: the entities of EntityKeys.${also('Entities')}`,
    schema: z.string(),
  },
  {
    key: 'EntityKeys',
    description: `business-event flows: key fields per entity, "Customer groups=CustomerGroupId; Sales order lines V2=dataAreaId,SalesOrderNumber,LineCreationSequenceNumber" (or a JSON object). A row's record is keyed by its entity and these fields.${also('EntityKeys')}`,
    schema: z.string(),
  },
  {
    key: 'DownloadAllowedHosts',
    description: `business-event flows: hosts a DownloadURL may point to, separated by ";" ("*.suffix" allowed). Default *.blob.core.windows.net.${also('DownloadAllowedHosts')}`,
    schema: z.string(),
  },
  {
    key: 'DownloadAllowedPrivateCidrs',
    description: `business-event flows: private ranges a download may reach (storage behind a private endpoint), separated by ";". Loopback and link-local never.${also('DownloadAllowedPrivateCidrs')}`,
    schema: z.string(),
  },
  {
    key: 'DownloadMaxBytes',
    description: `business-event flows: largest download accepted, in bytes (default 536870912).${also('DownloadMaxBytes')}`,
    schema: z.string(),
  },
  {
    key: 'DownloadTimeoutMs',
    description: `business-event flows: longest wait for a response and longest pause inside a body, in ms (default 30000), for downloads and F&O API calls.${also('DownloadTimeoutMs')}`,
    schema: z.string(),
  },
  {
    key: 'DownloadMaxRedirects',
    description: `business-event flows: same-host redirects followed (default 3; another host is always refused).${also('DownloadMaxRedirects')}`,
    schema: z.string(),
  },
  {
    key: 'PackageMaxEntries',
    description: `business-event flows: most entries in a data package (default 200).${also('PackageMaxEntries')}`,
    schema: z.string(),
  },
  {
    key: 'PackageMaxUncompressedBytes',
    description: `business-event flows: largest total uncompressed size of a data package (default 2147483648).${also('PackageMaxUncompressedBytes')}`,
    schema: z.string(),
  },
  {
    key: 'PackageMaxRatio',
    description: `business-event flows: largest compression ratio of one package entry above 1 MiB (default 200).${also('PackageMaxRatio')}`,
    schema: z.string(),
  },
  {
    key: 'PackageTempDir',
    description: `business-event flows: where a package is spooled while validated (default: the OS temp folder).${also('PackageTempDir')}`,
    schema: z.string(),
  },
  {
    key: 'FnoBaseUrl',
    description: `business-event flows: the F&O environment, https://<env>.operations.dynamics.com. Enables fresh URLs for expired downloads (package API) and polling.${also('FnoBaseUrl')}`,
    schema: z.string(),
  },
  {
    key: 'FnoScope',
    description: `business-event flows: Entra token scope for F&O (default <FnoBaseUrl origin>/.default).${also('FnoScope')}`,
    schema: z.string(),
  },
  {
    key: 'FnoTenantId',
    description: `business-event flows: Entra tenant of the app registration (client-secret auth).${also('FnoTenantId')}`,
    schema: z.string(),
  },
  {
    key: 'FnoClientId',
    description: `business-event flows: app registration (or user-assigned identity) client id registered in F&O.${also('FnoClientId')}`,
    schema: z.string(),
  },
  {
    key: 'FnoClientSecret',
    description: `business-event flows: client secret (a Key Vault reference); without it the managed identity is used.${also('FnoClientSecret')}`,
    schema: z.string(),
    secret: true,
  },
  {
    key: 'PollActivityId',
    description: `business-event flows, polling mode: the recurring data job's activity id (GUID). Needs FnoBaseUrl.${also('PollActivityId')}`,
    schema: z.string(),
  },
  {
    key: 'PollEnabled',
    description:
      'business-event flows: `true` to poll the recurring-integration dequeue API on PollSchedule (default: true when PollActivityId is set).',
    schema: z.enum(['true', 'false']),
  },
  {
    key: 'PollSchedule',
    description:
      'business-event flows, polling mode: NCRONTAB schedule of the dequeue timer (default every minute).',
    schema: ncrontabSchema,
  },
  {
    key: 'PollEntity',
    description:
      'business-event flows, polling mode: the entity of a dequeued plain file (a package names its own). Default: the only entity of EntityKeys.',
    schema: z.string(),
  },
] as const satisfies readonly FlowSettingDefinition[];

export const DEFAULT_POLL_SCHEDULE = '0 * * * * *';

export interface BusinessEventFlowConfig {
  name: string;
  type: 'business-event';
  finops: FinopsSettings;
  polling?: {
    activityId: string;
    schedule: string;
    /** Entity of a plain dequeued file. */
    entity?: string;
  };
  batch: {
    maxBatch: number;
    recordsPerMessage: number;
    maxAttempts: number;
    planLeaseSeconds: number;
    stallSeconds: number;
    retryBackoffMs: number[];
    planDeadlineSeconds: number;
    poisonPolicy: 'quarantine' | 'block';
  };
  target: TargetSettings & { tableName: string };
}

type OwnSettings = Map<string, { name: string; raw: string }>;
type Env = Record<string, string | undefined>;

export interface BusinessEventReadContext {
  env: Env;
  /** A shared per-flow key's value (MaxBatch, RecordsPerMessage, PoisonPolicy, TargetTableName), parsed. */
  flowValue(key: 'MaxBatch' | 'RecordsPerMessage' | 'PoisonPolicy' | 'TargetTableName'): unknown;
  /** The shared batch settings every flow takes. */
  shared: {
    maxAttempts: number;
    planLeaseSeconds: number;
    stallSeconds: number;
    retryBackoffMs: number[];
    planDeadlineSeconds: number;
  };
  target: TargetSettings;
}

const present = (v: string | undefined): v is string => v !== undefined && v.trim() !== '';

/** Reads one business-event flow. Problems are pushed (one line each), naming the setting. */
export function readBusinessEventFlow(
  name: string,
  own: OwnSettings,
  ctx: BusinessEventReadContext,
  problems: string[],
): BusinessEventFlowConfig | undefined {
  const raw = (key: string) => own.get(key)?.raw;
  // The FNO_* view of this flow: its own keys first, the flat settings after.
  const fnoEnv: Env = {};
  const setBy = new Map<string, string>();
  for (const [key, fno] of Object.entries(FNO_FALLBACK)) {
    const mine = own.get(key);
    if (mine) setBy.set(fno, mine.name);
    fnoEnv[fno] = mine?.raw ?? ctx.env[fno];
  }
  // Name the setting as the user would set it: the per-flow key (or the flat FNO_* one).
  const keyOf = new Map(Object.entries(FNO_FALLBACK).map(([k, fno]) => [fno as string, k]));
  const rename = (p: string) =>
    p.replace(/\bFNO_[A-Z_]+\b/g, (fno) => {
      const key = keyOf.get(fno);
      if (!key) return fno;
      return setBy.get(fno) ?? `Flows__${name}__${key} (or ${fno})`;
    });
  let finops: FinopsSettings | undefined;
  try {
    finops = readFinopsSettings(fnoEnv);
  } catch (e) {
    const lines = (e as { problems?: string[] }).problems;
    if (!Array.isArray(lines)) throw e;
    problems.push(...lines.map((p) => `flow ${name}: ${rename(p)}`));
  }

  const enabledRaw = raw('PollEnabled');
  const pollEnabled = enabledRaw !== undefined ? enabledRaw.trim().toLowerCase() === 'true' : undefined;
  let polling: BusinessEventFlowConfig['polling'];
  const activityId = finops?.activityId;
  if (pollEnabled === true && !present(fnoEnv.FNO_ACTIVITY_ID))
    problems.push(
      `Flows__${name}__PollEnabled is true but no activity id is set: set Flows__${name}__PollActivityId (the recurring data job's activity id)`,
    );
  if (finops && activityId && pollEnabled !== false) {
    const entities = finops.entityKeys.entities();
    const entity = raw('PollEntity')?.trim() || (entities.length === 1 ? entities[0] : undefined);
    if (entity !== undefined && !finops.entityKeys.get(entity))
      problems.push(`Flows__${name}__PollEntity names ${entity}, which has no key fields in EntityKeys`);
    polling = {
      activityId,
      schedule: raw('PollSchedule')?.trim() || DEFAULT_POLL_SCHEDULE,
      entity,
    };
  }
  if (!present(fnoEnv.FNO_ENTITY_KEYS))
    problems.push(
      `Flows__${name}__EntityKeys is missing: a business-event flow needs the key fields of each entity it applies (e.g. "Customer groups=CustomerGroupId"), or set FNO_ENTITY_KEYS`,
    );
  if (!finops) return undefined;
  return {
    name,
    type: 'business-event',
    finops,
    polling,
    batch: {
      maxBatch: ctx.flowValue('MaxBatch') as number,
      recordsPerMessage: ctx.flowValue('RecordsPerMessage') as number,
      ...ctx.shared,
      poisonPolicy: ctx.flowValue('PoisonPolicy') as 'quarantine' | 'block',
    },
    target: { ...ctx.target, tableName: ctx.flowValue('TargetTableName') as string },
  };
}

/** What function registration needs of business-event flows: names and polling timers. */
export function businessEventRegistration(
  names: readonly string[],
  own: Map<string, OwnSettings>,
  env: Env,
  problems: string[] = [],
): { name: string; pollSchedule?: string }[] {
  return names.map((name) => {
    const mine = own.get(name) ?? new Map<string, { name: string; raw: string }>();
    const activity = mine.get('PollActivityId')?.raw ?? env.FNO_ACTIVITY_ID;
    const enabled = mine.get('PollEnabled')?.raw.trim().toLowerCase();
    const schedule = mine.get('PollSchedule')?.raw.trim() || DEFAULT_POLL_SCHEDULE;
    const polls = enabled === 'true' || (enabled !== 'false' && present(activity));
    const bad = polls ? ncrontabProblem(schedule) : undefined;
    if (bad)
      problems.push(`Flows__${name}__PollSchedule is invalid (got ${JSON.stringify(schedule)}): ${bad}`);
    return polls ? { name, pollSchedule: schedule } : { name };
  });
}
