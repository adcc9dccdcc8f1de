/**
 * A counting HTTP proxy in front of Azurite's Blob, Queue and Table ports (loopback, node:http).
 * Point a connection string at it (`connectionString`) and every storage request the app makes
 * is forwarded unchanged and classified by purpose:
 *
 *   queue       queue-service requests that move work (send, receive with messages, delete, update, create)
 *   queue-idle  queue-service requests of an idle poller (a receive that got nothing, get properties)
 *   ledger      table requests on `<prefix>state` (including entity-group transactions, `$batch`)
 *   quarantine  table requests on `<prefix>quarantine`
 *   target      table requests on the target table
 *   cursor      blob-service requests (the cursor blob)
 *   other       anything else (tables of other runs, service calls)
 */
import {
  Agent,
  createServer,
  request,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { AZURITE_ACCOUNT, azuriteConnectionString, type AzuriteInstance } from '../src/local/azurite';

export type Purpose = 'queue' | 'queue-idle' | 'ledger' | 'quarantine' | 'target' | 'cursor' | 'other';
export const PURPOSES: Purpose[] = [
  'queue',
  'queue-idle',
  'ledger',
  'quarantine',
  'target',
  'cursor',
  'other',
];

export interface Classifier {
  ledgerTable: string;
  quarantineTable: string;
  targetTable: string;
}

type Service = 'blob' | 'queue' | 'table';

export class CountingProxy {
  readonly connectionString: string;
  private counts = emptyCounts();
  private classifier: Classifier | undefined;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });

  private constructor(
    private readonly servers: Server[],
    ports: { blobPort: number; queuePort: number; tablePort: number },
  ) {
    this.connectionString = azuriteConnectionString(ports);
  }

  static async start(azurite: AzuriteInstance): Promise<CountingProxy> {
    const services: [Service, number][] = [
      ['blob', azurite.blobPort],
      ['queue', azurite.queuePort],
      ['table', azurite.tablePort],
    ];
    const servers: Server[] = [];
    const ports: number[] = [];
    const holder: { proxy?: CountingProxy } = {};
    for (const [service, upstream] of services) {
      const server = createServer((req, res) => holder.proxy!.forward(service, upstream, req, res));
      server.keepAliveTimeout = 30_000;
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      ports.push((server.address() as AddressInfo).port);
    }
    const proxy = new CountingProxy(servers, {
      blobPort: ports[0]!,
      queuePort: ports[1]!,
      tablePort: ports[2]!,
    });
    holder.proxy = proxy;
    return proxy;
  }

  /** Starts counting afresh, classifying table requests with the given table names. */
  reset(classifier: Classifier): void {
    this.classifier = classifier;
    this.counts = emptyCounts();
  }

  snapshot(): Record<Purpose, number> {
    return { ...this.counts };
  }

  async stop(): Promise<void> {
    for (const s of this.servers) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    this.agent.destroy();
  }

  private forward(service: Service, upstream: number, req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = req.url ?? '/';
      const up = request(
        {
          host: '127.0.0.1',
          port: upstream,
          method: req.method,
          path: url,
          headers: req.headers,
          agent: this.agent,
        },
        (upRes) => {
          const isReceive =
            service === 'queue' &&
            req.method === 'GET' &&
            /\/messages(\?|$)/.test(url) &&
            !/peekonly=true/i.test(url);
          if (!isReceive) {
            this.count(this.classify(service, req.method ?? 'GET', url, body));
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.pipe(res);
            return;
          }
          const out: Buffer[] = [];
          upRes.on('data', (c: Buffer) => out.push(c));
          upRes.on('end', () => {
            const text = Buffer.concat(out);
            this.count(text.includes('<QueueMessage>') ? 'queue' : 'queue-idle');
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            res.end(text);
          });
        },
      );
      up.on('error', (e) => {
        if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' });
        res.end(`proxy: ${e.message}`);
      });
      up.end(body);
    });
  }

  private count(p: Purpose): void {
    this.counts[p]++;
  }

  private classify(service: Service, method: string, url: string, body: Buffer): Purpose {
    if (service === 'blob') return 'cursor';
    const path = url.split('?')[0]!.replace(new RegExp(`^/${AZURITE_ACCOUNT}`), '');
    if (service === 'queue') {
      // Get properties (approximate message count) is what an idle poller asks.
      if (method === 'GET' && /comp=metadata/.test(url) && !/\/messages/.test(path)) return 'queue-idle';
      return 'queue';
    }
    const c = this.classifier;
    if (!c) return 'other';
    let table: string | undefined;
    if (path.startsWith('/$batch') || path === '/Tables' || path.startsWith('/Tables(')) {
      // Table name is in the body (transactions, create table) or the path (delete table).
      const text = body.toString('utf8') + decodeURIComponent(path);
      for (const t of [c.ledgerTable, c.quarantineTable, c.targetTable]) if (text.includes(t)) table = t;
    } else {
      table = /^\/([A-Za-z][A-Za-z0-9]*)/.exec(path)?.[1];
    }
    if (table === c.ledgerTable) return 'ledger';
    if (table === c.quarantineTable) return 'quarantine';
    if (table === c.targetTable) return 'target';
    return 'other';
  }
}

function emptyCounts(): Record<Purpose, number> {
  return { queue: 0, 'queue-idle': 0, ledger: 0, quarantine: 0, target: 0, cursor: 0, other: 0 };
}
