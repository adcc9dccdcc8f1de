/**
 * Cursor in an Azure File share (`lastSubmissionId.txt`, a plain decimal number that the
 * tutorial's Power Automate flow can read).
 *
 * COMPARE-AND-SET PROTOCOL
 *
 * Azure Files has no If-Match on writes. What it has: infinite file leases that anyone can
 * break, and writes (create, put range, set properties/metadata, delete) that fail when the file
 * is leased and the request does not carry the current lease id (or carries an id on a file no
 * longer leased). So the lease is not a lock we can trust to be held; it is a FENCE: every write
 * carries our lease id, and once anyone breaks our lease, every later write of ours fails and
 * changes nothing. The protocol:
 *
 *   0. Fast path: read the file. Missing and `expected` given, or value !== expected: answer
 *      { ok: false, current } at once (linearisable at that read).
 *   1. Missing file and expected === undefined: create a uniquely named temporary file holding
 *      the new content (and our creator mark in its metadata), then rename it onto the cursor
 *      file with replaceIfExists=false. The rename is the service's only create-if-absent: of two
 *      creators exactly one rename wins; the loser gets 409, deletes its temporary file and
 *      starts over (and then sees the value). A rename whose response was lost after it happened
 *      is retried by the SDK and then fails with 404 (the source is gone) or 409: either way the
 *      cursor file's creator mark tells whether the rename that happened was ours. (Create File
 *      on an existing file would silently truncate it, so it is never used on the cursor file.)
 *   2. Acquire an infinite lease with a fresh random id L.
 *   3. Stamp: set metadata `syncbridgeleaseat=<now ms>` with lease L. This moves the file's
 *      Last-Modified to the service's "now" (the start of our hold, on the service's clock, for
 *      stale-lease recovery) and proves L is still ours.
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
 *   A "lease lost" answer in steps 3-5 means our lease was broken: nothing was written, so we
 *   start over at step 0 (the re-read then sees whatever the breaker wrote). "Lease lost" is
 *   decided by the service's error CODE (LeaseIdMismatchWithFileOperation,
 *   LeaseNotPresentWithFileOperation, LeaseIdMissing, LeaseLost), whatever the status: the
 *   documentation gives 412 in one place and 409 in another.
 *
 * STALE LEASES, judged by the SERVICE's clock only. A writer that finds the file leased looks at
 * its properties: the lease is stale when it is still present, the file has not changed (same
 * ETag) over at least `settleMs` between two of our observations, and the file's Last-Modified
 * is at least `staleLeaseMs` older than the `Date` of our own response. Both instants come from
 * the service (1-second resolution), so the clocks of two instances never meet. The settle
 * interval covers a holder that has acquired but whose stamp has not landed yet (acquiring does
 * not change Last-Modified): it must exceed the time a healthy holder's stamp request can take,
 * i.e. the client's retry budget. `fileShareCursorStore()` therefore BOUNDS that budget
 * (CURSOR_STORE_RETRY_OPTIONS: 3 tries of at most 5 s, back-off capped at 1 s: about 17 s) and
 * keeps the default settle period (20 s) above it, and `staleLeaseMs` (60 s) above the longest
 * a healthy holder goes without changing the file (two requests after its stamp). A stale lease
 * is broken and the breaker starts over at step 0, so it re-reads before it writes. A fresh
 * lease is waited for (polling with backoff) for at most `maxWaitMs`; then compareAndSet throws
 * CursorBusyError (it never reports a conflict it has not seen). Misjudging a lease stale costs
 * the holder a retry, never safety.
 *
 * WHY TWO WRITERS CANNOT BOTH SUCCEED for the same `expected`: a success needs a put range with
 * lease L while L is the file's lease. Between A's read under L (step 4) and A's commit
 * (step 5) nobody else can write unless L was broken, and then A's commit fails (lease lost).
 * Interleaving: A acquires, stalls past staleLeaseMs; B breaks, acquires, re-reads (expected),
 * writes, releases; A wakes and writes with L: lease lost (no lease / another lease), so A
 * starts over, re-reads B's value and answers { ok: false, current }.
 *
 * SHARE. With a connection string (account key) the store creates the share when it is missing.
 * Under managed identity it never does (the data roles cannot; infra creates the share): a
 * missing share is a ConfigError with code `ShareNotFound` naming CURSOR_SHARE_NAME.
 *
 * OTHER WRITERS. The tutorial's flow, the portal or `az storage file upload` writing the file
 * while a syncbridge writer holds (or a crashed one left) the lease get 412 LeaseIdMissing.
 * `leaseStatus()` shows such a lease; `breakLease()` ends it (refusing a healthy holder's unless
 * forced). See README.md (The cursor in an Azure File share).
 *
 * Caveat: a commit whose response is lost (and whose SDK retry then finds the lease gone) is
 * reported as a conflict with `current === next`; callers that CAS a cursor forward can treat
 * that as done.
 */
