/**
 * Reads a request body as raw bytes, never holding more than the cap, and decodes it as strict
 * UTF-8. The signature is computed over these exact bytes, so nothing may re-encode them first.
 */
import type { ByteStream, RequestBody } from './request';

export type RawBodyResult =
  | { ok: true; bytes: Buffer }
  | { ok: false; reason: 'too_large'; readBytes: number }
  | { ok: false; reason: 'timeout' | 'unreadable' };

export interface ReadRawBodyOptions {
  /** Largest accepted body; reading stops at `maxBytes + 1` bytes. */
  maxBytes: number;
  /** Gives up when the whole body has not arrived within this time (a client trickling bytes). */
  timeoutMs: number;
}

const isByteStream = (b: unknown): b is ByteStream =>
  typeof b === 'object' && b !== null && typeof (b as ByteStream).getReader === 'function';

function chunkBytes(chunk: unknown): Uint8Array | undefined {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  return undefined;
}

/**
 * Pulls chunks until the end, the cap, the deadline or an error. On the cap it stops pulling and
 * does NOT destroy the source: destroying a node:http request would also destroy its socket and
 * the 413 could not be written. The HTTP layer closes the connection after answering (the
 * intake's result asks for `Connection: close`). A web stream is cancelled, which is safe.
 */
export async function readRawBody(body: RequestBody, o: ReadRawBodyOptions): Promise<RawBodyResult> {
  if (body === null || body === undefined) return { ok: true, bytes: Buffer.alloc(0) };
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
    return bytes.length > o.maxBytes
      ? { ok: false, reason: 'too_large', readBytes: bytes.length }
      : { ok: true, bytes };
  }

  let next: () => Promise<{ done?: boolean; value?: unknown }>;
  let abandon: () => void;
  if (isByteStream(body)) {
    const reader = body.getReader();
    next = () => reader.read();
    abandon = () => void reader.cancel().catch(() => undefined);
  } else {
    const iterator = (body as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    next = () => iterator.next();
    abandon = () => undefined;
  }

  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), o.timeoutMs);
  });
  try {
    for (;;) {
      let step: { done?: boolean; value?: unknown } | 'timeout';
      try {
        step = await Promise.race([next(), deadline]);
      } catch {
        return { ok: false, reason: 'unreadable' };
      }
      if (step === 'timeout') {
        abandon();
        return { ok: false, reason: 'timeout' };
      }
      if (step.done) break;
      const bytes = chunkBytes(step.value);
      if (bytes === undefined) {
        abandon();
        return { ok: false, reason: 'unreadable' };
      }
      size += bytes.length;
      if (size > o.maxBytes) {
        abandon();
        return { ok: false, reason: 'too_large', readBytes: size };
      }
      chunks.push(bytes);
    }
  } finally {
    clearTimeout(timer);
  }
  return { ok: true, bytes: Buffer.concat(chunks, size) };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes UTF-8, refusing any invalid sequence (a leading byte-order mark is dropped). */
export function decodeUtf8Strict(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}
