/**
 * The http target against the records API simulator (a real HTTP server on loopback): the
 * request it sends, retries, timeouts, 429, 4xx quarantine, auth (header, bearer, Entra), no
 * secret in errors; and what the "no duplicate effects" contract buys: the same redeliveries
 * against an API that keeps it and one that does not.
 */
import type { AccessToken, TokenCredential } from '@azure/identity';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, PermanentError, TransientError } from '../../src/lib/errors';
import type { TargetRecord } from '../../src/lib/ports';
import {
  expandUrlTemplate,
  headerSafe,
  HttpTarget,
  idempotencyKeyOf,
  type HttpTargetOptions,
} from '../../src/lib/targets/http-target';
import {
  startRecordsApiSimulator,
  type RecordsApiSimulator,
  type RecordsApiSimulatorOptions,
} from '../../src/local/records-api-simulator';

const rec = (
  id: string,
  version: bigint,
  data: Record<string, unknown> = {},
  deleted = false,
): TargetRecord => ({
  key: `leads|${id}`,
  version,
  deleted,
  data,
});

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function setup(
  simOptions: RecordsApiSimulatorOptions = {},
  targetOptions: Partial<HttpTargetOptions> = {},
): Promise<{ sim: RecordsApiSimulator; target: HttpTarget }> {
  const sim = await startRecordsApiSimulator(simOptions);
  open.push(sim);
  const target = new HttpTarget({
    urlTemplate: sim.urlTemplate,
    retryBaseDelayMs: 5,
    retryMaxDelayMs: 20,
    timeoutMs: 2_000,
    ...targetOptions,
  });
  open.push(target);
  return { sim, target };
}

/** Runs `f` and returns what it threw (fails the test when it does not throw). */
async function thrown(f: () => Promise<unknown>): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('the request', () => {
  it('expands the URL template with URL-encoded values and rejects unknown placeholders', () => {
    expect(
      expandUrlTemplate('https://api.example.com/flows/{flow}/records/{id}?v={version}&k={key}', {
        key: 'leads|a/b c',
        id: 'a/b c',
        flow: 'leads',
        version: '18446744073709551617',
      }),
    ).toBe(
      'https://api.example.com/flows/leads/records/a%2Fb%20c?v=18446744073709551617&k=leads%7Ca%2Fb%20c',
    );
    expect(() => new HttpTarget({ urlTemplate: 'https://api.example.com/{record}' })).toThrow(ConfigError);
    expect(() => new HttpTarget({ urlTemplate: '/records/{key}' })).toThrow(/not an absolute URL/);
    expect(() => new HttpTarget({ urlTemplate: 'ftp://x/{key}' })).toThrow(/not http: or https:/);
  });

  it('refuses to send a secret over plain http except to loopback', () => {
    const auth = { kind: 'bearer', secret: 's3cret-value' } as const;
    expect(() => new HttpTarget({ urlTemplate: 'http://api.example.com/{key}', auth })).toThrow(
      /only over https/,
    );
    new HttpTarget({ urlTemplate: 'http://127.0.0.1:1/{key}', auth }).close().catch(() => {});
    new HttpTarget({ urlTemplate: 'https://api.example.com/{key}', auth }).close().catch(() => {});
  });

  it('keeps header values ASCII: Idempotency-Key is <key>:<version>, percent-encoding what is not printable ASCII', () => {
    expect(idempotencyKeyOf({ key: 'leads|000123', version: 42n })).toBe('leads|000123:42');
    expect(headerSafe('leads|Zoë 100%')).toBe('leads|Zo%C3%AB 100%25');
    expect(headerSafe('a\nb🚀')).toBe('a%0Ab%F0%9F%9A%80');
  });

  it('sends the documented body and headers', async () => {
    const { sim, target } = await setup({}, { headers: { 'x-tenant': 'contoso' } });
    const big = 2n ** 64n + 7n;
    expect(await target.apply(rec('Zoë/1', big, { Name: 'Zoë', n: 1 }))).toBe('applied');
    const req = sim.requests[0]!;
    expect(req.method).toBe('PUT');
    expect(req.path).toBe('/records/leads%7CZo%C3%AB%2F1');
    expect(req.headers['idempotency-key']).toBe('leads|Zo%C3%AB/1:18446744073709551623');
    expect(req.headers['record-version']).toBe('18446744073709551623');
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers['x-tenant']).toBe('contoso');
    expect(sim.get('leads|Zoë/1')).toEqual({
      key: 'leads|Zoë/1',
      version: '18446744073709551623',
      deleted: false,
      data: { Name: 'Zoë', n: 1 },
    });
  });
});

