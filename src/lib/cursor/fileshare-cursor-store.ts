/**
 * Cursor in an Azure File share (`lastSubmissionId.txt`, a plain decimal number that the
 * tutorial's Power Automate flow can read).
 *
 * COMPARE-AND-SET PROTOCOL
 *
 * Azure Files has no If-Match on writes. What it has: infinite file leases that anyone can
 * break, and writes (create, put range, set properties/metadata, delete) that fail with 412
 * when the file is leased and the request does not carry the current lease id (or carries an
 * id on a file no longer leased). So the lease is not a lock we can trust to be held; it is a
 * FENCE: every write carries our lease id, and once anyone breaks our lease, every later write
 * of ours fails and changes nothing. The protocol:
 *
 *   0. Fast path: read the file. Missing and `expected` given, or value !== expected: answer
 *      { ok: false, current } at once (linearisable at that read).
 *   1. Missing file and expected === undefined: create a uniquely named temporary file holding
 *      the new content, then rename it onto the cursor file with replaceIfExists=false. The
 *      rename is the service's only create-if-absent: of two creators exactly one rename wins;
 *      the loser gets 409, deletes its temporary file and starts over (and then sees the value).
 *      (Create File on an existing file would silently truncate it, so it is never used on the
 *      cursor file itself.)
 *   2. Acquire an infinite lease with a fresh random id L.
 *   3. Stamp: set metadata `syncbridgeleaseat=<now ms>` with lease L. This records when the
 *      holder acquired the lease (for stale-lease recovery) and proves L is still ours.
 *   4. Read the content again (now under the fence) and compare with `expected`. Different:
 *      release, answer { ok: false, current }.
 *   5. Write with lease L so that no reader ever sees a torn value:
 *        - new text longer than the file: resize first (a reader sees the OLD digits followed
 *          by NULs, which read() strips), then ONE put range of the whole new text;
 *        - otherwise ONE put range of the new text, padded with spaces to the file's size
 *          (a reader sees "new   ", which read() trims), then a best-effort shrink.
 *      The single put range is the commit point. The cursor is monotonic, so in practice the
 *      text only grows or keeps its length.
 *   6. Release L (best effort; a lease left behind becomes stale and is broken, see below).
 *   Any 412 in steps 3-5 means our lease was broken: nothing was written, so we start over
 *   at step 0 (the re-read then sees whatever the breaker wrote).
 *
 * STALE LEASES. A writer that gets 409 LeaseAlreadyPresent looks at the file's properties. The
 * lease is stale when it is still present, the file's ETag has not changed for at least
 * `settleMs` (min(1 s, staleLeaseMs)) of the observer's own clock, and the holder's stamp is
 * older than `staleLeaseMs` (without a stamp: the observer has watched the unchanged leased file
 * for staleLeaseMs). The settle interval covers a holder that has acquired but not yet stamped
 * (its stamp would change the ETag). A stale lease is broken, and the breaker starts over at
 * step 0, so it re-reads before it writes. A fresh lease is waited for (polling with backoff)
 * for at most `maxWaitMs`; then compareAndSet throws CursorBusyError (it never reports a
 * conflict it has not seen).
 *
 * WHY TWO WRITERS CANNOT BOTH SUCCEED for the same `expected`: a success needs a put range with
 * lease L while L is the file's lease. Between A's read under L (step 4) and A's commit
 * (step 5) nobody else can write unless L was broken, and then A's commit fails with 412.
 * Interleaving: A acquires, stalls past staleLeaseMs; B breaks, acquires, re-reads (expected),
 * writes, releases; A wakes and writes with L: 412 (no lease / another lease), so A starts over,
 * re-reads B's value and answers { ok: false, current }. Clock skew only affects WHEN a lease
 * is judged stale (keep it well below staleLeaseMs), never safety.
 *
 * Caveat: a commit whose response is lost (and whose SDK retry then gets 412) is reported as a
 * conflict with `current === next`; callers that CAS a cursor forward can treat that as done.
 */
import { randomUUID } from 'node:crypto';
import { ShareServiceClient, type ShareClient, type ShareFileClient } from '@azure/storage-file-share';
import { serviceErrorCodeOf as errorCodeOf, statusOf } from '../errors';
import type { CompareAndSetResult, CursorStore } from '../ports';
import { azureCredential } from '../storage/clients';
import { formatCursorText, parseCursorText, streamToString } from './text';

export const DEFAULT_STALE_LEASE_MS = 60_000;
const STAMP_KEY = 'syncbridgeleaseat';

export interface FileShareCursorStoreOptions {
  /** A lease held (stamped) longer than this is considered abandoned and broken. Default 60 s. */
  staleLeaseMs?: number;
  /** How long compareAndSet waits for another writer's fresh lease. Default staleLeaseMs + 30 s. */
  maxWaitMs?: number;
}

