/**
 * The Dynamics 365 Finance & Operations business-event envelope: parsing, the endpoint-activation
 * test message, the allow-list filter and the de-duplication keys.
 *
 * There is no official schema. What we rely on (see docs/finops.md for sources):
 * - Public samples: `BusinessEventId`, `BusinessEventLegalEntity`, `ContextRecordSubject`,
 *   `ControlNumber` (a 64-bit integer, above 2^32 in practice), `EventId` (a GUID),
 *   `EventTime` in the WCF form `/Date(<ms since epoch>)/`, `EventTimeIso8601`,
 *   `InitiatingUserAADObjectId`, `MajorVersion`, `MinorVersion`, `ParentContextRecordSubjects`.
 * - The "Data export" event (a custom extension) adds `DownloadURL` and `EntityName`. We also
 *   read an optional `ExecutionId` (ASSUMPTION: the event carries the export's execution id;
 *   without it a fresh URL cannot be asked for and an expired URL is quarantined).
 * - When an endpoint is created or an event activated, F&O sends a test event whose
 *   `BusinessEventId` is `BusinessEventsTestEndpointContract` ("Unable to send test event to
 *   endpoint" is the error F&O shows when it fails). Public consumers recognise it by that id
 *   alone; one public fixture shows `ControlNumber` = -9223372036854775808 (long.MinValue), so
 *   the test event is recognised BEFORE the strict schema applies and needs no other field.
 *
 * Numbers: the body is parsed losslessly. A number that a JS number holds exactly stays a number;
 * any other (a ControlNumber beyond 2^53, `1.10`) is kept as its literal text, so nothing is
 * rounded. The validated envelope is JSON-safe (ControlNumber as canonical decimal text) so the
 * intake can enqueue it as it is; `factsOf` gives the typed view (bigint, Date).
 */
import { parse as parseLossless } from 'lossless-json';
import { z } from 'zod';
import { ConfigError, ValidationError } from '../errors';

/** BusinessEventId of the test message F&O sends to validate an endpoint. */
export const ACTIVATION_TEST_EVENT_ID = 'BusinessEventsTestEndpointContract';

const WCF_DATE = /^\/Date\((-?\d{1,15})([+-]\d{4})?\)\/$/;

