/**
 * A webhook intake wired to real parts for tests: a Table store and a StorageQueueTransport on
 * Azurite (fresh table and queue per environment), a loopback HTTP server, a recording log, and
 * a worker that drains the jobs queue through the store's claim/complete.
 */
import { TableClient } from '@azure/data-tables';
import { QueueServiceClient, type QueueClient } from '@azure/storage-queue';
import { z } from 'zod';
import type { Log } from '../../src/lib/ports';
import { StorageQueueTransport } from '../../src/lib/transport/storage-queue-transport';
import {
  createWebhookIntake,
  type WebhookIntake,
  type WebhookIntakeOptions,
  type WebhookRoute,
} from '../../src/lib/webhooks/intake';
import { webhookJobMessageSchema, type WebhookJobMessage } from '../../src/lib/webhooks/job-message';
import type { SignatureScheme } from '../../src/lib/webhooks/signature';
import { WebhookStore, type ClaimResult } from '../../src/lib/webhooks/store';
import { startWebhookServer, type WebhookTestServer } from './webhook-http';

export const SECRET = 'webhook-test-secret-0123456789';
export const OLD_SECRET = 'webhook-old-secret-9876543210';

/** The dummy route's payload: an event id, a kind, numbers, optional sequence (an alias key). */
export const pingSchema = z.looseObject({
  id: z.string().min(1),
  kind: z.enum(['ping', 'pong']),
  n: z.number().int(),
  seq: z.union([z.number().int(), z.bigint()]).optional(),
  sentAt: z.number().optional(),
  tags: z.array(z.string()).max(10).optional(),
});
export type Ping = z.infer<typeof pingSchema>;

export const DEFAULT_SCHEME: SignatureScheme = {
  kind: 'hmac',
  secrets: [SECRET, OLD_SECRET],
  header: 'x-signature',
  encoding: 'hex',
  signedContent: 'timestamp.body',
  timestamp: { from: 'header', header: 'x-timestamp' },
  toleranceSeconds: 300,
};

export function pingRoute(name: string, signature: SignatureScheme = DEFAULT_SCHEME): WebhookRoute<Ping> {
  return {
    name,
    schema: pingSchema,
    signature,
    eventKeys: (p) => ({ eventId: p.id, aliases: p.seq === undefined ? [] : [`seq|${p.seq}`] }),
    // F&O-style activation probe: answered 202, stored nowhere.
    ignoreRaw: (json) =>
      typeof json === 'object' &&
      json !== null &&
      !Array.isArray(json) &&
      (json as Record<string, unknown>).probe === true
        ? 'activation_test'
        : undefined,
    ignore: (p) => (p.kind === 'pong' ? 'not_allowed' : undefined),
  };
}

export class RecordingLog implements Log {
  readonly lines: { level: string; message: string; props?: Record<string, unknown> }[] = [];
  info = (message: string, props?: Record<string, unknown>) =>
    void this.lines.push({ level: 'info', message, props });
  warn = (message: string, props?: Record<string, unknown>) =>
    void this.lines.push({ level: 'warn', message, props });
  error = (message: string, props?: Record<string, unknown>) =>
    void this.lines.push({ level: 'error', message, props });
  text(): string {
    return JSON.stringify(this.lines);
  }
}

let seq = 0;
export const uniqueName = (prefix: string) =>
  `${prefix}${Date.now().toString(36)}${(++seq).toString(36)}${Math.random().toString(36).slice(2, 6)}`;

export interface WebhookEnv {
  url: string;
  server: WebhookTestServer;
  table: TableClient;
  queue: QueueClient;
  store: WebhookStore;
  transport: StorageQueueTransport;
  intakes: Record<string, WebhookIntake>;
  log: RecordingLog;
  /** Removes and returns every job message on the queue. */
  drainJobs(): Promise<WebhookJobMessage[]>;
  messageCount(): Promise<number>;
  /** Table entities (markers and aliases). */
  entityCount(): Promise<number>;
  close(): Promise<void>;
}

export async function webhookEnv(
  connectionString: string,
  routes: WebhookRoute<Ping>[],
  options: Partial<WebhookIntakeOptions> = {},
): Promise<WebhookEnv> {
  const table = TableClient.fromConnectionString(connectionString, uniqueName('wh'), {
    allowInsecureConnection: true,
  });
  const queueName = uniqueName('jobs-');
  const queues = QueueServiceClient.fromConnectionString(connectionString);
  const transport = new StorageQueueTransport(queues, { jobs: queueName });
  await transport.ensureQueues();
  const queue = queues.getQueueClient(queueName);
  const store = new WebhookStore(table);
  await store.ensureReady();
  const log = new RecordingLog();
  const intakes: Record<string, WebhookIntake> = {};
  for (const r of routes) intakes[r.name] = createWebhookIntake(r, { store, transport, log, ...options });
  const server = await startWebhookServer(
    Object.fromEntries(Object.entries(intakes).map(([k, i]) => [k, (req) => i.handle(req)])),
  );

  return {
    url: server.url,
    server,
    table,
    queue,
    store,
    transport,
    intakes,
    log,
    async drainJobs() {
      const out: WebhookJobMessage[] = [];
      for (;;) {
        const r = await queue.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 300 });
        if (r.receivedMessageItems.length === 0) return out;
        for (const m of r.receivedMessageItems) {
          out.push(
            webhookJobMessageSchema.parse(JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8'))),
          );
          await queue.deleteMessage(m.messageId, m.popReceipt);
        }
      }
    },
    async messageCount() {
      return (await queue.getProperties()).approximateMessagesCount ?? 0;
    },
    async entityCount() {
      let n = 0;
      for await (const _ of table.listEntities()) n++;
      return n;
    },
    async close() {
      await server.close();
      await transport.close();
    },
  };
}

/** A worker that claims, "processes" (records the job) and completes each message, counting claims. */
export async function runWorker(
  store: WebhookStore,
  messages: WebhookJobMessage[],
  processed: Map<string, number>,
): Promise<ClaimResult['status'][]> {
  return Promise.all(
    messages.map(async (m) => {
      const c = await store.claim(m);
      if (c.status === 'claimed') {
        processed.set(`${m.route}/${m.eventId}`, (processed.get(`${m.route}/${m.eventId}`) ?? 0) + 1);
        await store.complete(m);
      }
      return c.status;
    }),
  );
}
