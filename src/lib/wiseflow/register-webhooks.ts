/**
 * Registers syncbridge's FLOW_EXTERNAL_SOURCE webhook in WISEflow, idempotently:
 *
 *   none of ours                     → create (POST /webhooks)               `created`
 *   ours, same URL/events/active/key → nothing                               `unchanged`
 *   ours, URL (or events, active) changed, same secret → PUT /webhooks/{id}  `updated`
 *   ours, secret changed             → create a new one, then delete the old `replaced`
 *
 * "Ours" is found by title (WISEFLOW_WEBHOOK_TITLE), never by URL, so a changed URL is updated in
 * place. WISEflow never returns a webhook's secret and its PUT body has none, so the title
 * carries a fingerprint of the secret (`<title> [key <12 hex>]`, an HMAC keyed BY the secret,
 * which reveals nothing about it): a changed fingerprint means the secret was rotated, and the
 * only way to give WISEflow the new secret is a new registration. The new one is created before
 * the old is deleted, so no request update is missed (a call delivered by both is de-duplicated
 * by its request id); keep WISEFLOW_WEBHOOK_SECRET_PREVIOUS set until the old one's retries end.
 * Duplicates of ours (same title, e.g. from a crash between create and delete) are deleted.
 */
import { createHmac } from 'node:crypto';
import type { Webhook } from './api';
import type { WiseflowClient } from './client';
import { FLOW_EXTERNAL_SOURCE_EVENT } from './webhook';

export type WebhookAdmin = Pick<
  WiseflowClient,
  'listWebhooks' | 'createWebhook' | 'updateWebhook' | 'deleteWebhook'
>;

export interface RegisterWebhookInput {
  client: WebhookAdmin;
  /** The full webhook URL, function key included (never printed). */
  url: string;
  secret: string;
  /** WISEFLOW_WEBHOOK_TITLE. */
  title: string;
}

export interface RegisterWebhookResult {
  action: 'created' | 'unchanged' | 'updated' | 'replaced';
  webhookId: string;
  /** Other registrations of ours that were deleted (the old one of a rotation, duplicates). */
  deleted: string[];
}

export function secretFingerprint(secret: string): string {
  return createHmac('sha256', secret)
    .update('syncbridge webhook secret fingerprint')
    .digest('hex')
    .slice(0, 12);
}

export const registrationTitle = (title: string, secret: string) =>
  `${title} [key ${secretFingerprint(secret)}]`;

const isOurs = (w: Webhook, title: string) =>
  w.title === title || (w.title ?? '').startsWith(`${title} [key `);

export async function registerExternalSourceWebhook(i: RegisterWebhookInput): Promise<RegisterWebhookResult> {
  const wanted = {
    title: registrationTitle(i.title, i.secret),
    url: i.url,
    active: true,
    events: [FLOW_EXTERNAL_SOURCE_EVENT],
  };
  const ours = (await i.client.listWebhooks()).filter((w) => isOurs(w, i.title));
  // Prefer one that already has the current secret, so a rerun after a half-done rotation converges.
  const keep = ours.find((w) => w.title === wanted.title) ?? ours[0];
  const deleteOthers = async (except: string) => {
    const deleted: string[] = [];
    for (const w of ours)
      if (w.id !== except) {
        await i.client.deleteWebhook(w.id);
        deleted.push(w.id);
      }
    return deleted;
  };

  if (!keep || keep.title !== wanted.title) {
    const created = await i.client.createWebhook({ ...wanted, secret: i.secret });
    const deleted = await deleteOthers(created.id);
    return { action: keep ? 'replaced' : 'created', webhookId: created.id, deleted };
  }
  const same =
    keep.url === wanted.url &&
    keep.active &&
    keep.events.length === 1 &&
    keep.events[0] === FLOW_EXTERNAL_SOURCE_EVENT;
  if (!same) await i.client.updateWebhook(keep.id, wanted);
  const deleted = await deleteOthers(keep.id);
  return { action: same ? 'unchanged' : 'updated', webhookId: keep.id, deleted };
}

/** The deployed webhook URL of a route: `<base>/api/webhooks/<route>`, with `?code=<function key>`. */
export function webhookUrl(baseUrl: string, route: string, functionKey?: string): string {
  const url = new URL(`${baseUrl.replace(/\/+$/, '')}/api/webhooks/${route}`);
  if (functionKey) url.searchParams.set('code', functionKey);
  return url.toString();
}

/** A URL safe to print: the function key replaced. */
export function redactedUrl(url: string): string {
  const u = new URL(url);
  if (u.searchParams.has('code')) u.searchParams.set('code', '<function key>');
  return u.toString().replace('%3Cfunction+key%3E', '<function key>');
}
