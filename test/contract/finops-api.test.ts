/**
 * The F&O API clients against the simulator: Entra token, package API (including the fresh-URL
 * path for an expired event URL), recurring-integration dequeue / download / ack with
 * re-delivery, Retry-After and retries.
 */
import type { TokenCredential } from '@azure/identity';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, PermanentError, TransientError } from '../../src/lib/errors';
import { FinOpsApiClient } from '../../src/lib/finops/api-client';
import { parseBusinessEventBody } from '../../src/lib/finops/business-event';
import { isDownloadUrlExpired, SafeDownloader } from '../../src/lib/finops/download';
import { PackageApiClient } from '../../src/lib/finops/package-api';
import { parseExport, type ParsedItem } from '../../src/lib/finops/parse';
import { RecurringIntegrationClient } from '../../src/lib/finops/recurring-integration';
import { downloadEventExport, eventExportRows } from '../../src/lib/finops/event-export';
import { SafeHttpClient } from '../../src/lib/finops/safe-http';
import { FinOpsSimulator, type EntitySpec } from '../../src/local/finops-simulator';

const ACTIVITY = '7d6c2d5c-5d0f-4d1a-9a8e-0c1f5a2b3c4d';
let sim: FinOpsSimulator;
let http: SafeHttpClient;
let downloader: SafeDownloader;

const groups: EntitySpec = {
  entity: 'Customer groups',
  format: 'csv',
  columns: ['CUSTOMERGROUPID', 'DESCRIPTION'],
  rows: [
    { CUSTOMERGROUPID: '10', DESCRIPTION: 'Wholesale' },
    { CUSTOMERGROUPID: '20', DESCRIPTION: 'Retail' },
  ],
};
const terms: EntitySpec = {
  entity: 'Terms of payment',
  format: 'xml',
  columns: ['NAME'],
  rows: [{ NAME: 'Net30' }],
};

const api = (o: Partial<ConstructorParameters<typeof FinOpsApiClient>[0]> = {}) =>
  new FinOpsApiClient({
    baseUrl: sim.baseUrl,
    credential: sim.credential(),
    http,
    retry: { baseDelayMs: 10, maxDelayMs: 50 },
    ...o,
  });

async function rows(body: AsyncIterable<Uint8Array>, fileName: string): Promise<ParsedItem[]> {
  const out: ParsedItem[] = [];
  for await (const i of parseExport(body, { entity: 'Customer groups', fileName })) out.push(i);
  return out;
}

beforeAll(async () => {
  sim = await FinOpsSimulator.start({ redeliveryMs: 30 * 60_000 });
  http = new SafeHttpClient({
    timeoutMs: 2_000,
    unsafeTestOnly: { allowLoopback: true, extraCaPem: sim.caPem },
  });
  downloader = new SafeDownloader({ http, allowedHosts: ['127.0.0.1'] });
  sim.defineGroup('Customer export', [groups, terms]);
});
afterEach(() => sim.faults.clear());
afterAll(async () => {
  http?.close();
  await sim?.close();
});

