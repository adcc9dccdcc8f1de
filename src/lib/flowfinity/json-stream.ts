/**
 * Streams the elements of a top-level JSON array from a byte stream, one element at a time, so
 * memory does not grow with the size of the response (stream-json's StreamArray assembles one
 * element, hands it over and forgets it).
 *
 * Numbers: every JSON number is kept as its literal text (a string), exactly as written. This is
 * what keeps `lastSubmissionId` values beyond 2^53 exact (record.ts turns them into BigInt), and
 * it matches the Flowfinity convention of sending numbers as strings anyway (`"EmployeeCount":
 * "25"`), so a field has the same JS type whichever way the view sent it.
 */
import { pipeline, type Readable } from 'node:stream';
import { parser } from 'stream-json/Parser';
import { streamArray } from 'stream-json/streamers/StreamArray';
import type StreamBase from 'stream-json/streamers/StreamBase';

/** The bytes are not a well-formed JSON array (wrong top-level type, syntax error, cut short). */
export class JsonArrayProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JsonArrayProtocolError';
  }
}

export interface JsonArrayElement {
  /** Position in the array, from 0. */
  index: number;
  value: unknown;
}

/** stream-json's Assembler honours `numberAsString`; its published types do not list it. */
interface AssemblerStreamOptions extends StreamBase.StreamOptions {
  numberAsString: boolean;
}

/**
 * Yields each element of the JSON array read from `source`. An error of `source` itself (network
 * failure, abort, timeout) is rethrown unchanged; a parse error becomes JsonArrayProtocolError.
 * Returning early (break) destroys the streams, including `source`.
 */
export async function* jsonArrayElements(
  source: Readable,
): AsyncGenerator<JsonArrayElement, void, undefined> {
  const tokens = parser({ packValues: true, streamValues: false });
  const options: AssemblerStreamOptions = { numberAsString: true };
  const elements = streamArray(options);

  // The stream that fails first is the origin; pipeline() then destroys the others with the same
  // error, so the first 'error' event tells a network failure from a syntax error.
  let first: { origin: 'source' | 'parser'; error: unknown } | undefined;
  source.on('error', (error) => (first ??= { origin: 'source', error }));
  tokens.on('error', (error) => (first ??= { origin: 'parser', error }));
  elements.on('error', (error) => (first ??= { origin: 'parser', error }));
  pipeline(source, tokens, elements, () => {
    /* errors surface through the iteration below */
  });

  try {
    for await (const chunk of elements as AsyncIterable<{ key: number; value: unknown }>) {
      yield { index: chunk.key, value: chunk.value };
    }
  } catch (e) {
    if (first?.origin === 'source') throw first.error;
    const error = first?.error ?? e;
    throw new JsonArrayProtocolError(error instanceof Error ? error.message : String(error));
  } finally {
    elements.destroy();
    tokens.destroy();
    source.destroy();
  }
}
