/**
 * The intake's JSON parser against JSON.parse: the same values and the same refusals on
 * generated documents and strings, exact big integers, a depth limit that holds at any depth
 * (300,000 levels throws a depth error, not a stack overflow), and no prototype pollution.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonDepthError, JsonSyntaxError, parseJson, stringifyJson } from '../../src/lib/webhooks/json';

const parse = (text: string, maxDepth = 1000) => parseJson(text, { maxDepth, bigIntegers: 'number' });

function jsonParseOutcome(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}
function ourOutcome(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: parse(text) };
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    return { ok: false };
  }
}

describe('parseJson', () => {
  it('gives the same value as JSON.parse for any JSON document, formatted or not', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.constantFrom(undefined, 2, '\t'), (v, indent) => {
        const text = JSON.stringify(v, null, indent);
        expect(parse(text)).toEqual(JSON.parse(text));
      }),
      { numRuns: 2000 },
    );
  });

  it('accepts exactly what JSON.parse accepts, on arbitrary and mutated text', () => {
    const mutated = fc
      .tuple(fc.jsonValue(), fc.nat(), fc.string({ maxLength: 3 }), fc.nat({ max: 3 }))
      .map(([v, at, insert, cut]) => {
        const t = JSON.stringify(v);
        const i = t.length === 0 ? 0 : at % t.length;
        return t.slice(0, i) + insert + t.slice(i + cut);
      });
    const tokens = fc
      .array(
        fc.constantFrom(
          '{',
          '}',
          '[',
          ']',
          ',',
          ':',
          '"a"',
          '1',
          '-',
          '0',
          '.5',
          'e3',
          'true',
          'nul',
          ' ',
          '\\',
          '"\\u12"',
          '01',
          '1.',
          '"\n"',
        ),
        { maxLength: 12 },
      )
      .map((t) => t.join(''));
    fc.assert(
      fc.property(fc.oneof(fc.string(), mutated, tokens), (text) => {
        const ref = jsonParseOutcome(text);
        const ours = ourOutcome(text);
        expect(ours.ok).toBe(ref.ok);
        if (ref.ok && ours.ok) expect(ours.value).toEqual(ref.value);
      }),
      { numRuns: 5000 },
    );
  });

  it('keeps integers beyond 2^53 exact as bigint (or text), and leaves safe and fractional numbers alone', () => {
    const text =
      '{"ControlNumber": 9007199254740993, "neg": -123456789012345678901, "safe": 5637611083, "f": 9007199254740993.5, "e": 1e21}';
    expect(parseJson(text, { maxDepth: 4 })).toEqual({
      ControlNumber: 9007199254740993n,
      neg: -123456789012345678901n,
      safe: 5637611083,
      f: Number('9007199254740993.5'), // a fraction: an ordinary (rounded) number, as JSON.parse gives
      e: 1e21,
    });
    expect(parseJson(text, { maxDepth: 4, bigIntegers: 'string' })).toMatchObject({
      ControlNumber: '9007199254740993',
    });
    expect(stringifyJson(parseJson('[18446744073709551617]', { maxDepth: 2 }))).toBe(
      '["18446744073709551617"]',
    );
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }), (n) => {
        const v = parseJson(`[${n}]`, { maxDepth: 1 }) as unknown[];
        if (n >= -(2n ** 53n - 1n) && n <= 2n ** 53n - 1n) expect(v[0]).toBe(Number(n));
        else expect(v[0]).toBe(n);
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses nesting beyond maxDepth at any depth, without recursion', () => {
    expect(parseJson('[[[]]]', { maxDepth: 3 })).toEqual([[[]]]);
    expect(() => parseJson('[[[[]]]]', { maxDepth: 3 })).toThrow(JsonDepthError);
    expect(() => parseJson('{"a":{"b":{"c":{}}}}', { maxDepth: 3 })).toThrow(JsonDepthError);
    const deep = '['.repeat(300_000) + ']'.repeat(300_000);
    expect(() => parseJson(deep, { maxDepth: 32 })).toThrow(JsonDepthError);
    // Even with no effective limit the parser keeps its own stack: no RangeError.
    expect(() => parseJson(deep, { maxDepth: Infinity })).not.toThrow();
    const unclosed = '{"a":'.repeat(200_000);
    expect(() => parseJson(unclosed, { maxDepth: Infinity })).toThrow(JsonSyntaxError);
  });

  it('never sets a prototype from "__proto__" and keeps the last of duplicate keys', () => {
    const v = parseJson('{"__proto__": {"polluted": true}, "a": 1, "a": 2}', { maxDepth: 3 }) as Record<
      string,
      unknown
    >;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(v)).toEqual(['__proto__', 'a']);
    expect(v.a).toBe(2);
    expect(v).toEqual(JSON.parse('{"__proto__": {"polluted": true}, "a": 2}'));
  });

  it('says where the error is, without quoting the input', () => {
    try {
      parseJson('{\n  "secret-ish": "value",\n  oops\n}', { maxDepth: 3 });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(JsonSyntaxError);
      expect((e as JsonSyntaxError).line).toBe(3);
      expect((e as JsonSyntaxError).column).toBe(3);
      expect((e as Error).message).toBe("unexpected character 'o' at line 3, column 3");
      expect((e as Error).message).not.toContain('value');
    }
    expect(() => parseJson('"\u0001"', { maxDepth: 1 })).toThrow(
      /control character in string at line 1, column 2/,
    );
    expect(() => parseJson('', { maxDepth: 1 })).toThrow(/unexpected end of input/);
  });
});
