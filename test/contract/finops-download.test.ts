/**
 * The safe downloader against the F&O simulator (a real HTTPS server on loopback): host
 * allow-list, https only, vetted addresses, redirects, timeouts, size caps, expired URLs, and
 * no query string in any error.
 */
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError, PermanentError, TransientError } from '../../src/lib/errors';
import { DownloadUrlExpiredError, SafeDownloader } from '../../src/lib/finops/download';
import { parseExport, type ParsedItem } from '../../src/lib/finops/parse';
import { SafeHttpClient, safeUrlText, type Resolver } from '../../src/lib/finops/safe-http';
import { FinOpsSimulator, generatedRows, type ExportHandle } from '../../src/local/finops-simulator';

let sim: FinOpsSimulator;
let small: ExportHandle;
let large: ExportHandle;
const errorTexts: string[] = [];

const http = (o: ConstructorParameters<typeof SafeHttpClient>[0] = {}) =>
  new SafeHttpClient({
    timeoutMs: 1_000,
    unsafeTestOnly: { allowLoopback: true, extraCaPem: sim.caPem },
    ...o,
  });
const downloader = (o: Partial<ConstructorParameters<typeof SafeDownloader>[0]> = {}) =>
  new SafeDownloader({ http: http(), allowedHosts: ['127.0.0.1'], ...o });

/** The error a promise rejects with (recorded, to check no error text carries a query string). */
async function failure(p: Promise<unknown>): Promise<AppError> {
  try {
    const d = await p;
    // A download that started: read it to the end (the failure may be in the body).
    if (d && typeof d === 'object' && 'body' in d)
      for await (const _ of (d as { body: Readable }).body) void _;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    const a = e as AppError;
    errorTexts.push(a.message, JSON.stringify(a.details ?? null), String(a.stack));
    return a;
  }
  throw new Error('expected a failure');
}

beforeAll(async () => {
  sim = await FinOpsSimulator.start();
  small = sim.addExport({
    entity: 'Customer groups',
    format: 'csv',
    columns: ['CUSTOMERGROUPID', 'DESCRIPTION'],
    rows: [
      { CUSTOMERGROUPID: '10', DESCRIPTION: 'Wholesale' },
      { CUSTOMERGROUPID: '20', DESCRIPTION: 'Retail' },
    ],
  });
  large = sim.addExport({
    entity: 'Customer groups',
    format: 'csv',
    columns: ['CUSTOMERGROUPID', 'DESCRIPTION'],
    rows: generatedRows(50_000, (i) => ({ CUSTOMERGROUPID: String(i), DESCRIPTION: `group ${i}` })),
  });
});

afterAll(async () => {
  await sim?.close();
  // No error, whatever went wrong, shows the SAS query string.
  expect(errorTexts.length).toBeGreaterThan(20);
  for (const t of errorTexts) {
    expect(t).not.toMatch(/sig=|se=|sv=|\?/);
  }
});

async function rowsOf(url: string, d = downloader()): Promise<ParsedItem[]> {
  const dl = await d.download(url);
  const items: ParsedItem[] = [];
  for await (const i of parseExport(dl.body, { entity: 'Customer groups', fileName: dl.fileName }))
    items.push(i);
  return items;
}

describe('a good URL', () => {
  it('streams the file into the parser, naming the file from the URL path', async () => {
    const items = await rowsOf(sim.downloadUrl(small.exportId));
    expect(items.map((i) => [i.kind, i.file, i.line])).toEqual([
      ['row', 'Customer groups.csv', 2],
      ['row', 'Customer groups.csv', 3],
    ]);
  });

  it('counts the bytes it passed on (the download metric)', async () => {
    const dl = await downloader().download(sim.downloadUrl(small.exportId));
    let length = 0;
    for await (const chunk of dl.body) length += (chunk as Buffer).length;
    expect(length).toBeGreaterThan(0);
    expect(dl.bytesRead()).toBe(length);
  });

  it('follows a redirect on the same host', async () => {
    sim.faults.redirectNext(1, 'same-host');
    expect(await rowsOf(sim.downloadUrl(small.exportId))).toHaveLength(2);
  });

  it('resolves the name once and connects to that vetted address, TLS checked against the name', async () => {
    let lookups = 0;
    const resolver: Resolver = async (host) => {
      lookups++;
      expect(host).toBe('localhost');
      return [{ address: '127.0.0.1', family: 4 }];
    };
    const d = downloader({ http: http({ resolver }), allowedHosts: ['localhost'] });
    const url = sim.downloadUrl(small.exportId).replace('127.0.0.1', 'localhost');
    expect(await rowsOf(url, d)).toHaveLength(2);
    expect(lookups).toBe(1);
  });
});

