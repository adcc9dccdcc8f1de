/**
 * The app settings of the webhook intake, as a zod schema over raw setting strings, for the one
 * config schema to merge (src/lib/config/ reads process.env; this module never does). The
 * signature settings describe the WISEflow scheme, which is a GAP in the spec: every default
 * below is a guess to confirm against a real delivery (see docs/webhooks.md).
 */
import { z } from 'zod';
import type { HmacSignatureScheme, SignatureEncoding, TimestampFormat } from './signature';

const int = (min: number, max: number, dflt: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().min(min).max(max))
    .optional()
    .transform((v) => v ?? dflt);

const text = (dflt: string) =>
  z
    .string()
    .trim()
    .optional()
    .transform((v) => (v === undefined || v === '' ? dflt : v));

const headerName = (dflt: string) =>
  text(dflt).pipe(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name'));

export const webhookSettingsSchema = z.object({
  WEBHOOK_MAX_BODY_BYTES: int(1024, 384 * 1024, 256 * 1024),
  WEBHOOK_MAX_JSON_DEPTH: int(1, 256, 32),
  WEBHOOK_SIGNATURE_HEADER: headerName('x-wiseflow-signature'),
  WEBHOOK_SIGNATURE_ENCODING: text('base64').pipe(z.enum(['hex', 'base64', 'base64url'])),
  WEBHOOK_SIGNATURE_ALGORITHM: text('sha256').pipe(z.enum(['sha256', 'sha512', 'sha1'])),
  WEBHOOK_SIGNED_CONTENT: text('body').pipe(z.enum(['body', 'timestamp.body'])),
  WEBHOOK_TIMESTAMP_SOURCE: text('header').pipe(z.enum(['header', 'body', 'none'])),
  WEBHOOK_TIMESTAMP_HEADER: headerName('x-wiseflow-timestamp'),
  WEBHOOK_TIMESTAMP_FIELD: text('timestamp'),
  WEBHOOK_TIMESTAMP_FORMAT: text('auto').pipe(z.enum(['auto', 'unix-seconds', 'unix-ms', 'iso'])),
  WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS: int(1, 86_400, 300),
  SYNC_JOBS_QUEUE: text('jobs').pipe(z.string().min(3).max(260)),
  WEBHOOK_JOB_LEASE_SECONDS: int(10, 86_400, 600),
});
export type WebhookSettings = z.infer<typeof webhookSettingsSchema>;

/** The HMAC scheme the settings describe, with the route's secrets (current first). */
export function signatureSchemeFromSettings(
  s: WebhookSettings,
  secrets: readonly string[],
): HmacSignatureScheme {
  return {
    kind: 'hmac',
    secrets: secrets.filter((x) => x !== ''),
    header: s.WEBHOOK_SIGNATURE_HEADER,
    algorithm: s.WEBHOOK_SIGNATURE_ALGORITHM,
    encoding: s.WEBHOOK_SIGNATURE_ENCODING as SignatureEncoding,
    signedContent: s.WEBHOOK_SIGNED_CONTENT,
    timestamp:
      s.WEBHOOK_TIMESTAMP_SOURCE === 'header'
        ? { from: 'header', header: s.WEBHOOK_TIMESTAMP_HEADER }
        : s.WEBHOOK_TIMESTAMP_SOURCE === 'body'
          ? { from: 'body', field: s.WEBHOOK_TIMESTAMP_FIELD }
          : { from: 'none' },
    timestampFormat: s.WEBHOOK_TIMESTAMP_FORMAT as TimestampFormat,
    toleranceSeconds: s.WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS,
  };
}
