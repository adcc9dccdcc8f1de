/**
 * The batch ledger and stream state, in Azure Table storage (table `<prefix>state`).
 *
 *   PK `view|<stream>`            RK `state`     stream state: the batch in flight, the planner's
 *                                                lease, block flag, last error, totals, flow state
 *   PK `batch|<stream>|<batchId>` RK `manifest`  from, to, counts, state, done counters, flow meta
 *   PK `batch|<stream>|<batchId>` RK `msg|<n>`   one marker per message that reached a terminal outcome
 *
 * The `view|` prefix is kept from before flows existed, so state written then (a view-sync flow
 * whose stream is its view name) stays readable as it is: no migration.
 *
 * Marking a message done is ONE entity-group transaction: create its marker and update the
 * manifest's counters with If-Match. A redelivered message fails on the existing marker (409)
 * and is not counted twice; a concurrent counter update fails on the ETag (412) and is retried.
 *
 * Manifest states: dispatching → dispatched → completing → completed, or dispatching →
 * abandoned (its planner died or lost its lease; the stream is re-planned), or → blocked
 * (POISON_POLICY=block). While a batch is `dispatching` its message count is not known yet (the
 * planner streams its records into messages): it cannot drain before the planner finalises it.
 * Every transition is an ETag-conditional update, so complete and abandon exclude each other.
 */
import type { TableClient, TableEntityResult } from '@azure/data-tables';
import { ConflictError, statusOf } from '../errors';
import { ensureTable, textFromProperties, textToProperties } from '../storage/table-helpers';

export type BatchState = 'dispatching' | 'dispatched' | 'completing' | 'completed' | 'abandoned' | 'blocked';

export interface Manifest {
  batchId: string;
  /** The stream's position the batch was planned from (undefined = the beginning). */
  from: string | undefined;
  /** The stream's position after the batch; while dispatching, `from` (or ''). */
  to: string;
  /** Messages of the batch; final once the batch left `dispatching`. */
  messageCount: number;
  recordCount: number;
  /** The batch hit the flow's limit: plan again at once when it completes. */
  full: boolean;
  state: BatchState;
  /** Messages that reached a terminal outcome. */
  done: number;
  /** Records written / found not newer / quarantined, counted per message as it is done. */
  applied: number;
  skipped: number;
  quarantined: number;
  /** Flow data for onComplete. */
  meta?: string;
  createdAt: string;
  dispatchedAt?: string;
  completedAt?: string;
  etag: string;
}

export interface StreamState {
  currentBatchId?: string;
  leaseOwner?: string;
  leaseUntil?: number;
  /** When the current lease holder took it: a plan in progress and its age, for health. */
  leaseSince?: number;
  blocked?: string;
  lastError?: string;
  lastErrorAt?: string;
  /** The last error's machine-readable code (`cursor_conflict` pauses drain repairs: planner.ts). */
  lastErrorCode?: string;
  /** The error's kind (errors.ts): `configuration` / `permanent` will not heal by retrying. */
  lastErrorKind?: string;
  lastCompletedAt?: string;
  /** When the stream was last known caught up: everything committed before it was applied (health's lag). */
  syncedAt?: string;
  lastCompletedBatchId?: string;
  recordsApplied: number;
  recordsSkipped: number;
  recordsQuarantined: number;
  batchesCompleted: number;
  /** Progress watch of the batch in flight: its done count when last seen changing, and when. */
  progressBatchId?: string;
  progressDone?: number;
  progressAt?: number;
  /** The flow's own state (JSON text), written by the completion of its batches. */
  flowState?: string;
  etag: string;
}

type Row = Record<string, unknown>;

const streamPk = (stream: string) => `view|${stream}`;
const batchPk = (stream: string, batchId: string) => `batch|${stream}|${batchId}`;
export const markerRk = (chunk: number) => `msg|${String(chunk).padStart(6, '0')}`;

const opt = (e: Row, k: string) =>
  e[k] === undefined || e[k] === null || e[k] === '' ? undefined : String(e[k]);
const num = (e: Row, k: string) =>
  e[k] === undefined || e[k] === null || e[k] === '' ? undefined : Number(e[k]);

function toManifest(e: TableEntityResult<Row>): Manifest {
  return {
    batchId: String(e.batchId),
    from: opt(e, 'from'),
    to: String(e.to ?? ''),
    messageCount: Number(e.messageCount ?? 0),
    recordCount: Number(e.recordCount ?? 0),
    full: Boolean(e.full),
    state: e.state as BatchState,
    done: Number(e.done ?? 0),
    applied: Number(e.applied ?? 0),
    skipped: Number(e.skipped ?? 0),
    quarantined: Number(e.quarantined ?? 0),
    meta: e.metaParts ? textFromProperties('meta', e) : undefined,
    createdAt: String(e.createdAt),
    dispatchedAt: opt(e, 'dispatchedAt'),
    completedAt: opt(e, 'completedAt'),
    etag: e.etag,
  };
}

