/** The port the planner reads the view through. */
import type { SourceRecord } from './record';

export interface ViewQuery {
  /** Records with lastSubmissionId greater than this; undefined = first run, every record. */
  previousLastSubmissionId?: bigint;
}

export type ViewItem =
  | { kind: 'record'; record: SourceRecord }
  /** A record that failed validation: kept with its raw JSON for quarantine, never dropped. */
  | { kind: 'malformed'; raw: string; error: string; index: number };

export interface ViewSource {
  /**
   * Streams the view's items in the order the view returns them (ascending lastSubmissionId).
   * Breaking out of the loop early aborts the HTTP request. Throws ViewError on failure.
   */
  query(q: ViewQuery, signal?: AbortSignal): AsyncIterable<ViewItem>;
}

export type ViewErrorKind =
  /** 401/403/404: a setting is wrong; retrying will not help. */
  | 'configuration'
  /** Network errors, timeouts, 5xx or 429 after all retries. */
  | 'unavailable'
  /** The body is not the JSON array the view promises. */
  | 'protocol';

export class ViewError extends Error {
  constructor(
    readonly kind: ViewErrorKind,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ViewError';
  }
}
