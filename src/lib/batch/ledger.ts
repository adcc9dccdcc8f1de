/**
 * The batch ledger and stream state, in Azure Table storage (table `<prefix>state`).
 *
 *   PK `view|<stream>`            RK `state`     stream state: the batch in flight, the planner's
 *                                                lease, block flag, last error, totals, flow state
 *   PK `batch|<stream>|<batchId>` RK `manifest`  from, to, counts, state, flow meta
 *   PK `batch|<stream>|<batchId>` RK `manifest|<k>`  counter shard k (0..SHARDS-1): done / applied /
 *                                                skipped / quarantined of the messages it counted
 *   PK `batch|<stream>|<batchId>` RK `msg|<n>`   one marker per message that reached a terminal outcome
 *
 * The `view|` prefix is kept from before flows existed, so state written then (a view-sync flow
 * whose stream is its view name) stays readable as it is: no migration.
 *
 * Marking a message done is ONE entity-group transaction: create its marker and add it to ONE
 * counter shard with If-Match. A redelivered message fails on the existing marker (409) and is
 * not counted twice; a concurrent update of the same shard fails on the ETag (412) and is
 * retried. The batch's counts are the manifest's own counters (state written before shards
 * existed: no migration) plus the sum of its shards, read with one range query (`manifest` and
 * `manifest|*` sort together, before the markers).
 *
 * Why shards: with one counter row every message of a batch updates the same entity, so at
 * concurrency 16-64 most transactions lose the ETag race and retry (about 8 ledger requests per
 * message at 64, measured by `npm run bench -- --only=cost`). Each process takes a shard no other
 * invocation of its own is using (a lane) and remembers the ETag its own last read returned, so
 * in one process a message costs two requests (the transaction and the range query that tells
 * whether the batch drained); processes collide only when they pick the same shard, which a
 * per-process random offset makes rare, and a collision costs a re-read and a retry, not a
 * wrong count.
 *
 * Drain detection without one counter: a message reads the totals AFTER its own transaction,
 * and the planner reads them after it finalises the batch; whichever write comes last, its
 * reader sees every message counted and the batch dispatched, so at least one of them sends
 * `batch-drained` (two may: completing is idempotent, and the signal's message id is the same).
 *
 * Manifest states: dispatching → dispatched → completing → completed, or dispatching →
 * abandoned (its planner died or lost its lease; the stream is re-planned), or → blocked
 * (POISON_POLICY=block). While a batch is `dispatching` its message count is not known yet (the
 * planner streams its records into messages): it cannot drain before the planner finalises it.
 * Every transition is an ETag-conditional update, so complete and abandon exclude each other.
 */
import { randomInt } from 'node:crypto';
import { odata, type TableClient, type TableEntityResult, type TransactionAction } from '@azure/data-tables';
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

/** Counter shards per batch: more than a process's concurrent invocations (host.json batchSize 16). */
export const SHARDS = 32;
const shardRk = (k: number) => `manifest|${String(k).padStart(2, '0')}`;
/** The manifest and its shards, and nothing else ('~' sorts after '|'; markers start with `msg|`). */
const manifestRange = (pk: string) =>
  odata`PartitionKey eq ${pk} and RowKey ge 'manifest' and RowKey lt 'manifest~'`;

interface Counters {
  done: number;
  applied: number;
  skipped: number;
  quarantined: number;
}
const counters = (e: Row): Counters => ({
  done: Number(e.done ?? 0),
  applied: Number(e.applied ?? 0),
  skipped: Number(e.skipped ?? 0),
  quarantined: Number(e.quarantined ?? 0),
});

/** What this process last knew of a shard: its counters and ETag, or null when it did not exist. */
type ShardView = (Counters & { etag: string }) | null;

/**
 * The counter lanes of one state table in this process: which shards its invocations are using
 * now and the last known state of each. Only a hint: every write is still ETag-conditional.
 */
class Lanes {
  /** Per batch partition: invocations using each shard now, and the last known shards. */
  private readonly batches = new Map<string, { busy: Map<number, number>; shards: Map<number, ShardView> }>();
  /** Spreads processes over different shards. */
  private readonly offset = randomInt(SHARDS);

  private of(pk: string) {
    let b = this.batches.get(pk);
    if (!b) {
      b = { busy: new Map(), shards: new Map() };
      this.batches.set(pk, b);
      // A process works on few batches at a time; forget the oldest.
      if (this.batches.size > 16) this.batches.delete(this.batches.keys().next().value!);
    }
    return b;
  }

  /** A shard no other invocation of this process is using (a busy one when all are). */
  acquire(pk: string): number {
    const b = this.of(pk);
    let k = randomInt(SHARDS);
    for (let i = 0; i < SHARDS; i++) {
      const free = (this.offset + i) % SHARDS;
      if (!b.busy.has(free)) {
        k = free;
        break;
      }
    }
    b.busy.set(k, (b.busy.get(k) ?? 0) + 1);
    return k;
  }

  release(pk: string, k: number): void {
    const busy = this.batches.get(pk)?.busy;
    const n = busy?.get(k) ?? 0;
    if (n <= 1) busy?.delete(k);
    else busy!.set(k, n - 1);
  }

  /** undefined: unknown (read it). */
  get(pk: string, k: number): ShardView | undefined {
    return this.batches.get(pk)?.shards.get(k);
  }

  set(pk: string, k: number, v: ShardView | undefined): void {
    const b = this.of(pk);
    if (v === undefined) b.shards.delete(k);
    else b.shards.set(k, v);
  }

