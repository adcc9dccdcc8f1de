/**
 * One contract for every CursorStore adapter, run against BlobCursorStore on Azurite and
 * FileShareCursorStore on the Azure Files test server; then the fileshare store's lease
 * protocol: stale-lease recovery, fresh leases left alone, the stalled-holder interleaving and
 * readers never seeing a torn value.
 */
import { BlobServiceClient } from '@azure/storage-blob';
import { ShareServiceClient, type ShareClient } from '@azure/storage-file-share';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobCursorStore } from '../src/lib/cursor/blob-cursor-store';
import {
  CursorBusyError,
  FileShareCursorStore,
  type FileShareCursorStoreOptions,
} from '../src/lib/cursor/fileshare-cursor-store';
import { startAzurite, type AzuriteInstance } from '../src/local/azurite';
import type { CompareAndSetResult, CursorStore } from '../src/lib/ports';
import { startAzureFilesServer, type AzureFilesServer } from './support/azure-files-server';

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

let azurite: AzuriteInstance;
let files: AzureFilesServer;
let fileService: ShareServiceClient;
let counter = 0;

beforeAll(async () => {
  [azurite, files] = await Promise.all([startAzurite(), startAzureFilesServer()]);
  fileService = ShareServiceClient.fromConnectionString(files.connectionString, {
    retryOptions: { maxTries: 4, retryDelayInMs: 5, maxRetryDelayInMs: 20 },
  });
});
afterAll(async () => {
  await Promise.all([azurite?.stop(), files?.stop()]);
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

describe('FileShareCursorStore lease protocol', () => {
  async function seeded(value: bigint, options: FileShareCursorStoreOptions = {}) {
    const loc = fileLocation(options);
    expect(await loc.store.compareAndSet(undefined, value)).toEqual({ ok: true });
    return loc;
  }

  it('describes its location without secrets and creates the share and directories', async () => {
    const loc = await seeded(1n);
    expect(loc.store.describe()).toBe(`fileshare devstoreaccount1/${loc.share.name}/${FILE_PATH}`);
    expect(await loc.share.getDirectoryClient(DIRECTORY).exists()).toBe(true);
    expect(files.connectionString).toContain('AccountKey=');
    expect(loc.store.describe()).not.toContain('AccountKey');
  });

  it('breaks a lease abandoned by a crashed holder after staleLeaseMs, then succeeds', async () => {
    const loc = await seeded(5n, { staleLeaseMs: 150 });
    const crashed = loc.file.getShareLeaseClient();
    await crashed.acquireLease(); // and never comes back (no stamp either)
    const started = Date.now();
    expect(await loc.store.compareAndSet(5n, 6n)).toEqual({ ok: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(await loc.raw()).toBe('6');
    expect(files.fileLeaseId(loc.share.name, FILE_PATH)).toBeUndefined(); // released after the write
  });

  it('breaks a lease whose holder stamped it long ago and then stalled', async () => {
    const loc = await seeded(5n, { staleLeaseMs: 150 });
    const stalled = loc.file.getShareLeaseClient();
    await stalled.acquireLease();
    await loc.file.setMetadata(
      { syncbridgeleaseat: String(Date.now() - 10 * 60_000) },
      { leaseAccessConditions: { leaseId: stalled.leaseId } },
    );
    expect(await loc.store.compareAndSet(5n, 6n)).toEqual({ ok: true });
    expect(await loc.raw()).toBe('6');
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
    const loc = await seeded(5n, { staleLeaseMs: 150 });
    // A: acquire, stamp, read 5 (= expected) ... and stall.
    const a = loc.file.getShareLeaseClient();
    await a.acquireLease();
    await loc.file.setMetadata(
      { syncbridgeleaseat: String(Date.now()) },
      { leaseAccessConditions: { leaseId: a.leaseId } },
    );
    expect((await loc.file.downloadToBuffer()).toString()).toBe('5');
    // B: finds A's lease, waits until it is stale, breaks it, re-reads and writes.
    expect(await loc.store.compareAndSet(5n, 7n)).toEqual({ ok: true });
    // A wakes up and writes with its lease: refused.
    const aWrite = loc.file.uploadRange('6', 0, 1, { leaseAccessConditions: { leaseId: a.leaseId } });
    await expect(aWrite).rejects.toMatchObject({ statusCode: 412 });
    expect(await loc.raw()).toBe('7');
  });

  it('makes a stalled FileShareCursorStore writer report a conflict after its lease was broken', async () => {
    const loc = await seeded(5n);
    const stalledWriter = loc.store; // default staleLeaseMs: it would never break B's lease itself
    const breaker = new FileShareCursorStore(loc.share, DIRECTORY, FILE_NAME, { staleLeaseMs: 150 });
    let resumeA!: () => void;
    const aMayGo = new Promise<void>((r) => (resumeA = r));
    let aIsStalled!: () => void;
    const aStalled = new Promise<void>((r) => (aIsStalled = r));
    let held = false;
    files.onRequest = async (info) => {
      if (!held && info.operation === 'putRange' && info.path === FILE_PATH) {
        held = true; // A's commit write: hold it "in the network" until B is done
        aIsStalled();
        await aMayGo;
      }
    };
    try {
      const a = stalledWriter.compareAndSet(5n, 6n);
      await aStalled;
      const b = await breaker.compareAndSet(5n, 7n);
      expect(b).toEqual({ ok: true });
      resumeA();
      expect(await a).toEqual({ ok: false, current: 7n });
    } finally {
      files.onRequest = undefined;
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
