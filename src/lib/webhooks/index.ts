/** The shared webhook intake: see intake.ts for the order of steps and why it loses nothing. */
export {
  createWebhookIntake,
  WEBHOOK_DEFAULTS,
  type AcceptedBody,
  type EventKeys,
  type IgnoredBody,
  type IntakeResult,
  type RouteContext,
  type WebhookFaultPoint,
  type WebhookFaults,
  type WebhookIntake,
  type WebhookIntakeOptions,
  type WebhookOutcome,
  type WebhookRoute,
} from './intake';
export {
  WebhookStore,
  MAX_JOB_CHARS,
  type ClaimResult,
  type EventRef,
  type MarkerState,
  type StoredJob,
  type WebhookMarker,
  type WebhookStoreOptions,
} from './store';
export {
  WEBHOOK_JOB_MESSAGE_TYPE,
  webhookJobMessageId,
  webhookJobMessageSchema,
  type WebhookJobMessage,
} from './job-message';
export {
  SIGNATURE_DEFAULTS,
  formatTimestamp,
  parseTimestamp,
  resolveSignatureScheme,
  signWebhook,
  verifySignature,
  type HmacSignatureScheme,
  type NoSignatureScheme,
  type SignatureScheme,
  type SignatureEncoding,
  type TimestampFormat,
  type TimestampSource,
} from './signature';
export { parseJson, stringifyJson, JsonDepthError, JsonSyntaxError, type JsonValue } from './json';
export { headerReader, type HeaderReader, type HeaderSource, type WebhookRequest } from './request';
export { webhookSettingsSchema, signatureSchemeFromSettings, type WebhookSettings } from './settings';
