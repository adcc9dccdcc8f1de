/**
 * The business-event flow: Dynamics 365 F&O data exports, plugged into the batch engine with ONE
 * BATCH PER EXPORT, on its own stream `<flow>:<sub>`:
 *
 *   - a business event (webhook job): `<flow>:ev-<EventId>`, the event as plan()'s input;
 *   - a dequeued recurring-integration message (poll timer): `<flow>:ri-<CorrelationId>`.
 *
 *   collect     download the export (SafeDownloader: https, allowed hosts, public addresses,
 *               same-host redirects, timeout, size cap; an expired URL is refreshed through the
 *               package API when FnoBaseUrl is set, else the event fails with the reason) and
 *               stream-parse it (CSV/XML/JSON or a data package). Each row becomes a record
 *               keyed by entity + the entity's key fields, VERSIONED BY THE EVENT'S CONTROL
 *               NUMBER: the target's conditional write never lets an older export overwrite a
 *               newer one, and a re-delivered export changes nothing. A malformed row (or one
 *               whose key fields are missing) is quarantined with its file and line; the rest go on.
 *   onComplete  the export is done: the stream keeps `{"done":true}` so the same export is never
 *               collected again; in polling mode the dequeued message is acknowledged here, i.e.
 *               only after every record of the batch reached a terminal outcome.
 *
 * A batch is never `full` (the engine streams chunks; an export is one unit) and always ends,
 * even with no rows, so an empty export is still marked done (and acknowledged).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type {
  BatchFlow,
  BatchSettings,
  CollectedItem,
  Collection,
  CollectInput,
  CompletedBatch,
} from '../../batch/flow';
import { AppError, errorText, ValidationError } from '../../errors';
import {
  businessEventSchema,
  downloadEventExport,
  factsOf,
  parseExport,
  recordIdOf,
  type BusinessEvent,
  type DequeuedMessage,
  type FinopsSettings,
  type MalformedRow,
  type PackageApiClient,
  type RecurringIntegrationClient,
  type SafeDownloader,
} from '../../finops';
import type { Log, TargetSystem } from '../../ports';
import { recordDownload, recordRowsParsed } from '../../telemetry';

export type BusinessEventInput =
  { kind: 'event'; event: BusinessEvent } | { kind: 'dequeued'; message: DequeuedMessage };

export interface BusinessEventFlowOptions {
  name: string;
  settings: BatchSettings;
  target: TargetSystem;
  finops: FinopsSettings;
  downloader: SafeDownloader;
  /** FnoBaseUrl set: fresh URLs for expired DownloadURLs. */
  packageApi?: PackageApiClient;
  /** Polling mode: dequeue / download / ack. */
  recurring?: RecurringIntegrationClient;
  /** Polling mode: the entity of a plain dequeued file. */
  pollEntity?: string;
  now?: () => number;
}

/** What the manifest carries to onComplete (small JSON). */
const metaSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('event'),
    eventId: z.string(),
    controlNumber: z.string(),
    entity: z.string(),
    refreshedUrl: z.boolean(),
  }),
  z.object({ kind: z.literal('dequeued'), correlationId: z.string(), rawBody: z.string() }),
]);
type BatchMeta = z.infer<typeof metaSchema>;

interface StreamState {
  done: true;
  completedAt: string;
  records: number;
  quarantined: number;
}

const SAFE_SUB = /^[A-Za-z0-9-]{1,100}$/;
/** A stream suffix safe in table keys and message ids: the id itself, or a digest of it. */
const subOf = (prefix: string, id: string): string =>
  `${prefix}-${SAFE_SUB.test(id) ? id : createHash('sha256').update(id).digest('hex').slice(0, 40)}`;

export class BusinessEventFlow implements BatchFlow {
  readonly name: string;
  readonly settings: BatchSettings;
  readonly target: TargetSystem;
  readonly finops: FinopsSettings;
  readonly packageApi?: PackageApiClient;
  readonly recurring?: RecurringIntegrationClient;

  constructor(private readonly o: BusinessEventFlowOptions) {
    this.name = o.name;
    this.settings = o.settings;
    this.target = o.target;
    this.finops = o.finops;
    this.packageApi = o.packageApi;
    this.recurring = o.recurring;
  }

  /** The stream of an event (by its normalised EventId). */
  eventStream(event: BusinessEvent): string {
    return `${this.name}:${subOf('ev', factsOf(event).eventId)}`;
  }

  /** The stream of a dequeued message (by its CorrelationId, which re-deliveries keep). */
  messageStream(message: DequeuedMessage): string {
    return `${this.name}:${subOf('ri', message.correlationId.toLowerCase())}`;
  }

