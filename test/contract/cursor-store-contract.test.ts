/**
 * One contract for every CursorStore adapter, run against BlobCursorStore on Azurite and
 * FileShareCursorStore on the Azure Files test server; then the fileshare store's lease
 * protocol: stale-lease recovery judged by the service's clock, fresh leases left alone, the
 * stalled-holder interleaving (with lease errors answered 412 or 409), readers never seeing a
 * torn value, a first creation whose rename response is lost, the lease tools (status, break),
 * share creation with a key and none under managed identity; and the cursor location schemas.
 */
import https from 'node:https';
import { BlobServiceClient } from '@azure/storage-blob';
import { ShareServiceClient, type ShareClient, type ShareClientOptions } from '@azure/storage-file-share';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobCursorStore } from '../../src/lib/cursor/blob-cursor-store';
import {
  cursorDirectorySchema,
  cursorFileNameSchema,
  MAX_CURSOR_FILE_NAME_LENGTH,
} from '../../src/lib/cursor/cursor-path';
import {
  CURSOR_STORE_RETRY_OPTIONS,
  CursorBusyError,
  DEFAULT_SETTLE_MS,
  FileShareCursorStore,
  fileShareCursorStore,
  isLeaseLost,
  retryBudgetMs,
  type FileShareCursorStoreOptions,
} from '../../src/lib/cursor/fileshare-cursor-store';
import { ConfigError } from '../../src/lib/errors';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import type { CompareAndSetResult, CursorStore } from '../../src/lib/ports';
import { startAzureFilesServer, type AzureFilesServer } from '../support/azure-files-server';

const FILE_NAME = 'lastSubmissionId.txt';

interface CursorLocation {
  store: CursorStore;
  /** The stored bytes as text, or undefined when the file/blob does not exist. */
  raw(): Promise<string | undefined>;
  /** Puts `text` into the file/blob behind the store's back. */
  writeRaw(text: string): Promise<void>;
}

