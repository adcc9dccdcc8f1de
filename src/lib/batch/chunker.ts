/**
 * Splits a stream of wire records into message-sized chunks: at most `perMessage` records and
 * at most `maxBytes` of JSON per message (with room for the message's envelope), in order.
 */
import type { WireRecord } from '../records';

/** JSON of a records message around its records (type, stream, batch id, chunk, traceparent). */
export const ENVELOPE_BYTES = 400;

export const wireBytes = (r: WireRecord): number => Buffer.byteLength(JSON.stringify(r)) + 1;

export class Chunker {
  private chunk: WireRecord[] = [];
  private bytes = ENVELOPE_BYTES;

  constructor(
    private readonly perMessage: number,
    private readonly maxBytes: number,
  ) {}

  /** Whether a record can travel in a message at all. */
  fits(size: number): boolean {
    return size + ENVELOPE_BYTES <= this.maxBytes;
  }

  /** Adds a record (that fits); returns the chunk it closed, if adding it closed one. */
  add(r: WireRecord, size = wireBytes(r)): WireRecord[] | undefined {
    let closed: WireRecord[] | undefined;
    if (this.chunk.length > 0 && (this.chunk.length >= this.perMessage || this.bytes + size > this.maxBytes))
      closed = this.flush();
    this.chunk.push(r);
    this.bytes += size;
    return closed;
  }

  /** The chunk in progress, closed (undefined when empty). */
  flush(): WireRecord[] | undefined {
    if (this.chunk.length === 0) return undefined;
    const out = this.chunk;
    this.chunk = [];
    this.bytes = ENVELOPE_BYTES;
    return out;
  }
}

/** All records in chunks (for tests and tools; the dispatcher streams through a Chunker). */
export function chunkRecords(records: WireRecord[], perMessage: number, maxBytes: number): WireRecord[][] {
  const c = new Chunker(perMessage, maxBytes);
  const out: WireRecord[][] = [];
  for (const r of records) {
    const closed = c.add(r);
    if (closed) out.push(closed);
  }
  const last = c.flush();
  if (last) out.push(last);
  return out;
}
