/**
 * The webhook store: one Azure Table (`<prefix>webhooks`) holding a de-duplication marker per
 * accepted event, with the event's job, and the marker's life cycle:
 *
 *   PK `r|<route>`  RK `e|<event id>`  the marker: phase, job, message id, times, claim lease
 *   PK `r|<route>`  RK `a|<other key>` an alias: another key of the same event (F&O's control
 *                                      number per entity), pointing at the marker
 *
 * The intake creates the marker and its aliases in ONE entity-group transaction (all in the
 * route's partition), so an event is either wholly known or not at all, and two events that
 * share any key cannot both be created. States, as `WebhookMarker.state` shows them:
 *
 *   pending     created; the job message may not be on the queue yet (the intake died before
 *               its send, or is sending now)
 *   enqueued    the job message is durably on the queue
 *   processing  a worker claimed it; the claim is a lease, so a worker that dies lets another
 *               take over when the lease ends
 *   done|failed the worker finished it (failed = quarantined by the worker); duplicates stop here
 *
 * `enqueuedAt` is written with a Merge of that one property, so it can never undo a worker's
 * claim or completion that happened in between; every phase change is ETag-conditional.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { TableClient, TableEntityResult, TransactionAction } from '@azure/data-tables';
import { ConflictError, statusOf, TransientError } from '../errors';
import { ensureTable, escapeKey } from '../storage/table-helpers';

export type MarkerState = 'pending' | 'enqueued' | 'processing' | 'done' | 'failed';
type Phase = 'new' | 'processing' | 'done' | 'failed';

/** Names one event: the route it came through and the sender's own event id. */
export interface EventRef {
  route: string;
  eventId: string;
}

export interface WebhookMarker extends EventRef {
  state: MarkerState;
  jobKind: string;
  messageId: string;
  receivedAt: number;
  enqueuedAt?: number;
  /** Claims so far (a re-claim after a lease ran out counts). */
  attempts: number;
  claimUntil?: number;
  completedAt?: number;
  /** Why it failed (from the worker). */
  reason?: string;
  aliases: string[];
}

export interface StoredJob {
  kind: string;
  body: unknown;
}

export type ReserveResult =
  | { created: true; marker: WebhookMarker }
  /** Some key of the event is already known: `marker` is the event that holds it. */
  | { created: false; marker: WebhookMarker; via: 'event' | 'alias' };

export type ClaimResult =
  /** Process the job, then `complete` (or `release` on a transient failure). */
  | { status: 'claimed'; token: string; attempt: number; job: StoredJob; marker: WebhookMarker }
  /** Already processed: drop the message. */
  | { status: 'done'; marker: WebhookMarker }
  /**
   * Another worker holds a live claim. Do NOT drop the message: fail the delivery so the queue
   * brings it back; if that worker dies, the lease ends and the next delivery claims it.
   */
  | { status: 'busy'; retryAfterMs: number; marker: WebhookMarker }
  /** No such event (purged, or a message from elsewhere). */
  | { status: 'unknown' };

export interface WebhookStoreOptions {
  now?: () => number;
  /** Each storage call gives up after this long (then the caller answers 503 / retries). Default 5 s. */
  requestTimeoutMs?: number;
}

/** The job's JSON text is kept in string properties of 30,000 characters; at most this many characters. */
export const MAX_JOB_CHARS = 400_000;
const PART_CHARS = 30_000;
const MAX_KEY_CHARS = 240;
const MAX_REASON_CHARS = 1000;

type Row = Record<string, unknown>;

const partition = (route: string) => `r|${escapeKey(route)}`;
/**
 * A row-key-safe form of a key: escaped, or (when long) a digest. `escapeKey` always writes `%`
 * followed by two hex digits, so the `%h` of a digest can never come from escaping.
 */
function keyPart(key: string): string {
  const escaped = escapeKey(key);
  return escaped.length <= MAX_KEY_CHARS
    ? escaped
    : `%h${createHash('sha256').update(key, 'utf8').digest('hex')}`;
}
const eventRow = (eventId: string) => `e|${keyPart(eventId)}`;
const aliasRow = (alias: string) => `a|${keyPart(alias)}`;

function jobProperties(text: string): Row {
  const parts = Math.max(1, Math.ceil(text.length / PART_CHARS));
  const props: Row = { jobParts: parts };
  for (let i = 0; i < parts; i++) props[`job${i}`] = text.slice(i * PART_CHARS, (i + 1) * PART_CHARS);
  return props;
}
function jobText(e: Row): string {
  let text = '';
  for (let i = 0; i < Number(e.jobParts ?? 0); i++) text += String(e[`job${i}`] ?? '');
  return text;
}