/** The contract every cursor store keeps; `fresh()` gives a store on a new, empty location. */
function cursorStoreContract(name: string, fresh: () => Promise<CursorLocation>) {
  describe(`${name}: CursorStore contract`, () => {
    it('reads undefined when there is no file, and when the file is empty', async () => {
      const missing = await fresh();
      expect(await missing.store.read()).toBeUndefined();
      const empty = await fresh();
      await empty.writeRaw('');
      expect(await empty.store.read()).toBeUndefined();
      expect(await empty.store.compareAndSet(undefined, 3n)).toEqual({ ok: true });
      expect(await empty.store.read()).toBe(3n);
    });

    it('sets the first value from undefined and stores it as a plain decimal number', async () => {
      const { store, raw } = await fresh();
      expect(await store.compareAndSet(undefined, 42n)).toEqual({ ok: true });
      expect(await store.read()).toBe(42n);
      expect(await raw()).toBe('42');
      expect(await store.compareAndSet(42n, 123456n)).toEqual({ ok: true });
      expect(await raw()).toBe('123456');
      // A shorter number (a manual reset) leaves no trace of the longer one.
      expect(await store.compareAndSet(123456n, 7n)).toEqual({ ok: true });
      expect(await raw()).toBe('7');
      expect(await store.read()).toBe(7n);
    });

    it('refuses a wrong expected value and reports what is stored', async () => {
      const { store, raw } = await fresh();
      expect(await store.compareAndSet(5n, 6n)).toEqual({ ok: false, current: undefined });
      expect(await raw()).toBeUndefined();
      await store.compareAndSet(undefined, 10n);
      expect(await store.compareAndSet(9n, 11n)).toEqual({ ok: false, current: 10n });
      expect(await store.compareAndSet(undefined, 11n)).toEqual({ ok: false, current: 10n });
      expect(await store.read()).toBe(10n);
      expect(await raw()).toBe('10');
    });

    it('keeps values beyond 2^64 exact', async () => {
      const { store, raw } = await fresh();
      const big = 2n ** 64n + 1n;
      const bigger = 2n ** 70n + 12345n;
      expect(await store.compareAndSet(undefined, big)).toEqual({ ok: true });
      expect(await store.read()).toBe(big);
      expect(await store.compareAndSet(big - 1n, bigger)).toEqual({ ok: false, current: big });
      expect(await store.compareAndSet(big, bigger)).toEqual({ ok: true });
      expect(await store.read()).toBe(bigger);
      expect(await raw()).toBe('1180591620717411315769');
    });

    it('fails clearly, naming the location, when the file holds something else', async () => {
      const { store, writeRaw } = await fresh();
      await writeRaw('not a number');
      const where = store.describe();
      await expect(store.read()).rejects.toThrow(where);
      await expect(store.read()).rejects.toThrow(/does not hold a whole number/);
      await expect(store.compareAndSet(undefined, 1n)).rejects.toThrow(where);
    });

    it('lets exactly one of 20 concurrent compareAndSet calls with the same expected value win, round after round', async () => {
      const { store } = await fresh();
      let expected: bigint | undefined = undefined;
      for (let round = 0; round < 4; round++) {
        const base: bigint = (expected ?? 0n) + 100n;
        const results: CompareAndSetResult[] = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.compareAndSet(expected, base + BigInt(i))),
        );
        const winners = results.flatMap((r, i) => (r.ok ? [base + BigInt(i)] : []));
        expect(winners).toHaveLength(1);
        const winner = winners[0]!;
        for (const r of results) if (!r.ok) expect(r.current).toBe(winner);
        expect(await store.read()).toBe(winner);
        expected = winner;
      }
    });

    it('ends a race of concurrent increments at exactly the number of successful ones', async () => {
      const { store, raw } = await fresh();
      await store.compareAndSet(undefined, 1000n);
      let successes = 0;
      const worker = async () => {
        for (let i = 0; i < 8; i++) {
          const v = (await store.read())!;
          if ((await store.compareAndSet(v, v + 1n)).ok) successes++;
        }
      };
      await Promise.all(Array.from({ length: 6 }, worker));
      expect(successes).toBeGreaterThanOrEqual(8);
      expect(await store.read()).toBe(1000n + BigInt(successes));
      expect(await raw()).toBe(String(1000 + successes));
    });
  });
}

let azurite: SharedAzurite;
let files: AzureFilesServer;
let fileService: ShareServiceClient;
let counter = 0;

beforeAll(async () => {
  [azurite, files] = await Promise.all([Promise.resolve(sharedAzurite()), startAzureFilesServer()]);
  fileService = ShareServiceClient.fromConnectionString(files.connectionString, {
    retryOptions: { maxTries: 4, retryDelayInMs: 5, maxRetryDelayInMs: 20 },
  });
});
afterAll(async () => {
  await files?.stop();
});

cursorStoreContract('BlobCursorStore (Azurite)', async () => {
  const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
    `cursor${++counter}`,
  );
  const blob = container.getBlockBlobClient(FILE_NAME);
  return {
    store: new BlobCursorStore(container, FILE_NAME),
    async raw() {
      if (!(await blob.exists())) return undefined;
      return (await blob.downloadToBuffer()).toString('utf8');
    },
    async writeRaw(text) {
      await container.createIfNotExists();
      await blob.upload(text, Buffer.byteLength(text));
    },
  };
});

const DIRECTORY = 'sync/cursors';
const FILE_PATH = `${DIRECTORY}/${FILE_NAME}`;

function fileLocation(
  options: FileShareCursorStoreOptions = {},
  share = fileService.getShareClient(`cursor${++counter}`),
) {
  const file = share.getDirectoryClient(DIRECTORY).getFileClient(FILE_NAME);
  return {
    share,
    file,
    store: new FileShareCursorStore(share, DIRECTORY, FILE_NAME, options),
    async raw() {
      return files.fileContent(share.name, FILE_PATH)?.toString('utf8');
    },
    async writeRaw(text: string) {
      await share.createIfNotExists();
      await share.getDirectoryClient('sync').createIfNotExists();
      await share.getDirectoryClient(DIRECTORY).createIfNotExists();
      await file.create(Buffer.byteLength(text));
      if (text !== '') await file.uploadRange(text, 0, Buffer.byteLength(text));
    },
  };
}

