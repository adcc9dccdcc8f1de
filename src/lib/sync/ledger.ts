/**
 * The batch ledger and view state, in Azure Table storage (table `<prefix>state`).
 *
 *   PK `view|<view>`            RK `state`     view state: the batch in flight, the planner's lease,
 *                                              block flag, last error, totals
 *   PK `batch|<view>|<batchId>` RK `manifest`  from, to, message/record counts, state, done counters
 *   PK `batch|<view>|<batchId>` RK `msg|<n>`   one marker per message that reached a terminal outcome
 *
 * Marking a message done is ONE entity-group transaction: create its marker and update the
 * manifest's counter with If-Match. A redelivered message fails on the existing marker (409)
 * and is not counted twice; a concurrent counter update fails on the ETag (412) and is retried.
 *
 * Manifest states: dispatching → dispatched → completing → completed, or dispatching →
 * abandoned (planner died mid-dispatch; the batch is re-planned), or → blocked (POISON_POLICY
 * =block). Every transition is an ETag-conditional update, so complete and abandon exclude each
 * other.
 */
import type { TableClient, TableEntityResult } from '@azure/data-tables';
import { ConflictError, statusOf } from '../errors';
import { ensureTable } from '../storage/table-helpers';

export type BatchState = 'dispatching' | 'dispatched' | 'completing' | 'completed' | 'abandoned' | 'blocked';

export interface Manifest {
  batchId: string;
  /** Cursor the batch was planned from (undefined = first run). */
  from: bigint | undefined;
  /** Cursor after the batch: the last planned record's id (>= from). */
  to: bigint;
  messageCount: number;
  recordCount: number;
  /** The batch hit SYNC_MAX_BATCH: re-poll at once when it completes. */
  full: boolean;
  state: BatchState;
  /** Messages that reached a terminal outcome. */
  done: number;
  /** Records quarantined in this batch. */
  quarantined: number;
  createdAt: string;
  completedAt?: string;
  etag: string;
}

export interface ViewState {
  currentBatchId?: string;
  leaseOwner?: string;
  leaseUntil?: number;
  blocked?: string;
  lastError?: string;
  lastErrorAt?: string;
  lastCompletedAt?: string;
  lastCompletedBatchId?: string;
  recordsSynced: number;
  batchesCompleted: number;
  /** Progress watch of the batch in flight: its done count when last seen changing, and when. */
  progressBatchId?: string;
  progressDone?: number;
  progressAt?: number;
  etag: string;
}

type Row = Record<string, unknown>;

const viewPk = (view: string) => `view|${view}`;
const batchPk = (view: string, batchId: string) => `batch|${view}|${batchId}`;
export const markerRk = (chunk: number) => `msg|${String(chunk).padStart(6, '0')}`;

const big = (s: unknown): bigint | undefined => (typeof s === 'string' && s !== '' ? BigInt(s) : undefined);

function toManifest(e: TableEntityResult<Row>): Manifest {
  return {
    batchId: String(e.batchId),
    from: big(e.from),
    to: BigInt(String(e.to)),
    messageCount: Number(e.messageCount),
    recordCount: Number(e.recordCount),
    full: Boolean(e.full),
    state: e.state as BatchState,
    done: Number(e.done ?? 0),
    quarantined: Number(e.quarantined ?? 0),
    createdAt: String(e.createdAt),
    completedAt: e.completedAt ? String(e.completedAt) : undefined,
    etag: e.etag,
  };
}

function toViewState(e: TableEntityResult<Row>): ViewState {
  const opt = (k: string) => (e[k] === undefined || e[k] === null || e[k] === '' ? undefined : String(e[k]));
  return {
    currentBatchId: opt('currentBatchId'),
    leaseOwner: opt('leaseOwner'),
    leaseUntil: e.leaseUntil ? Number(e.leaseUntil) : undefined,
    blocked: opt('blocked'),
    lastError: opt('lastError'),
    lastErrorAt: opt('lastErrorAt'),
    lastCompletedAt: opt('lastCompletedAt'),
    lastCompletedBatchId: opt('lastCompletedBatchId'),
    recordsSynced: Number(e.recordsSynced ?? 0),
    batchesCompleted: Number(e.batchesCompleted ?? 0),
    progressBatchId: opt('progressBatchId'),
    progressDone: e.progressDone === undefined ? undefined : Number(e.progressDone),
    progressAt: e.progressAt ? Number(e.progressAt) : undefined,
    etag: e.etag,
  };
}

