/**
 * The Azure Files REST test server, driven by the real `@azure/storage-file-share` SDK: each
 * operation the fileshare cursor store uses, and the lease rules with the service's codes.
 */
import http from 'node:http';
import https from 'node:https';
import {
  ShareServiceClient,
  type ShareClient,
  type ShareClientOptions,
  type ShareFileClient,
} from '@azure/storage-file-share';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzureFilesServer, type AzureFilesServer } from '../support/azure-files-server';

let server: AzureFilesServer;
let service: ShareServiceClient;
let shareCounter = 0;

beforeAll(async () => {
  server = await startAzureFilesServer();
  service = ShareServiceClient.fromConnectionString(server.connectionString, {
    retryOptions: { maxTries: 3, retryDelayInMs: 5, maxRetryDelayInMs: 20 },
  });
});
afterAll(async () => server?.stop());

async function newShare(): Promise<ShareClient> {
  const share = service.getShareClient(`share${++shareCounter}`);
  await share.create();
  return share;
}

async function newFile(content = 'hello'): Promise<{ share: ShareClient; file: ShareFileClient }> {
  const share = await newShare();
  const file = share.rootDirectoryClient.getFileClient('f.txt');
  await file.create(content.length);
  await file.uploadRange(content, 0, content.length);
  return { share, file };
}

/** The status and service error code of a failed SDK call. */
async function failure(p: Promise<unknown>): Promise<{ status?: number; code?: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as { statusCode?: number; details?: { errorCode?: string } };
    return { status: err.statusCode, code: err.details?.errorCode };
  }
  throw new Error('expected the call to fail');
}