describe('refused before any connection', () => {
  it('a host not on the allow-list (default *.blob.core.windows.net)', async () => {
    const before = sim.stats.requests;
    const e = await failure(new SafeDownloader({ http: http() }).download(sim.downloadUrl(small.exportId)));
    expect(e).toMatchObject({ kind: 'permanent', code: 'host_not_allowed' });
    expect(e.message).toBe('the download host 127.0.0.1 is not on the allow-list');
    expect(sim.stats.requests).toBe(before);
  });

  it('http:, a user name in the URL, and an unparseable URL', async () => {
    const url = sim.downloadUrl(small.exportId);
    expect(await failure(downloader().download(url.replace('https:', 'http:')))).toMatchObject({
      code: 'url_not_https',
    });
    expect(await failure(downloader().download(url.replace('https://', 'https://user:pw@')))).toMatchObject({
      code: 'url_has_credentials',
    });
    expect(await failure(downloader().download('https://[bad?sig=SECRET'))).toMatchObject({
      code: 'url_invalid',
    });
  });

  it('a name resolving to a private, loopback, link-local, CGNAT, multicast, unspecified or mapped address', async () => {
    const addresses = [
      '10.1.2.3',
      '172.16.0.9',
      '192.168.1.1',
      '127.0.0.1',
      '169.254.169.254',
      '100.64.0.1',
      '224.0.0.1',
      '0.0.0.0',
      '::1',
      '::',
      '::ffff:127.0.0.1',
      '::ffff:10.0.0.1',
      'fe80::1',
      'fd00::1',
      'ff02::1',
      '64:ff9b::a00:1',
    ];
    for (const address of addresses) {
      const resolver: Resolver = async () => [{ address, family: address.includes(':') ? 6 : 4 }];
      const d = new SafeDownloader({ http: new SafeHttpClient({ resolver }) });
      const e = await failure(d.download('https://acct.blob.core.windows.net/c/x.csv?sv=1&sig=SECRET'));
      expect(e, address).toMatchObject({ kind: 'permanent', code: 'address_forbidden' });
    }
    // One bad answer among good ones is enough to refuse (rebinding or misconfiguration).
    const mixed: Resolver = async () => [
      { address: '20.60.1.1', family: 4 },
      { address: '10.0.0.5', family: 4 },
    ];
    const e = await failure(
      new SafeDownloader({ http: new SafeHttpClient({ resolver: mixed }) }).download(
        'https://acct.blob.core.windows.net/c/x.csv',
      ),
    );
    expect(e.code).toBe('address_forbidden');
  });

  it('loopback without the test-only switch, even when the host is allowed', async () => {
    const d = new SafeDownloader({
      http: new SafeHttpClient({ unsafeTestOnly: { extraCaPem: sim.caPem } }),
      allowedHosts: ['127.0.0.1'],
    });
    expect(await failure(d.download(sim.downloadUrl(small.exportId)))).toMatchObject({
      code: 'address_forbidden',
    });
  });

  it('a private endpoint range opens only what FNO_DOWNLOAD_ALLOWED_PRIVATE_CIDRS names, and never loopback or link-local', async () => {
    const to = (address: string, cidrs: string[]) =>
      new SafeHttpClient({ allowedPrivateCidrs: cidrs, resolver: async () => [{ address, family: 4 }] });
    // 10.20.0.5 is allowed by the CIDR: the client gets past the vetting and tries to connect;
    // abort at once so no packet goes to a private address from this machine.
    const abort = AbortSignal.abort(new TransientError('aborted by the test'));
    const inside = new SafeDownloader({ http: to('10.20.0.5', ['10.20.0.0/16']) });
    expect(
      await failure(inside.download('https://acct.blob.core.windows.net/c/x.csv', { signal: abort })),
    ).toMatchObject({ message: 'aborted by the test' });
    const outside = new SafeDownloader({ http: to('10.21.0.5', ['10.20.0.0/16']) });
    expect(await failure(outside.download('https://acct.blob.core.windows.net/c/x.csv'))).toMatchObject({
      code: 'address_forbidden',
    });
    expect(() => new SafeHttpClient({ allowedPrivateCidrs: ['127.0.0.0/8'] })).toThrow(
      /not inside a private range/,
    );
    expect(() => new SafeHttpClient({ allowedPrivateCidrs: ['169.254.0.0/16'] })).toThrow(
      /not inside a private range/,
    );
    expect(() => new SafeHttpClient({ allowedPrivateCidrs: ['10.0.0.0/4'] })).toThrow(
      /not inside a private range/,
    );
  });
});