import { randomUUID } from 'node:crypto';
import type { TokenCredential } from '@azure/core-auth';
import {
  ShareServiceClient,
  type ShareClient,
  type ShareClientOptions,
  type ShareFileClient,
} from '@azure/storage-file-share';
import { ConfigError, serviceErrorCodeOf as errorCodeOf, statusOf } from '../errors';
import type { CompareAndSetResult, CursorStore } from '../ports';
import { azureCredential } from '../storage/clients';
import { formatCursorText, parseCursorText, streamToString } from './text';

export const DEFAULT_STALE_LEASE_MS = 60_000;
const STAMP_KEY = 'syncbridgeleaseat';
const CREATOR_KEY = 'syncbridgecreator';

/**
 * The store's client retry policy: bounded, so that a healthy holder's request never takes
 * longer than the settle period (see STALE LEASES).
 */
export const CURSOR_STORE_RETRY_OPTIONS = {
  maxTries: 3,
  tryTimeoutInMs: 5_000,
  retryDelayInMs: 200,
  maxRetryDelayInMs: 1_000,
} as const;

export interface RetryBudgetOptions {
  maxTries?: number;
  tryTimeoutInMs?: number;
  maxRetryDelayInMs?: number;
}

/** Upper bound of one request's time with the storage SDK's retry policy (all tries and delays). */
export function retryBudgetMs(o: RetryBudgetOptions): number {
  const tries = o.maxTries ?? 4;
  const tryTimeout = o.tryTimeoutInMs ?? 120_000;
  const delay = o.maxRetryDelayInMs ?? 120_000;
  return tries * tryTimeout + (tries - 1) * delay;
}

/** Default settle period: above the bounded retry budget (17 s), with margin. */
export const DEFAULT_SETTLE_MS = retryBudgetMs(CURSOR_STORE_RETRY_OPTIONS) + 3_000;

/** The service error codes that mean "our lease is gone", whatever the status (409 or 412). */
const LEASE_LOST_CODES = new Set([
  'LeaseIdMismatchWithFileOperation',
  'LeaseNotPresentWithFileOperation',
  'LeaseIdMissing',
  'LeaseLost',
]);

/** True when a write failed because the lease it carried is not the file's lease any more. */
export function isLeaseLost(e: unknown): boolean {
  const code = errorCodeOf(e);
  if (code !== undefined) return LEASE_LOST_CODES.has(code);
  return statusOf(e) === 412; // no code (should not happen on writes): the documented status
}

export interface FileShareCursorStoreOptions {
  /** A lease whose file has not changed for this long (service clock) is abandoned. Default 60 s. */
  staleLeaseMs?: number;
  /**
   * How long (service clock) an unchanged leased file must be watched before its lease may be
   * broken; must exceed the client's retry budget. Default min(20 s, staleLeaseMs).
   */
  settleMs?: number;
  /** How long compareAndSet waits for another writer's fresh lease. Default staleLeaseMs + settleMs + 30 s. */
  maxWaitMs?: number;
  /** Create the share when missing (account key). Under managed identity: false. Default true. */
  createShare?: boolean;
  /** The setting that names the share, for error messages. Default CURSOR_SHARE_NAME. */
  shareSetting?: string;
}

