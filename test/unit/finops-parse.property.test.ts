/**
 * Parser properties (issue 12, item 5): generated CSV, XML and JSON files and data packages read
 * back to exactly the rows written (the writers are independent, well-kept libraries: csv-stringify
 * and yazl, plus csv-parse as a second reader of the same CSV), whatever the chunking of the
 * stream; and adversarial archives are always rejected with nothing yielded and nothing left
 * in the spool folder: traversal, bombs (declared or by ratio), unexpected entries, truncation,
 * and damage only reading shows (lying sizes, corrupt deflate data, altered bytes).
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { deflateRawSync } from 'node:zlib';
import { parse as csvParseSync } from 'csv-parse/sync';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseExport, PackageRejectedError, type ParsedItem } from '../../src/lib/finops/parse';
import {
  csvFile,
  dataPackage,
  jsonFile,
  manifestXml,
  packageHeaderXml,
  xmlFile,
  type ExportRow,
} from '../../src/local/finops-export-files';
import { rawZip, type RawEntry } from '../support/raw-zip';

async function bytesOf(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

/** The bytes cut at the given (sorted, deduplicated) offsets: chunk boundaries anywhere. */
function chunked(b: Buffer, cuts: number[]): Readable {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, b.length]) {
    if (p > prev) parts.push(b.subarray(prev, p));
    prev = Math.max(prev, p);
  }
  return Readable.from(parts);
}

async function parseAll(body: Readable, fileName: string, entity = 'E'): Promise<ParsedItem[]> {
  const out: ParsedItem[] = [];
  for await (const i of parseExport(body, { entity, fileName })) out.push(i);
  return out;
}

const cuts = fc.array(fc.nat(), { maxLength: 12 });
const entityName = fc.stringMatching(/^[A-Z][A-Za-z ]{0,14}[a-z]$/);

/** Characters that stress CSV: separators, quotes, both line breaks, and any code point. */
const csvChar = fc.oneof(
  fc.constantFrom(',', '"', '\r', '\n', ' ', '""', '\r\n'),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
);
const csvText = fc.string({ unit: csvChar, maxLength: 12 });

/** Unique, non-empty column names plus rows over them. */
const table = (name: fc.Arbitrary<string>, value: fc.Arbitrary<string>) =>
  fc.uniqueArray(name, { minLength: 1, maxLength: 6, selector: (s) => s }).chain((columns) =>
    fc.record({
      columns: fc.constant(columns),
      rows: fc.array(
        fc
          .tuple(...columns.map(() => value))
          .map((values) => Object.fromEntries(columns.map((c, i) => [c, values[i]!])) as ExportRow),
        { maxLength: 15 },
      ),
    }),
  );

/** A 1-based physical line where each data row starts (header first; LF inside values adds lines). */
function startLines(columns: string[], rows: ExportRow[]): number[] {
  const lines = (values: string[]) => 1 + values.join('').split('\n').length - 1;
  let next = 1 + lines(columns);
  return rows.map((r) => {
    const at = next;
    next += lines(columns.map((c) => r[c]!));
    return at;
  });
}

