/**
 * One error taxonomy for the whole app. Every error syncbridge raises on purpose is an AppError
 * with one of five kinds, which decides what happens next:
 *
 *   permanent      retrying cannot fix it (a target refuses a record, a 4xx): quarantine
 *   transient      retrying may fix it (a 5xx, a timeout, a 429): retry with back-off
 *   configuration  a setting is wrong or missing: report it, naming the setting
 *   conflict       someone else changed shared state first (an ETag, a cursor CAS)
 *   validation     an input is malformed (a payload, a message, a record)
 *
 * `code` is a stable, specific name for the JSON error body (`payload_too_large`,
 * `signature_invalid`, ...); it defaults to the kind. `details` must be safe to show to the
 * caller: never a secret, a SAS query string or a record payload.
 */

export type ErrorKind = 'permanent' | 'transient' | 'configuration' | 'conflict' | 'validation';

export interface AppErrorOptions {
  cause?: unknown;
  /** Specific machine-readable code for the JSON error body; defaults to the kind. */
  code?: string;
  /** Extra facts for the caller (safe to show). */
  details?: unknown;
  /** HTTP status to answer with, when the kind's default does not fit (401, 413, 415...). */
  status?: number;
  /** The HTTP status a remote system answered, when the error comes from one. */
  upstreamStatus?: number;
}

export class AppError extends Error {
  readonly code: string;
  readonly details?: unknown;
  readonly status?: number;
  readonly upstreamStatus?: number;
  constructor(
    readonly kind: ErrorKind,
    message: string,
    o: AppErrorOptions = {},
  ) {
    super(message, o.cause === undefined ? undefined : { cause: o.cause });
    this.name = 'AppError';
    this.code = o.code ?? kind;
    this.details = o.details;
    this.status = o.status;
    this.upstreamStatus = o.upstreamStatus;
  }
}

/** An error that retrying cannot fix (a bad record, a 4xx from a target). */
export class PermanentError extends AppError {
  constructor(message: string, o: AppErrorOptions = {}) {
    super('permanent', message, o);
    this.name = 'PermanentError';
  }
}

/** An error that a later attempt may not see (a 5xx, a timeout, a 429). */
export class TransientError extends AppError {
  /** How long the other side asked us to wait (Retry-After), when it said. */
  readonly retryAfterMs?: number;
  constructor(message: string, o: AppErrorOptions & { retryAfterMs?: number } = {}) {
    super('transient', message, o);
    this.name = 'TransientError';
    this.retryAfterMs = o.retryAfterMs;
  }
}

/** A setting is missing or wrong. `problems` has one line per problem, each naming a setting. */
export class ConfigError extends AppError {
  readonly problems: string[];
  constructor(problems: string[] | string, o: AppErrorOptions = {}) {
    const list = Array.isArray(problems) ? problems : [problems];
    super(
      'configuration',
      list.length === 1 && !Array.isArray(problems)
        ? list[0]!
        : `Invalid configuration:\n${list.map((p) => `  - ${p}`).join('\n')}`,
      { details: { problems: list }, ...o },
    );
    this.name = 'ConfigError';
    this.problems = list;
  }
}

/** Someone else changed shared state first (an ETag, a compare-and-set). */
export class ConflictError extends AppError {
  constructor(message: string, o: AppErrorOptions = {}) {
    super('conflict', message, o);
    this.name = 'ConflictError';
  }
}

/** An input is malformed. `details.issues` lists what is wrong, one line per problem. */
export class ValidationError extends AppError {
  constructor(message: string, o: AppErrorOptions = {}) {
    super('validation', message, o);
    this.name = 'ValidationError';
  }
}

export const isAppError = (e: unknown, kind?: ErrorKind): e is AppError =>
  e instanceof AppError && (kind === undefined || e.kind === kind);

/**
 * The HTTP status of an SDK or fetch error, however the library spells it: Azure SDKs use
 * `statusCode` (RestError), some use `status` or `response.status`.
 */
export function statusOf(e: unknown): number | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const x = e as { statusCode?: unknown; status?: unknown; response?: { status?: unknown } };
  for (const v of [x.statusCode, x.status, x.response?.status]) if (typeof v === 'number') return v;
  return undefined;
}

/** The service's error code of an SDK error (`x-ms-error-code`, e.g. `LeaseIdMismatchWithFileOperation`). */
export function serviceErrorCodeOf(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const x = e as { details?: { errorCode?: unknown }; code?: unknown };
  const v = x.details?.errorCode ?? x.code;
  return typeof v === 'string' ? v : undefined;
}

/** An error's message without its stack, for logs and stored state. */
export const errorText = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

export interface HttpErrorBody {
  error: { code: string; message: string; details?: unknown };
}

const STATUS_BY_KIND: Record<ErrorKind, number> = {
  validation: 400,
  permanent: 422,
  conflict: 409,
  transient: 503,
  configuration: 503,
};

/**
 * The one mapping from an error to an HTTP JSON answer. An AppError answers its own status,
 * code, message and details; anything else is an internal error whose message is NOT shown
 * (it may carry what the caller must not see) and answers 500.
 */
export function httpErrorOf(e: unknown): { status: number; body: HttpErrorBody } {
  if (e instanceof AppError) {
    const error: HttpErrorBody['error'] = { code: e.code, message: e.message };
    if (e.details !== undefined) error.details = e.details;
    return { status: e.status ?? STATUS_BY_KIND[e.kind], body: { error } };
  }
  return {
    status: 500,
    body: { error: { code: 'internal', message: 'internal error; see the function logs' } },
  };
}