  async collect(c: CollectInput): Promise<Collection> {
    const state = parseState(c.flowState);
    const input = c.input as BusinessEventInput | undefined;
    // Done already (a re-delivery, a repair's poll) or nothing to collect from.
    if (state?.done || input === undefined) return { from: undefined, items: none(), end: () => undefined };

    let version: bigint;
    let entity: string;
    let meta: BatchMeta;
    let download;
    if (input.kind === 'event') {
      const event = businessEventSchema.parse(input.event);
      const facts = factsOf(event);
      version = facts.controlNumber;
      entity = facts.entityName ?? '';
      download = await downloadEventExport(facts, {
        downloader: this.o.downloader,
        packageApi: this.packageApi,
        signal: c.signal,
      });
      if (download.refreshedUrl)
        c.log.info('the DownloadURL had expired: downloaded from a fresh package URL', {
          flow: this.name,
          eventId: facts.eventId,
        });
      meta = {
        kind: 'event',
        eventId: facts.eventId,
        controlNumber: facts.controlNumber.toString(),
        entity,
        refreshedUrl: download.refreshedUrl,
      };
    } else {
      if (!this.recurring)
        throw new ValidationError(`flow ${this.name} has no polling configured (PollActivityId)`, {
          code: 'polling_not_configured',
        });
      // No control number in a dequeued message: the version is when F&O first handed it out
      // (its LastDequeueDateTime, else now), so a later export's rows are newer.
      version = dequeueVersionOf(input.message, this.o.now ?? Date.now);
      entity = this.o.pollEntity ?? '';
      download = await this.recurring.download(input.message, c.signal);
      meta = { kind: 'dequeued', correlationId: input.message.correlationId, rawBody: input.message.rawBody };
    }

    const keys = this.finops.entityKeys;
    let records = 0;
    let malformed = 0;
    const body = download.body;
    const rows = parseExport(body, {
      entity,
      fileName: download.fileName,
      zipLimits: this.finops.zipLimits,
      tempDir: this.finops.packageTempDir,
    });
    const v = version.toString();
    async function* items(): AsyncGenerator<CollectedItem> {
      try {
        for await (const item of rows) {
          if (item.kind === 'malformed') {
            malformed++;
            yield malformedItem(item, v);
            continue;
          }
          const id = recordIdOf(item, keys);
          if (!id.ok) {
            malformed++;
            yield malformedItem(id.malformed, v);
            continue;
          }
          records++;
          yield {
            kind: 'record',
            id: id.id,
            version,
            deleted: false,
            data: { _entity: item.entity, ...item.fields },
          };
        }
      } finally {
        body.destroy();
      }
    }
    return {
      from: undefined,
      items: items(),
      end: () => {
        c.log.info('export read', { flow: this.name, stream: c.stream, records, malformed });
        recordRowsParsed(this.name, records + malformed);
        recordDownload(this.name, download.bytesRead());
        return { to: v, full: false, meta: JSON.stringify(meta) };
      },
    };
  }

  async onComplete(b: CompletedBatch, log: Log): Promise<{ flowState: string }> {
    const parsed = metaSchema.safeParse(safeJson(b.meta));
    if (parsed.success && parsed.data.kind === 'dequeued') await this.ack(parsed.data.rawBody, b.stream, log);
    if (parsed.success && parsed.data.kind === 'event')
      log.info('business event applied', {
        flow: this.name,
        eventId: parsed.data.eventId,
        controlNumber: parsed.data.controlNumber,
        entity: parsed.data.entity,
        records: b.recordCount,
        quarantined: b.quarantined,
      });
    const state: StreamState = {
      done: true,
      completedAt: new Date((this.o.now ?? Date.now)()).toISOString(),
      records: b.recordCount,
      quarantined: b.quarantined,
    };
    return { flowState: JSON.stringify(state) };
  }

  /**
   * Acknowledges a dequeued message once its batch drained. A refusal that is not transient (a
   * stale PopReceipt after F&O re-delivered the message) is only logged: the re-delivery finds
   * this stream done and is acknowledged by the poll timer with its own receipt.
   */
  async ack(rawBody: string, stream: string, log: Log): Promise<void> {
    if (!this.recurring) return;
    const message = parseDequeued(rawBody);
    try {
      await this.recurring.ack(message);
      log.info('recurring-integration message acknowledged', {
        flow: this.name,
        stream,
        correlationId: message.correlationId,
      });
    } catch (e) {
      if (e instanceof AppError && e.kind === 'permanent') {
        log.warn('ack refused: the message will be re-delivered and acknowledged then', {
          flow: this.name,
          stream,
          error: errorText(e),
        });
        return;
      }
      throw e;
    }
  }

  /** Whether a stream's export was already applied (its batch completed). */
  static isDone(flowState: string | undefined): boolean {
    return parseState(flowState)?.done === true;
  }

  async describe(): Promise<object> {
    return {
      type: 'business-event',
      entities: this.finops.entityKeys.entities(),
      packageApi: this.packageApi !== undefined,
      polling: this.recurring !== undefined,
    };
  }
}

async function* none(): AsyncGenerator<CollectedItem> {}

function malformedItem(m: MalformedRow, version: string): CollectedItem {
  return {
    kind: 'malformed',
    raw: m.raw,
    error: `${m.file} line ${m.line}: ${m.error}`,
    id: `${m.entity}@${m.file}:${m.line}`,
    version,
  };
}

function safeJson(text: string | undefined): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parseState(text: string | undefined): StreamState | undefined {
  const v = safeJson(text) as Partial<StreamState> | undefined;
  return v && v.done === true ? (v as StreamState) : undefined;
}

/** The DequeuedMessage of a stored dequeue body (DownloadLocation rewritten as at dequeue). */
export function parseDequeued(rawBody: string): DequeuedMessage {
  const o = JSON.parse(rawBody) as Record<string, unknown>;
  return {
    correlationId: String(o.CorrelationId ?? ''),
    popReceipt: String(o.PopReceipt ?? ''),
    downloadLocation: String(o.DownloadLocation ?? '').replace(/^http:\/\//i, 'https://'),
    rawBody,
  };
}

function dequeueVersionOf(m: DequeuedMessage, now: () => number): bigint {
  const o = safeJson(m.rawBody) as { LastDequeueDateTime?: unknown } | undefined;
  const t = typeof o?.LastDequeueDateTime === 'string' ? Date.parse(o.LastDequeueDateTime) : NaN;
  return BigInt(Number.isFinite(t) ? t : now());
}
