/**
 * Cursor in a block blob. Compare-and-set uses the blob's ETag: read returns the ETag, the
 * write is conditional on it (If-Match), or on the blob not existing (If-None-Match: *).
 */
import type { ContainerClient } from '@azure/storage-blob';
import { statusOf } from '../errors';
import type { CompareAndSetResult, CursorStore } from '../ports';
import { formatCursorText, parseCursorText, streamToString } from './text';

const isStatus = (e: unknown, ...codes: number[]) => codes.includes(statusOf(e) ?? -1);

export class BlobCursorStore implements CursorStore {
  private ensured = false;
  constructor(
    private readonly container: ContainerClient,
    private readonly blobName: string,
  ) {}

  describe(): string {
    return `blob ${this.container.containerName}/${this.blobName}`;
  }

  /** One request: the download answers with the content and the ETag of that content. */
  private async readWithEtag(): Promise<{ value: bigint | undefined; etag?: string }> {
    try {
      const res = await this.container.getBlockBlobClient(this.blobName).download();
      const text = await streamToString(res.readableStreamBody);
      return { value: parseCursorText(text, this.describe()), etag: res.etag };
    } catch (e) {
      if (isStatus(e, 404)) return { value: undefined };
      throw e;
    }
  }

  async read(): Promise<bigint | undefined> {
    return (await this.readWithEtag()).value;
  }

  async compareAndSet(expected: bigint | undefined, next: bigint): Promise<CompareAndSetResult> {
    if (!this.ensured) {
      await this.container.createIfNotExists();
      this.ensured = true;
    }
    const current = await this.readWithEtag();
    if (current.value !== expected) return { ok: false, current: current.value };
    const body = formatCursorText(next);
    try {
      await this.container.getBlockBlobClient(this.blobName).upload(body, Buffer.byteLength(body), {
        conditions: current.etag ? { ifMatch: current.etag } : { ifNoneMatch: '*' },
        blobHTTPHeaders: { blobContentType: 'text/plain' },
      });
      return { ok: true };
    } catch (e) {
      if (isStatus(e, 409, 412)) return { ok: false, current: await this.read() };
      throw e;
    }
  }
}