describe('collection URL', () => {
  it('POSTs to a URL without placeholders; the key travels in the body', async () => {
    const { sim } = await setup();
    const collection = new HttpTarget({ urlTemplate: `${sim.url}/records`, method: 'POST' });
    open.push(collection);
    expect(await collection.apply(rec('a/b', 3n, { x: 1 }))).toBe('applied');
    expect(await collection.apply(rec('a/b', 2n, { x: 0 }))).toBe('skipped');
    expect(sim.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
      'POST /records 201',
      'POST /records 409',
    ]);
    expect(sim.get('leads|a/b')).toMatchObject({ version: '3', data: { x: 1 } });
  });
});

describe('failures', () => {
  it('retries 5xx with backoff and then applies', async () => {
    const { sim, target } = await setup();
    sim.failNext(2, 503);
    expect(await target.apply(rec('1', 1n))).toBe('applied');
    expect(sim.requests.map((r) => r.status)).toEqual([503, 503, 201]);
  });

  it('gives up after maxAttempts with a TransientError (the queue retries), nothing stored', async () => {
    const { sim, target } = await setup({}, { maxAttempts: 3 });
    sim.failNext(5, 500, 'database is down');
    const e = await thrown(() => target.apply(rec('1', 1n)));
    expect(e).toBeInstanceOf(TransientError);
    expect((e as TransientError).upstreamStatus).toBe(500);
    expect((e as TransientError).message).toMatch(/gave up after 3 attempt\(s\).*500.*database is down/);
    expect(sim.requests).toHaveLength(3);
    expect(sim.records()).toEqual([]);
  });

  it('times out a request that hangs and retries it', async () => {
    const { sim, target } = await setup({}, { timeoutMs: 200 });
    sim.hangNext(1);
    expect(await target.apply(rec('1', 1n))).toBe('applied');
    expect(sim.records()).toHaveLength(1);

    sim.hangNext(4); // every attempt (maxAttempts defaults to 4)
    const e = await thrown(() => target.apply(rec('2', 1n)));
    expect(e).toBeInstanceOf(TransientError);
    expect(String((e as Error).message)).toMatch(/gave up after 4 attempt\(s\)\): timed out after 200 ms/);
    expect(sim.records().map((r) => r.key)).toEqual(['leads|1']);
  }, 20_000);

  it('honours Retry-After on 429', async () => {
    const { sim, target } = await setup();
    sim.throttleNext(1, 1);
    const started = Date.now();
    expect(await target.apply(rec('1', 1n))).toBe('applied');
    // The second attempt came no sooner than the server asked (1 s).
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(sim.requests.map((r) => r.status)).toEqual([429, 201]);
  });

  it('hands a Retry-After longer than it waits back to the queue, with the delay', async () => {
    const { sim, target } = await setup({}, { maxRetryAfterMs: 5_000 });
    sim.throttleNext(1, 120);
    const e = await thrown(() => target.apply(rec('1', 1n)));
    expect(e).toBeInstanceOf(TransientError);
    expect((e as TransientError).retryAfterMs).toBe(120_000);
    expect((e as TransientError).upstreamStatus).toBe(429);
    expect(sim.requests).toHaveLength(1);
  });

  it('a 4xx is permanent at once (quarantine) with the status and a bounded excerpt of the body', async () => {
    const { sim, target } = await setup();
    sim.failNext(1, 422, JSON.stringify({ error: 'Amount must be positive', trace: 'x'.repeat(10_000) }));
    const e = await thrown(() => target.apply(rec('1', 1n)));
    expect(e).toBeInstanceOf(PermanentError);
    const p = e as PermanentError;
    expect(p.upstreamStatus).toBe(422);
    expect(p.message).toMatch(/answered 422 Unprocessable Entity: \{"error":"Amount must be positive"/);
    expect(p.message.length).toBeLessThan(600);
    expect((p.details as { excerpt: string }).excerpt.length).toBeLessThanOrEqual(301);
    expect(sim.requests).toHaveLength(1); // not retried
  });

  it('409/412 mean "already newer" only when configured; otherwise they are permanent', async () => {
    const skip = await setup();
    expect(await skip.target.apply(rec('1', 5n))).toBe('applied');
    expect(await skip.target.apply(rec('1', 4n))).toBe('skipped');
    skip.sim.failNext(1, 412);
    expect(await skip.target.apply(rec('1', 6n))).toBe('skipped');

    const strict = await setup({}, { conflictMeansSkipped: false });
    expect(await strict.target.apply(rec('1', 5n))).toBe('applied');
    const e = await thrown(() => strict.target.apply(rec('1', 4n)));
    expect(e).toBeInstanceOf(PermanentError);
    expect((e as PermanentError).upstreamStatus).toBe(409);
  });

  it('a configured 2xx status means skipped', async () => {
    const { sim, target } = await setup({}, { skippedStatus: 208 });
    sim.failNext(1, 208);
    expect(await target.apply(rec('1', 1n))).toBe('skipped');
    expect(await target.apply(rec('1', 1n))).toBe('applied');
  });

  it('a redirect is permanent and says to configure the final URL', async () => {
    const { sim, target } = await setup();
    sim.failNext(1, 308);
    await expect(target.apply(rec('1', 1n))).rejects.toThrow(/redirect.*final URL/);
  });

  it('a network failure is transient', async () => {
    const sim = await startRecordsApiSimulator();
    const url = sim.urlTemplate;
    await sim.close(); // nothing listens there any more
    const target = new HttpTarget({ urlTemplate: url, maxAttempts: 2, retryBaseDelayMs: 1 });
    open.push(target);
    const e = await thrown(() => target.apply(rec('1', 1n)));
    expect(e).toBeInstanceOf(TransientError);
    expect((e as Error).message).toMatch(/ECONNREFUSED/);
  });
});

