/**
 * The shared settings of the external-source flow (WISEflow `FLOW_EXTERNAL_SOURCE` webhook →
 * participant allocations) and of the webhook intake it goes through. Kept in their own module
 * (spread into `settings` in settings.ts) so the flow's settings live beside their reader,
 * external-source-flows.ts. Self-contained on purpose: settings.ts imports this file.
 *
 * The signature settings describe a scheme the WISEflow documentation does not pin down (a GAP,
 * see docs/webhooks.md): every default is a documented guess to check against one real
 * delivery.
 */
import { z } from 'zod';
import { webhookSettingsSchema } from '../webhooks/settings';

const wholeNumber = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const bool = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.enum(['true', 'false'], { error: 'must be true or false' }))
  .transform((v) => v === 'true');

const commaList = z.string().transform((s) =>
  s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean),
);

/** https anywhere; http only on loopback (the local simulator). */
const apiUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).refine((u) => {
  const url = new URL(u);
  return url.protocol === 'https:' || ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}, 'must be an https URL (http only on loopback, for the simulator)');

/** The intake's own schema for one WEBHOOK_* setting, without its default (the table shows it). */
const intake = (name: keyof typeof webhookSettingsSchema.shape): z.ZodType =>
  webhookSettingsSchema.shape[name];

