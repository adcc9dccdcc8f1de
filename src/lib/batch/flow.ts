/**
 * What a flow plugs into the batch engine. The engine knows nothing of views, cursors, events
 * or vendors: it plans, dispatches, applies and completes batches of records for a STREAM, and
 * asks the flow for two things only:
 *
 *   collect     the records of the stream's next batch (streamed: the engine chunks and sends
 *               them as they come, so a batch of a million rows never sits in memory), and
 *               where the batch ends;
 *   onComplete  the flow's own completion step once every message of the batch reached a
 *               terminal outcome (a view's cursor compare-and-set; an event marked done).
 *
 * A stream is the unit of single flight: `<flow>` (a view-sync flow has one stream) or
 * `<flow>:<sub>` (a flow with one stream per event, say). Ledger rows are keyed by stream;
 * quarantine rows, health and record keys by flow.
 */
import type { Log, TargetSystem } from '../ports';

export interface BatchSettings {
  /** Most records a flow should put in one batch (the flow enforces it in collect). */
  maxBatch: number;
  recordsPerMessage: number;
  /** Deliveries before a failing message is poison (the queue's max delivery count). */
  maxAttempts: number;
  planLeaseSeconds: number;
  stallSeconds: number;
  poisonPolicy: 'quarantine' | 'block';
  /**
   * Waits before a failing message is handed back for redelivery, by delivery count (index
   * deliveryCount - 1; the last value repeats); also between the last delivery's in-process
   * retry rounds and before a dead-letter handler rethrows. See applier.ts.
   */
  retryBackoffMs: readonly number[];
  /** Longest a plan may read its source before its request is aborted (planner.ts). */
  planDeadlineSeconds: number;
}

/** A record as a flow produces it. `id` is unique within the flow; `version` orders its changes. */
export interface CollectedRecord {
  kind: 'record';
  id: string;
  version: bigint;
  deleted: boolean;
  data: Record<string, unknown>;
}

/** Something the source sent that is not a record: quarantined durably, never dropped. */
export interface CollectedMalformed {
  kind: 'malformed';
  /** The raw item (bounded by the flow). */
  raw: string;
  error: string;
  /** Identity where it could be read, for operators. */
  id?: string;
  version?: string;
}

export type CollectedItem = CollectedRecord | CollectedMalformed;

/** Where a batch ends: known only once its records have all been read. */
export interface BatchEnd {
  /** The stream's position after the batch (a view's cursor). Opaque to the engine. */
  to: string;
  /** The batch stopped at the flow's limit: plan again as soon as it completes. */
  full: boolean;
  /** Flow data carried by the manifest to onComplete (small JSON text). */
  meta?: string;
}

export interface Collection {
  /** The stream's position the batch starts from (undefined: the very beginning). */
  from: string | undefined;
  items: AsyncIterable<CollectedItem>;
  /**
   * Called once `items` is exhausted. undefined: nothing to do (no batch, no manifest), unless
   * records were collected. A flow whose batches must complete even when empty (an event with
   * no rows still has to be marked done) returns an end whatever it read.
   */
  end(): BatchEnd | undefined;
}

export interface CollectInput {
  stream: string;
  /** What the caller of plan() passed (an event), undefined for a timer tick or a poll. */
  input: unknown;
  /** The flow's own state as its last completed batch left it (see onComplete). */
  flowState: string | undefined;
  signal: AbortSignal;
  log: Log;
}

export interface CompletedBatch {
  stream: string;
  batchId: string;
  from: string | undefined;
  to: string;
  meta: string | undefined;
  recordCount: number;
  quarantined: number;
  /** The flow state stored on the stream now. */
  flowState: string | undefined;
}

export interface BatchFlow {
  /** The flow's name: letters, digits and hyphens. Keys quarantine, health and records. */
  readonly name: string;
  readonly settings: BatchSettings;
  readonly target: TargetSystem;
  collect(c: CollectInput): Promise<Collection>;
  /**
   * The flow's completion step. Must be idempotent: a crash after it and before the engine
   * closes the batch runs it again. Throw a ConflictError to leave the batch uncompleted
   * (it is retried by the next drain signal). Returns the stream's next flow state, or
   * undefined to keep the current one.
   */
  onComplete(b: CompletedBatch, log: Log): Promise<{ flowState?: string } | void>;
  /**
   * Whether completing this batch would conflict now (a view's cursor moved by another
   * writer): a reason, or undefined when it would not. Asked only while the stream's last error
   * is a completion conflict; while it answers a reason, drain repairs are paused.
   */
  completionConflict?(b: {
    batchId: string;
    from: string | undefined;
    to: string;
  }): Promise<string | undefined>;
  /** Whether a record's fields mean "deleted" (for quarantine entries written before flows). */
  isDeleted?(data: Record<string, unknown>): boolean;
  /** The flow's own facts for health (a cursor and its location, ...), given its stored state. */
  describe?(flowState: string | undefined): Promise<object>;
}

/** `<flow>` or `<flow>:<sub>`: the flow a stream belongs to. */
export const flowOfStream = (stream: string): string => {
  const i = stream.indexOf(':');
  return i < 0 ? stream : stream.slice(0, i);
};

/** Flow names: safe in table keys, message ids, function names and record keys. */
export const FLOW_NAME_PATTERN = /^[A-Za-z0-9-]{1,40}$/;