  /**
   * What a read returned: newer than what is known, unless a write of this process has moved
   * the shard on since the read began (its counters only grow, so the higher `done` is newer).
   */
  learn(pk: string, k: number, v: ShardView): void {
    const b = this.of(pk);
    const known = b.shards.get(k);
    if (known && (!v || v.done < known.done)) return;
    b.shards.set(k, v);
  }

  known(pk: string): boolean {
    return (this.batches.get(pk)?.shards.size ?? 0) > 0;
  }
}

const lanesByTable = new WeakMap<TableClient, Lanes>();
function lanesOf(table: TableClient): Lanes {
  let l = lanesByTable.get(table);
  if (!l) {
    l = new Lanes();
    lanesByTable.set(table, l);
  }
  return l;
}

const opt = (e: Row, k: string) =>
  e[k] === undefined || e[k] === null || e[k] === '' ? undefined : String(e[k]);
const num = (e: Row, k: string) =>
  e[k] === undefined || e[k] === null || e[k] === '' ? undefined : Number(e[k]);

/** The manifest row plus the counts of its shards. */
function toManifest(e: TableEntityResult<Row>, shards: readonly Counters[] = []): Manifest {
  const total = shards.reduce(
    (t, c) => ({
      done: t.done + c.done,
      applied: t.applied + c.applied,
      skipped: t.skipped + c.skipped,
      quarantined: t.quarantined + c.quarantined,
    }),
    counters(e),
  );
  return {
    batchId: String(e.batchId),
    from: opt(e, 'from'),
    to: String(e.to ?? ''),
    messageCount: Number(e.messageCount ?? 0),
    recordCount: Number(e.recordCount ?? 0),
    full: Boolean(e.full),
    state: e.state as BatchState,
    ...total,
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

  /** The manifest with its counts (the shards summed): one range query. */
  async getManifest(batchId: string): Promise<Manifest | undefined> {
    const pk = batchPk(this.stream, batchId);
    const lanes = lanesOf(this.table);
    let manifest: TableEntityResult<Row> | undefined;
    const shards: Counters[] = [];
    const seen = new Set<number>();
    try {
      for await (const row of this.table.listEntities<Row>({ queryOptions: { filter: manifestRange(pk) } })) {
        if (row.rowKey === 'manifest') {
          manifest = row;
          continue;
        }
        const k = Number(String(row.rowKey).slice('manifest|'.length));
        const c = counters(row);
        shards.push(c);
        seen.add(k);
        lanes.learn(pk, k, { ...c, etag: row.etag });
      }
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw e;
    }
    if (!manifest) return undefined;
    // What the query did not return does not exist (yet): a lane can create it without a read.
    for (let k = 0; k < SHARDS; k++) if (!seen.has(k)) lanes.learn(pk, k, null);
    return toManifest(manifest, shards);
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
    const lanes = lanesOf(this.table);
    const missing = () =>
      new Error(`batch ${batchId} of stream ${this.stream} has no manifest; the message cannot be counted`);
    // The first message of a batch in this process reads the manifest (it must exist) and learns
    // every shard's ETag with it; later ones go straight to their transaction.
    if (!lanes.known(pk) && !(await this.getManifest(batchId))) throw missing();
    let k = lanes.acquire(pk);
    try {
      for (let attempt = 0; ; attempt++) {
        let shard = lanes.get(pk, k);
        if (shard === undefined) shard = await this.readShard(pk, k);
        const base = shard ?? { done: 0, applied: 0, skipped: 0, quarantined: 0 };
        const next: Counters = {
          done: base.done + 1,
          applied: base.applied + counts.applied,
          skipped: base.skipped + counts.skipped,
          quarantined: base.quarantined + counts.quarantined,
        };
        const count: TransactionAction = shard
          ? ['update', { partitionKey: pk, rowKey: shardRk(k), ...next }, 'Merge', { etag: shard.etag }]
          : ['create', { partitionKey: pk, rowKey: shardRk(k), ...next }];
        try {
          const res = await this.table.submitTransaction([
            ['create', { partitionKey: pk, rowKey: markerRk(chunk), quarantined: counts.quarantined }],
            count,
          ]);
          const etag = res.getResponseForEntity(shardRk(k))?.etag;
          lanes.set(pk, k, etag ? { ...next, etag } : undefined);
        } catch (e) {
          const status = statusOf(e);
          // 409: the marker exists (a redelivery), or another process created this shard first.
          if (status === 409 && (await this.isMarked(batchId, chunk))) {
            const m = await this.getManifest(batchId);
            if (!m) throw missing();
            return { counted: false, manifest: m, drained: false };
          }
          if ((status === 409 || status === 412) && attempt < 200) {
            // Another process counted on this shard: re-read it (and try another shard, jittered,
            // so that colliding processes spread out instead of retrying in lockstep).
            lanes.set(pk, k, undefined);
            lanes.release(pk, k);
            k = lanes.acquire(pk);
            if (attempt > 0)
              await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 5 * attempt)));
            continue;
          }
          throw e;
        }
        break;
      }
    } finally {
      lanes.release(pk, k);
    }
    // Read the totals only after the transaction: see the header on why the last writer sees
    // the batch drained.
    const m = await this.getManifest(batchId);
    if (!m) throw missing();
    return { counted: true, manifest: m, drained: isDrained(m) };
  }

  private async readShard(pk: string, k: number): Promise<ShardView> {
    try {
      const row = await this.table.getEntity<Row>(pk, shardRk(k));
      return { ...counters(row), etag: row.etag };
    } catch (e) {
      if (statusOf(e) === 404) return null;
      throw e;
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