/** Another writer holds the cursor file's lease and it did not become free or stale in time. */
export class CursorBusyError extends Error {
  constructor(where: string, waitedMs: number) {
    super(`The cursor file ${where} stayed leased by another writer for ${waitedMs} ms; try again later.`);
    this.name = 'CursorBusyError';
  }
}

interface Snapshot {
  exists: boolean;
  value: bigint | undefined;
  /** Size of the file in bytes (0 when missing). */
  size: number;
}

type LeasedOutcome = CompareAndSetResult | 'lease-lost';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The cursor text without what a concurrent resize or a shrink may leave around it. */
export function cleanCursorText(raw: string): string {
  return raw.replace(/[\0\s]+$/, '').trim();
}

export class FileShareCursorStore implements CursorStore {
  private readonly directories: string[];
  private readonly staleLeaseMs: number;
  private readonly settleMs: number;
  private readonly maxWaitMs: number;
  private ensured?: Promise<void>;

  constructor(
    private readonly share: ShareClient,
    directory: string,
    private readonly fileName: string,
    options: FileShareCursorStoreOptions = {},
  ) {
    this.directories = directory.split('/').filter((s) => s !== '' && s !== '.');
    this.staleLeaseMs = options.staleLeaseMs ?? DEFAULT_STALE_LEASE_MS;
    this.settleMs = Math.min(1000, this.staleLeaseMs);
    this.maxWaitMs = options.maxWaitMs ?? this.staleLeaseMs + 30_000;
  }

  /** Path of the cursor file inside the share. */
  get filePath(): string {
    return [...this.directories, this.fileName].join('/');
  }

  describe(): string {
    return `fileshare ${this.share.accountName}/${this.share.name}/${this.filePath}`;
  }

  async read(): Promise<bigint | undefined> {
    return (await this.snapshot()).value;
  }

  async compareAndSet(expected: bigint | undefined, next: bigint): Promise<CompareAndSetResult> {
    await this.ensureDirectories();
    const started = Date.now();
    let observed: { etag: string; since: number } | undefined;
    for (let attempt = 0; ; attempt++) {
      const current = await this.snapshot();
      if (!current.exists) {
        if (expected !== undefined) return { ok: false, current: undefined };
        if (await this.createWithContent(next)) return { ok: true };
        continue;
      }
      if (current.value !== expected) return { ok: false, current: current.value };

      const leaseId = randomUUID();
      const acquired = await this.tryAcquire(leaseId);
      if (acquired === 'missing') continue;
      if (acquired === 'acquired') {
        observed = undefined;
        let outcome: LeasedOutcome;
        try {
          outcome = await this.compareAndSetUnderLease(leaseId, expected, next);
        } finally {
          await this.release(leaseId);
        }
        if (outcome !== 'lease-lost') return outcome;
        // Broken by a writer that judged us stale: start over, unless that keeps happening.
        if (Date.now() - started >= this.maxWaitMs)
          throw new CursorBusyError(this.describe(), Date.now() - started);
        continue;
      }
      // Busy: another writer holds the lease.
      const state = await this.leaseState();
      if (state === 'free') continue;
      const now = Date.now();
      if (!observed || observed.etag !== state.etag) observed = { etag: state.etag, since: now };
      const heldFor = state.stampedAt !== undefined ? now - state.stampedAt : now - observed.since;
      if (heldFor >= this.staleLeaseMs && now - observed.since >= this.settleMs) {
        await this.breakLease();
        observed = undefined;
        continue;
      }
      if (now - started >= this.maxWaitMs) throw new CursorBusyError(this.describe(), now - started);
      await sleep(this.backoffMs(attempt));
    }
  }

  private backoffMs(attempt: number): number {
    const cap = Math.max(10, Math.min(250, this.settleMs / 4));
    const base = Math.min(cap, 10 * 1.5 ** Math.min(attempt, 20));
    return base / 2 + Math.random() * (base / 2);
  }

  private file(): ShareFileClient {
    const dir = this.directories.length
      ? this.share.getDirectoryClient(this.directories.join('/'))
      : this.share.rootDirectoryClient;
    return dir.getFileClient(this.fileName);
  }

  /** Creates the share and directories once per store (concurrent callers share the attempt). */
  private ensureDirectories(): Promise<void> {
    this.ensured ??= this.createDirectories().catch((e: unknown) => {
      this.ensured = undefined;
      throw e;
    });
    return this.ensured;
  }

  private async createDirectories(): Promise<void> {
    try {
      await this.share.createIfNotExists();
    } catch (e) {
      // Managed identity (OAuth) may not create shares; the share is provisioned with the app.
      if (statusOf(e) !== 403) throw e;
    }
    for (let i = 1; i <= this.directories.length; i++)
      await this.share.getDirectoryClient(this.directories.slice(0, i).join('/')).createIfNotExists();
  }