/** Another writer holds the cursor file's lease and it did not become free or stale in time. */
export class CursorBusyError extends Error {
  constructor(where: string, waitedMs: number) {
    super(`The cursor file ${where} stayed leased by another writer for ${waitedMs} ms; try again later.`);
    this.name = 'CursorBusyError';
  }
}

export interface LeaseStatus {
  leased: boolean;
  /** True when the lease looks abandoned: the file has not changed for staleLeaseMs (service clock). */
  stale: boolean;
  /** How long the leased file has gone unchanged, by the service's clock. */
  ageMs?: number;
}

export interface BreakLeaseResult {
  broken: boolean;
  /** How long the holder had left the file unchanged (service clock), when it was leased. */
  holderStampAgeMs?: number;
  reason: string;
}

interface Snapshot {
  exists: boolean;
  value: bigint | undefined;
  /** Size of the file in bytes (0 when missing). */
  size: number;
}

/** A leased file as one getProperties saw it, on the service's clock. */
interface LeasedObservation {
  etag: string;
  /** The `Date` of the response. */
  serviceNow: number;
  /** serviceNow − Last-Modified. */
  ageMs: number;
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
  private readonly createShare: boolean;
  private readonly shareSetting: string;
  private ensured?: Promise<void>;

  constructor(
    private readonly share: ShareClient,
    directory: string,
    private readonly fileName: string,
    options: FileShareCursorStoreOptions = {},
  ) {
    this.directories = directory.split('/').filter((s) => s !== '' && s !== '.');
    this.staleLeaseMs = options.staleLeaseMs ?? DEFAULT_STALE_LEASE_MS;
    this.settleMs = options.settleMs ?? Math.min(DEFAULT_SETTLE_MS, this.staleLeaseMs);
    this.maxWaitMs = options.maxWaitMs ?? this.staleLeaseMs + this.settleMs + 30_000;
    this.createShare = options.createShare ?? true;
    this.shareSetting = options.shareSetting ?? 'CURSOR_SHARE_NAME';
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
      // Busy: another writer holds the lease. Judge it by the service's clock only.
      const state = await this.observeLease();
      if (state === 'free') continue;
      if (!observed || observed.etag !== state.etag) observed = { etag: state.etag, since: state.serviceNow };
      const settled = state.serviceNow - observed.since >= this.settleMs;
      if (state.ageMs >= this.staleLeaseMs && settled) {
        await this.breakAnyLease();
        observed = undefined;
        continue;
      }
      if (Date.now() - started >= this.maxWaitMs)
        throw new CursorBusyError(this.describe(), Date.now() - started);
      await sleep(this.backoffMs(attempt));
    }
  }

  /** Whether the cursor file is leased, and whether that lease looks abandoned (for status/health). */
  async leaseStatus(): Promise<LeaseStatus> {
    const state = await this.observeLease();
    if (state === 'free') return { leased: false, stale: false };
    return { leased: true, stale: state.ageMs >= this.staleLeaseMs, ageMs: state.ageMs };
  }

  /**
   * Breaks the cursor file's lease (the `cursor break-lease` command). Without `force` it breaks
   * only a stale lease: the file unchanged for staleLeaseMs and, watched for settleMs more
   * (service clock), still unchanged; a healthy holder's lease is left alone. Breaking is always
   * safe (a fenced holder's writes fail and it starts over); refusing spares a healthy holder a
   * retry and the operator a surprise.
   */
  async breakLease(o: { force?: boolean } = {}): Promise<BreakLeaseResult> {
    const first = await this.observeLease();
    if (first === 'free') return { broken: false, reason: `${this.describe()} is not leased` };
    const age = `${Math.round(first.ageMs / 1000)} s`;
    if (o.force) {
      await this.breakAnyLease();
      return {
        broken: true,
        holderStampAgeMs: first.ageMs,
        reason: `forced: the lease was broken (the file had not changed for ${age})`,
      };
    }
    if (first.ageMs < this.staleLeaseMs)
      return {
        broken: false,
        holderStampAgeMs: first.ageMs,
        reason:
          `the holder changed the file ${age} ago (less than the ${this.staleLeaseMs / 1000} s stale period): ` +
          'it looks healthy; wait for it, or break with force',
      };
    const started = Date.now();
    for (;;) {
      await sleep(Math.max(50, Math.min(1000, this.settleMs / 4)));
      const now = await this.observeLease();
      if (now === 'free') return { broken: false, reason: 'the lease was released meanwhile' };
      if (now.etag !== first.etag)
        return {
          broken: false,
          holderStampAgeMs: now.ageMs,
          reason: 'the holder changed the file meanwhile: it is active; wait for it, or break with force',
        };
      if (now.serviceNow - first.serviceNow >= this.settleMs) {
        await this.breakAnyLease();
        return {
          broken: true,
          holderStampAgeMs: now.ageMs,
          reason: `stale: the leased file had not changed for ${Math.round(now.ageMs / 1000)} s`,
        };
      }
      if (Date.now() - started > this.settleMs + this.maxWaitMs)
        throw new CursorBusyError(this.describe(), Date.now() - started);
    }
  }

  private backoffMs(attempt: number): number {
    const cap = Math.max(10, Math.min(250, this.settleMs / 4));
    const base = Math.min(cap, 10 * 1.5 ** Math.min(attempt, 20));
    return base / 2 + Math.random() * (base / 2);
  }

  private directoryClient() {
    return this.directories.length
      ? this.share.getDirectoryClient(this.directories.join('/'))
      : this.share.rootDirectoryClient;
  }

  private file(): ShareFileClient {
    return this.directoryClient().getFileClient(this.fileName);
  }

  private shareNotFound(cause: unknown): ConfigError {
    return new ConfigError(
      `${this.shareSetting}: the file share "${this.share.name}" does not exist in storage account ` +
        `${this.share.accountName}. ` +
        (this.createShare
          ? 'It could not be created.'
          : 'Under managed identity syncbridge does not create it (the data roles cannot): create it ' +
            `with infra (or the portal), or set ${this.shareSetting} to an existing share.`),
      { code: 'ShareNotFound', cause },
    );
  }

  private isShareNotFound(e: unknown): boolean {
    return statusOf(e) === 404 && errorCodeOf(e) === 'ShareNotFound';
  }

  /** Creates the share (account key only) and directories once per store. */
  private ensureDirectories(): Promise<void> {
    this.ensured ??= this.createDirectories().catch((e: unknown) => {
      this.ensured = undefined;
      throw e;
    });
    return this.ensured;
  }

  private async createDirectories(): Promise<void> {
    if (this.createShare) await this.share.createIfNotExists();
    try {
      for (let i = 1; i <= this.directories.length; i++)
        await this.share.getDirectoryClient(this.directories.slice(0, i).join('/')).createIfNotExists();
    } catch (e) {
      if (this.isShareNotFound(e)) throw this.shareNotFound(e);
      throw e;
    }
  }

  private async snapshot(): Promise<Snapshot> {
    let res;
    try {
      res = await this.file().download();
    } catch (e) {
      if (this.isShareNotFound(e) && !this.createShare) throw this.shareNotFound(e);
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
    const mark = randomUUID();
    const temp = this.directoryClient().getFileClient(`${this.fileName}.${mark}.tmp`);
    await temp.create(content.length, {
      fileHttpHeaders: { fileContentType: 'text/plain' },
      metadata: { [CREATOR_KEY]: mark },
    });
    try {
      await temp.uploadRange(content, 0, content.length);
      await temp.rename(this.filePath, { replaceIfExists: false });
      return true;
    } catch (e) {
      await temp.delete().catch(() => undefined);
      // 409: another creator's rename won. 404: our rename happened but its response was lost,
      // and the SDK's retry found no source (409 is possible too). The mark tells which.
      if (statusOf(e) === 409 || statusOf(e) === 404) return this.createdBy(mark);
      throw e;
    }
  }

  /** True when the cursor file is the temporary file we created (its creator mark is ours). */
  private async createdBy(mark: string): Promise<boolean> {
    try {
      const p = await this.file().getProperties();
      return p.metadata?.[CREATOR_KEY] === mark;
    } catch (e) {
      if (statusOf(e) === 404) return false;
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

  /** The file's lease as the service sees it now ('free': no active lease, or no file). */
  private async observeLease(): Promise<'free' | LeasedObservation> {
    try {
      const p = await this.file().getProperties();
      if (p.leaseState !== 'leased') return 'free';
      // Both instants are the service's (the response's Date, the file's Last-Modified).
      const serviceNow = p.date?.getTime() ?? Date.now();
      const lastModified = p.lastModified?.getTime() ?? serviceNow;
      return { etag: p.etag ?? '', serviceNow, ageMs: Math.max(0, serviceNow - lastModified) };
    } catch (e) {
      if (this.isShareNotFound(e) && !this.createShare) throw this.shareNotFound(e);
      if (statusOf(e) === 404) return 'free';
      throw e;
    }
  }

  private async breakAnyLease(): Promise<void> {
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

  /** Steps 3-5. 'lease-lost' = a write failed because our lease is gone: nothing was committed. */
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
      if (isLeaseLost(e)) return 'lease-lost';
      throw e;
    }
  }
}

export interface FileShareCursorStoreSettings extends FileShareCursorStoreOptions {
  /** Storage connection string (account key): the store may create the share. */
  connectionString?: string;
  /** Managed identity: the storage account name (the share must exist). */
  accountName?: string;
  /** Managed identity: the credential (default DefaultAzureCredential). */
  credential?: TokenCredential;
  /** Managed identity: the file endpoint (default https://<accountName>.file.core.windows.net). */
  endpoint?: string;
  /** Extra client options (tests: an https agent); the retry policy defaults to CURSOR_STORE_RETRY_OPTIONS. */
  clientOptions?: ShareClientOptions;
  shareName: string;
  directory: string;
  fileName: string;
}

/**
 * Builds the store from configuration: a connection string (the store creates the share when
 * missing), or managed identity on the account (`x-ms-file-request-intent: backup`; the share
 * must exist). The client's retry budget is bounded and checked against the settle period.
 */
export function fileShareCursorStore(o: FileShareCursorStoreSettings): FileShareCursorStore {
  const retryOptions = { ...CURSOR_STORE_RETRY_OPTIONS, ...o.clientOptions?.retryOptions };
  const clientOptions: ShareClientOptions = { ...o.clientOptions, retryOptions };
  const staleLeaseMs = o.staleLeaseMs ?? DEFAULT_STALE_LEASE_MS;
  const settleMs = o.settleMs ?? Math.min(DEFAULT_SETTLE_MS, staleLeaseMs);
  const budget = retryBudgetMs(retryOptions);
  if (settleMs <= budget || staleLeaseMs < settleMs)
    throw new ConfigError(
      `fileshare cursor store: the settle period (${settleMs} ms) must exceed the client's retry budget ` +
        `(${budget} ms) and must not exceed the stale-lease period (${staleLeaseMs} ms)`,
    );
  let service: ShareServiceClient;
  let identity = false;
  if (o.connectionString)
    service = ShareServiceClient.fromConnectionString(o.connectionString, clientOptions);
  else if (o.accountName || o.endpoint) {
    identity = true;
    service = new ShareServiceClient(
      o.endpoint ?? `https://${o.accountName}.file.core.windows.net`,
      o.credential ?? azureCredential(),
      { ...clientOptions, fileRequestIntent: 'backup' },
    );
  } else
    throw new ConfigError('The fileshare cursor store needs a storage connection string or an account name.');
  return new FileShareCursorStore(service.getShareClient(o.shareName), o.directory, o.fileName, {
    staleLeaseMs,
    settleMs,
    maxWaitMs: o.maxWaitMs,
    createShare: o.createShare ?? !identity,
    shareSetting: o.shareSetting,
  });
}