export interface MarkDoneResult {
  /** False when this message had already been counted (a redelivery). */
  counted: boolean;
  manifest: Manifest;
  /** True when this message brought the batch to its total. */
  drained: boolean;
}

export class Ledger {
  constructor(
    private readonly table: TableClient,
    readonly view: string,
  ) {}

  async ensureReady(): Promise<void> {
    await ensureTable(this.table);
  }

  // ---- view state -------------------------------------------------------------------------

  async getViewState(): Promise<ViewState> {
    await this.ensureReady();
    try {
      return toViewState(await this.table.getEntity<Row>(viewPk(this.view), 'state'));
    } catch (e) {
      if (statusOf(e) !== 404) throw e;
      try {
        await this.table.createEntity({ partitionKey: viewPk(this.view), rowKey: 'state', recordsSynced: 0 });
      } catch (err) {
        if (statusOf(err) !== 409) throw err;
      }
      return toViewState(await this.table.getEntity<Row>(viewPk(this.view), 'state'));
    }
  }

  /**
   * Applies `change` to the view state with an ETag condition; returns the new state, or
   * undefined when the ETag no longer matched (someone else changed it first).
   */
  async tryUpdateViewState(state: ViewState, change: Row): Promise<ViewState | undefined> {
    try {
      await this.table.updateEntity(
        { partitionKey: viewPk(this.view), rowKey: 'state', ...change },
        'Merge',
        {
          etag: state.etag,
        },
      );
    } catch (e) {
      if (statusOf(e) === 412) return undefined;
      throw e;
    }
    return this.getViewState();
  }

  /** Re-reads and retries `change(state)` until it applies (or `change` returns undefined). */
  async updateViewState(change: (s: ViewState) => Row | undefined): Promise<ViewState> {
    for (let attempt = 0; ; attempt++) {
      const state = await this.getViewState();
      const c = change(state);
      if (!c) return state;
      const next = await this.tryUpdateViewState(state, c);
      if (next) return next;
      if (attempt > 50) throw new ConflictError('the view state kept changing concurrently');
    }
  }

  async recordError(message: string, at: Date): Promise<void> {
    await this.updateViewState(() => ({ lastError: message.slice(0, 2000), lastErrorAt: at.toISOString() }));
  }

  // ---- manifests --------------------------------------------------------------------------

  async createManifest(m: Omit<Manifest, 'etag' | 'done' | 'quarantined' | 'state'>): Promise<Manifest> {
    await this.ensureReady();
    await this.table.createEntity({
      partitionKey: batchPk(this.view, m.batchId),
      rowKey: 'manifest',
      batchId: m.batchId,
      from: m.from?.toString() ?? '',
      to: m.to.toString(),
      messageCount: m.messageCount,
      recordCount: m.recordCount,
      full: m.full,
      state: 'dispatching',
      done: 0,
      quarantined: 0,
      createdAt: m.createdAt,
    });
    return (await this.getManifest(m.batchId))!;
  }

  async getManifest(batchId: string): Promise<Manifest | undefined> {
    try {
      return toManifest(await this.table.getEntity<Row>(batchPk(this.view, batchId), 'manifest'));
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw e;
    }
  }

  /** ETag-conditional state transition; undefined when the manifest changed meanwhile. */
  async transition(m: Manifest, state: BatchState, extra: Row = {}): Promise<Manifest | undefined> {
    try {
      await this.table.updateEntity(
        { partitionKey: batchPk(this.view, m.batchId), rowKey: 'manifest', state, ...extra },
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
  async markDone(batchId: string, chunk: number, quarantined: number): Promise<MarkDoneResult> {
    const pk = batchPk(this.view, batchId);
    for (let attempt = 0; ; attempt++) {
      const m = await this.getManifest(batchId);
      if (!m) throw new Error(`batch ${batchId} has no manifest; the message cannot be counted`);
      try {
        await this.table.submitTransaction([
          ['create', { partitionKey: pk, rowKey: markerRk(chunk), quarantined }],
          [
            'update',
            {
              partitionKey: pk,
              rowKey: 'manifest',
              done: m.done + 1,
              quarantined: m.quarantined + quarantined,
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
      const after = { ...m, done: m.done + 1, quarantined: m.quarantined + quarantined };
      return { counted: true, manifest: after, drained: after.done === m.messageCount };
    }
  }

  async isMarked(batchId: string, chunk: number): Promise<boolean> {
    try {
      await this.table.getEntity(batchPk(this.view, batchId), markerRk(chunk), {
        queryOptions: { select: ['RowKey'] },
      });
      return true;
    } catch (e) {
      if (statusOf(e) === 404) return false;
      throw e;
    }
  }
}
