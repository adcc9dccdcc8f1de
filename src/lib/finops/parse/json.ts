/**
 * JSON rows of an entity file: a top-level array of flat objects, streamed with stream-json's
 * tokenizer (a well-kept streaming JSON parser). Elements are assembled here from the tokens, not
 * with stream-json's Assembler, because the Assembler stores a `"__proto__"` key by assignment
 * (it silently disappears; found by the parser property tests); here every key is an own field.
 *
 * Numbers keep their literal text (no rounding); booleans become "true"/"false"; null stays
 * null. An element that is not an object, has a nested object or array, or names a field twice
 * is reported as malformed and the next elements are read. `line` is the element's 1-based
 * position in the array (the tokenizer reports no line numbers). A syntax error ends the file:
 * the rows before it are kept and one malformed item says the rest was not read.
 */
import { pipeline, Readable } from 'node:stream';
import { parser } from 'stream-json/Parser';
import { InvalidTextError } from './decode';
import { boundedRaw, type ParsedItem } from './types';

export interface JsonOptions {
  entity: string;
  file: string;
  maxRawChars: number;
}

interface Token {
  name: string;
  value?: string | boolean | null;
}

const SCALARS = new Set(['stringValue', 'numberValue', 'trueValue', 'falseValue', 'nullValue']);

function scalarOf(t: Token): string | null {
  if (t.name === 'trueValue') return 'true';
  if (t.name === 'falseValue') return 'false';
  if (t.name === 'nullValue') return null;
  return t.value as string;
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

  const source = Readable.from(chunks);
  const tokens = parser({ packValues: true, streamValues: false, packKeys: true, streamKeys: false });
  let first: { origin: 'source' | 'parser'; error: unknown } | undefined;
  source.on('error', (error) => (first ??= { origin: 'source', error }));
  tokens.on('error', (error) => (first ??= { origin: 'parser', error }));
  pipeline(source, tokens, () => {
    /* errors surface through the iteration below */
  });

  let depth = 0;
  let position = 0;
  let started = false;
  // The element being read (depth >= 2 inside it).
  let fields: [string, string | null][] = [];
  let names = new Set<string>();
  let key: string | undefined;
  let error: string | undefined;
  let elementIsObject = false;

  try {
    for await (const t of tokens as AsyncIterable<Token>) {
      if (!started) {
        if (t.name !== 'startArray') {
          yield malformed(1, 'the JSON is not an array of rows; nothing was read', '');
          return;
        }
        started = true;
        depth = 1;
        continue;
      }
      if (depth === 1) {
        // The start of an element, or the end of the array.
        if (t.name === 'endArray') {
          depth = 0;
          continue;
        }
        position++;
        if (SCALARS.has(t.name)) {
          yield malformed(position, 'the element is not an object', JSON.stringify(scalarOf(t)));
          continue;
        }
        depth = 2;
        fields = [];
        names = new Set();
        key = undefined;
        error = t.name === 'startObject' ? undefined : 'the element is not an object';
        elementIsObject = t.name === 'startObject';
        continue;
      }
      if (t.name === 'startObject' || t.name === 'startArray') {
        if (depth === 2 && elementIsObject && key !== undefined) error ??= `field ${key} is not a scalar`;
        depth++;
        key = undefined;
        continue;
      }
      if (t.name === 'endObject' || t.name === 'endArray') {
        depth--;
        if (depth === 1) {
          const raw = JSON.stringify(Object.fromEntries(fields));
          if (error !== undefined) yield malformed(position, error, raw);
          else
            yield {
              kind: 'row',
              entity: o.entity,
              file: o.file,
              line: position,
              fields: Object.fromEntries(fields),
            };
        }
        continue;
      }
      if (depth !== 2 || !elementIsObject) continue;
      if (t.name === 'keyValue') {
        key = t.value as string;
        continue;
      }
      if (SCALARS.has(t.name) && key !== undefined) {
        if (names.has(key)) error ??= `field ${key} given twice`;
        names.add(key);
        fields.push([key, scalarOf(t)]);
        key = undefined;
      }
    }
  } catch (e) {
    const origin = first?.origin ?? 'parser';
    const cause = first?.error ?? e;
    if (origin === 'source' && !(cause instanceof InvalidTextError)) throw cause;
    const why =
      cause instanceof InvalidTextError
        ? cause.message
        : `the JSON is not well-formed (${cause instanceof Error ? cause.message.slice(0, 200) : 'syntax error'})`;
    // Inside an element, the error is in it; between elements, in the next one.
    const complete = depth >= 2 ? position - 1 : position;
    yield malformed(complete + 1, `${why} after element ${complete}; the rest of the file was not read`, '');
    return;
  } finally {
    tokens.destroy();
    source.destroy();
  }
  if (!started) yield malformed(1, 'the file is empty: no JSON array', '');
}