function rawRequest(
  method: string,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.port, method, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('shares and directories', () => {
  it('creates a share once: 201, then 409 ShareAlreadyExists', async () => {
    const share = service.getShareClient('created-once');
    expect((await share.createIfNotExists()).succeeded).toBe(true);
    expect((await share.createIfNotExists()).succeeded).toBe(false);
    expect(await failure(share.create())).toEqual({ status: 409, code: 'ShareAlreadyExists' });
  });

  it('creates nested directories: 201, 409 ResourceAlreadyExists, 404 ParentNotFound / ShareNotFound', async () => {
    const share = await newShare();
    expect((await share.getDirectoryClient('a').createIfNotExists()).succeeded).toBe(true);
    expect((await share.getDirectoryClient('a').createIfNotExists()).succeeded).toBe(false);
    expect(await failure(share.getDirectoryClient('x/y').create())).toEqual({
      status: 404,
      code: 'ParentNotFound',
    });
    await share.getDirectoryClient('a/b').create();
    expect(await share.getDirectoryClient('a/b').exists()).toBe(true);
    const missing = service.getShareClient('no-such-share');
    expect(await failure(missing.getDirectoryClient('a').create())).toEqual({
      status: 404,
      code: 'ShareNotFound',
    });
  });
});

describe('files', () => {
  it('creates a file of the given size (zeros), writes ranges, reads it fully and by range', async () => {
    const share = await newShare();
    const file = share.rootDirectoryClient.getFileClient('data.txt');
    await file.create(8, { metadata: { kind: 'test' } });
    expect(server.fileContent(share.name, 'data.txt')).toEqual(Buffer.alloc(8));
    const put = await file.uploadRange('abcd', 2, 4);
    expect(put.etag).toMatch(/^"0x[0-9A-F]+"$/);
    expect(put.lastModified).toBeInstanceOf(Date);
    expect(put.requestId).toBeTruthy();
    expect(put.version).toBeTruthy();
    expect(server.fileContent(share.name, 'data.txt')?.toString('latin1')).toBe('\0\0abcd\0\0');

    const full = await file.downloadToBuffer();
    expect(full.toString('latin1')).toBe('\0\0abcd\0\0');
    const ranged = await file.download(3, 2);
    expect(ranged._response.status).toBe(206);
    expect(ranged.contentRange).toBe('bytes 3-4/8');
    expect(await streamText(ranged.readableStreamBody)).toBe('bc');

    await file.clearRange(2, 2);
    expect(server.fileContent(share.name, 'data.txt')?.toString('latin1')).toBe('\0\0\0\0cd\0\0');
    expect(await failure(file.uploadRange('zz', 7, 2))).toEqual({ status: 416, code: 'InvalidRange' });
  });

  it('reports properties and metadata, resizes, deletes; a missing file is 404 ResourceNotFound', async () => {
    const { share, file } = await newFile('12345');
    await file.setMetadata({ owner: 'me' });
    const props = await file.getProperties();
    expect(props.contentLength).toBe(5);
    expect(props.metadata).toEqual({ owner: 'me' });
    expect(props.leaseState).toBe('available');
    await file.resize(3);
    expect(server.fileContent(share.name, 'f.txt')?.toString()).toBe('123');
    await file.resize(4);
    expect(server.fileContent(share.name, 'f.txt')?.toString('latin1')).toBe('123\0');
    await file.delete();
    expect(await failure(file.getProperties())).toEqual({ status: 404, code: 'ResourceNotFound' }); // HEAD: from x-ms-error-code
    expect(await failure(file.download())).toEqual({ status: 404, code: 'ResourceNotFound' });
    expect(await failure(share.rootDirectoryClient.getFileClient('nope/x.txt').create(1))).toEqual({
      status: 404,
      code: 'ParentNotFound',
    });
  });

  it('renames, refusing to replace an existing target unless asked', async () => {
    const { share, file } = await newFile('one');
    const other = share.rootDirectoryClient.getFileClient('g.txt');
    await other.create(3);
    await other.uploadRange('two', 0, 3);
    expect(await failure(file.rename('g.txt', { replaceIfExists: false }))).toEqual({
      status: 409,
      code: 'ResourceAlreadyExists',
    });
    expect(server.fileContent(share.name, 'g.txt')?.toString()).toBe('two');
    await file.rename('h.txt');
    expect(server.fileContent(share.name, 'h.txt')?.toString()).toBe('one');
    expect(server.fileContent(share.name, 'f.txt')).toBeUndefined();
    await other.rename('h.txt', { replaceIfExists: true });
    expect(server.fileContent(share.name, 'h.txt')?.toString()).toBe('two');
  });
});

describe('leases', () => {
  it('acquires only infinite leases and reports the lease state', async () => {
    const { file } = await newFile();
    expect(await failure(file.getShareLeaseClient().acquireLease(30))).toMatchObject({ status: 400 });
    const lease = file.getShareLeaseClient();
    const res = await lease.acquireLease();
    expect(res.leaseId).toBe(lease.leaseId);
    const props = await file.getProperties();
    expect([props.leaseState, props.leaseStatus, props.leaseDuration]).toEqual([
      'leased',
      'locked',
      'infinite',
    ]);
  });

  it('enforces the lease on writes: 412 LeaseIdMissing / LeaseIdMismatchWithFileOperation; reads stay open', async () => {
    const { share, file } = await newFile('abc');
    const lease = file.getShareLeaseClient();
    await lease.acquireLease();
    const wrong = { leaseAccessConditions: { leaseId: '00000000-0000-4000-8000-000000000000' } };
    const right = { leaseAccessConditions: { leaseId: lease.leaseId } };
    const missing = { status: 412, code: 'LeaseIdMissing' };
    const mismatch = { status: 412, code: 'LeaseIdMismatchWithFileOperation' };
    expect(await failure(file.uploadRange('xyz', 0, 3))).toEqual(missing);
    expect(await failure(file.uploadRange('xyz', 0, 3, wrong))).toEqual(mismatch);
    expect(await failure(file.setMetadata({ a: 'b' }))).toEqual(missing);
    expect(await failure(file.setMetadata({ a: 'b' }, wrong))).toEqual(mismatch);
    expect(await failure(file.create(3))).toEqual(missing);
    expect(await failure(file.create(3, wrong))).toEqual(mismatch);
    expect(await failure(file.resize(1, wrong))).toEqual(mismatch);
    expect(await failure(file.delete())).toEqual(missing);
    expect(await failure(file.delete(wrong))).toEqual(mismatch);
    expect(server.fileContent(share.name, 'f.txt')?.toString()).toBe('abc');
    expect((await file.downloadToBuffer()).toString()).toBe('abc');

    await file.uploadRange('xyz', 0, 3, right);
    await file.setMetadata({ a: 'b' }, right);
    expect(server.fileContent(share.name, 'f.txt')?.toString()).toBe('xyz');
    await lease.releaseLease();
    expect(await failure(file.uploadRange('abc', 0, 3, right))).toEqual({
      status: 412,
      code: 'LeaseNotPresentWithFileOperation',
    });
    await file.delete(); // unleased: no lease id needed
  });

  it('refuses a second acquire (409 LeaseAlreadyPresent) and a release with a wrong id (409)', async () => {
    const { file } = await newFile();
    const first = file.getShareLeaseClient();
    await first.acquireLease();
    expect(await failure(file.getShareLeaseClient().acquireLease())).toEqual({
      status: 409,
      code: 'LeaseAlreadyPresent',
    });
    expect(await failure(file.getShareLeaseClient().releaseLease())).toEqual({
      status: 409,
      code: 'LeaseIdMismatchWithLeaseOperation',
    });
    await first.releaseLease();
    expect(await failure(first.releaseLease())).toEqual({
      status: 409,
      code: 'LeaseNotPresentWithLeaseOperation',
    });
    const second = file.getShareLeaseClient();
    await second.acquireLease();
    expect(server.fileLeaseId(file.shareName, 'f.txt')).toBe(second.leaseId);
  });

  it('changes the lease id: the old id stops working for writes', async () => {
    const { file } = await newFile('abc');
    const lease = file.getShareLeaseClient();
    const oldId = lease.leaseId;
    await lease.acquireLease();
    const newId = '11111111-2222-4333-8444-555555555555';
    await lease.changeLease(newId);
    expect(lease.leaseId).toBe(newId);
    expect(await failure(file.uploadRange('x', 0, 1, { leaseAccessConditions: { leaseId: oldId } }))).toEqual(
      {
        status: 412,
        code: 'LeaseIdMismatchWithFileOperation',
      },
    );
    await file.uploadRange('x', 0, 1, { leaseAccessConditions: { leaseId: newId } });
  });

  it('breaks a lease (202) without knowing its id: the state is broken and the old holder is fenced off', async () => {
    const { share, file } = await newFile('abc');
    const holder = file.getShareLeaseClient();
    await holder.acquireLease();
    const res = await file.getShareLeaseClient().breakLease();
    expect(res._response.status).toBe(202);
    const props = await file.getProperties();
    expect([props.leaseState, props.leaseStatus, props.leaseDuration]).toEqual([
      'broken',
      'unlocked',
      undefined,
    ]);
    expect(
      await failure(file.uploadRange('zzz', 0, 3, { leaseAccessConditions: { leaseId: holder.leaseId } })),
    ).toEqual({ status: 412, code: 'LeaseNotPresentWithFileOperation' });
    // On broken, anyone may write without a lease id; a new holder may acquire.
    const breaker = file.getShareLeaseClient();
    await breaker.acquireLease();
    expect(
      await failure(file.uploadRange('zzz', 0, 3, { leaseAccessConditions: { leaseId: holder.leaseId } })),
    ).toEqual({ status: 412, code: 'LeaseIdMismatchWithFileOperation' });
    expect(server.fileContent(share.name, 'f.txt')?.toString()).toBe('abc');
  });

  it('on a broken lease, break again and release by the old holder succeed; release by another id does not', async () => {
    const { share, file } = await newFile('abc');
    const holder = file.getShareLeaseClient();
    await holder.acquireLease();
    await file.getShareLeaseClient().breakLease();
    expect((await file.getShareLeaseClient().breakLease())._response.status).toBe(202);
    expect(server.fileLeaseState(share.name, 'f.txt')).toBe('broken');
    expect(await failure(file.getShareLeaseClient().releaseLease())).toEqual({
      status: 409,
      code: 'LeaseIdMismatchWithLeaseOperation',
    });
    expect(await failure(holder.changeLease('11111111-2222-4333-8444-555555555555'))).toEqual({
      status: 409,
      code: 'LeaseNotPresentWithLeaseOperation',
    });
    await holder.releaseLease();
    expect((await file.getProperties()).leaseState).toBe('available');
    expect(await failure(file.getShareLeaseClient().breakLease())).toEqual({
      status: 409,
      code: 'LeaseNotPresentWithLeaseOperation',
    });
  });

  it('checks a lease id carried by a READ: 412 on a mismatch or without an active lease', async () => {
    const { file } = await newFile('abc');
    const wrong = { leaseAccessConditions: { leaseId: '00000000-0000-4000-8000-000000000000' } };
    expect(await failure(file.download(0, undefined, wrong))).toEqual({
      status: 412,
      code: 'LeaseNotPresentWithFileOperation',
    });
    const lease = file.getShareLeaseClient();
    await lease.acquireLease();
    expect(await failure(file.getProperties(wrong))).toEqual({
      status: 412,
      code: 'LeaseIdMismatchWithFileOperation',
    });
    expect(
      (
        await file.downloadToBuffer(0, undefined, { leaseAccessConditions: { leaseId: lease.leaseId } })
      ).toString(),
    ).toBe('abc');
    expect((await file.downloadToBuffer()).toString()).toBe('abc'); // without a lease id: open
  });

  it('answers lease errors on file operations with 409 when told to (the code stays)', async () => {
    const { file } = await newFile('abc');
    await file.getShareLeaseClient().acquireLease();
    const wrong = { leaseAccessConditions: { leaseId: '00000000-0000-4000-8000-000000000000' } };
    server.setLeaseErrorStatus(409);
    try {
      expect(await failure(file.uploadRange('xyz', 0, 3, wrong))).toEqual({
        status: 409,
        code: 'LeaseIdMismatchWithFileOperation',
      });
      expect(await failure(file.uploadRange('xyz', 0, 3))).toEqual({ status: 409, code: 'LeaseIdMissing' });
    } finally {
      server.setLeaseErrorStatus(412);
    }
  });
});

describe('names', () => {
  it('are case-insensitive and case-preserving', async () => {
    const share = await newShare();
    await share.getDirectoryClient('Sync').create();
    const file = share.getDirectoryClient('Sync').getFileClient('Cursor.TXT');
    await file.create(2);
    await file.uploadRange('42', 0, 2);
    const other = share.getDirectoryClient('sync').getFileClient('cursor.txt');
    expect((await other.downloadToBuffer()).toString()).toBe('42');
    expect(await failure(share.getDirectoryClient('SYNC').create())).toEqual({
      status: 409,
      code: 'ResourceAlreadyExists',
    });
    expect(server.filePaths(share.name)).toEqual(['Sync/Cursor.TXT']);
    await other.uploadRange('43', 0, 2);
    expect(server.fileContent(share.name, 'SYNC/CURSOR.txt')?.toString()).toBe('43');
  });

  it('limit each path component to 255 characters (400 OutOfRangeInput)', async () => {
    const share = await newShare();
    await share.rootDirectoryClient.getFileClient('x'.repeat(255)).create(1);
    expect(await failure(share.rootDirectoryClient.getFileClient('y'.repeat(256)).create(1))).toEqual({
      status: 400,
      code: 'OutOfRangeInput',
    });
    expect(await failure(share.getDirectoryClient('d'.repeat(256)).create())).toEqual({
      status: 400,
      code: 'OutOfRangeInput',
    });
    const short = share.rootDirectoryClient.getFileClient('short.txt');
    await short.create(1);
    expect(await failure(short.rename('z'.repeat(256)))).toEqual({ status: 400, code: 'OutOfRangeInput' });
  });
});

describe('OAuth (Bearer) requests, over TLS', () => {
  let tlsServer: AzureFilesServer;
  beforeAll(async () => {
    tlsServer = await startAzureFilesServer({ tls: true });
  });
  afterAll(async () => tlsServer?.stop());

  const credential = {
    getToken: async () => ({ token: 'test-token', expiresOnTimestamp: Date.now() + 3_600_000 }),
  };
  const bearerService = (intent?: 'backup') =>
    new ShareServiceClient(tlsServer.endpoint, credential, {
      fileRequestIntent: intent,
      retryOptions: { maxTries: 1 },
      agent: new https.Agent({ ca: tlsServer.ca }),
    } as ShareClientOptions);

  it('need x-ms-file-request-intent: backup (400 MissingRequiredHeader without it)', async () => {
    tlsServer.createShare('oauth');
    const file = (intent?: 'backup') =>
      bearerService(intent).getShareClient('oauth').rootDirectoryClient.getFileClient('f.txt');
    expect(await failure(file().create(2))).toEqual({ status: 400, code: 'MissingRequiredHeader' });
    await file('backup').create(2);
    await file('backup').uploadRange('ok', 0, 2);
    expect(tlsServer.fileContent('oauth', 'f.txt')?.toString()).toBe('ok');
  });

  it('cannot create a share (the data roles do not manage shares): 403', async () => {
    expect(await failure(bearerService('backup').getShareClient('not-by-oauth').create())).toEqual({
      status: 403,
      code: 'AuthorizationPermissionMismatch',
    });
  });
});
describe('protocol details and fault switches', () => {
  it('answers errors as XML with x-ms-error-code, and needs an Authorization header (not a valid one)', async () => {
    const noAuth = await rawRequest('GET', `/${server.account}/whatever/f.txt`, {
      'x-ms-version': '2025-05-05',
    });
    expect(noAuth.status).toBe(401);
    expect(noAuth.headers['x-ms-error-code']).toBe('NoAuthenticationInformation');
    const notFound = await rawRequest('GET', `/${server.account}/no-share/f.txt`, {
      'x-ms-version': '2025-05-05',
      authorization: 'SharedKey devstoreaccount1:not-checked',
    });
    expect(notFound.status).toBe(404);
    expect(notFound.headers['x-ms-error-code']).toBe('ShareNotFound');
    expect(notFound.headers['content-type']).toBe('application/xml');
    expect(notFound.body).toMatch(
      /^<\?xml version="1.0" encoding="utf-8"\?><Error><Code>ShareNotFound<\/Code><Message>/,
    );
    const unknown = await rawRequest('PUT', `/${server.account}/s/f.txt?comp=snapshot`, {
      'x-ms-version': '2025-05-05',
      authorization: 'SharedKey x:y',
    });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toContain('<Code>UnsupportedOperation</Code>');
  });

  it('fails the next n requests without changing anything, and counts requests', async () => {
    const { share, file } = await newFile('abc');
    const before = server.stats.requests;
    server.failNext(1, 503);
    await file.uploadRange('xyz', 0, 3); // the SDK retries the 503
    expect(server.stats.requests - before).toBe(2);
    server.failNext(5, 500);
    expect(await failure(file.uploadRange('123', 0, 3))).toMatchObject({
      status: 500,
      code: 'InternalError',
    });
    server.failNext(0);
    expect(server.fileContent(share.name, 'f.txt')?.toString()).toBe('xyz');
    expect(server.stats.byOperation.putRange).toBeGreaterThan(0);
  });

  it('lets a hook delay a request, which is then judged against the state at that time', async () => {
    const { share, file } = await newFile('abc');
    const holder = file.getShareLeaseClient();
    await holder.acquireLease();
    let releaseGate!: () => void;
    const gate = new Promise<void>((r) => (releaseGate = r));
    let held!: () => void;
    const heldSignal = new Promise<void>((r) => (held = r));
    server.onRequest = async (info) => {
      if (info.operation === 'putRange') {
        held();
        await gate;
      }
    };
    try {
      const write = failure(
        file.uploadRange('zzz', 0, 3, { leaseAccessConditions: { leaseId: holder.leaseId } }),
      );
      await heldSignal;
      await file.getShareLeaseClient().breakLease();
      releaseGate();
      expect(await write).toEqual({ status: 412, code: 'LeaseNotPresentWithFileOperation' });
    } finally {
      server.onRequest = undefined;
    }
    expect(server.fileContent(share.name, 'f.txt')?.toString()).toBe('abc');
  });
});

describe('lost responses and the service clock', () => {
  it('failNextAfterApplying: the rename happens, its response is lost, and the SDK retry gets 404', async () => {
    const { share, file } = await newFile('one');
    server.failNextAfterApplying(1, { operation: 'rename' });
    expect(await failure(file.rename('moved.txt', { replaceIfExists: false }))).toEqual({
      status: 404,
      code: 'ResourceNotFound',
    });
    expect(server.fileContent(share.name, 'moved.txt')?.toString()).toBe('one');
    expect(server.fileContent(share.name, 'f.txt')).toBeUndefined();
    expect(server.stats.byOperation.rename).toBeGreaterThanOrEqual(2);
  });

  it('failNextAfterApplying with a dropped connection: a put range is applied once and retried', async () => {
    const { share, file } = await newFile('abc');
    const before = server.stats.byOperation.putRange ?? 0;
    server.failNextAfterApplying(1, { operation: 'putRange', mode: 'drop' });
    await file.uploadRange('xyz', 0, 3);
    expect(server.fileContent(share.name, 'f.txt')?.toString()).toBe('xyz');
    expect((server.stats.byOperation.putRange ?? 0) - before).toBe(2);
  });

  it('dates responses and Last-Modified by the service clock; lease operations do not touch Last-Modified', async () => {
    const { file } = await newFile('abc');
    const first = await file.getProperties();
    server.advanceClock(90_000);
    await file.getShareLeaseClient().acquireLease();
    const second = await file.getProperties();
    expect(second.lastModified!.getTime()).toBe(first.lastModified!.getTime());
    expect(second.etag).toBe(first.etag);
    expect(second.date!.getTime() - second.lastModified!.getTime()).toBeGreaterThanOrEqual(89_000);
  });
});

async function streamText(stream: NodeJS.ReadableStream | undefined): Promise<string> {
  if (!stream) return '';
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(chunks).toString('utf8');
}
