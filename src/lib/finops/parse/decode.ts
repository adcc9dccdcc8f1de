/**
 * Bytes → text for the export parsers, streamed. The byte-order mark decides the encoding (UTF-8,
 * UTF-16 LE or UTF-16 BE, as F&O's "CSV-Unicode"/XML exports may use) and is removed; without a
 * BOM the text is UTF-8. Invalid bytes are an error (InvalidTextError), never silently replaced:
 * a replaced character in a key field would write a wrong record.
 *
 * UTF-8 is decoded in pieces that end on a character boundary, so when a piece holds invalid
 * bytes, the complete lines before them are still delivered (the parser reports the rows up to
 * the bad line, then the error). UTF-16 fails for the whole piece.
 */
import { TextDecoder } from 'node:util';

export class InvalidTextError extends Error {
  constructor(encoding: string) {
    super(`the file is not valid ${encoding}`);
    this.name = 'InvalidTextError';
  }
}

type Encoding = 'utf-8' | 'utf-16le' | 'utf-16be';

function encodingOf(head: Uint8Array): { encoding: Encoding; bom: number } {
  if (head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) return { encoding: 'utf-8', bom: 3 };
  if (head[0] === 0xff && head[1] === 0xfe) return { encoding: 'utf-16le', bom: 2 };
  if (head[0] === 0xfe && head[1] === 0xff) return { encoding: 'utf-16be', bom: 2 };
  return { encoding: 'utf-8', bom: 0 };
}

/** Length of the longest prefix of `b` that ends on a UTF-8 character boundary. */
function completeUtf8(b: Buffer): number {
  for (let back = 1; back <= Math.min(4, b.length); back++) {
    const byte = b[b.length - back]!;
    if ((byte & 0xc0) === 0x80) continue; // continuation byte: look further back
    const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return need > back ? b.length - back : b.length;
  }
  return b.length;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes complete UTF-8; on invalid bytes, delivers the complete lines before them, then throws. */
function* decodeUtf8(bytes: Buffer): Generator<string, void, undefined> {
  try {
    yield utf8.decode(bytes);
    return;
  } catch {
    /* find the valid lines below */
  }
  let start = 0;
  for (let nl = bytes.indexOf(0x0a, start); nl >= 0; nl = bytes.indexOf(0x0a, start)) {
    let line: string;
    try {
      line = utf8.decode(bytes.subarray(start, nl + 1));
    } catch {
      break;
    }
    yield line;
    start = nl + 1;
  }
  throw new InvalidTextError('utf-8');
}

export async function* decodeText(
  source: AsyncIterable<Uint8Array | string>,
): AsyncGenerator<string, void, undefined> {
  let head: Buffer = Buffer.alloc(0);
  let encoding: Encoding | undefined;
  let carry: Buffer = Buffer.alloc(0);
  let utf16: TextDecoder | undefined;

  const take = function* (bytes: Buffer, end: boolean): Generator<string, void, undefined> {
    if (encoding !== 'utf-8') {
      let text: string;
      try {
        text = utf16!.decode(bytes, { stream: !end });
      } catch {
        throw new InvalidTextError(encoding!);
      }
      if (text !== '') yield text;
      return;
    }
    const all = carry.length > 0 ? Buffer.concat([carry, bytes]) : bytes;
    const cut = end ? all.length : completeUtf8(all);
    carry = all.subarray(cut);
    if (cut > 0) yield* decodeUtf8(all.subarray(0, cut));
  };

  for await (const chunk of source) {
    let bytes =
      typeof chunk === 'string'
        ? Buffer.from(chunk, 'utf8')
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (encoding === undefined) {
      head = Buffer.concat([head, bytes]);
      if (head.length < 3) continue;
      const found = encodingOf(head);
      encoding = found.encoding;
      if (encoding !== 'utf-8') utf16 = new TextDecoder(encoding, { fatal: true, ignoreBOM: true });
      bytes = head.subarray(found.bom);
    }
    yield* take(bytes, false);
  }
  if (encoding === undefined) {
    const found = encodingOf(head);
    encoding = found.encoding;
    if (encoding !== 'utf-8') utf16 = new TextDecoder(encoding, { fatal: true, ignoreBOM: true });
    head = head.subarray(found.bom);
    yield* take(head, true);
    return;
  }
  yield* take(Buffer.alloc(0), true);
}