cursorStoreContract('FileShareCursorStore (Azure Files test server)', async () => fileLocation());

/**
 * Lets time pass for the service without waiting: every properties request (how the store
 * observes a lease) moves the service clock by `stepMs`. Returns the undo.
 */
function serviceTimePasses(stepMs: number, also?: AzureFilesServer['onRequest']): () => void {
  files.onRequest = async (info) => {
    if (info.operation === 'getFileProperties') files.advanceClock(stepMs);
    await also?.(info);
  };
  return () => {
    files.onRequest = undefined;
  };
}

describe('FileShareCursorStore lease protocol', () => {
  async function seeded(value: bigint, options: FileShareCursorStoreOptions = {}) {
    const loc = fileLocation(options);
    expect(await loc.store.compareAndSet(undefined, value)).toEqual({ ok: true });
    return loc;
  }
  /** Quick settle for tests; the service clock moves in 1-second steps (HTTP dates). */
  const quick: FileShareCursorStoreOptions = { staleLeaseMs: 60_000, settleMs: 1_000 };

  it('describes its location without secrets and creates the share and directories', async () => {
    const loc = await seeded(1n);
    expect(loc.store.describe()).toBe(`fileshare devstoreaccount1/${loc.share.name}/${FILE_PATH}`);
    expect(await loc.share.getDirectoryClient(DIRECTORY).exists()).toBe(true);
    expect(files.connectionString).toContain('AccountKey=');
    expect(loc.store.describe()).not.toContain('AccountKey');
  });

  it('breaks a lease abandoned by a crashed holder once the SERVICE clock says it is stale, then succeeds', async () => {
    const loc = await seeded(5n, { ...quick, maxWaitMs: 400 });
    const crashed = loc.file.getShareLeaseClient();
    await crashed.acquireLease(); // and never comes back
    // Fresh by the service's clock: left alone.
    await expect(loc.store.compareAndSet(5n, 6n)).rejects.toBeInstanceOf(CursorBusyError);
    expect(files.fileLeaseId(loc.share.name, FILE_PATH)).toBe(crashed.leaseId);
    // A minute later for the service (and a settle period of observations): broken, then written.
    files.advanceClock(61_000);
    const undo = serviceTimePasses(1_000);
    try {
      expect(await loc.store.compareAndSet(5n, 6n)).toEqual({ ok: true });
    } finally {
      undo();
    }
    expect(await loc.raw()).toBe('6');
    expect(files.fileLeaseState(loc.share.name, FILE_PATH)).toBe('available'); // ours, released
  });

  it("judges staleness by the service clock, not by the holder's clock (a holder 10 minutes behind is fresh)", async () => {
    // Long enough that judging by the holder's stamp (the old way) would have broken the lease.
    const loc = await seeded(5n, { ...quick, maxWaitMs: 2_500 });
    const holder = loc.file.getShareLeaseClient();
    await holder.acquireLease();
    // The holder stamps its own (skewed) time; the stamp write itself is what the service dates.
    await loc.file.setMetadata(
      { syncbridgeleaseat: String(Date.now() - 10 * 60_000) },
      { leaseAccessConditions: { leaseId: holder.leaseId } },
    );
    const undo = serviceTimePasses(1_000); // even with the settle period passing on the service
    try {
      await expect(loc.store.compareAndSet(5n, 6n)).rejects.toBeInstanceOf(CursorBusyError);
    } finally {
      undo();
    }
    expect(files.fileLeaseId(loc.share.name, FILE_PATH)).toBe(holder.leaseId);
    expect(await loc.raw()).toBe('5');
  });

  it('does not break a fresh lease: it waits for it, and gives up with CursorBusyError after maxWaitMs', async () => {
    const loc = await seeded(5n, { staleLeaseMs: 60_000, maxWaitMs: 300 });
    const holder = loc.file.getShareLeaseClient();
    await holder.acquireLease();
    await loc.file.setMetadata(
      { syncbridgeleaseat: String(Date.now()) },
      { leaseAccessConditions: { leaseId: holder.leaseId } },
    );
    const busy = loc.store.compareAndSet(5n, 6n);
    await expect(busy).rejects.toBeInstanceOf(CursorBusyError);
    await expect(busy).rejects.toThrow(loc.store.describe());
    expect(files.fileLeaseId(loc.share.name, FILE_PATH)).toBe(holder.leaseId);
    expect(await loc.raw()).toBe('5');

    // A holder that finishes in time is waited for.
    const waiting = loc.store.compareAndSet(5n, 6n);
    await new Promise((r) => setTimeout(r, 100));
    await holder.releaseLease();
    expect(await waiting).toEqual({ ok: true });
    expect(await loc.raw()).toBe('6');
  });

  it('fences off a stalled holder (driven with the SDK) whose lease was broken: only the breaker wins', async () => {
    const loc = await seeded(5n, quick);
    // A: acquire, stamp, read 5 (= expected) ... and stall.
    const a = loc.file.getShareLeaseClient();
    await a.acquireLease();
    await loc.file.setMetadata(
      { syncbridgeleaseat: String(Date.now()) },
      { leaseAccessConditions: { leaseId: a.leaseId } },
    );
    expect((await loc.file.downloadToBuffer()).toString()).toBe('5');
    // B: finds A's lease, waits until it is stale (for the service), breaks it, re-reads and writes.
    const undo = serviceTimePasses(20_000);
    try {
      expect(await loc.store.compareAndSet(5n, 7n)).toEqual({ ok: true });
    } finally {
      undo();
    }
    // A wakes up and writes with its lease: refused.
    const aWrite = loc.file.uploadRange('6', 0, 1, { leaseAccessConditions: { leaseId: a.leaseId } });
    await expect(aWrite).rejects.toMatchObject({ statusCode: 412 });
    expect(await loc.raw()).toBe('7');
  });

  for (const status of [412, 409] as const)
    it(`makes a stalled FileShareCursorStore writer report a conflict after its lease was broken (lease errors answered ${status})`, async () => {
      const loc = await seeded(5n);
      const stalledWriter = loc.store; // default staleLeaseMs: it would never break B's lease itself
      const breaker = new FileShareCursorStore(loc.share, DIRECTORY, FILE_NAME, quick);
      let resumeA!: () => void;
      const aMayGo = new Promise<void>((r) => (resumeA = r));
      let aIsStalled!: () => void;
      const aStalled = new Promise<void>((r) => (aIsStalled = r));
      let held = false;
      files.setLeaseErrorStatus(status);
      const undo = serviceTimePasses(20_000, async (info) => {
        if (!held && info.operation === 'putRange' && info.path === FILE_PATH) {
          held = true; // A's commit write: hold it "in the network" until B is done
          aIsStalled();
          await aMayGo;
        }
      });
      try {
        const a = stalledWriter.compareAndSet(5n, 6n);
        await aStalled;
        const b = await breaker.compareAndSet(5n, 7n);
        expect(b).toEqual({ ok: true });
        resumeA();
        expect(await a).toEqual({ ok: false, current: 7n });
      } finally {
        undo();
        files.setLeaseErrorStatus(412);
        resumeA();
      }
      expect(await loc.raw()).toBe('7');
    });

  it('checks the value again under its lease: a write between its first read and its acquire is seen', async () => {
    const loc = await seeded(5n);
    const other = new FileShareCursorStore(loc.share, DIRECTORY, FILE_NAME);
    let resumeA!: () => void;
    const aMayGo = new Promise<void>((r) => (resumeA = r));
    let aIsHeld!: () => void;
    const aHeld = new Promise<void>((r) => (aIsHeld = r));
    let held = false;
    files.onRequest = async (info) => {
      if (!held && info.operation === 'lease:acquire') {
        held = true; // A has read 5; its acquire arrives only after B's whole compareAndSet
        aIsHeld();
        await aMayGo;
      }
    };
    try {
      const a = loc.store.compareAndSet(5n, 6n);
      await aHeld;
      expect(await other.compareAndSet(5n, 7n)).toEqual({ ok: true });
      resumeA();
      expect(await a).toEqual({ ok: false, current: 7n });
    } finally {
      files.onRequest = undefined;
      resumeA();
    }
    expect(await loc.raw()).toBe('7');
  });

  it('never lets a reader see a torn value while the file grows or shrinks', async () => {
    const loc = await seeded(9n);
    const reader = new FileShareCursorStore(loc.share, DIRECTORY, FILE_NAME);
    const seen: (bigint | undefined | Error)[] = [];
    // Before every write request reaches the file, read it: this observes each intermediate state.
    files.onRequest = async (info) => {
      if (info.path === FILE_PATH && ['putRange', 'setProperties', 'setMetadata'].includes(info.operation))
        seen.push(await reader.read().catch((e: Error) => e));
    };
    const sequence = [9n, 10n, 1000n, 5n, 123456n, 7n, 2n ** 70n];
    try {
      for (let i = 1; i < sequence.length; i++)
        expect(await loc.store.compareAndSet(sequence[i - 1], sequence[i]!)).toEqual({ ok: true });
    } finally {
      files.onRequest = undefined;
    }
    expect(seen.length).toBeGreaterThanOrEqual(sequence.length * 2 - 2);
    for (const v of seen) expect(sequence).toContain(v);
    expect(await loc.raw()).toBe(String(2n ** 70n));
  });

  it('rides out transient 5xx answers (the SDK retries) without a double write', async () => {
    const loc = await seeded(1n);
    files.failNext(1, 503);
    expect(await loc.store.compareAndSet(1n, 2n)).toEqual({ ok: true });
    files.failNext(1, 500);
    expect(await loc.store.compareAndSet(2n, 3n)).toEqual({ ok: true });
    expect(await loc.raw()).toBe('3');
  });

  it('leaves exactly one winner when several writers create the missing file at once', async () => {
    const share: ShareClient = fileService.getShareClient(`cursor${++counter}`);
    const stores = Array.from({ length: 8 }, () => new FileShareCursorStore(share, DIRECTORY, FILE_NAME));
    const results = await Promise.all(stores.map((s, i) => s.compareAndSet(undefined, BigInt(i + 1))));
    const winners = results.flatMap((r, i) => (r.ok ? [BigInt(i + 1)] : []));
    expect(winners).toHaveLength(1);
    expect(files.fileContent(share.name, FILE_PATH)?.toString()).toBe(String(winners[0]));
    // No temporary files are left behind by the losers.
    expect(files.filePaths(share.name)).toEqual([FILE_PATH]);
  });
});

