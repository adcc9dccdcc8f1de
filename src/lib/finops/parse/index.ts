/**
 * One entry point for a downloaded export: a plain entity file (CSV, XML or JSON) or a data
 * package (zip), read as a stream into rows and malformed rows.
 *
 * Format: a body starting with a zip signature is a package (whatever its name says); otherwise
 * the file name's extension (.csv, .xml, .json) decides, and without one the first character
 * does (`<` XML, `[` JSON, anything else CSV). `format` forces it.
 */
import { csvRows } from './csv';
import { decodeText } from './decode';
import { jsonRows } from './json';
import {
  DEFAULT_ZIP_LIMITS,
  PackageRejectedError,
  packageRows,
  type TextFormat,
  type ZipLimits,
} from './package';
import { DEFAULT_MAX_RAW_CHARS, type ParsedItem } from './types';
import { xmlRows } from './xml';

export type { EntityRow, MalformedRow, ParsedItem } from './types';
export { DEFAULT_ZIP_LIMITS, PackageRejectedError, type ZipLimits } from './package';
export { splitCsvRecord } from './csv';

export type ExportFormat = 'csv' | 'xml' | 'json' | 'package';

export interface ParseExportOptions {
  /** The entity of a plain file (the event's EntityName). A package names its own entities. */
  entity: string;
  /** The downloaded file's name ("Customer groups.csv"), reported with every row. */
  fileName: string;
  /** Force the format instead of detecting it. */
  format?: ExportFormat;
  /** Package caps; default DEFAULT_ZIP_LIMITS. */
  zipLimits?: Partial<ZipLimits>;
  /** Where a package is spooled while it is validated; default the OS temp folder. */
  tempDir?: string;
  /** Longest `raw` of a malformed row; default 2048 characters. */
  maxRawChars?: number;
  /** Longest CSV record (an unclosed quote is declared after this many characters); default 1,000,000. */
  maxRecordChars?: number;
}

/**
 * Rows of an export, in file order (a package: entity by entity, in the manifest's order).
 * Throws PackageRejectedError for a rejected package (before any row; also a `.zip` that is not
 * a zip), and passes the source's own errors (a download's TransientError) through unchanged.
 */
export async function* parseExport(
  source: AsyncIterable<Uint8Array>,
  o: ParseExportOptions,
): AsyncGenerator<ParsedItem, void, undefined> {
  const maxRawChars = o.maxRawChars ?? DEFAULT_MAX_RAW_CHARS;
  const maxRecordChars = o.maxRecordChars ?? 1_000_000;
  const parseFile = (format: TextFormat, text: AsyncIterable<string>, entity: string, file: string) =>
    format === 'csv'
      ? csvRows(text, { entity, file, maxRawChars, maxRecordChars })
      : format === 'xml'
        ? xmlRows(text, { entity, file, maxRawChars })
        : jsonRows(text, { entity, file, maxRawChars });

  const { head, rest } = await peek(source, 4);
  const isZip = head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5);
  const ext = /\.([a-z0-9]+)$/i.exec(o.fileName)?.[1]?.toLowerCase();
  let format: ExportFormat | undefined = o.format;
  if (format === undefined) {
    if (isZip) format = 'package';
    else if (ext === 'csv' || ext === 'xml' || ext === 'json') format = ext;
    else if (ext === 'zip')
      throw new PackageRejectedError('it is named .zip but is not a zip archive', o.fileName);
  }
  if (format === 'package') {
    yield* packageRows(rest, {
      file: o.fileName,
      limits: { ...DEFAULT_ZIP_LIMITS, ...(o.zipLimits ?? {}) },
      tempDir: o.tempDir,
      parseFile,
    });
    return;
  }
  const text = decodeText(rest);
  if (format === undefined) {
    const first = await peekText(text);
    const c = first.head.trimStart()[0];
    format = c === '<' ? 'xml' : c === '[' ? 'json' : 'csv';
    yield* parseFile(format, first.rest, o.entity, o.fileName);
    return;
  }
  yield* parseFile(format, text, o.entity, o.fileName);
}

/** Reads at least `n` bytes (or all there is) and gives them back with the stream they came from. */
async function peek(
  source: AsyncIterable<Uint8Array>,
  n: number,
): Promise<{ head: Buffer; rest: AsyncIterable<Uint8Array> }> {
  const it = source[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let length = 0;
  let done = false;
  while (length < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    const b = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    chunks.push(b);
    length += b.length;
  }
  const head = Buffer.concat(chunks);
  async function* rest(): AsyncGenerator<Uint8Array, void, undefined> {
    if (head.length > 0) yield head;
    if (done) return;
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value;
      }
    } finally {
      await it.return?.();
    }
  }
  return { head, rest: rest() };
}

/** The text up to its first non-blank character, and the whole text again. */
async function peekText(
  text: AsyncGenerator<string>,
): Promise<{ head: string; rest: AsyncIterable<string> }> {
  const seen: string[] = [];
  let done = false;
  for (;;) {
    const r = await text.next();
    if (r.done) {
      done = true;
      break;
    }
    seen.push(r.value);
    if (r.value.trim() !== '') break;
  }
  async function* rest(): AsyncGenerator<string, void, undefined> {
    yield* seen;
    if (!done) yield* text;
  }
  return { head: seen.join(''), rest: rest() };
}