describe('auth', () => {
  it('sends a header secret; a wrong one is a permanent 401', async () => {
    const authorize = (h: Record<string, unknown>) => h['x-api-key'] === 'key-123456';
    const good = await setup(
      { authorize },
      { auth: { kind: 'header', header: 'X-Api-Key', secret: 'key-123456' } },
    );
    expect(await good.target.apply(rec('1', 1n))).toBe('applied');
    const bad = await setup(
      { authorize },
      { auth: { kind: 'header', header: 'X-Api-Key', secret: 'wrong-key-9' } },
    );
    const e = await thrown(() => bad.target.apply(rec('1', 1n)));
    expect(e).toBeInstanceOf(PermanentError);
    expect((e as PermanentError).upstreamStatus).toBe(401);
  });

  it('sends a bearer secret', async () => {
    const { sim, target } = await setup(
      { authorize: (h) => h.authorization === 'Bearer b-secret-77' },
      { auth: { kind: 'bearer', secret: 'b-secret-77' } },
    );
    expect(await target.apply(rec('1', 1n))).toBe('applied');
    expect(sim.records()).toHaveLength(1);
  });

  it('never puts the secret into an error, even when the API echoes it', async () => {
    for (const auth of [
      { kind: 'header', header: 'x-api-key', secret: 'top-secret-key-42' },
      { kind: 'bearer', secret: 'top-secret-key-42' },
    ] as const) {
      const { sim, target } = await setup({}, { auth, maxAttempts: 2 });
      const echo = (req: { headers: Record<string, unknown> }) =>
        `bad request; you sent ${String(req.headers['x-api-key'] ?? req.headers.authorization)}`;
      sim.failNext(1, 400, echo);
      const p = await thrown(() => target.apply(rec('1', 1n)));
      sim.failNext(2, 500, echo);
      const t = await thrown(() => target.apply(rec('1', 1n)));
      for (const e of [p, t]) {
        const all = JSON.stringify({ m: (e as Error).message, d: (e as PermanentError).details });
        expect(all).toContain('you sent');
        expect(all).toContain('***');
        expect(all).not.toContain('top-secret-key-42');
      }
    }
  });

  it('Entra: caches the token, refreshes it before expiry, and once more when the API refuses it', async () => {
    const issued: string[] = [];
    const scopes: string[] = [];
    const credential: TokenCredential = {
      getToken: async (scope) => {
        scopes.push(String(scope));
        const token = `entra-token-${issued.length + 1}`;
        issued.push(token);
        return { token, expiresOnTimestamp: Date.now() + 60 * 60_000 } satisfies AccessToken;
      },
    };
    let accepted = 'entra-token-1';
    const { sim, target } = await setup(
      { authorize: (h) => h.authorization === `Bearer ${accepted}` },
      { auth: { kind: 'entra', credential, scope: 'api://records-api/.default' } },
    );
    await Promise.all([1, 2, 3, 4, 5].map((i) => target.apply(rec(String(i), 1n))));
    expect(issued).toHaveLength(1); // five concurrent requests, one token
    expect(scopes).toEqual(['api://records-api/.default']);

    // The API rotates its keys: the cached token is refused once, a fresh one is fetched.
    accepted = 'entra-token-2';
    expect(await target.apply(rec('6', 1n))).toBe('applied');
    expect(issued).toEqual(['entra-token-1', 'entra-token-2']);
    expect(sim.requests.filter((r) => r.status === 401)).toHaveLength(1);

    // A token the API never accepts: permanent after one refresh, and no token in the error.
    accepted = 'nothing-valid';
    const e = await thrown(() => target.apply(rec('7', 1n)));
    expect(e).toBeInstanceOf(PermanentError);
    expect((e as PermanentError).upstreamStatus).toBe(401);
    expect((e as Error).message).not.toMatch(/entra-token/);
  });

  it('Entra: a token due for refresh is fetched again', async () => {
    const issued: string[] = [];
    const credential: TokenCredential = {
      getToken: async () => {
        const token = `t-${issued.length + 1}`;
        issued.push(token);
        // Expires in 5 min + 300 ms: due for refresh (5 min margin) 300 ms from now.
        return { token, expiresOnTimestamp: Date.now() + 5 * 60_000 + 300 };
      },
    };
    const { sim, target } = await setup(
      {},
      { auth: { kind: 'entra', credential, scope: 'api://x/.default' } },
    );
    await target.apply(rec('1', 1n));
    await target.apply(rec('2', 1n));
    expect(issued).toEqual(['t-1']);
    await new Promise((r) => setTimeout(r, 400));
    await target.apply(rec('3', 1n));
    expect(issued).toEqual(['t-1', 't-2']);
    expect(sim.requests.map((r) => r.headers.authorization)).toEqual([
      'Bearer t-1',
      'Bearer t-1',
      'Bearer t-2',
    ]);
  });
});

