/**
 * JSON rows of an entity file: a top-level array of flat objects, streamed one element at a time
 * with stream-json (via json-stream.ts). Numbers keep their literal text (no rounding); booleans
 * become "true"/"false"; null stays null. An element that is not an object, or has a nested
 * object or array, is reported as malformed and the next elements are read. `line` is the
 * element's 1-based position in the array (stream-json reports no line numbers). A syntax error
 * ends the file: the rows before it are kept and one malformed item says the rest was not read.
 */
import { Readable } from 'node:stream';
import { jsonArrayElements, JsonArrayProtocolError } from '../../flowfinity/json-stream';
import { InvalidTextError } from './decode';
import { boundedRaw, type ParsedItem } from './types';

export interface JsonOptions {
  entity: string;
  file: string;
  maxRawChars: number;
}

export async function* jsonRows(
  chunks: AsyncIterable<string>,
  o: JsonOptions,
): AsyncGenerator<ParsedItem, void, undefined> {
  const malformed = (line: number, error: string, raw: string): ParsedItem => ({
    kind: 'malformed',
    entity: o.entity,
    file: o.file,
    line,
    error,
    raw: boundedRaw(raw, o.maxRawChars),
  });
  let position = 0;
  try {
    for await (const { index, value } of jsonArrayElements(Readable.from(chunks))) {
      position = index + 1;
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        yield malformed(position, 'the element is not an object', JSON.stringify(value) ?? '');
        continue;
      }
      const fields: [string, string | null][] = [];
      let error: string | undefined;
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (v === null || typeof v === 'string') fields.push([k, v]);
        else if (typeof v === 'boolean') fields.push([k, v ? 'true' : 'false']);
        else error ??= `field ${k} is not a scalar`;
      }
      if (error !== undefined) yield malformed(position, error, JSON.stringify(value));
      else
        yield {
          kind: 'row',
          entity: o.entity,
          file: o.file,
          line: position,
          fields: Object.fromEntries(fields),
        };
    }
  } catch (e) {
    if (e instanceof InvalidTextError)
      yield malformed(
        position + 1,
        `${e.message} (from element ${position + 1} on); the rest of the file was not read`,
        '',
      );
    else if (e instanceof JsonArrayProtocolError)
      yield malformed(
        position + 1,
        `the JSON is not a well-formed array after element ${position} (${e.message}); the rest of the file was not read`,
        '',
      );
    else throw e;
  }
}
