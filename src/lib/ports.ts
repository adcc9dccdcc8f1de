/**
 * The ports: the interfaces the batch engine and the flows work with. The engine, the flows
 * and every adapter import them from here; no adapter imports the engine, and the engine never
 * imports an adapter. The composition root (src/lib/compose.ts) picks the adapters.
 */

/** The logging port: the Functions context in production, a console or a collector elsewhere. */
export interface Log {
  info(message: string, props?: Record<string, unknown>): void;
  warn(message: string, props?: Record<string, unknown>): void;
  error(message: string, props?: Record<string, unknown>): void;
}

// ---- cursor -------------------------------------------------------------------------------

/** Where a view-sync flow keeps its cursor (`lastSubmissionId`). Compared as BigInt, never as text. */
export interface CursorStore {
  /** The stored cursor, or undefined when there is none yet (no file, or an empty file). */
  read(): Promise<bigint | undefined>;
  /**
   * Writes `next` only if the stored value is still `expected` (undefined = no cursor yet).
   * Returns { ok: true } or { ok: false, current } where current is what is stored now.
   * Two concurrent callers with the same `expected` never both succeed.
   */
  compareAndSet(expected: bigint | undefined, next: bigint): Promise<CompareAndSetResult>;
  /** Human-readable location, without secrets (for logs and health). */
  describe(): string;
  /** A store whose writers hold a lease (Azure Files): whether the file is leased, and stale. */
  leaseStatus?(): Promise<CursorLeaseStatus>;
  /** Ends the file's lease: only a stale one unless forced (`syncbridge cursor break-lease`). */
  breakLease?(o?: { force?: boolean }): Promise<CursorBreakLeaseResult>;
}

export interface CursorLeaseStatus {
  leased: boolean;
  /** The lease looks abandoned (a crashed holder): the file unchanged for the stale period. */
  stale: boolean;
  /** How long the leased file has gone unchanged, by the service's clock. */
  ageMs?: number;
}

export interface CursorBreakLeaseResult {
  broken: boolean;
  holderStampAgeMs?: number;
  reason: string;
}

export type CompareAndSetResult = { ok: true } | { ok: false; current: bigint | undefined };

// ---- transport ----------------------------------------------------------------------------

/**
 * A logical queue: `records` (record messages), `control` (drain signals, polls), `jobs`
 * (webhook work), and whatever a flow adds. The transport maps roles to queue names.
 */
export type QueueRole = string;

export interface OutgoingMessage {
  /** Deterministic id: a re-send after a crash is dropped by duplicate detection where the medium has it. */
  messageId: string;
  /** JSON-serialisable body. */
  body: unknown;
  /** Message kind (also sent as an application property where the medium has them). */
  kind: string;
  batchId?: string;
}

/** Moves messages to a queue. Receiving is the Functions trigger's job. */
export interface Transport {
  /** Largest JSON body of one message that this medium carries, with headroom for headers. */
  readonly maxMessageBytes: number;
  /** Sends all messages (split into as many SDK batches / requests as needed), in order. */
  send(queue: QueueRole, messages: OutgoingMessage[]): Promise<void>;
  /** Creates the queues when the medium allows it and they are missing (local runs). */
  ensureQueues?(): Promise<void>;
  close(): Promise<void>;
}

// ---- target -------------------------------------------------------------------------------

/** One record as the target sees it. `key` is unique per flow and record (see records.ts). */
export interface TargetRecord {
  key: string;
  version: bigint;
  deleted: boolean;
  data: Record<string, unknown>;
}

export type ApplyOutcome = 'applied' | 'skipped';

/**
 * The system records go to. `apply` must be a conditional write: a version not newer than the
 * stored one changes nothing and returns 'skipped'; a delete keeps a tombstone with its version.
 * Throw PermanentError (errors.ts) for a record the target will never accept: it is
 * quarantined at once.
 */
export interface TargetSystem {
  apply(record: TargetRecord): Promise<ApplyOutcome>;
  ensureReady?(): Promise<void>;
  close?(): Promise<void>;
}

export type StoredTargetRecord = TargetRecord;

/** Read access to a target, for health, tests and the CLI. */
export interface TargetReader {
  list(): AsyncIterable<StoredTargetRecord>;
}

// ---- source (Flowfinity views) ------------------------------------------------------------

/** One record of a view. */
export interface SourceRecord {
  /** RecordID exactly as sent (zero padding kept). */
  recordId: string;
  /** lastSubmissionId: the record version. */
  version: bigint;
  /** Every field as received. */
  data: Record<string, unknown>;
}

export type ViewItem =
  | { kind: 'record'; record: SourceRecord }
  /** A record that failed validation: kept with its raw JSON for quarantine, never dropped. */
  | { kind: 'malformed'; raw: string; error: string; index: number };

/**
 * View parameters, sent as query parameters (`previouslastsubmissionid`, a roster view's
 * `reference`, ...). Undefined values are left out.
 */
export type ViewParams = Record<string, string | bigint | number | undefined>;

export interface ViewSource {
  /**
   * Streams the view's items in the order the view returns them. Breaking out of the loop
   * early aborts the request. Throws an AppError on failure (configuration, transient or
   * validation for a body that is not a JSON array).
   */
  query(params: ViewParams, signal?: AbortSignal): AsyncIterable<ViewItem>;
}

/** The sync view's parameter: records with lastSubmissionId above it (absent = every record). */
export const PREVIOUS_LAST_SUBMISSION_ID = 'previouslastsubmissionid';