function toStreamState(e: TableEntityResult<Row>): StreamState {
  return {
    currentBatchId: opt(e, 'currentBatchId'),
    leaseOwner: opt(e, 'leaseOwner'),
    leaseUntil: num(e, 'leaseUntil') || undefined,
    leaseSince: num(e, 'leaseSince') || undefined,
    blocked: opt(e, 'blocked'),
    lastError: opt(e, 'lastError'),
    lastErrorAt: opt(e, 'lastErrorAt'),
    lastErrorCode: opt(e, 'lastErrorCode'),
    lastErrorKind: opt(e, 'lastErrorKind'),
    lastCompletedAt: opt(e, 'lastCompletedAt'),
    syncedAt: opt(e, 'syncedAt'),
    lastCompletedBatchId: opt(e, 'lastCompletedBatchId'),
    // `recordsSynced` is what state written before flows called it.
    recordsApplied: Number(e.recordsApplied ?? e.recordsSynced ?? 0),
    recordsSkipped: Number(e.recordsSkipped ?? 0),
    recordsQuarantined: Number(e.recordsQuarantined ?? 0),
    batchesCompleted: Number(e.batchesCompleted ?? 0),
    progressBatchId: opt(e, 'progressBatchId'),
    progressDone: num(e, 'progressDone'),
    progressAt: num(e, 'progressAt') || undefined,
    flowState: e.flowStateParts ? textFromProperties('flowState', e) || undefined : undefined,
    etag: e.etag,
  };
}

/** Flow state and manifest meta are JSON text that may exceed one property (64 KiB). */
export function textColumns(prefix: string, text: string | undefined): Record<string, string | number> {
  const props = textToProperties(prefix, text ?? '');
  if (!props) throw new Error(`${prefix} is too large to store (${text?.length} characters)`);
  return props;
}

export interface MarkDoneCounts {
  applied: number;
  skipped: number;
  quarantined: number;
}

export interface MarkDoneResult {
  /** False when this message had already been counted (a redelivery). */
  counted: boolean;
  manifest: Manifest;
  /** True when this message brought a dispatched batch to its total. */
  drained: boolean;
}

/** The ledger of one stream. Cheap to create: one per stream, over a shared table client. */
export class Ledger {
  constructor(
    private readonly table: TableClient,
    readonly stream: string,
  ) {}

  async ensureReady(): Promise<void> {
    await ensureTable(this.table);
  }

  // ---- stream state -----------------------------------------------------------------------

  async getState(): Promise<StreamState> {
    await this.ensureReady();
    try {
      return toStreamState(await this.table.getEntity<Row>(streamPk(this.stream), 'state'));
    } catch (e) {
      if (statusOf(e) !== 404) throw e;
      try {
        await this.table.createEntity({
          partitionKey: streamPk(this.stream),
          rowKey: 'state',
          recordsApplied: 0,
        });
      } catch (err) {
        if (statusOf(err) !== 409) throw err;
      }
      return toStreamState(await this.table.getEntity<Row>(streamPk(this.stream), 'state'));
    }
  }

  /** The state if the stream was ever planned, without creating it. */
  async peekState(): Promise<StreamState | undefined> {
    await this.ensureReady();
    try {
      return toStreamState(await this.table.getEntity<Row>(streamPk(this.stream), 'state'));
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw e;
    }
  }

  /**
   * Applies `change` to the stream state with an ETag condition; returns the new state, or
   * undefined when the ETag no longer matched (someone else changed it first).
   */
  async tryUpdateState(state: StreamState, change: Row): Promise<StreamState | undefined> {
    try {
      await this.table.updateEntity(
        { partitionKey: streamPk(this.stream), rowKey: 'state', ...change },
        'Merge',
        {
          etag: state.etag,
        },
      );
    } catch (e) {
      if (statusOf(e) === 412) return undefined;
      throw e;
    }
    return this.getState();
  }

  /** Re-reads and retries `change(state)` until it applies (or `change` returns undefined). */
  async updateState(change: (s: StreamState) => Row | undefined): Promise<StreamState> {
    for (let attempt = 0; ; attempt++) {
      const state = await this.getState();
      const c = change(state);
      if (!c) return state;
      const next = await this.tryUpdateState(state, c);
      if (next) return next;
      if (attempt > 50)
        throw new ConflictError(`the state of stream ${this.stream} kept changing concurrently`);
    }
  }