  private async snapshot(): Promise<Snapshot> {
    let res;
    try {
      res = await this.file().download();
    } catch (e) {
      if (statusOf(e) === 404) return { exists: false, value: undefined, size: 0 };
      throw e;
    }
    const text = await streamToString(res.readableStreamBody);
    return {
      exists: true,
      value: parseCursorText(cleanCursorText(text), this.describe()),
      size: res.contentLength ?? Buffer.byteLength(text),
    };
  }

  /** Step 1: atomic create-if-absent through a temporary file and a non-replacing rename. */
  private async createWithContent(next: bigint): Promise<boolean> {
    const content = Buffer.from(formatCursorText(next), 'utf8');
    const dir = this.directories.length
      ? this.share.getDirectoryClient(this.directories.join('/'))
      : this.share.rootDirectoryClient;
    const temp = dir.getFileClient(`${this.fileName}.${randomUUID()}.tmp`);
    await temp.create(content.length, { fileHttpHeaders: { fileContentType: 'text/plain' } });
    try {
      await temp.uploadRange(content, 0, content.length);
      await temp.rename(this.filePath, { replaceIfExists: false });
      return true;
    } catch (e) {
      await temp.delete().catch(() => undefined);
      if (statusOf(e) === 409) return false;
      throw e;
    }
  }

  private async tryAcquire(leaseId: string): Promise<'acquired' | 'busy' | 'missing'> {
    try {
      await this.file().getShareLeaseClient(leaseId).acquireLease(-1);
      return 'acquired';
    } catch (e) {
      if (statusOf(e) === 404) return 'missing';
      if (statusOf(e) === 409 && errorCodeOf(e) === 'LeaseAlreadyPresent') return 'busy';
      throw e;
    }
  }

  private async leaseState(): Promise<'free' | { etag: string; stampedAt?: number }> {
    try {
      const p = await this.file().getProperties();
      if (p.leaseState !== 'leased') return 'free';
      const stamp = Number(p.metadata?.[STAMP_KEY]);
      return { etag: p.etag ?? '', stampedAt: Number.isFinite(stamp) && stamp > 0 ? stamp : undefined };
    } catch (e) {
      if (statusOf(e) === 404) return 'free';
      throw e;
    }
  }

  private async breakLease(): Promise<void> {
    try {
      await this.file().getShareLeaseClient().breakLease();
    } catch (e) {
      // Already released or broken by someone else: just as good.
      if (statusOf(e) !== 409 && statusOf(e) !== 404) throw e;
    }
  }

  private async release(leaseId: string): Promise<void> {
    await this.file()
      .getShareLeaseClient(leaseId)
      .releaseLease()
      .catch(() => undefined);
  }

  /** Steps 3-5. 'lease-lost' = a write failed with 412: nothing was committed. */
  private async compareAndSetUnderLease(
    leaseId: string,
    expected: bigint | undefined,
    next: bigint,
  ): Promise<LeasedOutcome> {
    const file = this.file();
    const fenced = { leaseAccessConditions: { leaseId } };
    try {
      await file.setMetadata({ [STAMP_KEY]: String(Date.now()) }, fenced);
      const current = await this.snapshot();
      if (!current.exists) return 'lease-lost';
      if (current.value !== expected) return { ok: false, current: current.value };
      const content = Buffer.from(formatCursorText(next), 'utf8');
      if (content.length > current.size) await file.resize(content.length, fenced);
      const padded =
        content.length >= current.size
          ? content
          : Buffer.concat([content, Buffer.alloc(current.size - content.length, ' ')]);
      await file.uploadRange(padded, 0, padded.length, fenced); // the commit point
      if (content.length < current.size) await file.resize(content.length, fenced).catch(() => undefined);
      return { ok: true };
    } catch (e) {
      if (statusOf(e) === 412) return 'lease-lost';
      throw e;
    }
  }
}

export interface FileShareCursorStoreSettings extends FileShareCursorStoreOptions {
  /** Storage connection string (keys); or give accountName for managed identity. */
  connectionString?: string;
  accountName?: string;
  shareName: string;
  directory: string;
  fileName: string;
}

/** Builds the store from configuration: a connection string, or managed identity on the account. */
export function fileShareCursorStore(o: FileShareCursorStoreSettings): FileShareCursorStore {
  let service: ShareServiceClient;
  if (o.connectionString) service = ShareServiceClient.fromConnectionString(o.connectionString);
  else if (o.accountName)
    service = new ShareServiceClient(`https://${o.accountName}.file.core.windows.net`, azureCredential(), {
      fileRequestIntent: 'backup',
    });
  else throw new Error('The fileshare cursor store needs a storage connection string or an account name.');
  return new FileShareCursorStore(service.getShareClient(o.shareName), o.directory, o.fileName, {
    staleLeaseMs: o.staleLeaseMs,
    maxWaitMs: o.maxWaitMs,
  });
}