describe('FileShareCursorStore: first creation, lease tools, share and identity', () => {
  it("creates the first cursor although the rename's response was lost and the SDK retried it (404)", async () => {
    for (const mode of ['status', 'drop'] as const) {
      const loc = fileLocation();
      files.failNextAfterApplying(1, { operation: 'rename', mode });
      expect(await loc.store.compareAndSet(undefined, 42n)).toEqual({ ok: true });
      expect(await loc.raw()).toBe('42');
      expect(files.filePaths(loc.share.name)).toEqual([FILE_PATH]); // no temporary file left
      // And a competitor that lost the race still reports the conflict.
      const other = fileLocation({}, loc.share);
      expect(await other.store.compareAndSet(undefined, 7n)).toEqual({ ok: false, current: 42n });
    }
  });

  it('shows a lease in leaseStatus and breaks it with breakLease: a fresh holder only when forced', async () => {
    const loc = fileLocation({ staleLeaseMs: 60_000, settleMs: 1_000 });
    expect(await loc.store.compareAndSet(undefined, 5n)).toEqual({ ok: true });
    expect(await loc.store.leaseStatus()).toEqual({ leased: false, stale: false });
    expect(await loc.store.breakLease()).toMatchObject({
      broken: false,
      reason: expect.stringMatching(/not leased/),
    });

    const holder = loc.file.getShareLeaseClient();
    await holder.acquireLease();
    // The symptom other writers see (the portal, `az storage file upload`, the tutorial's flow).
    await expect(loc.file.uploadRange('9', 0, 1)).rejects.toMatchObject({
      statusCode: 412,
      details: { errorCode: 'LeaseIdMissing' },
    });
    expect(await loc.store.leaseStatus()).toMatchObject({ leased: true, stale: false });
    const refused = await loc.store.breakLease();
    expect(refused).toMatchObject({ broken: false, reason: expect.stringMatching(/healthy/) });
    expect(files.fileLeaseId(loc.share.name, FILE_PATH)).toBe(holder.leaseId);
    const forced = await loc.store.breakLease({ force: true });
    expect(forced).toMatchObject({ broken: true, reason: expect.stringMatching(/forced/) });
    expect(files.fileLeaseState(loc.share.name, FILE_PATH)).toBe('broken');
    await loc.file.uploadRange('9', 0, 1); // others can write again
    expect(await loc.raw()).toBe('9');
  });

  it('breaks a stale lease without force, after watching it unchanged for the settle period', async () => {
    const loc = fileLocation({ staleLeaseMs: 60_000, settleMs: 2_000 });
    expect(await loc.store.compareAndSet(undefined, 5n)).toEqual({ ok: true });
    const crashed = loc.file.getShareLeaseClient();
    await crashed.acquireLease();
    files.advanceClock(10 * 60_000);
    expect(await loc.store.leaseStatus()).toMatchObject({ leased: true, stale: true });
    expect((await loc.store.leaseStatus()).ageMs).toBeGreaterThanOrEqual(10 * 60_000);
    const undo = serviceTimePasses(1_000);
    try {
      const result = await loc.store.breakLease();
      expect(result).toMatchObject({ broken: true, reason: expect.stringMatching(/stale/) });
      expect(result.holderStampAgeMs).toBeGreaterThanOrEqual(10 * 60_000);
    } finally {
      undo();
    }
    expect(files.fileLeaseState(loc.share.name, FILE_PATH)).toBe('broken');
    expect(await loc.store.compareAndSet(5n, 6n)).toEqual({ ok: true });
  });

  it('with a connection string creates a missing share; checks its settle period against the retry budget', async () => {
    const shareName = `made${++counter}`;
    const store = fileShareCursorStore({
      connectionString: files.connectionString,
      shareName,
      directory: DIRECTORY,
      fileName: FILE_NAME,
      clientOptions: {
        retryOptions: { maxTries: 2, tryTimeoutInMs: 2_000, retryDelayInMs: 5, maxRetryDelayInMs: 20 },
      },
      settleMs: 5_000,
    });
    expect(await store.read()).toBeUndefined();
    expect(await store.compareAndSet(undefined, 3n)).toEqual({ ok: true });
    expect(files.fileContent(shareName, FILE_PATH)?.toString()).toBe('3');
    // The store's default client (3 tries of 5 s) against a settle period shorter than that:
    expect(() =>
      fileShareCursorStore({
        connectionString: files.connectionString,
        shareName,
        directory: '',
        fileName: FILE_NAME,
        settleMs: 1_000,
      }),
    ).toThrow(/retry budget/);
    expect(retryBudgetMs(CURSOR_STORE_RETRY_OPTIONS)).toBeLessThan(DEFAULT_SETTLE_MS);
  });

  it('rejects 409 and 412 lease errors alike as "lease lost", by their code', () => {
    for (const statusCode of [409, 412])
      for (const errorCode of [
        'LeaseIdMismatchWithFileOperation',
        'LeaseNotPresentWithFileOperation',
        'LeaseIdMissing',
        'LeaseLost',
      ])
        expect(isLeaseLost({ statusCode, details: { errorCode } })).toBe(true);
    expect(isLeaseLost({ statusCode: 409, details: { errorCode: 'ResourceAlreadyExists' } })).toBe(false);
    expect(isLeaseLost({ statusCode: 412, details: { errorCode: 'ConditionNotMet' } })).toBe(false);
  });

  describe('under managed identity (Bearer over TLS, x-ms-file-request-intent: backup)', () => {
    let tls: AzureFilesServer;
    beforeAll(async () => {
      tls = await startAzureFilesServer({ tls: true });
    });
    afterAll(async () => tls?.stop());
    const credential = {
      getToken: async () => ({ token: 'managed-identity-token', expiresOnTimestamp: Date.now() + 3_600_000 }),
    };
    const identityStore = (shareName: string) =>
      fileShareCursorStore({
        accountName: tls.account,
        endpoint: tls.endpoint,
        credential,
        clientOptions: {
          retryOptions: { maxTries: 2, tryTimeoutInMs: 2_000, retryDelayInMs: 5, maxRetryDelayInMs: 20 },
          agent: new https.Agent({ ca: tls.ca }),
        } as ShareClientOptions,
        shareName,
        directory: DIRECTORY,
        fileName: FILE_NAME,
        settleMs: 5_000,
      });

    it('never creates the share: a missing one is a ConfigError (ShareNotFound) naming CURSOR_SHARE_NAME', async () => {
      const store = identityStore('not-provisioned');
      const failure = await store.compareAndSet(undefined, 1n).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(failure).toBeInstanceOf(ConfigError);
      expect(failure).toMatchObject({ kind: 'configuration', code: 'ShareNotFound' });
      expect((failure as Error).message).toMatch(/CURSOR_SHARE_NAME.*"not-provisioned"/);
      await expect(store.read()).rejects.toMatchObject({ code: 'ShareNotFound' });
      expect(tls.stats.byOperation.createShare ?? 0).toBe(0);
    });

    it('keeps the cursor in a share infra created, through Bearer requests', async () => {
      tls.createShare('provisioned');
      const store = identityStore('provisioned');
      expect(await store.read()).toBeUndefined();
      expect(await store.compareAndSet(undefined, 10n)).toEqual({ ok: true });
      expect(await store.compareAndSet(10n, 11n)).toEqual({ ok: true });
      expect(await store.compareAndSet(10n, 12n)).toEqual({ ok: false, current: 11n });
      expect(tls.fileContent('provisioned', FILE_PATH)?.toString()).toBe('11');
      expect(await store.leaseStatus()).toEqual({ leased: false, stale: false });
      expect(tls.stats.byOperation.createShare ?? 0).toBe(0);
    });
  });
});