describe('round trips', () => {
  it('CSV: any header and values (commas, quotes, CR, LF, any code point), BOM or not, CRLF or LF, any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(
        table(
          fc.oneof(
            fc.constant('__proto__'),
            csvText.filter((s) => s !== ''),
          ),
          csvText,
        ),
        fc.boolean(),
        fc.boolean(),
        cuts,
        async ({ columns, rows }, bom, crlf, at) => {
          // A one-column row whose only value is empty is a blank line: it reads back as a row
          // (see csv.ts); a trailing blank line is indistinguishable from the file's end.
          fc.pre(!(columns.length === 1 && rows.length > 0 && rows[rows.length - 1]![columns[0]!] === ''));
          const bytes = await bytesOf(csvFile(columns, rows, { bom, crlf }));
          const items = await parseAll(chunked(bytes, at), 'e.csv');
          expect(items.filter((i) => i.kind === 'malformed')).toEqual([]);
          expect(items.map((i) => (i.kind === 'row' ? i.fields : undefined))).toEqual(rows);
          expect(items.map((i) => i.line)).toEqual(startLines(columns, rows));
          // csv-parse, a second reader, agrees on the records.
          if (columns.length > 1 || rows.every((r) => r[columns[0]!] !== '')) {
            const oracle = csvParseSync(bytes, {
              bom: true,
              columns: true,
              record_delimiter: crlf ? '\r\n' : '\n',
            }) as ExportRow[];
            expect(oracle).toEqual(rows);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  /** Code points XML 1.0 allows (no C0 controls but tab/LF/CR, no FFFE/FFFF, no lone surrogates). */
  const xmlChar = fc.oneof(
    fc.constantFrom('&', '<', '>', '"', "'", '\r', '\n', '\t', ' ', ']]>'),
    fc
      .string({ unit: 'binary', minLength: 1, maxLength: 1 })
      .filter((c) => /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]$/u.test(c)),
  );
  const xmlName = fc.oneof(
    fc.constantFrom('__proto__', 'constructor'),
    fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,10}$/).filter((n) => !n.toLowerCase().startsWith('xml')),
  );

  it('XML: element and attribute styles, any XML-legal text, any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(
        table(xmlName, fc.string({ unit: xmlChar, maxLength: 12 })),
        fc.constantFrom('elements' as const, 'attributes' as const),
        cuts,
        async ({ columns, rows }, style, at) => {
          const bytes = await bytesOf(xmlFile(columns, rows, { style }));
          const items = await parseAll(chunked(bytes, at), 'e.xml');
          expect(items.filter((i) => i.kind === 'malformed')).toEqual([]);
          expect(items.map((i) => (i.kind === 'row' ? i.fields : undefined))).toEqual(rows);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('JSON: any keys and values, any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(
        table(
          fc.oneof(
            fc.constantFrom('__proto__', 'constructor', 'toString'),
            fc.string({ unit: 'binary', minLength: 1, maxLength: 8 }),
          ),
          fc.string({ unit: 'binary', maxLength: 12 }),
        ),
        cuts,
        async ({ columns, rows }, at) => {
          const bytes = await bytesOf(jsonFile(rows));
          const items = await parseAll(chunked(bytes, at), 'e.json');
          expect(items.filter((i) => i.kind === 'malformed')).toEqual([]);
          expect(items.map((i) => (i.kind === 'row' ? i.fields : undefined))).toEqual(rows);
          expect(items.map((i) => i.line)).toEqual(rows.map((_, k) => k + 1));
          void columns;
        },
      ),
      { numRuns: 200 },
    );
  });

  it('data packages: several entities in mixed formats read back entity by entity, in manifest order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(
          fc.record({
            entity: entityName,
            format: fc.constantFrom('csv' as const, 'xml' as const, 'json' as const),
            data: table(xmlName, fc.string({ unit: 'grapheme', maxLength: 8 })),
          }),
          { minLength: 1, maxLength: 4, selector: (e) => e.entity.toLowerCase() },
        ),
        cuts,
        async (entities, at) => {
          const bytes = await bytesOf(
            dataPackage(
              entities.map((e) => ({
                entity: e.entity,
                format: e.format,
                columns: e.data.columns,
                rows: e.data.rows,
              })),
            ),
          );
          const items = await parseAll(chunked(bytes, at), 'p.zip');
          expect(items.filter((i) => i.kind === 'malformed')).toEqual([]);
          const expected = entities.flatMap((e) =>
            e.data.rows.map((r) => [e.entity, `${e.entity}.${e.format}`, r]),
          );
          expect(items.map((i) => [i.entity, i.file, i.kind === 'row' ? i.fields : undefined])).toEqual(
            expected,
          );
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('adversarial archives', () => {
  const good = (entity: string): RawEntry[] => [
    { name: 'Manifest.xml', data: manifestXml([{ entity, format: 'csv', columns: ['ID'], rows: [] }]) },
    { name: 'PackageHeader.xml', data: packageHeaderXml() },
    { name: `${entity}.csv`, data: 'ID\r\n1\r\n2\r\n' },
  ];

  type Attack = (entries: RawEntry[]) => Buffer;
  const segment = fc.stringMatching(/^[A-Za-z0-9_.-]{1,8}$/);
  const attacks: fc.Arbitrary<{ name: string; attack: Attack }> = fc.oneof(
    fc
      .tuple(fc.array(fc.constantFrom('..', '.', 'a'), { maxLength: 3 }), segment, fc.constantFrom('/', '\\'))
      .map(([pre, leaf, sep]) => ({
        name: 'traversal',
        attack: (es: RawEntry[]) => rawZip([...es, { name: [...pre, '..', leaf].join(sep), data: 'x' }]),
      })),
    segment.map((leaf) => ({
      name: 'absolute',
      attack: (es: RawEntry[]) => rawZip([...es, { name: `/${leaf}`, data: 'x' }]),
    })),
    segment.map((leaf) => ({
      name: 'drive',
      attack: (es: RawEntry[]) => rawZip([...es, { name: `C:/${leaf}`, data: 'x' }]),
    })),
    segment.map((leaf) => ({
      name: 'unexpected',
      attack: (es: RawEntry[]) => rawZip([...es, { name: `${leaf}.exe`, data: 'MZ' }]),
    })),
    segment.map((dir) => ({
      name: 'folder',
      attack: (es: RawEntry[]) => rawZip([...es, { name: `${dir}/x.csv`, data: 'ID\n1\n' }]),
    })),
    fc.integer({ min: 2, max: 16 }).map((mb) => ({
      name: 'ratio bomb',
      attack: (es: RawEntry[]) =>
        rawZip([es[0]!, es[1]!, { ...es[2]!, data: `ID\n${'9'.repeat(mb * 1024 * 1024)}\n` }]),
    })),
    fc.integer({ min: 2 ** 31, max: 2 ** 32 - 1 }).map((size) => ({
      name: 'declared bomb',
      attack: (es: RawEntry[]) => rawZip([es[0]!, es[1]!, { ...es[2]!, declaredUncompressedSize: size }]),
    })),
    fc.double({ min: 0, max: 1, noNaN: true }).map((f) => ({
      name: 'truncation',
      attack: (es: RawEntry[]) => {
        const z = rawZip(es);
        return z.subarray(0, Math.floor(f * (z.length - 1)));
      },
    })),
    fc.constant({
      name: 'duplicate',
      attack: (es: RawEntry[]) => rawZip([...es, { ...es[2]!, name: es[2]!.name.toUpperCase() }]),
    }),
    fc.constant({
      name: 'encrypted',
      attack: (es: RawEntry[]) => rawZip([es[0]!, es[1]!, { ...es[2]!, encrypted: true }]),
    }),
    fc.constant({ name: 'no manifest', attack: (es: RawEntry[]) => rawZip(es.slice(1)) }),
  );

  /** Parses in a fresh spool folder; the folder must be left empty whatever happened. */
  async function attempt(bytes: Readable, entity: string): Promise<{ items: ParsedItem[]; error: unknown }> {
    const tempDir = await mkdtemp(path.join(os.tmpdir(), 'parse-prop-'));
    const items: ParsedItem[] = [];
    let error: unknown;
    try {
      for await (const i of parseExport(bytes, { entity, fileName: 'p.zip', tempDir })) items.push(i);
    } catch (e) {
      error = e;
    }
    expect(await readdir(tempDir)).toEqual([]); // nothing written stays behind
    await rm(tempDir, { recursive: true });
    return { items, error };
  }

  it('are always rejected with nothing yielded and nothing left on disk', async () => {
    await fc.assert(
      fc.asyncProperty(entityName, attacks, cuts, async (entity, { attack }, at) => {
        const { items, error } = await attempt(chunked(attack(good(entity)), at), entity);
        expect(items).toEqual([]);
        expect(error).toBeInstanceOf(PackageRejectedError);
      }),
      { numRuns: 150 },
    );
  });

  /**
   * Damage the central directory cannot show, in the SECOND data file, after a first one full of
   * good rows: a size that lies either way (a bomb that declares itself small), a corrupt deflate
   * stream, altered stored bytes (a CRC-32 mismatch). The package is still rejected before its
   * first row, so no row of it can reach a target.
   */
  it('damage inside a later entry: rejected before the first row, nothing left on disk', async () => {
    const rows = (prefix: string, n: number) =>
      `ID\r\n${Array.from({ length: n }, (_, i) => `${prefix}${i}`).join('\r\n')}\r\n`;
    const damage = fc.oneof(
      fc.integer({ min: 1, max: 4_000 }).map((less) => ({ kind: 'declared smaller' as const, less })),
      fc.integer({ min: 1, max: 1_000_000 }).map((more) => ({ kind: 'declared larger' as const, more })),
      fc
        .tuple(fc.double({ min: 0.05, max: 0.95, noNaN: true }), fc.integer({ min: 1, max: 32 }))
        .map(([f, n]) => ({
          kind: 'corrupt deflate' as const,
          f,
          n,
        })),
      fc
        .tuple(fc.double({ min: 0, max: 0.99, noNaN: true }), fc.integer({ min: 1, max: 255 }))
        .map(([f, x]) => ({
          kind: 'altered stored bytes' as const,
          f,
          x,
        })),
    );
    await fc.assert(
      fc.asyncProperty(
        entityName,
        damage,
        fc.integer({ min: 200, max: 3_000 }),
        cuts,
        async (entity, d, n, at) => {
          const second = `${entity}Two`;
          const data = rows('b', n);
          const meta: RawEntry[] = [
            {
              name: 'Manifest.xml',
              data: manifestXml(
                [entity, second].map((e) => ({
                  entity: e,
                  format: 'csv' as const,
                  columns: ['ID'],
                  rows: [],
                })),
              ),
            },
            { name: 'PackageHeader.xml', data: packageHeaderXml() },
            { name: `${entity}.csv`, data: rows('a', 50) },
          ];
          let bytes: Buffer;
          if (d.kind === 'declared smaller')
            bytes = rawZip([
              ...meta,
              { name: `${second}.csv`, data, declaredUncompressedSize: Math.max(0, data.length - d.less) },
            ]);
          else if (d.kind === 'declared larger')
            bytes = rawZip([
              ...meta,
              { name: `${second}.csv`, data, declaredUncompressedSize: data.length + d.more },
            ]);
          else if (d.kind === 'corrupt deflate') {
            const head =
              rawZip(meta).length - 22 - meta.reduce((k, e) => k + 46 + Buffer.byteLength(e.name), 0);
            bytes = rawZip([...meta, { name: `${second}.csv`, data }]);
            const body = head + 30 + Buffer.byteLength(`${second}.csv`);
            const size = deflateRawSync(data).length;
            const from = body + Math.floor(d.f * (size - 1));
            for (let k = from; k < Math.min(from + d.n, body + size); k++) bytes[k]! ^= 0xa5;
          } else {
            const head =
              rawZip(meta).length - 22 - meta.reduce((k, e) => k + 46 + Buffer.byteLength(e.name), 0);
            bytes = rawZip([...meta, { name: `${second}.csv`, data, method: 'store' }]);
            const at = head + 30 + Buffer.byteLength(`${second}.csv`) + Math.floor(d.f * data.length);
            bytes[at]! ^= d.x;
          }
          const { items, error } = await attempt(chunked(bytes, at), entity);
          expect(items).toEqual([]);
          expect(error).toBeInstanceOf(PackageRejectedError);
        },
      ),
      { numRuns: 80 },
    );
  });

  it('the unattacked archive is read (so the rejections are the attacks)', async () => {
    await fc.assert(
      fc.asyncProperty(entityName, async (entity) => {
        const items = await parseAll(Readable.from([rawZip(good(entity))]), 'p.zip');
        expect(items.map((i) => i.kind === 'row' && i.fields.ID)).toEqual(['1', '2']);
      }),
      { numRuns: 20 },
    );
  });
});
