/**
 * CSV rows of an entity file, streamed (RFC 4180: `,` between fields, `"` quotes, `""` for a
 * quote inside a quoted field, quoted fields may hold commas and line breaks; records end with
 * CRLF or LF; the first record is the header).
 *
 * Why not csv-parse: two defects that matter here (seen with csv-parse 7.0.3, see the finops
 * notes): its line counter counts a CRLF as two lines, so every reported line number in an F&O
 * export (CRLF) is wrong; and after a malformed quote (`"bad"x`) it stays inside the quote and
 * swallows the valid rows that follow into one error. This reader frames records itself, so:
 * - `line` is the exact physical line where a record starts, whatever the line endings;
 * - a malformed record is reported alone and reading goes on with the next record;
 * - a quote that is never closed (or a record longer than `maxRecordChars`) is reported at the
 *   line where it starts, and reading resumes on the line after it, so one stray quote cannot
 *   swallow the rest of the file. Memory is bounded by `maxRecordChars`.
 * The property tests check it against csv-stringify (writer) and csv-parse (reader) on generated
 * files.
 */
import { boundedRaw, type ParsedItem } from './types';
import { InvalidTextError } from './decode';

export interface CsvOptions {
  entity: string;
  file: string;
  maxRawChars: number;
  /** Longest record (characters) before an open quote is declared unclosed. */
  maxRecordChars: number;
}

/** Fields of one record (its text without the final line break), or the reason it is malformed. */
export function splitCsvRecord(text: string): string[] | { error: string } {
  const fields: string[] = [];
  let i = 0;
  const n = text.length;
  for (;;) {
    if (text.charCodeAt(i) === 34 /* " */) {
      let value = '';
      let j = i + 1;
      for (;;) {
        const k = text.indexOf('"', j);
        if (k < 0) return { error: `field ${fields.length + 1}: quote not closed` };
        value += text.slice(j, k);
        if (text.charCodeAt(k + 1) === 34) {
          value += '"';
          j = k + 2;
          continue;
        }
        i = k + 1;
        break;
      }
      fields.push(value);
      if (i === n) return fields;
      if (text.charCodeAt(i) !== 44 /* , */)
        return { error: `field ${fields.length}: unexpected character after the closing quote` };
      i++;
      continue;
    }
    const k = text.indexOf(',', i);
    const end = k < 0 ? n : k;
    const value = text.slice(i, end);
    if (value.includes('"')) return { error: `field ${fields.length + 1}: a quote inside an unquoted field` };
    fields.push(value);
    if (k < 0) return fields;
    i = k + 1;
  }
}

/**
 * Where a record stands after a line: inside a quoted field or not. A quote opens a quoted field
 * only at the start of a field; inside one, `""` is a quote and `"` closes it. (A quote in the
 * middle of an unquoted field opens nothing: splitCsvRecord reports it, alone.)
 */
function scanQuotes(line: string, state: { inQuotes: boolean; fieldStart: boolean }): void {
  let { inQuotes, fieldStart } = state;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (inQuotes) {
      if (c === 34) {
        if (line.charCodeAt(i + 1) === 34) i++;
        else inQuotes = false;
      }
    } else if (c === 34 && fieldStart) {
      inQuotes = true;
      fieldStart = false;
    } else fieldStart = c === 44;
  }
  state.inQuotes = inQuotes;
  // A line break inside a quoted field is data; after one, the next line continues that field.
  state.fieldStart = inQuotes ? false : fieldStart;
}

interface Line {
  /** Text without the LF (a CR of a CRLF stays, so a multi-line field keeps its CRLF). */
  text: string;
  no: number;
}

