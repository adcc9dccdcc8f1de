/**
 * Webhook acknowledgement latency: posts `total` requests to `url` over keep-alive connections
 * and reports the latency of each answer (request start to last response byte) as p50/p99, with
 * the count of each status (0 = no answer). Two ways to load the app:
 *
 * - closed loop (`concurrency`): that many requests always in flight, the next sent when one is
 *   answered. This measures saturation: by Little's law the latency is then concurrency ÷ the
 *   throughput the machine sustains, whatever the ack itself costs.
 * - open loop (`rate`): requests arrive at that average rate (Poisson, seeded) whatever the app
 *   does, as senders' events do. Latency counts from the SCHEDULED arrival, so a request that
 *   could not be sent on time because the machine was busy counts against the app (no
 *   coordinated omission).
 *
 * The goal for the intake is p99 ≤ 200 ms locally. Wired into `npm run bench` by bench/run.ts.
 */
import http from 'node:http';
import https from 'node:https';

export interface AckRequest {
  method?: string;
  /** Header pairs (a name may repeat) or a record. */
  headers: Array<[string, string]> | Record<string, string>;
  body: Uint8Array | string;
}

export interface AckBenchOptions {
  /** Closed loop: requests in flight (ignored when `rate` is set). */
  concurrency: number;
  total: number;
  /** Open loop: average arrivals per second (Poisson); no cap on requests in flight. */
  rate?: number;
  /** Seed of the open loop's arrival times. Default 1. */
  seed?: number;
  /** Per-request timeout; a request that takes longer counts as status 0. Default 30 s. */
  timeoutMs?: number;
}

export interface AckBenchResult {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Requests per second over the whole run. */
  rps: number;
  statuses: Record<number, number>;
  /** The first answer's body (up to 300 characters) for each status other than 2xx: why it was refused. */
  samples: Record<number, string>;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function once(
  agent: http.Agent,
  url: URL,
  r: AckRequest,
  timeoutMs: number,
  /** When the request should have started (open loop); default now. */
  started = performance.now(),
): Promise<{ status: number; ms: number; body?: string }> {
  const body = typeof r.body === 'string' ? Buffer.from(r.body, 'utf8') : r.body;
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Array.isArray(r.headers) ? r.headers : Object.entries(r.headers)) {
    const key = k.toLowerCase();
    const prev = headers[key];
    headers[key] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v];
  }
  headers['content-length'] = String(body.length);
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    const done = (status: number, body?: string) =>
      resolve({ status, ms: performance.now() - started, body });
    const req = lib.request(
      url,
      { method: r.method ?? 'POST', headers, agent, timeout: timeoutMs },
      (res) => {
        // Bodies are small JSON answers; a refusal's says why.
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (text.length < 300) text += c;
        });
        res.on('end', () => done(res.statusCode ?? 0, text.slice(0, 300)));
        res.on('error', () => done(0));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => done(0));
    req.end(body);
  });
}

/** Exponential inter-arrival gaps (ms) for `rate` arrivals per second, from a seeded PRNG (mulberry32). */
export function poissonGapsMs(rate: number, count: number, seed = 1): number[] {
  let a = seed >>> 0;
  const random = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: count }, () => (-Math.log(1 - random()) * 1000) / rate);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchWebhookAck(
  url: string,
  makeRequest: (i: number) => AckRequest | Promise<AckRequest>,
  { concurrency, total, rate, seed = 1, timeoutMs = 30_000 }: AckBenchOptions,
): Promise<AckBenchResult> {
  const target = new URL(url);
  const agent = new (target.protocol === 'https:' ? https.Agent : http.Agent)({
    keepAlive: true,
    maxSockets: rate === undefined ? concurrency : Infinity,
  });
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  const samples: Record<number, string> = {};
  const record = ({ status, ms, body }: { status: number; ms: number; body?: string }) => {
    statuses[status] = (statuses[status] ?? 0) + 1;
    if ((status < 200 || status > 299) && samples[status] === undefined) samples[status] = body ?? '';
    latencies.push(ms);
  };
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < total) {
      const i = next++;
      // The request is built before the clock starts: signing is the sender's cost, not ours.
      const r = await makeRequest(i);
      record(await once(agent, target, r, timeoutMs));
    }
  };
  const openLoop = async (perSecond: number) => {
    const inFlight: Promise<void>[] = [];
    let at = started;
    for (const [i, gap] of poissonGapsMs(perSecond, total, seed).entries()) {
      at += gap;
      const wait = at - performance.now();
      if (wait > 0) await sleep(wait);
      const r = await makeRequest(i);
      inFlight.push(once(agent, target, r, timeoutMs, at).then(record));
    }
    await Promise.all(inFlight);
  };
  try {
    if (rate !== undefined) await openLoop(rate);
    else await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, total)) }, worker));
  } finally {
    agent.destroy();
  }
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
    maxMs: round(latencies[latencies.length - 1] ?? NaN),
    rps: round(total / elapsed),
    statuses,
    samples,
  };
}
