/**
 * A strict JSON parser (RFC 8259) for webhook bodies, written for two things `JSON.parse` cannot
 * do:
 *
 * - **A depth limit.** Nesting deeper than `maxDepth` containers is refused with
 *   `JsonDepthError` as soon as the parser reaches it. The parser keeps its own stack (no
 *   recursion), so no input can overflow the call stack.
 * - **Exact big integers.** An integer literal outside ±(2^53 − 1) becomes a `bigint` (or its
 *   decimal text, or a lossy number, per `bigIntegers`), so an F&O `ControlNumber` or any other
 *   64-bit id survives. Numbers with a fraction or exponent are ordinary numbers.
 *
 * Everything else matches `JSON.parse`: the same grammar (no comments, trailing commas, leading
 * zeros, NaN, single quotes or raw control characters in strings), lone surrogate escapes kept,
 * a later duplicate key wins, and `__proto__` is an ordinary own property (never a prototype).
 * Errors give the position only, never an excerpt of the input.
 */

export type JsonValue =
  null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue };

export interface JsonParseOptions {
  /** Most containers (objects/arrays) nested inside each other; `[]` has depth 1. */
  maxDepth: number;
  /**
   * What an integer literal outside the safe range becomes: `bigint` (default, exact), `string`
   * (its decimal text, exact) or `number` (what JSON.parse does: rounded).
   */
  bigIntegers?: 'bigint' | 'string' | 'number';
}

export class JsonSyntaxError extends Error {
  constructor(
    readonly reason: string,
    /** Offset in UTF-16 code units, and the 1-based line and column there. */
    readonly offset: number,
    readonly line: number,
    readonly column: number,
  ) {
    super(`${reason} at line ${line}, column ${column}`);
    this.name = 'JsonSyntaxError';
  }
}

export class JsonDepthError extends Error {
  constructor(
    readonly maxDepth: number,
    readonly offset: number,
  ) {
    super(`JSON nesting deeper than ${maxDepth} levels`);
    this.name = 'JsonDepthError';
  }
}

type Frame =
  | { array: JsonValue[]; object?: undefined }
  | { array?: undefined; object: Record<string, JsonValue>; key: string };

const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

const ESCAPES: Record<string, string> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

function setKey(object: Record<string, JsonValue>, key: string, value: JsonValue): void {
  // `object[key] = value` with key "__proto__" would set the prototype; JSON.parse defines an own property.
  if (key === '__proto__')
    Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  else object[key] = value;
}

export function parseJson(text: string, options: JsonParseOptions): JsonValue {
  const { maxDepth } = options;
  const bigIntegers = options.bigIntegers ?? 'bigint';
  const n = text.length;
  let i = 0;

  const fail = (reason: string, at = i): never => {
    let line = 1;
    let lineStart = 0;
    for (let k = 0; k < at && k < n; k++)
      if (text.charCodeAt(k) === 10) {
        line++;
        lineStart = k + 1;
      }
    throw new JsonSyntaxError(reason, at, line, at - lineStart + 1);
  };
  const unexpected = (): never =>
    i >= n
      ? fail('unexpected end of input')
      : fail(`unexpected character ${describeChar(text.charCodeAt(i))}`);

  const skipWs = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };

  const readString = (): string => {
    // text[i] is the opening quote
    const start = ++i;
    let out = '';
    let runStart = start;
    for (;;) {
      if (i >= n) fail('unterminated string', start - 1);
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(runStart, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c === 0x5c) {
        out += text.slice(runStart, i);
        const e = text[i + 1];
        if (e === undefined) fail('unterminated string', start - 1);
        if (e === 'u') {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape');
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else {
          const v = ESCAPES[e!];
          if (v === undefined) fail('invalid escape');
          out += v;
          i += 2;
        }
        runStart = i;
      } else i++;
    }
  };

  const readNumber = (): number | bigint | string => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return unexpected();
    const literal = m[0];
    i += literal.length;
    const value = Number(literal);
    if (m[1] === undefined && m[2] === undefined && !Number.isSafeInteger(value) && bigIntegers !== 'number')
      return bigIntegers === 'bigint' ? BigInt(literal) : literal;
    return value;
  };

  const readLiteral = (word: string, value: JsonValue): JsonValue => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return value;
    }
    return unexpected();
  };

  const stack: Frame[] = [];
  const open = () => {
    if (stack.length + 1 > maxDepth) throw new JsonDepthError(maxDepth, i);
    i++;
  };
  /** After `{` or `,` inside an object: the key and its colon. */
  const readKey = (): string => {
    skipWs();
    if (text.charCodeAt(i) !== 0x22) unexpected();
    const key = readString();
    skipWs();
    if (text.charCodeAt(i) !== 0x3a) unexpected();
    i++;
    return key;
  };

  skipWs();
  for (;;) {
    // Read one value; containers push a frame and continue with their first member.
    let value: JsonValue;
    const c = text.charCodeAt(i);
    if (c === 0x7b) {
      open();
      skipWs();
      if (text.charCodeAt(i) === 0x7d) {
        i++;
        value = {};
      } else {
        stack.push({ object: {}, key: readKey() });
        skipWs();
        continue;
      }
    } else if (c === 0x5b) {
      open();
      skipWs();
      if (text.charCodeAt(i) === 0x5d) {
        i++;
        value = [];
      } else {
        stack.push({ array: [] });
        skipWs();
        continue;
      }
    } else if (c === 0x22) value = readString();
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) value = readNumber();
    else if (c === 0x74) value = readLiteral('true', true);
    else if (c === 0x66) value = readLiteral('false', false);
    else if (c === 0x6e) value = readLiteral('null', null);
    else value = unexpected();

    // Hand the value to its container; close containers that end here.
    for (;;) {
      const top = stack[stack.length - 1];
      if (top === undefined) {
        skipWs();
        if (i < n) unexpected();
        return value;
      }
      skipWs();
      const d = text.charCodeAt(i);
      if (top.array) {
        top.array.push(value);
        if (d === 0x2c) {
          i++;
          skipWs();
          break;
        }
        if (d !== 0x5d) unexpected();
        i++;
        stack.pop();
        value = top.array;
      } else {
        setKey(top.object, top.key, value);
        if (d === 0x2c) {
          i++;
          top.key = readKey();
          skipWs();
          break;
        }
        if (d !== 0x7d) unexpected();
        i++;
        stack.pop();
        value = top.object;
      }
    }
  }
}

function describeChar(code: number): string {
  // Printable ASCII is shown; anything else by code point only (never echo arbitrary input).
  return code >= 0x21 && code <= 0x7e
    ? `'${String.fromCharCode(code)}'`
    : `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** JSON text of a value that may hold bigints (written as decimal strings). */
export function stringifyJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}
