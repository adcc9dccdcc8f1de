/**
 * The external-source flow's configuration (`Flows__<name>__Type=external-source`): WISEflow's
 * FLOW_EXTERNAL_SOURCE webhook → participant allocations → sync/done | sync/fail.
 *
 * One such flow per app. It serves EVERY WISEflow flow of the tenant: each webhook names the
 * WISEflow flow id it is about, so there is nothing to configure per WISEflow flow, and the one
 * route `/api/webhooks/external-source` maps to the one flow. Its settings are the shared
 * WISEFLOW_* and WEBHOOK_* settings (external-source-settings.ts); the roster view may be set
 * per flow (`Flows__<name>__ViewUrl`, credentials `Flows__<name>__Username`, ...) and otherwise
 * comes from WISEFLOW_ROSTER_VIEW_URL with the FLOWFINITY_* credentials.
 *
 * index.ts finds the flows and hands their raw settings here (this module never reads the
 * environment), so problems are reported once, in loadConfig's one list.
 */
import type { WiseflowAuth } from '../wiseflow/client';
import { signatureSchemeFromSettings, type WebhookSettings } from '../webhooks/settings';
import type { HmacSignatureScheme } from '../webhooks/signature';
import {
  flowSettings,
  flowSettingName,
  flowSettingSchema,
  type FlowSettingDefinition,
} from './flow-settings';
import type { SettingDefinition } from './settings';

/** The webhook route of this flow (part of store keys, message ids and the URL). */
export const EXTERNAL_SOURCE_ROUTE = 'external-source';
/** The job kind its accepted webhooks get: which handler the jobs worker runs. */
export const EXTERNAL_SOURCE_JOB_KIND = 'wiseflow-external-source';

export interface ExternalSourceFlowConfig {
  name: string;
  type: 'external-source';
  wiseflow: {
    baseUrl: string;
    auth: WiseflowAuth;
    timeoutMs: number;
    maxRetries: number;
    maxWaitMs: number;
    rateLimits: { perSecond: number; perMinute: number };
  };
  webhook: {
    route: typeof EXTERNAL_SOURCE_ROUTE;
    jobKind: typeof EXTERNAL_SOURCE_JOB_KIND;
    /** Current secret first, then the previous one during a rotation. */
    secrets: string[];
    signature: HmacSignatureScheme;
    requireEventName: boolean;
    callIdHeader: string;
    /** Title of the registration in WISEflow (register-webhooks finds its own by it). */
    title: string;
    maxBodyBytes: number;
    maxDepth: number;
  };
  roster: {
    viewUrl: string;
    onBehalfOf: string;
    username: string;
    password: string;
    timeoutMs: number;
    maxRetries: number;
    referenceParam: string;
    participantField: string;
    idKind: 'participantId' | 'userId';
    excludeStates: string[];
    stateField: string;
  };
  routine: {
    verify: 'known' | 'memory' | 'flow';
    discoverOnFirstSync: boolean;
    sourceDescription: string;
  };
}

export type RawFlowSettings = Map<string, { name: string; raw: string }>;

export interface ExternalSourceReaderInput {
  /** The flows whose Type is external-source, with their own `Flows__<name>__<Key>` settings. */
  flows: { name: string; own: RawFlowSettings }[];
  /** A shared setting's parsed value (defaults applied); undefined when unset or invalid. */
  get(name: string): unknown;
  /** Shared settings that were invalid (already reported). */
  failed: ReadonlySet<string>;
  /** Parses one raw value with a definition, reporting a problem (never a secret's value). */
  parse(def: SettingDefinition, name: string, raw: string): unknown;
  problems: string[];
  /**
   * `register`: only what `register-webhooks` needs (WISEflow API, webhook secret and title); the
   * roster settings may be missing (they are then empty). Default `run`: everything.
   */
  purpose?: 'run' | 'register';
}

export function readExternalSourceFlows(i: ExternalSourceReaderInput): ExternalSourceFlowConfig[] {
  if (i.flows.length > 1)
    i.problems.push(
      `flows ${i.flows.map((f) => f.name).join(', ')} are all Type=external-source: an app has at most one (it serves every WISEflow flow; each webhook names its WISEflow flow id)`,
    );
  const out: ExternalSourceFlowConfig[] = [];
  for (const f of i.flows.slice(0, 1)) {
    const before = i.problems.length;
    const config = readOne(f.name, f.own, i);
    if (i.problems.length === before && config) out.push(config);
  }
  return out;
}

