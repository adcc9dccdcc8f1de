/**
 * F&O recurring integrations (the polling alternative to business events):
 *
 *   GET  {base}/api/connector/dequeue/{activityId}  → 200 {CorrelationId, PopReceipt, DownloadLocation, ...} or 204 (empty)
 *   GET  DownloadLocation (bearer token)            → the exported file or package
 *   POST {base}/api/connector/ack/{activityId}      with the dequeue body → 200
 *
 * - A message not acknowledged comes back after 30 minutes (files are kept 7 days): ack only
 *   after the rows are durably applied (the flow's batch completion calls `ack`).
 * - Production answers DownloadLocation with `http://`: it is rewritten to `https://`. The
 *   download must stay on the environment's host (the bearer token goes nowhere else); any other
 *   host is refused.
 * - `ack` sends the dequeue body exactly as it was received.
 * - 429 Retry-After (and 5xx) are honoured by the retries of FinOpsApiClient.
 */
import { z } from 'zod';
import { ConfigError, PermanentError, ValidationError } from '../errors';
import type { FinOpsApiClient } from './api-client';
import type { Download, SafeDownloader } from './download';

const dequeueSchema = z.looseObject({
  CorrelationId: z.string().min(1),
  PopReceipt: z.string().min(1),
  DownloadLocation: z.string().min(1),
});

export interface DequeuedMessage {
  correlationId: string;
  popReceipt: string;
  /** Rewritten to https://. Not secret by itself (the bearer token is), but logs show safeUrlText only. */
  downloadLocation: string;
  /** The dequeue body exactly as received: `ack` sends it back. */
  rawBody: string;
}

export class RecurringIntegrationClient {
  constructor(
    private readonly api: FinOpsApiClient,
    private readonly downloader: SafeDownloader,
    /** FNO_ACTIVITY_ID: the recurring data job's activity id. */
    private readonly activityId: string,
  ) {
    if (!/^[{]?[0-9a-fA-F-]{36}[}]?$/.test(activityId.trim()))
      throw new ConfigError('FNO_ACTIVITY_ID must be the recurring data job activity id (a GUID)');
  }

  private get activityPath(): string {
    return encodeURIComponent(this.activityId.trim().replace(/^\{|\}$/g, ''));
  }

  /** The next message, or undefined when the queue is empty (204). */
  async dequeue(signal?: AbortSignal): Promise<DequeuedMessage | undefined> {
    const res = await this.api.call(
      'GET',
      `/api/connector/dequeue/${this.activityPath}`,
      undefined,
      'dequeue',
      { signal },
    );
    if (res.status === 204 || res.text.trim() === '') return undefined;
    let json: unknown;
    try {
      json = JSON.parse(res.text);
    } catch {
      throw new ValidationError('dequeue answered a body that is not JSON', { code: 'api_protocol' });
    }
    const m = dequeueSchema.safeParse(json);
    if (!m.success)
      throw new ValidationError(
        `dequeue answered without ${m.error.issues.map((i) => i.path.join('.')).join(', ')}`,
        { code: 'api_protocol' },
      );
    return {
      correlationId: m.data.CorrelationId,
      popReceipt: m.data.PopReceipt,
      downloadLocation: m.data.DownloadLocation.replace(/^http:\/\//i, 'https://'),
      rawBody: res.text,
    };
  }

  /** Downloads a message's file with the bearer token; only from the environment's host. */
  async download(message: DequeuedMessage, signal?: AbortSignal): Promise<Download> {
    let url: URL;
    try {
      url = new URL(message.downloadLocation);
    } catch {
      throw new PermanentError('the DownloadLocation of a dequeued message is not a URL', {
        code: 'url_invalid',
      });
    }
    return this.downloader.download(url, {
      headers: { authorization: await this.api.authorization() },
      allowedHosts: this.api.allowedHosts,
      signal,
      purpose: 'recurring-integration download',
    });
  }

  /** Acknowledges a message: it will not come back. Safe to repeat. */
  async ack(message: DequeuedMessage, signal?: AbortSignal): Promise<void> {
    await this.api.call('POST', `/api/connector/ack/${this.activityPath}`, message.rawBody, 'ack', {
      signal,
    });
  }
}