describe('cursor location settings (for the config schema)', () => {
  it('CURSOR_DIRECTORY: a relative path without empty, "." or ".." segments, each at most 255 characters', () => {
    for (const ok of ['', 'sync', 'sync/cursors', 'a'.repeat(255), 'Sync Data/2024'])
      expect(cursorDirectorySchema.safeParse(ok).success, ok).toBe(true);
    for (const bad of [
      '..',
      'sync/../etc',
      './sync',
      'sync/.',
      '/sync',
      'sync/',
      'a//b',
      'a'.repeat(256),
      'a:b',
    ])
      expect(cursorDirectorySchema.safeParse(bad).success, bad).toBe(false);
    expect(cursorDirectorySchema.safeParse('sync/../x').error?.issues[0]?.message).toMatch(/"\.\."/);
  });

  it('CURSOR_FILE_NAME: one name short enough for the temporary "<name>.<uuid>.tmp" (at most 214)', () => {
    expect(MAX_CURSOR_FILE_NAME_LENGTH).toBe(214);
    for (const ok of ['lastSubmissionId.txt', 'x'.repeat(214)])
      expect(cursorFileNameSchema.safeParse(ok).success, ok).toBe(true);
    for (const bad of ['', 'x'.repeat(215), 'a/b.txt', '..', 'a?.txt'])
      expect(cursorFileNameSchema.safeParse(bad).success, bad).toBe(false);
    expect(cursorFileNameSchema.safeParse('x'.repeat(215)).error?.issues[0]?.message).toMatch(/214.*tmp/);
  });
});