function readOne(
  name: string,
  own: RawFlowSettings,
  i: ExternalSourceReaderInput,
): ExternalSourceFlowConfig | undefined {
  const { problems } = i;
  const missing = (setting: string, why: string) => {
    if (!i.failed.has(setting))
      problems.push(`${setting} is missing: ${why} (flow ${name} is Type=external-source)`);
  };
  const shared = <T>(setting: string, why?: string): T | undefined => {
    const v = i.get(setting) as T | undefined;
    if (v === undefined && why) missing(setting, why);
    return v;
  };
  /** The flow's own key (a Flowfinity view setting), else the shared setting. */
  const viewSetting = <T>(key: string, fallback: string, required: boolean): T | undefined => {
    const def = flowSettings.find((d) => d.key === key) as FlowSettingDefinition;
    const mine = own.get(key);
    if (mine)
      return i.parse(
        { name: mine.name, description: def.description, schema: flowSettingSchema(def), secret: def.secret },
        mine.name,
        mine.raw,
      ) as T | undefined;
    const v = i.get(fallback) as T | undefined;
    if (v === undefined && required && !i.failed.has(fallback))
      problems.push(
        `${fallback} is missing: the roster view of the external-source flow needs it (or set ${flowSettingName(name, key)})`,
      );
    return v;
  };

  const clientId = shared<string>('WISEFLOW_CLIENT_ID');
  const clientSecret = shared<string>('WISEFLOW_CLIENT_SECRET');
  const apiKey = shared<string>('WISEFLOW_API_KEY');
  let auth: WiseflowAuth | undefined;
  if (clientId && clientSecret) auth = { kind: 'oauth', clientId, clientSecret };
  else if (clientId || clientSecret)
    problems.push(
      `${clientId ? 'WISEFLOW_CLIENT_SECRET' : 'WISEFLOW_CLIENT_ID'} is missing: WISEflow OAuth needs both the client id and the client secret`,
    );
  else if (apiKey) auth = { kind: 'apiKey', apiKey };
  else if (!['WISEFLOW_CLIENT_ID', 'WISEFLOW_CLIENT_SECRET', 'WISEFLOW_API_KEY'].some((n) => i.failed.has(n)))
    problems.push(
      `WISEFLOW_CLIENT_ID and WISEFLOW_CLIENT_SECRET are missing: the external-source flow ${name} calls the WISEflow API with an OAuth client (or set WISEFLOW_API_KEY)`,
    );

  const secret = shared<string>(
    'WISEFLOW_WEBHOOK_SECRET',
    'the secret WISEflow signs its webhook calls with',
  );
  const previous = shared<string>('WISEFLOW_WEBHOOK_SECRET_PREVIOUS');
  const rosterNeeded = i.purpose !== 'register';
  const viewUrl = viewSetting<string>('ViewUrl', 'WISEFLOW_ROSTER_VIEW_URL', rosterNeeded) ?? '';
  const onBehalfOf = viewSetting<string>('OnBehalfOf', 'FLOWFINITY_ON_BEHALF_OF', rosterNeeded) ?? '';
  const username = viewSetting<string>('Username', 'FLOWFINITY_USERNAME', rosterNeeded) ?? '';
  const password = viewSetting<string>('Password', 'FLOWFINITY_PASSWORD', rosterNeeded) ?? '';
  const timeoutMs = viewSetting<number>('TimeoutMs', 'FLOWFINITY_TIMEOUT_MS', false);
  const maxRetries = viewSetting<number>('MaxRetries', 'FLOWFINITY_MAX_RETRIES', false);
  const stateField = viewSetting<string>('StateField', 'SYNC_STATE_FIELD', false);
  if (!auth || !secret || (rosterNeeded && (!viewUrl || !onBehalfOf || !username || !password)))
    return undefined;

  const webhookSettings = Object.fromEntries(
    [
      'WEBHOOK_SIGNATURE_HEADER',
      'WEBHOOK_SIGNATURE_ENCODING',
      'WEBHOOK_SIGNATURE_ALGORITHM',
      'WEBHOOK_SIGNED_CONTENT',
      'WEBHOOK_TIMESTAMP_SOURCE',
      'WEBHOOK_TIMESTAMP_HEADER',
      'WEBHOOK_TIMESTAMP_FIELD',
      'WEBHOOK_TIMESTAMP_FORMAT',
      'WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS',
    ].map((n) => [n, i.get(n)]),
  ) as unknown as WebhookSettings;
  const secrets = [secret, ...(previous ? [previous] : [])];
  const n = (setting: string) => i.get(setting) as number;
  return {
    name,
    type: 'external-source',
    wiseflow: {
      baseUrl: i.get('WISEFLOW_BASE_URL') as string,
      auth,
      timeoutMs: n('WISEFLOW_TIMEOUT_MS'),
      maxRetries: n('WISEFLOW_MAX_RETRIES'),
      maxWaitMs: n('WISEFLOW_MAX_WAIT_SECONDS') * 1000,
      rateLimits: { perSecond: n('WISEFLOW_RATE_PER_SECOND'), perMinute: n('WISEFLOW_RATE_PER_MINUTE') },
    },
    webhook: {
      route: EXTERNAL_SOURCE_ROUTE,
      jobKind: EXTERNAL_SOURCE_JOB_KIND,
      secrets,
      signature: signatureSchemeFromSettings(webhookSettings, secrets),
      requireEventName: i.get('WISEFLOW_REQUIRE_EVENT_NAME') as boolean,
      callIdHeader: i.get('WISEFLOW_CALL_ID_HEADER') as string,
      title: i.get('WISEFLOW_WEBHOOK_TITLE') as string,
      maxBodyBytes: n('WEBHOOK_MAX_BODY_BYTES'),
      maxDepth: n('WEBHOOK_MAX_JSON_DEPTH'),
    },
    roster: {
      viewUrl,
      onBehalfOf,
      username,
      password,
      timeoutMs: timeoutMs!,
      maxRetries: maxRetries!,
      referenceParam: i.get('WISEFLOW_ROSTER_REFERENCE_PARAM') as string,
      participantField: i.get('WISEFLOW_ROSTER_PARTICIPANT_FIELD') as string,
      idKind: i.get('WISEFLOW_ROSTER_ID_KIND') as 'participantId' | 'userId',
      excludeStates: i.get('WISEFLOW_ROSTER_EXCLUDE_STATES') as string[],
      stateField: stateField!,
    },
    routine: {
      verify: i.get('WISEFLOW_VERIFY') as 'known' | 'memory' | 'flow',
      discoverOnFirstSync: i.get('WISEFLOW_DISCOVER_ON_FIRST_SYNC') as boolean,
      sourceDescription: i.get('WISEFLOW_SOURCE_DESCRIPTION') as string,
    },
  };
}