describe('what the "no duplicate effects" contract buys', () => {
  /** The same record sent again: a redelivered message, or a retry after a lost answer. */
  async function redeliveries(mode: 'versionChecked' | 'naive', method: 'PUT' | 'POST') {
    const { sim, target } = await setup({ mode }, { method });
    const outcomes = [];
    outcomes.push(await target.apply(rec('1', 2n, { v: 'two' })));
    outcomes.push(await target.apply(rec('1', 2n, { v: 'two' }))); // redelivered
    sim.loseAnswerNext(1); // applied by the API, answer lost: the target retries
    outcomes.push(await target.apply(rec('2', 1n, { v: 'one' })));
    outcomes.push(await target.apply(rec('1', 1n, { v: 'one (late, older)' }))); // lookback re-read
    return { sim, outcomes };
  }

  it('an API that compares versions and honours Idempotency-Key: one effect per version, newest kept', async () => {
    for (const method of ['PUT', 'POST'] as const) {
      const { sim, outcomes } = await redeliveries('versionChecked', method);
      expect(outcomes).toEqual(['applied', 'skipped', 'skipped', 'skipped']);
      // The retry after the lost answer was replayed from the Idempotency-Key, not applied again.
      expect(sim.requests.at(-2)?.headers['idempotency-key']).toBe('leads|2:1');
      expect([...sim.effectCounts()]).toEqual([
        ['leads|1|2', 1],
        ['leads|2|1', 1],
      ]);
      expect(sim.get('leads|1')).toMatchObject({ version: '2', data: { v: 'two' } });
    }
  });

  it('an API that does neither: duplicated effects, and an older version overwrites a newer one', async () => {
    const { sim, outcomes } = await redeliveries('naive', 'POST');
    // Every redelivery looks like a fresh success to syncbridge: it cannot tell.
    expect(outcomes).toEqual(['applied', 'applied', 'applied', 'applied']);
    // DUPLICATED EFFECTS: the redelivery and the retry after the lost answer took effect twice.
    expect(sim.effectCounts().get('leads|1|2')).toBe(2);
    expect(sim.effectCounts().get('leads|2|1')).toBe(2);
    // REGRESSION: the late older version replaced the newer one.
    expect(sim.get('leads|1')).toMatchObject({ version: '1', data: { v: 'one (late, older)' } });
  });

  it('a naive API that deletes on DELETE lets a late older version resurrect the record', async () => {
    const naive = await setup({ mode: 'naive' }, { deleteMode: 'delete' });
    await naive.target.apply(rec('1', 1n, { v: 'one' }));
    await naive.target.apply(rec('1', 3n, { v: 'three' }, true));
    expect(naive.sim.get('leads|1')).toBeUndefined();
    await naive.target.apply(rec('1', 2n, { v: 'two (late)' }));
    expect(naive.sim.get('leads|1')).toMatchObject({ version: '2', deleted: false }); // resurrected

    const checked = await setup({ mode: 'versionChecked' }, { deleteMode: 'delete' });
    await checked.target.apply(rec('1', 1n, { v: 'one' }));
    await checked.target.apply(rec('1', 3n, { v: 'three' }, true));
    expect(await checked.target.apply(rec('1', 2n, { v: 'two (late)' }))).toBe('skipped');
    expect(checked.sim.get('leads|1')).toMatchObject({ version: '3', deleted: true });
  });
});