export async function* csvRows(
  chunks: AsyncIterable<string>,
  o: CsvOptions,
): AsyncGenerator<ParsedItem, void, undefined> {
  let header: string[] | undefined;
  let headerError: string | undefined;
  let pending: Line[] = [];
  let pendingChars = 0;
  const quoteState = { inQuotes: false, fieldStart: true };
  let nextLineNo = 1;
  const out: ParsedItem[] = [];

  const malformed = (line: number, error: string, raw: string): ParsedItem => ({
    kind: 'malformed',
    entity: o.entity,
    file: o.file,
    line,
    error,
    raw: boundedRaw(raw, o.maxRawChars),
  });

  const emitRecord = (line: number, text: string) => {
    const fields = splitCsvRecord(text);
    if (!Array.isArray(fields)) {
      out.push(malformed(line, fields.error, text));
      return;
    }
    if (header === undefined && headerError === undefined) {
      const problems: string[] = [];
      const seen = new Set<string>();
      for (const f of fields) {
        if (f === '') problems.push('an empty column name');
        else if (seen.has(f)) problems.push(`column ${f} twice`);
        seen.add(f);
      }
      if (problems.length > 0) {
        headerError = `the header is unusable (${problems.join(', ')})`;
        out.push(malformed(line, headerError, text));
      } else header = fields;
      return;
    }
    if (header === undefined) {
      out.push(malformed(line, `${headerError}: row not read`, text));
      return;
    }
    if (fields.length !== header.length) {
      out.push(malformed(line, `expected ${header.length} fields, got ${fields.length}`, text));
      return;
    }
    out.push({
      kind: 'row',
      entity: o.entity,
      file: o.file,
      line,
      fields: Object.fromEntries(header.map((h, i) => [h, fields[i]!])),
    });
  };

  const endOfRecord = (lines: Line[]) => {
    let text = lines.length === 1 ? lines[0]!.text : lines.map((l) => l.text).join('\n');
    if (text.endsWith('\r')) text = text.slice(0, -1);
    emitRecord(lines[0]!.no, text);
  };

  /** Gives up on the pending record: reported at its first line; its other lines are read again. */
  const abandonPending = (why: string): Line[] => {
    const [first, ...rest] = pending;
    out.push(malformed(first!.no, why, pending.map((l) => l.text).join('\n')));
    pending = [];
    pendingChars = 0;
    quoteState.inQuotes = false;
    quoteState.fieldStart = true;
    return rest;
  };

  const feedLine = (start: Line) => {
    const queue: Line[] = [start];
    while (queue.length > 0) {
      const line = queue.shift()!;
      // A blank line between records is skipped, except in a one-column file, where it is a
      // row whose only field is empty (that is how a writer spells it).
      if (pending.length === 0 && (line.text === '' || line.text === '\r') && header?.length !== 1) continue;
      pending.push(line);
      pendingChars += line.text.length + 1;
      scanQuotes(line.text, quoteState);
      if (!quoteState.inQuotes) {
        const lines = pending;
        pending = [];
        pendingChars = 0;
        quoteState.fieldStart = true;
        endOfRecord(lines);
      } else if (pendingChars > o.maxRecordChars) {
        queue.unshift(
          ...abandonPending(`a quoted field is not closed within ${o.maxRecordChars} characters`),
        );
      }
    }
  };

  let carry = '';
  /** Inside a physical line already reported as too long: skip to its end. */
  let skipping = false;
  try {
    for await (const chunk of chunks) {
      let text = carry + chunk;
      carry = '';
      let start = 0;
      if (skipping) {
        const nl = text.indexOf('\n');
        if (nl < 0) continue;
        skipping = false;
        nextLineNo++;
        start = nl + 1;
      }
      for (let nl = text.indexOf('\n', start); nl >= 0; nl = text.indexOf('\n', start)) {
        feedLine({ text: text.slice(start, nl), no: nextLineNo++ });
        start = nl + 1;
      }
      carry = text.slice(start);
      text = '';
      if (carry.length > o.maxRecordChars) {
        // A physical line longer than any record may be: report it (and a record it was part
        // of), then skip to its end.
        if (pending.length > 0)
          for (const l of abandonPending(
            `a quoted field is not closed within ${o.maxRecordChars} characters`,
          ))
            feedLine(l);
        out.push(malformed(nextLineNo, `line longer than ${o.maxRecordChars} characters`, carry));
        carry = '';
        skipping = true;
      }
      yield* drain(out);
    }
  } catch (e) {
    if (!(e instanceof InvalidTextError)) throw e;
    yield* drain(out);
    yield malformed(
      nextLineNo,
      `${e.message} (from line ${nextLineNo} on); the rest of the file was not read`,
      '',
    );
    return;
  }
  if (carry !== '') feedLine({ text: carry, no: nextLineNo++ });
  // End of file inside a quote: report it, then read its other lines again as records.
  while (pending.length > 0) {
    const rest = abandonPending('a quote is not closed before the end of the file');
    for (const l of rest) feedLine(l);
  }
  yield* drain(out);
}

function* drain(out: ParsedItem[]): Generator<ParsedItem, void, undefined> {
  // Items are only added between yields of the caller, never while this runs.
  const items = out.splice(0, out.length);
  for (const item of items) yield item;
}