  /**
   * `code` (machine-readable: `cursor_conflict` pauses drain repairs, planner.ts) and `kind` (an
   * AppError's: `configuration` / `permanent` will not heal by retrying, health says blocked).
   */
  async recordError(message: string, at: Date, o: { code?: string; kind?: string } = {}): Promise<void> {
    await this.updateState(() => ({
      lastError: message.slice(0, 2000),
      lastErrorAt: at.toISOString(),
      lastErrorCode: o.code ?? '',
      lastErrorKind: o.kind ?? '',
    }));
  }

  // ---- manifests --------------------------------------------------------------------------

  /** A new batch, `dispatching`, its size unknown until finalize(). */
  async createManifest(m: {
    batchId: string;
    from: string | undefined;
    createdAt: string;
  }): Promise<Manifest> {
    await this.ensureReady();
    await this.table.createEntity({
      partitionKey: batchPk(this.stream, m.batchId),
      rowKey: 'manifest',
      batchId: m.batchId,
      from: m.from ?? '',
      to: m.from ?? '',
      messageCount: 0,
      recordCount: 0,
      full: false,
      state: 'dispatching',
      done: 0,
      applied: 0,
      skipped: 0,
      quarantined: 0,
      createdAt: m.createdAt,
    });
    return (await this.getManifest(m.batchId))!;
  }

  async getManifest(batchId: string): Promise<Manifest | undefined> {
    try {
      return toManifest(await this.table.getEntity<Row>(batchPk(this.stream, batchId), 'manifest'));
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw e;
    }
  }

  /** ETag-conditional state transition; undefined when the manifest changed meanwhile. */
  async transition(m: Manifest, state: BatchState, extra: Row = {}): Promise<Manifest | undefined> {
    try {
      await this.table.updateEntity(
        { partitionKey: batchPk(this.stream, m.batchId), rowKey: 'manifest', state, ...extra },
        'Merge',
        { etag: m.etag },
      );
    } catch (e) {
      if (statusOf(e) === 412) return undefined;
      throw e;
    }
    return this.getManifest(m.batchId);
  }

  /**
   * Records that message `chunk` reached a terminal outcome (applied, or its failing records
   * quarantined) and counts it, atomically. Idempotent per (batch, chunk).
   */
  async markDone(batchId: string, chunk: number, counts: MarkDoneCounts): Promise<MarkDoneResult> {
    const pk = batchPk(this.stream, batchId);
    for (let attempt = 0; ; attempt++) {
      const m = await this.getManifest(batchId);
      if (!m)
        throw new Error(
          `batch ${batchId} of stream ${this.stream} has no manifest; the message cannot be counted`,
        );
      const after = {
        ...m,
        done: m.done + 1,
        applied: m.applied + counts.applied,
        skipped: m.skipped + counts.skipped,
        quarantined: m.quarantined + counts.quarantined,
      };
      try {
        await this.table.submitTransaction([
          ['create', { partitionKey: pk, rowKey: markerRk(chunk), quarantined: counts.quarantined }],
          [
            'update',
            {
              partitionKey: pk,
              rowKey: 'manifest',
              done: after.done,
              applied: after.applied,
              skipped: after.skipped,
              quarantined: after.quarantined,
            },
            'Merge',
            { etag: m.etag },
          ],
        ]);
      } catch (e) {
        const status = statusOf(e);
        if (status === 409) return { counted: false, manifest: m, drained: false };
        if (status === 412 && attempt < 200) {
          // Another message of the batch counted first: back off a little (jittered) so that
          // concurrent finishers spread out instead of retrying in lockstep.
          await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 5 * (attempt + 1))));
          continue;
        }
        throw e;
      }
      // The transaction succeeded against m's ETag, so the counters are exactly m's plus ours.
      // A batch still dispatching has no final count: its planner checks the drain when it
      // finalises the batch.
      return { counted: true, manifest: after, drained: isDrained(after) };
    }
  }

  async isMarked(batchId: string, chunk: number): Promise<boolean> {
    try {
      await this.table.getEntity(batchPk(this.stream, batchId), markerRk(chunk), {
        queryOptions: { select: ['RowKey'] },
      });
      return true;
    } catch (e) {
      if (statusOf(e) === 404) return false;
      throw e;
    }
  }
}

/** Every message of a dispatched batch reached a terminal outcome. */
export const isDrained = (m: Pick<Manifest, 'state' | 'done' | 'messageCount'>): boolean =>
  (m.state === 'dispatched' || m.state === 'completing') && m.done >= m.messageCount;