describe('refused or failed on the wire', () => {
  it('a redirect to another host', async () => {
    sim.faults.redirectNext(1, 'other-host');
    const e = await failure(
      downloader({ allowedHosts: ['127.0.0.1', 'localhost'] }).download(sim.downloadUrl(small.exportId)),
    );
    expect(e).toMatchObject({ kind: 'permanent', code: 'redirect_refused' });
    expect(e.message).toMatch(
      /redirected to another host \(https:\/\/localhost:\d+\/blob\/exports\/.*\); refused/,
    );
  });

  it('a certificate the client does not trust', async () => {
    const d = new SafeDownloader({
      http: new SafeHttpClient({ unsafeTestOnly: { allowLoopback: true } }),
      allowedHosts: ['127.0.0.1'],
    });
    expect(await failure(d.download(sim.downloadUrl(small.exportId)))).toMatchObject({
      kind: 'permanent',
      code: 'tls_failed',
    });
  });

  it('a server that never answers: timeout, transient', async () => {
    sim.faults.hangNext(1, 'download');
    const started = Date.now();
    const e = await failure(
      downloader({ http: http({ timeoutMs: 300 }) }).download(sim.downloadUrl(small.exportId)),
    );
    expect(e).toMatchObject({ kind: 'transient', code: 'timeout' });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a body that stops in the middle: timeout, transient', async () => {
    sim.faults.stallNext(1);
    const started = Date.now();
    const e = await failure(
      downloader({ http: http({ timeoutMs: 300 }) }).download(sim.downloadUrl(large.exportId)),
    );
    expect(e).toMatchObject({ kind: 'transient', code: 'timeout' });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('too many redirects, even on the same host', async () => {
    sim.faults.redirectNext(4, 'same-host');
    const e = await failure(
      downloader({ http: http({ maxRedirects: 3 }) }).download(sim.downloadUrl(small.exportId)),
    );
    expect(e).toMatchObject({ kind: 'permanent', code: 'redirect_refused' });
    expect(e.message).toMatch(/more than 3 redirects/);
    sim.faults.clear();
  });

  it('a body cut short: transient', async () => {
    sim.faults.truncateNext(1);
    expect(await failure(downloader().download(sim.downloadUrl(small.exportId)))).toBeInstanceOf(
      TransientError,
    );
    sim.faults.truncateNext(1);
    expect(await failure(downloader().download(sim.downloadUrl(large.exportId)))).toBeInstanceOf(
      TransientError,
    );
  });

  it('5xx and 429 are transient and carry Retry-After', async () => {
    sim.faults.failNext(1, { status: 503, retryAfterSeconds: 7, route: 'download' });
    const e = await failure(downloader().download(sim.downloadUrl(small.exportId)));
    expect(e).toBeInstanceOf(TransientError);
    expect(e).toMatchObject({ code: 'download_unavailable', upstreamStatus: 503, retryAfterMs: 7000 });
    sim.faults.failNext(1, { status: 429, route: 'download' });
    expect(await failure(downloader().download(sim.downloadUrl(small.exportId)))).toMatchObject({
      kind: 'transient',
      upstreamStatus: 429,
    });
  });

  it('a size above the cap: refused from Content-Length, or cut while streaming', async () => {
    const declared = await failure(downloader({ maxBytes: 20 }).download(sim.downloadUrl(small.exportId)));
    expect(declared).toMatchObject({ kind: 'permanent', code: 'download_too_large' });
    expect(declared.message).toMatch(/is \d+ bytes, more than the 20 allowed/);
    const streamed = await failure(
      downloader({ maxBytes: 100_000 }).download(sim.downloadUrl(large.exportId)),
    );
    expect(streamed).toMatchObject({ kind: 'permanent', code: 'download_too_large' });
    expect(streamed.message).toMatch(/sent more than the 100000 bytes allowed/);
  });
});

describe('an expired or forbidden URL', () => {
  it('an expired SAS: DownloadUrlExpiredError (403 AuthenticationFailed)', async () => {
    const url = sim.downloadUrl(small.exportId, 1_000);
    sim.advance(2_000);
    const e = await failure(downloader().download(url));
    expect(e).toBeInstanceOf(DownloadUrlExpiredError);
    expect(e).toMatchObject({
      kind: 'permanent',
      code: 'download_url_expired',
      upstreamStatus: 403,
      details: { status: 403, errorCode: 'AuthenticationFailed' },
    });
  });

  it('a tampered signature and a missing blob: the same typed error', async () => {
    const url = new URL(sim.downloadUrl(small.exportId));
    url.searchParams.set('sig', 'AAAA');
    expect(await failure(downloader().download(url.toString()))).toBeInstanceOf(DownloadUrlExpiredError);
    const gone = sim.downloadUrl('00000000-0000-0000-0000-000000000000');
    const e = await failure(downloader().download(gone));
    expect(e).toBeInstanceOf(DownloadUrlExpiredError);
    expect(e).toMatchObject({ upstreamStatus: 404, details: { errorCode: 'BlobNotFound' } });
    expect(e).toBeInstanceOf(PermanentError);
  });
});

it('safeUrlText keeps scheme, host and path only', () => {
  expect(safeUrlText('https://a.blob.core.windows.net:444/c/Customer%20groups.csv?sv=1&sig=abc#frag')).toBe(
    'https://a.blob.core.windows.net:444/c/Customer%20groups.csv',
  );
  expect(safeUrlText('not a url?sig=x')).toBe('(unparseable URL)');
});

it('an error body from the source reaches the parser caller as the download error', async () => {
  sim.faults.truncateNext(1);
  const dl = await downloader().download(sim.downloadUrl(large.exportId));
  const seen: ParsedItem[] = [];
  await expect(
    (async () => {
      for await (const i of parseExport(dl.body, { entity: 'Customer groups', fileName: dl.fileName }))
        seen.push(i);
    })(),
  ).rejects.toBeInstanceOf(TransientError);
  // The rows read before the cut are complete rows, never a half row.
  for (const r of seen) expect(r.kind).toBe('row');
});