const num = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;

function toMarker(e: TableEntityResult<Row>): WebhookMarker {
  const phase = e.phase as Phase;
  const enqueuedAt = num(e.enqueuedAt);
  let aliases: string[] = [];
  try {
    aliases = JSON.parse(String(e.aliases ?? '[]')) as string[];
  } catch {
    // written by us; an unreadable list only loses an informational field
  }
  return {
    route: String(e.route),
    eventId: String(e.eventId),
    state: phase === 'new' ? (enqueuedAt ? 'enqueued' : 'pending') : phase,
    jobKind: String(e.jobKind),
    messageId: String(e.messageId),
    receivedAt: Number(e.receivedAt),
    enqueuedAt,
    attempts: Number(e.attempts ?? 0),
    claimUntil: num(e.claimUntil),
    completedAt: num(e.completedAt),
    reason: typeof e.reason === 'string' && e.reason !== '' ? e.reason : undefined,
    aliases,
  };
}

/** Storage that is down, slow or throttling is transient (503 for the sender, a retry for a worker). */
function storageFailure(e: unknown, what: string): unknown {
  if (e instanceof TransientError || e instanceof ConflictError) return e;
  const status = statusOf(e);
  if (status === undefined || status === 408 || status === 429 || status >= 500)
    return new TransientError(`the webhook store is unavailable (${what})`, {
      cause: e,
      code: 'storage_unavailable',
      status: 503,
    });
  return e;
}

export class WebhookStore {
  private readonly now: () => number;
  private readonly timeoutMs: number;

  constructor(
    private readonly table: TableClient,
    o: WebhookStoreOptions = {},
  ) {
    this.now = o.now ?? Date.now;
    this.timeoutMs = o.requestTimeoutMs ?? 5000;
  }

