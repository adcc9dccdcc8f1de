/**
 * WISEflow API shapes (v1, "Flow External Sources" and "Webhooks" sections of the OpenAPI spec),
 * validated with zod at the boundary. Ids are integers in the API and strings in syncbridge
 * (one rule with the webhook payload): numbers and numeric strings are both accepted.
 */
import { z } from 'zod';

export const WISEFLOW_PRODUCTION_URL = 'https://europe-api.wiseflow.net/v1';
export const WISEFLOW_STAGING_URL = 'https://europe-stage-api.wiseflow.net/v1';

/** Documented limits per credential. */
export const WISEFLOW_RATE_LIMITS = { perSecond: 200, perMinute: 5000 } as const;

const apiId = z
  .union([z.number().int().nonnegative(), z.string().regex(/^\d+$/)])
  .transform((v) => String(v));
const optionalText = z.string().nullable().optional();

export const apiErrorSchema = z.looseObject({
  code: z.union([z.number(), z.string()]).nullable().optional(),
  message: z.string().nullable().optional(),
  errors: z
    .array(
      z.looseObject({ reason: z.string().nullable().optional(), message: z.string().nullable().optional() }),
    )
    .nullable()
    .optional(),
});
export type ApiError = z.infer<typeof apiErrorSchema>;

/** `{"success": true, "data": ..., "error": null}` / `{"success": false, "data": null, "error": {...}}`. */
export const envelopeSchema = z.looseObject({
  success: z.boolean(),
  data: z.unknown().optional(),
  error: apiErrorSchema.nullable().optional(),
});

export type ExternalSourceState = 'NONE' | 'SUCCESS' | 'PENDING' | 'FAILED';

export const externalSourceSchema = z.looseObject({
  id: apiId,
  reference: z.string(),
  description: optionalText,
  createdAt: optionalText,
  updatedAt: optionalText,
  lastRequestedSync: optionalText,
  lastSync: optionalText,
  // A state added later must not break a sync: any string is kept.
  state: z.string().nullable().optional(),
});
export type ExternalSource = z.infer<typeof externalSourceSchema>;
export const externalSourceListSchema = z.array(externalSourceSchema);

/** A participant of a flow (`GET /flows/{flowId}/participants`, paginated, at most 100 a page). */
export const flowParticipantSchema = z.looseObject({
  participantId: apiId,
  userId: apiId.nullable().optional(),
});
export type FlowParticipant = z.infer<typeof flowParticipantSchema>;

export const flowParticipantsPageSchema = z.looseObject({
  data: z.array(flowParticipantSchema),
  pagination: z
    .looseObject({
      offset: z.number().nullable().optional(),
      limit: z.number().nullable().optional(),
      total: z.number().nullable().optional(),
    })
    .nullable()
    .optional(),
});

export const WEBHOOK_EVENTS = [
  'ALTERNATIVE_GRADE',
  'ASSESSMENT',
  'ASSIGNMENT',
  'FINAL_GRADE',
  'FLOW_EXTERNAL_SOURCE',
  'FLOW_PERIOD_UPDATED',
  'FLOW_STATE_UPDATED',
  'PAPER_SUBMITTED',
] as const;

export const webhookSchema = z.looseObject({
  id: apiId,
  title: optionalText,
  url: z.string(),
  active: z.boolean(),
  events: z.array(z.string()),
  createdAt: optionalText,
  updatedAt: optionalText,
});
export type Webhook = z.infer<typeof webhookSchema>;
export const webhookListSchema = z.array(webhookSchema);

export interface CreateWebhookInput {
  secret: string;
  title: string;
  /** https only (WISEflow refuses other schemes). */
  url: string;
  active: boolean;
  events: string[];
}
export type UpdateWebhookInput = Omit<CreateWebhookInput, 'secret'>;

export const tokenResponseSchema = z.looseObject({
  access_token: z.string().min(1),
  expires_in: z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]).optional(),
  token_type: z.string().optional(),
});
