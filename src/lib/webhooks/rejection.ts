/**
 * The intake's refusals: one AppError per problem, with a specific code and status, rendered by
 * `httpErrorOf` (src/lib/errors.ts) in the shared shape `{"error": {"code","message","details"}}`.
 * Messages say what is wrong and what to do; they never echo the payload, a header value or a
 * secret.
 */
import type { z } from 'zod';
import { AppError } from '../errors';

export type RejectionCode =
  | 'method_not_allowed'
  | 'unsupported_media_type'
  | 'payload_too_large'
  | 'request_timeout'
  | 'body_unreadable'
  | 'signature_missing'
  | 'signature_invalid'
  | 'timestamp_missing'
  | 'timestamp_invalid'
  | 'timestamp_out_of_tolerance'
  | 'invalid_encoding'
  | 'invalid_json'
  | 'too_deeply_nested'
  | 'invalid_payload'
  | 'invalid_event_id';

export function rejection(code: RejectionCode, status: number, message: string, details?: unknown): AppError {
  return new AppError('validation', message, { code, status, details });
}

const MAX_ISSUES = 20;
const MAX_SEGMENT = 64;
const MAX_PATH = 200;
const MAX_MESSAGE = 200;

const clip = (s: string, max: number) => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

/** `a.b[0]["odd key"]`, each key clipped: keys come from the sender and may be huge. */
export function issuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else {
      const key = clip(String(p), MAX_SEGMENT);
      out += /^[A-Za-z_$][\w$]*$/.test(key) ? (out === '' ? key : `.${key}`) : `[${JSON.stringify(key)}]`;
    }
  }
  return clip(out === '' ? '(body)' : out, MAX_PATH);
}

export interface IssueDetail {
  path: string;
  message: string;
}

/** The first issues of a zod error, bounded: at most 20, each path and message clipped. */
export function issueDetails(error: z.ZodError): { issues: IssueDetail[]; more?: number } {
  const issues = error.issues.slice(0, MAX_ISSUES).map((i) => ({
    path: issuePath(i.path),
    message: clip(i.message, MAX_MESSAGE),
  }));
  const more = error.issues.length - issues.length;
  return more > 0 ? { issues, more } : { issues };
}