export const externalSourceSettingDefinitions = [
  // WISEflow API
  {
    name: 'WISEFLOW_BASE_URL',
    description:
      'WISEflow API base URL of the external-source flow (staging: `https://europe-stage-api.wiseflow.net/v1`).',
    default: 'https://europe-api.wiseflow.net/v1',
    schema: apiUrl,
  },
  {
    name: 'WISEFLOW_CLIENT_ID',
    description: 'WISEflow OAuth2 client id (client credentials; preferred over WISEFLOW_API_KEY).',
    schema: z.string().trim().min(1),
  },
  {
    name: 'WISEFLOW_CLIENT_SECRET',
    description: 'WISEflow OAuth2 client secret (Key Vault reference in Azure).',
    secret: true,
    schema: z.string().min(1),
  },
  {
    name: 'WISEFLOW_API_KEY',
    description:
      'WISEflow `x-api-key`, used when no OAuth client is set (WISEflow: not for production; Key Vault reference in Azure).',
    secret: true,
    schema: z.string().min(1),
  },
  {
    name: 'WISEFLOW_TIMEOUT_MS',
    description: 'Timeout of one WISEflow API request (headers and body), in milliseconds.',
    default: '30000',
    schema: wholeNumber(1000, 300_000),
  },
  {
    name: 'WISEFLOW_MAX_RETRIES',
    description: 'Retries of a repeatable WISEflow call on 5xx, timeouts and network errors.',
    default: '4',
    schema: wholeNumber(0, 10),
  },
  {
    name: 'WISEFLOW_MAX_WAIT_SECONDS',
    description:
      'Longest 429 wait the WISEflow client sleeps; a longer one fails the job transiently (the queue retries it).',
    default: '60',
    schema: wholeNumber(1, 3600),
  },
  {
    name: 'WISEFLOW_RATE_PER_SECOND',
    description:
      'WISEflow requests per second per credential in one instance (divide by the instance count when scaled out).',
    default: '200',
    schema: wholeNumber(1, 200),
  },
  {
    name: 'WISEFLOW_RATE_PER_MINUTE',
    description: 'WISEflow requests per minute per credential in one instance.',
    default: '5000',
    schema: wholeNumber(1, 5000),
  },
  // The FLOW_EXTERNAL_SOURCE webhook
  {
    name: 'WISEFLOW_WEBHOOK_SECRET',
    description:
      'Secret the WISEflow webhook signs with (at least 16 characters); `syncbridge register-webhooks` registers it (Key Vault reference in Azure).',
    secret: true,
    schema: z.string().min(16, 'must be at least 16 characters'),
  },
  {
    name: 'WISEFLOW_WEBHOOK_SECRET_PREVIOUS',
    description: 'The previous webhook secret, accepted too while a rotation is under way; empty otherwise.',
    secret: true,
    schema: z.string().min(16, 'must be at least 16 characters'),
  },
  {
    name: 'WISEFLOW_WEBHOOK_TITLE',
    description:
      'Title of the webhook `register-webhooks` creates in WISEflow: how it finds its own registration again (one per deployment).',
    default: 'syncbridge external-source',
    schema: z.string().trim().min(1).max(100),
  },
  {
    name: 'WISEFLOW_REQUIRE_EVENT_NAME',
    description:
      'Refuse (400) a webhook body that names no event; by default the route implies FLOW_EXTERNAL_SOURCE.',
    default: 'false',
    schema: bool,
  },
  {
    name: 'WISEFLOW_CALL_ID_HEADER',
    description:
      "Header with WISEflow's per-call id: the de-duplication key when the body has no request id or sequence number.",
    default: 'x-wiseflow-webhook-id',
    schema: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name'),
  },
  // Roster
  {
    name: 'WISEFLOW_ROSTER_VIEW_URL',
    description:
      'Flowfinity view listing who should be allocated, queried with the reference as a view parameter (or `Flows__<flow>__ViewUrl`); credentials from FLOWFINITY_*.',
    schema: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  },
  {
    name: 'WISEFLOW_ROSTER_REFERENCE_PARAM',
    description: 'View parameter of the roster view that carries the external-source reference.',
    default: 'reference',
    schema: z.string().trim().min(1),
  },
  {
    name: 'WISEFLOW_ROSTER_PARTICIPANT_FIELD',
    description:
      'Roster record field holding the WISEflow participant id (or user id, see WISEFLOW_ROSTER_ID_KIND).',
    default: 'WiseflowParticipantId',
    schema: z.string().trim().min(1),
  },
  {
    name: 'WISEFLOW_ROSTER_ID_KIND',
    description:
      'What the roster field holds: `participantId`, or `userId` (mapped through the flow’s participants).',
    default: 'participantId',
    schema: z.enum(['participantId', 'userId']),
  },
  {
    name: 'WISEFLOW_ROSTER_EXCLUDE_STATES',
    description: 'Comma-separated record states left out of the roster.',
    default: 'Deleted',
    schema: commaList,
  },
  {
    name: 'WISEFLOW_VERIFY',
    description:
      'How current allocations are read (no WISEflow endpoint lists them): `known`, `memory` or `flow` (see the WISEflow docs).',
    default: 'known',
    schema: z.enum(['known', 'memory', 'flow']),
  },
  {
    name: 'WISEFLOW_DISCOVER_ON_FIRST_SYNC',
    description:
      'First sync of a source: ask about every participant of the flow, so allocations made before syncbridge are found.',
    default: 'true',
    schema: bool,
  },
  {
    name: 'WISEFLOW_SOURCE_DESCRIPTION',
    description: 'Description of the external sources syncbridge creates for a flow that has none.',
    default: 'Created by syncbridge',
    schema: z.string().trim().min(1).max(500),
  },
  // Webhook intake (every webhook route)
  {
    name: 'WEBHOOK_MAX_BODY_BYTES',
    description: 'Largest webhook body accepted (413 above it); at most 393216.',
    default: '262144',
    schema: intake('WEBHOOK_MAX_BODY_BYTES'),
  },
  {
    name: 'WEBHOOK_MAX_JSON_DEPTH',
    description: 'Deepest nesting of objects/arrays in a webhook body (400 beyond).',
    default: '32',
    schema: intake('WEBHOOK_MAX_JSON_DEPTH'),
  },
  {
    name: 'WEBHOOK_SIGNATURE_HEADER',
    description:
      'Header carrying the WISEflow signature (a `sha256=` prefix is tolerated). GAP: check a real delivery.',
    default: 'x-wiseflow-signature',
    schema: intake('WEBHOOK_SIGNATURE_HEADER'),
  },
  {
    name: 'WEBHOOK_SIGNATURE_ENCODING',
    description: 'Encoding of the signature: `base64`, `hex` or `base64url`.',
    default: 'base64',
    schema: intake('WEBHOOK_SIGNATURE_ENCODING'),
  },
  {
    name: 'WEBHOOK_SIGNATURE_ALGORITHM',
    description: 'HMAC algorithm: `sha256`, `sha512` or `sha1`.',
    default: 'sha256',
    schema: intake('WEBHOOK_SIGNATURE_ALGORITHM'),
  },
  {
    name: 'WEBHOOK_SIGNED_CONTENT',
    description: 'What the HMAC covers: `body` (the raw body) or `timestamp.body` (`<timestamp>.<body>`).',
    default: 'body',
    schema: intake('WEBHOOK_SIGNED_CONTENT'),
  },
  {
    name: 'WEBHOOK_TIMESTAMP_SOURCE',
    description: 'Where the call timestamp is: `header`, `body` (a field) or `none`.',
    default: 'header',
    schema: intake('WEBHOOK_TIMESTAMP_SOURCE'),
  },
  {
    name: 'WEBHOOK_TIMESTAMP_HEADER',
    description: 'Header carrying the timestamp (WEBHOOK_TIMESTAMP_SOURCE=header).',
    default: 'x-wiseflow-timestamp',
    schema: intake('WEBHOOK_TIMESTAMP_HEADER'),
  },
  {
    name: 'WEBHOOK_TIMESTAMP_FIELD',
    description:
      'Body field carrying the timestamp (WEBHOOK_TIMESTAMP_SOURCE=body); a dotted path is allowed.',
    default: 'timestamp',
    schema: intake('WEBHOOK_TIMESTAMP_FIELD'),
  },
  {
    name: 'WEBHOOK_TIMESTAMP_FORMAT',
    description: '`auto` (Unix seconds or ms, or ISO 8601), `unix-seconds`, `unix-ms` or `iso`.',
    default: 'auto',
    schema: intake('WEBHOOK_TIMESTAMP_FORMAT'),
  },
  {
    name: 'WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS',
    description: 'A call timestamp further than this from our clock (past or future) is refused (401).',
    default: '300',
    schema: intake('WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS'),
  },
] as const;