/** `/Date(1672408275000)/` (optionally with a `+hhmm` offset, which WCF adds but does not apply to the ms) → Date. */
export function parseWcfDate(text: string): Date | undefined {
  const m = WCF_DATE.exec(text);
  if (!m) return undefined;
  const d = new Date(Number(m[1]));
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** A decimal integer of at most 64 bits, as a number or as its literal text; out: canonical decimal text. */
const int64Text = z
  .union([z.number().int(), z.string().regex(/^-?\d{1,20}$/)], {
    error: 'must be an integer (a JSON number or its decimal text)',
  })
  .transform((v, ctx) => {
    const n = BigInt(v);
    if (n < -(2n ** 63n) || n >= 2n ** 63n) {
      ctx.addIssue({ code: 'custom', message: 'must fit in 64 bits' });
      return z.NEVER;
    }
    return n.toString();
  });

const nonEmpty = z.string().trim().min(1, 'must not be empty');

/**
 * The envelope as validated at intake. Unknown fields are kept (loose object); the known ones are
 * checked. JSON-safe: parse it again from the queue message with `businessEventSchema.parse`.
 */
export const businessEventSchema = z.looseObject({
  BusinessEventId: nonEmpty,
  ControlNumber: int64Text,
  EventId: nonEmpty.max(100, 'must be at most 100 characters'),
  EventTime: z
    .string()
    .refine((s) => parseWcfDate(s) !== undefined, 'must be a WCF date such as /Date(1672408275000)/')
    .optional(),
  EventTimeIso8601: z
    .string()
    .refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 time')
    .optional(),
  BusinessEventLegalEntity: z.string().optional(),
  /** Data export: where the exported file or package can be downloaded (a SAS URL; secret). */
  DownloadURL: z.string().max(8192, 'must be at most 8192 characters').optional(),
  /** Data export: the entity (or package) that was exported. */
  EntityName: z.string().max(200, 'must be at most 200 characters').optional(),
  /** Data export (ASSUMPTION): the export's execution id, used to ask for a fresh URL. */
  ExecutionId: z.string().max(200, 'must be at most 200 characters').optional(),
  MajorVersion: z.number().int().optional(),
  MinorVersion: z.number().int().optional(),
});

export type BusinessEvent = z.output<typeof businessEventSchema>;

/** The typed facts of a validated envelope. */
export interface BusinessEventFacts {
  businessEventId: string;
  /** Lower case, without braces: `{ABC-...}` and `abc-...` are the same event. */
  eventId: string;
  controlNumber: bigint;
  legalEntity?: string;
  eventTime?: Date;
  /** Secret (carries a SAS signature): never log it; use `safeUrlText` from download.ts. */
  downloadUrl?: string;
  entityName?: string;
  executionId?: string;
}

export type ParsedBusinessEventBody =
  /** F&O's endpoint test: answer 2xx, enqueue nothing. `envelope` is what was sent. */
  | { kind: 'activation'; envelope: Record<string, unknown> }
  | { kind: 'event'; event: BusinessEvent; facts: BusinessEventFacts };

/**
 * Parses a raw webhook body (bytes or text). Throws ValidationError (code `business_event_invalid`)
 * with one line per problem in `details.issues`; the lines name fields, never their values.
 */
export function parseBusinessEventBody(raw: string | Uint8Array): ParsedBusinessEventBody {
  const value = parseJsonLosslessly(raw);
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(['the body must be one JSON object (a business event)']);
  const envelope = value as Record<string, unknown>;
  if (isActivationTestEvent(envelope)) return { kind: 'activation', envelope };
  const result = businessEventSchema.safeParse(envelope);
  if (!result.success)
    throw invalid(result.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`));
  return { kind: 'event', event: result.data, facts: factsOf(result.data) };
}

/** True for F&O's endpoint-activation test message (matched by its BusinessEventId alone). */
export function isActivationTestEvent(envelope: Record<string, unknown>): boolean {
  const id = envelope.BusinessEventId;
  return typeof id === 'string' && id.trim().toLowerCase() === ACTIVATION_TEST_EVENT_ID.toLowerCase();
}

export function factsOf(event: BusinessEvent): BusinessEventFacts {
  const eventTime =
    (event.EventTime !== undefined ? parseWcfDate(event.EventTime) : undefined) ??
    (event.EventTimeIso8601 !== undefined ? new Date(event.EventTimeIso8601) : undefined);
  const facts: BusinessEventFacts = {
    businessEventId: event.BusinessEventId.trim(),
    eventId: normaliseGuid(event.EventId),
    controlNumber: BigInt(event.ControlNumber),
  };
  if (event.BusinessEventLegalEntity) facts.legalEntity = event.BusinessEventLegalEntity;
  if (eventTime) facts.eventTime = eventTime;
  if (event.DownloadURL?.trim()) facts.downloadUrl = event.DownloadURL.trim();
  if (event.EntityName?.trim()) facts.entityName = event.EntityName.trim();
  if (event.ExecutionId?.trim()) facts.executionId = event.ExecutionId.trim();
  return facts;
}

const normaliseGuid = (id: string): string =>
  id
    .trim()
    .replace(/^\{(.*)\}$/, '$1')
    .toLowerCase();

// ---- allow-list filter ----------------------------------------------------------------------

/** `'*'` allows everything; otherwise the names allowed, compared case-insensitively. */
export type AllowList = '*' | readonly string[];

export interface BusinessEventFilterOptions {
  /** BusinessEventIds to process (FNO_ALLOWED_EVENT_IDS). */
  allowedEventIds: AllowList;
  /** EntityNames to process (FNO_ALLOWED_ENTITIES). */
  allowedEntities: AllowList;
}

export type IgnoreCode = 'event_id_not_allowed' | 'not_a_data_export' | 'entity_not_allowed';

export type FilterDecision = { action: 'accept' } | { action: 'ignore'; code: IgnoreCode; reason: string };

/**
 * The filter options from the settings: `allowedEntities` undefined means "the entities that
 * have key fields". An entity named explicitly must have key fields (ConfigError otherwise):
 * its rows could never be keyed.
 */
export function filterOptionsOf(
  allowedEventIds: AllowList,
  allowedEntities: AllowList | undefined,
  keys: { get(entity: string): unknown; entities(): string[] },
): BusinessEventFilterOptions {
  if (allowedEntities === undefined) return { allowedEventIds, allowedEntities: keys.entities() };
  if (allowedEntities !== '*') {
    const missing = allowedEntities.filter((e) => keys.get(e) === undefined);
    if (missing.length > 0)
      throw new ConfigError(
        missing.map((e) => `FNO_ALLOWED_ENTITIES names ${e}, which has no key fields in FNO_ENTITY_KEYS`),
      );
  }
  return { allowedEventIds, allowedEntities };
}

const allows = (list: AllowList, name: string): boolean =>
  list === '*' || list.some((n) => n.trim().toLowerCase() === name.trim().toLowerCase());

/**
 * Decides whether an event is processed. An ignored event is still answered 202 by the route
 * (F&O must not retry it), logged and counted; `reason` is safe to log (names, no URL).
 */
export function filterBusinessEvent(
  facts: BusinessEventFacts,
  o: BusinessEventFilterOptions,
): FilterDecision {
  if (!allows(o.allowedEventIds, facts.businessEventId))
    return {
      action: 'ignore',
      code: 'event_id_not_allowed',
      reason: `business event ${facts.businessEventId} is not in FNO_ALLOWED_EVENT_IDS`,
    };
  if (facts.downloadUrl === undefined)
    return {
      action: 'ignore',
      code: 'not_a_data_export',
      reason: `business event ${facts.businessEventId} has no DownloadURL: not a data-export event`,
    };
  if (facts.entityName === undefined || !allows(o.allowedEntities, facts.entityName))
    return {
      action: 'ignore',
      code: 'entity_not_allowed',
      reason:
        facts.entityName === undefined
          ? 'the event names no EntityName'
          : `entity ${facts.entityName} is not in FNO_ALLOWED_ENTITIES`,
    };
  return { action: 'accept' };
}

// ---- de-duplication ------------------------------------------------------------------------

export interface BusinessEventDedupKeys {
  /** The event's own id: a re-delivery of the same event. */
  byEventId: string;
  /** The control number per entity: a second event for the same export (another EventId). */
  byControlNumber: string;
}

/**
 * The two de-duplication keys. The intake stores both and treats the event as a duplicate when
 * either exists. Characters are restricted to what an Azure Table key accepts (no / \ # ?).
 */
export function dedupKeysOf(facts: BusinessEventFacts): BusinessEventDedupKeys {
  const entity = encodeURIComponent((facts.entityName ?? '').toLowerCase());
  return {
    byEventId: `fno-event:${encodeURIComponent(facts.eventId)}`,
    byControlNumber: `fno-control:${entity}:${facts.controlNumber.toString()}`,
  };
}

// ---- lossless JSON -------------------------------------------------------------------------

/**
 * JSON.parse, except that numbers a JS number cannot hold exactly are kept as their literal text.
 * Throws ValidationError for anything that is not JSON (including duplicate keys and nesting so
 * deep that the parser runs out of stack).
 */
export function parseJsonLosslessly(raw: string | Uint8Array): unknown {
  let text: string;
  try {
    text = typeof raw === 'string' ? raw : new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw invalid(['the body is not valid UTF-8']);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return parseLossless(text, undefined, exactNumber);
  } catch (e) {
    // The parser's message names a position, never the value; a RangeError is excessive nesting.
    const why = e instanceof RangeError ? 'nested too deeply' : e instanceof Error ? e.message : 'unreadable';
    throw invalid([`the body is not valid JSON (${why})`]);
  }
}

function exactNumber(text: string): number | string {
  const n = Number(text);
  return Number.isFinite(n) && String(n) === text ? n : text;
}

const invalid = (issues: string[]) =>
  new ValidationError(`The business event is invalid: ${issues.join('; ')}`, {
    code: 'business_event_invalid',
    details: { issues },
  });