describe('package API', () => {
  it('exports a package, waits for Succeeded, gets its URL and reads every entity', async () => {
    const client = new PackageApiClient(api());
    const executionId = await client.exportToPackage({
      definitionGroupId: 'Customer export',
      packageName: 'customers',
      executionId: 'exec-1',
      legalEntityId: 'USMF',
    });
    expect(executionId).toBe('exec-1');
    expect(await client.getExecutionSummaryStatus(executionId)).toBe('Succeeded');
    const url = await client.getExportedPackageUrl(executionId);
    const dl = await downloader.download(url);
    const items = await rows(dl.body, dl.fileName);
    expect(items.map((i) => [i.entity, i.kind])).toEqual([
      ['Customer groups', 'row'],
      ['Customer groups', 'row'],
      ['Terms of payment', 'row'],
    ]);
  });

  it('reports Executing until the execution is done, and no URL before', async () => {
    const slow = await FinOpsSimulator.start({ executionMs: 60_000 });
    try {
      slow.defineGroup('G', [groups]);
      const h = new SafeHttpClient({ unsafeTestOnly: { allowLoopback: true, extraCaPem: slow.caPem } });
      const client = new PackageApiClient(
        new FinOpsApiClient({
          baseUrl: slow.baseUrl,
          credential: slow.credential(),
          http: h,
        }),
      );
      const id = await client.exportToPackage({
        definitionGroupId: 'G',
        packageName: 'p',
        legalEntityId: 'USMF',
      });
      expect(id).toMatch(/^G-/);
      expect(await client.getExecutionSummaryStatus(id)).toBe('Executing');
      await expect(client.getExportedPackageUrl(id)).rejects.toMatchObject({
        code: 'package_url_unavailable',
      });
      slow.advance(60_000);
      expect(await client.getExecutionSummaryStatus(id)).toBe('Succeeded');
      expect(await client.getExportedPackageUrl(id)).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/blob\/exports\//);
      expect(await client.getExecutionSummaryStatus('nope')).toBe('Unknown');
      h.close();
    } finally {
      await slow.close();
    }
  });

  it('reads a value nested as {"value": {"value": url}}', async () => {
    const nested = await FinOpsSimulator.start({ packageUrlShape: 'nested' });
    try {
      const h = new SafeHttpClient({ unsafeTestOnly: { allowLoopback: true, extraCaPem: nested.caPem } });
      const handle = nested.addExport(groups);
      const client = new PackageApiClient(
        new FinOpsApiClient({
          baseUrl: nested.baseUrl,
          credential: nested.credential(),
          http: h,
        }),
      );
      expect(await client.getExportedPackageUrl(handle.executionId)).toMatch(/\/blob\/exports\/.*sig=/);
      h.close();
    } finally {
      await nested.close();
    }
  });

  it('an expired event URL: the fresh URL of the execution downloads the same rows', async () => {
    const handle = sim.addExport(groups);
    const { json } = sim.businessEventJson(handle, { urlTtlMs: 60_000 });
    const parsed = parseBusinessEventBody(json);
    if (parsed.kind !== 'event') throw new Error('expected an event');
    sim.advance(2 * 60_000);
    const expired = await downloader.download(parsed.facts.downloadUrl!).catch((e: unknown) => e);
    expect(isDownloadUrlExpired(expired)).toBe(true);
    const fresh = await new PackageApiClient(api()).getExportedPackageUrl(parsed.facts.executionId!);
    const dl = await downloader.download(fresh);
    expect(
      (await rows(dl.body, dl.fileName)).map((r) => r.kind === 'row' && r.fields.CUSTOMERGROUPID),
    ).toEqual(['10', '20']);
  });

  it('retries 5xx and waits out a 429 Retry-After', async () => {
    const client = new PackageApiClient(api());
    const handle = sim.addExport(groups);
    sim.faults.failNext(2, { status: 503, route: 'package-api' });
    expect(await client.getExecutionSummaryStatus(handle.executionId)).toBe('Succeeded');
    sim.faults.failNext(1, { status: 429, retryAfterSeconds: 1, route: 'package-api' });
    const started = Date.now();
    expect(await client.getExecutionSummaryStatus(handle.executionId)).toBe('Succeeded');
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('gives up after the attempts with a TransientError, and does not repeat an ExportToPackage without execution id', async () => {
    const client = new PackageApiClient(api({ retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 2 } }));
    const before = sim.stats.byRoute['package-api'] ?? 0;
    sim.faults.failNext(10, { status: 500, route: 'package-api' });
    await expect(client.getExecutionSummaryStatus('x')).rejects.toBeInstanceOf(TransientError);
    expect((sim.stats.byRoute['package-api'] ?? 0) - before).toBe(3);
    await expect(
      client.exportToPackage({
        definitionGroupId: 'Customer export',
        packageName: 'p',
        legalEntityId: 'USMF',
      }),
    ).rejects.toBeInstanceOf(TransientError);
    expect((sim.stats.byRoute['package-api'] ?? 0) - before).toBe(4);
  });

  it('a wrong client secret or an unknown group: configuration and permanent errors', async () => {
    const badCredential: TokenCredential = {
      getToken: async () => {
        throw new Error('AADSTS7000215: Invalid client secret provided.');
      },
    };
    await expect(
      new PackageApiClient(api({ credential: badCredential })).getExecutionSummaryStatus('x'),
    ).rejects.toBeInstanceOf(ConfigError);
    const noToken: TokenCredential = {
      getToken: async () => ({ token: 'forged', expiresOnTimestamp: Date.now() + 60_000 }),
    };
    const e = await new PackageApiClient(api({ credential: noToken }))
      .getExecutionSummaryStatus('x')
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toMatch(/answered 401/);
    await expect(
      new PackageApiClient(api()).exportToPackage({
        definitionGroupId: 'nope',
        packageName: 'p',
        executionId: 'e',
        legalEntityId: 'USMF',
      }),
    ).rejects.toThrow(/answered 400: Definition group nope not found/);
  });

  it('asks the token for <base>/.default, and refuses a base URL that is not https', () => {
    expect(api().scope).toBe(`${sim.baseUrl}/.default`);
    expect(() => api({ baseUrl: 'http://contoso.operations.dynamics.com' })).toThrow(ConfigError);
  });
});

describe('recurring integration', () => {
  const client = () => new RecurringIntegrationClient(api(), downloader, ACTIVITY);

  it('dequeue answers nothing (204) when the queue is empty', async () => {
    expect(await client().dequeue()).toBeUndefined();
  });

  it('dequeue → download (http:// rewritten, bearer) → ack; an acknowledged message never comes back', async () => {
    const handle = sim.addPackage([groups]);
    sim.enqueue(ACTIVITY, handle);
    const c = client();
    const m = await c.dequeue();
    expect(m).toBeDefined();
    expect(m!.downloadLocation).toMatch(/^https:\/\//);
    expect(JSON.parse(m!.rawBody).DownloadLocation).toMatch(/^http:\/\//);
    const dl = await c.download(m!);
    expect((await rows(dl.body, dl.fileName)).filter((i) => i.kind === 'row')).toHaveLength(2);
    expect(await c.dequeue()).toBeUndefined();
    await c.ack(m!);
    await c.ack(m!); // repeating an ack is harmless
    sim.advance(31 * 60_000);
    expect(await c.dequeue()).toBeUndefined();
    expect(sim.activity(ACTIVITY).find((x) => x.correlationId === m!.correlationId)).toMatchObject({
      deliveries: 1,
      acked: true,
    });
  });

  it('a message not acknowledged comes back after 30 minutes with a new PopReceipt; the stale receipt cannot ack it', async () => {
    const handle = sim.addExport(groups);
    const { correlationId } = sim.enqueue(ACTIVITY, handle);
    const c = client();
    const first = await c.dequeue();
    expect(first?.correlationId).toBe(correlationId);
    sim.advance(29 * 60_000);
    expect(await c.dequeue()).toBeUndefined();
    sim.advance(60_000);
    const second = await c.dequeue();
    expect(second?.correlationId).toBe(correlationId);
    expect(second?.popReceipt).not.toBe(first?.popReceipt);
    await expect(c.ack(first!)).rejects.toBeInstanceOf(PermanentError);
    await c.ack(second!);
    expect(sim.activity(ACTIVITY).find((x) => x.correlationId === correlationId)).toMatchObject({
      deliveries: 2,
      acked: true,
    });
  });

  it('honours 429 Retry-After on dequeue and retries a failed ack', async () => {
    const handle = sim.addExport(groups);
    sim.enqueue(ACTIVITY, handle);
    const c = client();
    sim.faults.failNext(1, { status: 429, retryAfterSeconds: 1, route: 'dequeue' });
    const started = Date.now();
    const m = await c.dequeue();
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    sim.faults.failNext(2, { status: 500, route: 'ack' });
    await c.ack(m!);
    expect(sim.activity(ACTIVITY).find((x) => x.correlationId === m!.correlationId)?.acked).toBe(true);
  });

  it('refuses a DownloadLocation on another host (the bearer token goes only to the environment)', async () => {
    const c = client();
    const e = await c
      .download({
        correlationId: 'c',
        popReceipt: 'p',
        downloadLocation: 'https://evil.example.com/x',
        rawBody: '{}',
      })
      .catch((x: unknown) => x);
    expect(e).toMatchObject({ kind: 'permanent', code: 'host_not_allowed' });
  });

  it('refuses an activity id that is not a GUID', () => {
    expect(() => new RecurringIntegrationClient(api(), downloader, 'not-a-guid')).toThrow(ConfigError);
  });
});

describe('business-event sender', () => {
  it('posts a Data export event (ControlNumber with every digit) and the activation test message', async () => {
    const { createServer } = await import('node:http');
    const bodies: string[] = [];
    const server = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString('utf8')));
      req.on('end', () => {
        bodies.push(text);
        res.writeHead(202).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const { port } = server.address() as { port: number };
    try {
      const handle = sim.addExport(groups);
      const sent = await sim.sendBusinessEvent(
        `http://127.0.0.1:${port}/api/webhooks/business-event`,
        handle,
        {
          controlNumber: 2n ** 60n + 1n,
        },
      );
      expect(sent.status).toBe(202);
      const test = await sim.sendActivationTestEvent(`http://127.0.0.1:${port}/api/webhooks/business-event`);
      expect(test.status).toBe(202);
      const event = parseBusinessEventBody(bodies[0]!);
      expect(event.kind).toBe('event');
      if (event.kind === 'event') {
        expect(event.facts).toMatchObject({
          controlNumber: 2n ** 60n + 1n,
          entityName: 'Customer groups',
          executionId: handle.executionId,
        });
        expect(event.facts.eventTime).toBeInstanceOf(Date);
        const dl = await downloader.download(event.facts.downloadUrl!);
        expect((await rows(dl.body, dl.fileName)).length).toBe(2);
      }
      expect(parseBusinessEventBody(bodies[1]!).kind).toBe('activation');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('an event export', () => {
  it('reads the rows of a valid URL, and of an expired one through a fresh URL from the package API', async () => {
    const handle = sim.addExport(groups);
    const parsed = parseBusinessEventBody(sim.businessEventJson(handle, { urlTtlMs: 60_000 }).json);
    if (parsed.kind !== 'event') throw new Error('expected an event');
    const deps = { downloader, packageApi: new PackageApiClient(api()) };
    const read = async () => {
      const out: ParsedItem[] = [];
      for await (const i of eventExportRows(parsed.facts, deps)) out.push(i);
      return out;
    };
    expect((await read()).map((i) => i.kind === 'row' && i.fields.CUSTOMERGROUPID)).toEqual(['10', '20']);
    sim.advance(2 * 60_000);
    const before = sim.stats.byRoute['package-api'] ?? 0;
    const refreshed = await downloadEventExport(parsed.facts, deps);
    expect(refreshed.refreshedUrl).toBe(true);
    refreshed.body.destroy();
    expect(sim.stats.byRoute['package-api']).toBe(before + 1);
    expect((await read()).map((i) => i.entity)).toEqual(['Customer groups', 'Customer groups']);
  });

  it('without the package API, or without an ExecutionId, an expired URL is a DownloadUrlExpiredError that says why', async () => {
    const handle = sim.addExport(groups);
    const parsed = parseBusinessEventBody(sim.businessEventJson(handle, { urlTtlMs: 1_000 }).json);
    if (parsed.kind !== 'event') throw new Error('expected an event');
    sim.advance(5_000);
    const noApi = await downloadEventExport(parsed.facts, { downloader }).catch((e: unknown) => e);
    expect(isDownloadUrlExpired(noApi)).toBe(true);
    expect((noApi as Error).message).toMatch(/FNO_BASE_URL is not set/);
    expect((noApi as Error).message).not.toMatch(/sig=/);
    const noExecution = await downloadEventExport(
      { ...parsed.facts, executionId: undefined },
      { downloader, packageApi: new PackageApiClient(api()) },
    ).catch((e: unknown) => e);
    expect((noExecution as Error).message).toMatch(/no ExecutionId/);
  });
});
