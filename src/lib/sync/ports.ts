/**
 * The ports of the view-sync pipeline. The flows in src/lib/sync depend on these interfaces
 * only; the composition root (src/lib/services.ts) picks the adapters from configuration.
 */

/** Where the cursor (`lastSubmissionId`) is kept. Values are compared as BigInt, never as text. */
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
}

export type CompareAndSetResult = { ok: true } | { ok: false; current: bigint | undefined };

export type QueueRole = 'records' | 'control';

export interface OutgoingMessage {
  /** Deterministic id: a re-send after a crash is dropped by duplicate detection where the medium has it. */
  messageId: string;
  /** JSON-serialisable body. */
  body: unknown;
  /** Message kind (also sent as an application property where the medium has them). */
  kind: string;
  batchId?: string;
}

/** Moves messages to the records or control queue. Receiving is the Functions trigger's job. */
export interface Transport {
  /** Sends all messages (split into as many SDK batches / requests as needed), in order. */
  send(queue: QueueRole, messages: OutgoingMessage[]): Promise<void>;
  /** Creates the queues when the medium allows it and they are missing (local runs). */
  ensureQueues?(): Promise<void>;
  close(): Promise<void>;
}

/** One record as the target sees it. `key` is unique per view and record. */
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
 * Throw PermanentError for a record the target will never accept (it is quarantined at once).
 */
export interface TargetSystem {
  apply(record: TargetRecord): Promise<ApplyOutcome>;
  ensureReady?(): Promise<void>;
}

export interface StoredTargetRecord {
  key: string;
  version: bigint;
  deleted: boolean;
  data: Record<string, unknown>;
}

/** Read access to a target, for health, tests and the CLI. */
export interface TargetReader {
  list(): AsyncIterable<StoredTargetRecord>;
}

/** An error that retrying cannot fix (bad record, 4xx from a target). */
export class PermanentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentError';
  }
}
