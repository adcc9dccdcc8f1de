/**
 * A real HTTP server on loopback that drives webhook intakes the way a host does: the raw
 * request stream goes to the intake as the body, repeated headers are joined with ", " (Fetch
 * semantics, as the Functions runtime's HttpRequest does), and the result is written as JSON.
 * A SimulatedCrash thrown by the intake "kills the process" for that request: the socket is
 * destroyed without an answer. Also a client that sends exact bytes and headers (repeats too).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isSimulatedCrash } from '../../src/lib/faults';
import type { IntakeResult } from '../../src/lib/webhooks/intake';
import type { WebhookRequest } from '../../src/lib/webhooks/request';

export type IntakeHandler = (req: WebhookRequest) => Promise<IntakeResult>;

export interface WebhookTestServer {
  url: string;
  /** Every intake result, in completion order (for outcome counts). */
  results: IntakeResult[];
  close(): Promise<void>;
}

/** Routes `POST /api/webhooks/<name>` to `handlers[name]`. */
export async function startWebhookServer(
  handlers: Record<string, IntakeHandler>,
): Promise<WebhookTestServer> {
  const results: IntakeResult[] = [];
  const server = http.createServer((req, res) => {
    const name = /^\/api\/webhooks\/([^/?]+)/.exec(req.url ?? '')?.[1];
    const handler = name ? handlers[name] : undefined;
    if (!handler) {
      req.resume();
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"error":{"code":"not_found","message":"no route"}}');
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headersDistinct)) if (v) headers[k] = v.join(', ');
    handler({ method: req.method ?? 'GET', url: req.url ?? '/', headers, body: req }).then(
      (r) => {
        results.push(r);
        const text = JSON.stringify(r.body);
        res.writeHead(r.status, {
          ...r.headers,
          'content-type': 'application/json; charset=utf-8',
          'content-length': String(Buffer.byteLength(text)),
        });
        res.end(text);
      },
      (e: unknown) => {
        if (isSimulatedCrash(e)) {
          req.socket.destroy();
          return;
        }
        // Never expected: the intake answers every input itself. The tests count any 500.
        res
          .writeHead(500, { 'content-type': 'application/json' })
          .end('{"error":{"code":"internal","message":"threw"}}');
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    results,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface SentRequest {
  method?: string;
  /** Header pairs; a name may repeat (sent as separate header lines). */
  headers: Array<[string, string]>;
  body: Uint8Array | AsyncIterable<Uint8Array>;
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** Sends one request; `error` when the connection died before an answer (a simulated crash). */
export function send(url: string, r: SentRequest): Promise<Answer | { error: string }> {
  return new Promise((resolve) => {
    const grouped: Record<string, string[]> = {};
    for (const [k, v] of r.headers) (grouped[k.toLowerCase()] ??= []).push(v);
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(grouped)) headers[k] = v.length === 1 ? v[0]! : v;
    // Node frames a DELETE body only with an explicit length (else the server sees garbage).
    if (r.body instanceof Uint8Array) headers['content-length'] = String(r.body.length);
    const req = http.request(url, { method: r.method ?? 'POST', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('error', (e) => resolve({ error: e.message }));
    if (r.body instanceof Uint8Array) req.end(r.body);
    else {
      void (async () => {
        try {
          for await (const chunk of r.body as AsyncIterable<Uint8Array>) {
            if (req.destroyed) return;
            if (!req.write(chunk))
              await new Promise<void>((ok) => {
                // Whichever comes first; the other listener goes too (one pair per slow write).
                const done = () => {
                  req.off('drain', done);
                  req.off('close', done);
                  ok();
                };
                req.on('drain', done);
                req.on('close', done);
              });
          }
          req.end();
        } catch {
          req.destroy();
        }
      })();
    }
  });
}