  private opts() {
    return { abortSignal: AbortSignal.timeout(this.timeoutMs) };
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw storageFailure(e, what);
    }
  }

  async ensureReady(): Promise<void> {
    await this.call('create table', () => ensureTable(this.table));
  }

  private async read(pk: string, rk: string): Promise<TableEntityResult<Row> | undefined> {
    return this.call('read', async () => {
      try {
        return await this.table.getEntity<Row>(pk, rk, this.opts());
      } catch (e) {
        if (statusOf(e) === 404) return undefined;
        throw e;
      }
    });
  }

  async get(ref: EventRef): Promise<WebhookMarker | undefined> {
    await this.ensureReady();
    const e = await this.read(partition(ref.route), eventRow(ref.eventId));
    return e ? toMarker(e) : undefined;
  }

  /**
   * Step (a) of the intake: creates the marker (state pending, with the job) and its aliases
   * atomically, or finds the event that already holds one of the keys.
   */
  async reserve(
    ref: EventRef,
    o: { aliases: readonly string[]; jobKind: string; jobText: string; messageId: string },
  ): Promise<ReserveResult> {
    if (o.jobText.length > MAX_JOB_CHARS)
      throw new Error(`job of ${o.jobText.length} characters exceeds ${MAX_JOB_CHARS}; check before reserve`);
    await this.ensureReady();
    const pk = partition(ref.route);
    const aliases = [...new Set(o.aliases)];
    const marker: Row & { partitionKey: string; rowKey: string } = {
      partitionKey: pk,
      rowKey: eventRow(ref.eventId),
      route: ref.route,
      eventId: ref.eventId,
      phase: 'new',
      jobKind: o.jobKind,
      messageId: o.messageId,
      receivedAt: this.now(),
      attempts: 0,
      aliases: JSON.stringify(aliases),
      ...jobProperties(o.jobText),
    };
    // Several tries only for the rare race where a key vanishes (purged) between our create and read.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.call('create marker', async () => {
          if (aliases.length === 0) await this.table.createEntity(marker, this.opts());
          else {
            const actions: TransactionAction[] = [
              ['create', marker],
              ...aliases.map((a): TransactionAction => [
                'create',
                { partitionKey: pk, rowKey: aliasRow(a), route: ref.route, aliasOf: ref.eventId, alias: a },
              ]),
            ];
            await this.table.submitTransaction(actions, this.opts());
          }
        });
        return { created: true, marker: toMarker(marker as TableEntityResult<Row>) };
      } catch (e) {
        if (statusOf(e) !== 409) throw e;
      }
      const own = await this.read(pk, eventRow(ref.eventId));
      if (own) return { created: false, marker: toMarker(own), via: 'event' };
      for (const a of aliases) {
        const alias = await this.read(pk, aliasRow(a));
        if (!alias) continue;
        const holder = await this.read(pk, eventRow(String(alias.aliasOf)));
        if (holder) return { created: false, marker: toMarker(holder), via: 'alias' };
      }
    }
    throw new TransientError('the webhook store changed under a reservation three times; retry', {
      code: 'storage_unavailable',
      status: 503,
    });
  }

  /** Step (c): the job message is on the queue. Touches only `enqueuedAt` (see the module comment). */
  async markEnqueued(ref: EventRef): Promise<void> {
    await this.call('mark enqueued', async () => {
      try {
        await this.table.updateEntity(
          { partitionKey: partition(ref.route), rowKey: eventRow(ref.eventId), enqueuedAt: this.now() },
          'Merge',
          this.opts(),
        );
      } catch (e) {
        if (statusOf(e) !== 404) throw e;
      }
    });
  }

  /**
   * The worker takes the event: from pending/enqueued, or from processing whose lease ran out.
   * At most one live claim exists at a time (ETag-conditional), so a job delivered twice is
   * processed once unless its worker dies (then once more, after the lease).
   */
  async claim(ref: EventRef, o: { leaseMs?: number } = {}): Promise<ClaimResult> {
    const leaseMs = o.leaseMs ?? 10 * 60_000;
    await this.ensureReady();
    const pk = partition(ref.route);
    const rk = eventRow(ref.eventId);
    for (let attempt = 0; attempt < 10; attempt++) {
      const e = await this.read(pk, rk);
      if (!e) return { status: 'unknown' };
      const marker = toMarker(e);
      if (marker.state === 'done' || marker.state === 'failed') return { status: 'done', marker };
      const now = this.now();
      if (marker.state === 'processing' && (marker.claimUntil ?? 0) > now)
        return { status: 'busy', retryAfterMs: (marker.claimUntil ?? now) - now, marker };
      const token = randomUUID();
      const change = {
        partitionKey: pk,
        rowKey: rk,
        phase: 'processing',
        claimToken: token,
        claimUntil: now + leaseMs,
        claimedAt: now,
        attempts: marker.attempts + 1,
      };
      try {
        await this.call('claim', () =>
          this.table.updateEntity(change, 'Merge', { etag: e.etag, ...this.opts() }),
        );
      } catch (err) {
        if (statusOf(err) === 412 || statusOf(err) === 404) continue;
        throw err;
      }
      const job: StoredJob = { kind: marker.jobKind, body: JSON.parse(jobText(e)) as unknown };
      return {
        status: 'claimed',
        token,
        attempt: marker.attempts + 1,
        job,
        marker: {
          ...marker,
          state: 'processing',
          attempts: marker.attempts + 1,
          claimUntil: change.claimUntil,
        },
      };
    }
    throw new ConflictError(`could not claim webhook event ${ref.route}/${ref.eventId}: too much contention`);
  }

  /**
   * The worker finished the event: `done`, or `failed` (quarantined; `reason` is shown in health
   * and the CLI, so it must not hold a secret). Idempotent: a finished event stays as it is.
   */
  async complete(ref: EventRef, o: { outcome?: 'done' | 'failed'; reason?: string } = {}): Promise<void> {
    await this.ensureReady();
    const pk = partition(ref.route);
    const rk = eventRow(ref.eventId);
    for (let attempt = 0; attempt < 10; attempt++) {
      const e = await this.read(pk, rk);
      if (!e || e.phase === 'done' || e.phase === 'failed') return;
      try {
        await this.call('complete', () =>
          this.table.updateEntity(
            {
              partitionKey: pk,
              rowKey: rk,
              phase: o.outcome ?? 'done',
              completedAt: this.now(),
              claimUntil: 0,
              reason: (o.reason ?? '').slice(0, MAX_REASON_CHARS),
            },
            'Merge',
            { etag: e.etag, ...this.opts() },
          ),
        );
        return;
      } catch (err) {
        if (statusOf(err) !== 412) throw err;
      }
    }
    throw new ConflictError(
      `could not complete webhook event ${ref.route}/${ref.eventId}: too much contention`,
    );
  }

  /** Gives a claim back (a transient failure), so the next delivery can claim at once. */
  async release(ref: EventRef, token: string): Promise<void> {
    await this.ensureReady();
    const pk = partition(ref.route);
    const rk = eventRow(ref.eventId);
    const e = await this.read(pk, rk);
    if (!e || e.phase !== 'processing' || e.claimToken !== token) return;
    try {
      await this.call('release', () =>
        this.table.updateEntity({ partitionKey: pk, rowKey: rk, phase: 'new', claimUntil: 0 }, 'Merge', {
          etag: e.etag,
          ...this.opts(),
        }),
      );
    } catch (err) {
      if (statusOf(err) !== 412) throw err; // someone else moved it on: nothing to give back
    }
  }

  /**
   * Events (markers, not aliases), optionally of one route and in one state, newest first within
   * each route; at most `limit` (default 1000). For health and the CLI (`jobs list --failed`).
   */
  async list(o: { route?: string; state?: MarkerState; limit?: number } = {}): Promise<WebhookMarker[]> {
    await this.ensureReady();
    const limit = o.limit ?? 1000;
    const filters = ["RowKey ge 'e|'", "RowKey lt 'e}'"];
    if (o.route !== undefined) filters.push(`PartitionKey eq '${partition(o.route).replace(/'/g, "''")}'`);
    if (o.state !== undefined)
      filters.push(`phase eq '${o.state === 'pending' || o.state === 'enqueued' ? 'new' : o.state}'`);
    const out: WebhookMarker[] = [];
    try {
      for await (const e of this.table.listEntities<Row>({
        queryOptions: { filter: filters.join(' and ') },
      })) {
        const marker = toMarker(e as TableEntityResult<Row>);
        if (o.state !== undefined && marker.state !== o.state) continue;
        out.push(marker);
        if (out.length >= limit) break;
      }
    } catch (e) {
      throw storageFailure(e, 'list events');
    }
    return out.sort((a, b) => (b.completedAt ?? b.receivedAt) - (a.completedAt ?? a.receivedAt));
  }

  /** Markers of a route that were never flagged enqueued and are older than `olderThanMs`. */
  async *stalePending(route: string, olderThanMs: number): AsyncIterable<WebhookMarker> {
    await this.ensureReady();
    const before = this.now() - olderThanMs;
    const pk = partition(route).replace(/'/g, "''");
    const entities = this.table.listEntities<Row>({
      queryOptions: { filter: `PartitionKey eq '${pk}' and phase eq 'new' and receivedAt lt ${before}` },
    });
    try {
      for await (const e of entities) {
        const marker = toMarker(e as TableEntityResult<Row>);
        if (marker.state === 'pending') yield marker;
      }
    } catch (e) {
      throw storageFailure(e, 'list pending');
    }
  }

  /**
   * Markers of a route whose claim ran out: a worker claimed the event and died (or hung past its
   * lease) without completing it. Its job message may be gone for good: each redelivery during
   * the lease answered `busy`, so the queue's delivery limit can run out before the lease does,
   * and the event would stay `processing` for ever. The caller re-sends their job messages.
   */
  async *staleClaims(route: string, releasedBeforeMs = 60_000): AsyncIterable<WebhookMarker> {
    await this.ensureReady();
    const now = this.now();
    const before = now - releasedBeforeMs;
    const pk = partition(route).replace(/'/g, "''");
    // Also a claim given back (a transient failure) longer than `releasedBeforeMs` ago: its
    // message may be gone too (its last delivery answered `busy` while this claim was live).
    const entities = this.table.listEntities<Row>({
      queryOptions: {
        filter:
          `PartitionKey eq '${pk}' and ((phase eq 'processing' and claimUntil lt ${now}) or ` +
          `(phase eq 'new' and attempts gt 0 and claimedAt lt ${before}))`,
      },
    });
    try {
      for await (const e of entities) yield toMarker(e as TableEntityResult<Row>);
    } catch (e) {
      throw storageFailure(e, 'list stale claims');
    }
  }

  /**
   * Deletes finished markers (and their aliases) completed before `completedBefore`; returns how
   * many events were purged. Keep them longer than any sender retries (WISEflow: 8 × 15 min):
   * a duplicate that arrives after its marker is purged is accepted as new.
   */
  async purge(route: string, completedBefore: number): Promise<number> {
    await this.ensureReady();
    const pk = partition(route).replace(/'/g, "''");
    let purged = 0;
    const entities = this.table.listEntities<Row>({
      queryOptions: {
        filter: `PartitionKey eq '${pk}' and completedAt gt 0 and completedAt lt ${completedBefore}`,
      },
    });
    for await (const e of entities) {
      const marker = toMarker(e as TableEntityResult<Row>);
      if (marker.state !== 'done' && marker.state !== 'failed') continue;
      for (const a of marker.aliases) await this.deleteQuietly(String(e.partitionKey), aliasRow(a));
      await this.deleteQuietly(String(e.partitionKey), String(e.rowKey));
      purged++;
    }
    return purged;
  }

  private async deleteQuietly(pk: string, rk: string): Promise<void> {
    await this.call('purge', async () => {
      try {
        await this.table.deleteEntity(pk, rk, this.opts());
      } catch (e) {
        if (statusOf(e) !== 404) throw e;
      }
    });
  }
}
