/**
 * The export parsers: CSV (BOM, quotes, line breaks in fields, CRLF, malformed rows with their
 * line numbers), XML (element and attribute styles), JSON arrays, data packages, and archives
 * that must be rejected with nothing yielded.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  parseExport,
  PackageRejectedError,
  type ParsedItem,
  type ParseExportOptions,
} from '../../src/lib/finops/parse';
import { csvFile, dataPackage, jsonFile, xmlFile } from '../../src/local/finops-export-files';
import { rawZip } from '../support/raw-zip';

async function collect(
  body: Buffer | Readable | string,
  o: Partial<ParseExportOptions> = {},
): Promise<ParsedItem[]> {
  const source =
    typeof body === 'string' || Buffer.isBuffer(body) ? Readable.from([Buffer.from(body)]) : body;
  const items: ParsedItem[] = [];
  for await (const item of parseExport(source, {
    entity: 'Customer groups',
    fileName: 'Customer groups.csv',
    ...o,
  }))
    items.push(item);
  return items;
}

async function bytesOf(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

/** Splits a buffer into pieces of `size` bytes (chunk boundaries inside quotes, CRLFs, characters). */
const pieces = (b: Buffer, size: number) =>
  Readable.from(
    Array.from({ length: Math.ceil(b.length / size) }, (_, i) => b.subarray(i * size, (i + 1) * size)),
  );

const rows = (items: ParsedItem[]) => items.filter((i) => i.kind === 'row');
const malformed = (items: ParsedItem[]) => items.filter((i) => i.kind === 'malformed');

describe('CSV', () => {
  const text =
    '\uFEFFCUSTOMERGROUPID,DESCRIPTION,PAYMENTTERMS\r\n' +
    '10,"Wholesale, north",Net30\r\n' +
    '20,"Two\r\nlines and a ""quote""",Net10\r\n' +
    '\r\n' +
    '30,Plain,\r\n';

  it('reads a BOM, quoted commas, quoted CRLF line breaks, doubled quotes and CRLF records', async () => {
    for (const size of [1, 2, 3, 7, 1 << 16]) {
      const items = await collect(pieces(Buffer.from(text, 'utf8'), size));
      expect(malformed(items)).toEqual([]);
      expect(rows(items)).toEqual([
        {
          kind: 'row',
          entity: 'Customer groups',
          file: 'Customer groups.csv',
          line: 2,
          fields: { CUSTOMERGROUPID: '10', DESCRIPTION: 'Wholesale, north', PAYMENTTERMS: 'Net30' },
        },
        {
          kind: 'row',
          entity: 'Customer groups',
          file: 'Customer groups.csv',
          line: 3,
          fields: { CUSTOMERGROUPID: '20', DESCRIPTION: 'Two\r\nlines and a "quote"', PAYMENTTERMS: 'Net10' },
        },
        {
          kind: 'row',
          entity: 'Customer groups',
          file: 'Customer groups.csv',
          line: 6,
          fields: { CUSTOMERGROUPID: '30', DESCRIPTION: 'Plain', PAYMENTTERMS: '' },
        },
      ]);
    }
  });

  it('reads UTF-16 LE with its BOM (CSV-Unicode)', async () => {
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text.slice(1), 'utf16le')]);
    const items = await collect(pieces(utf16, 5));
    expect(rows(items).map((r) => r.fields.DESCRIPTION)).toEqual([
      'Wholesale, north',
      'Two\r\nlines and a "quote"',
      'Plain',
    ]);
  });

  it('reports a malformed row with its line number and reads the rows after it', async () => {
    const bad =
      'ID,NAME\r\n' + '1,one\r\n' + '2,"bad"x\r\n' + '3,three,extra\r\n' + '4,ab"c\r\n' + '5,five\r\n';
    const items = await collect(bad);
    expect(rows(items).map((r) => [r.line, r.fields.ID])).toEqual([
      [2, '1'],
      [6, '5'],
    ]);
    expect(malformed(items).map((m) => [m.line, m.error, m.raw])).toEqual([
      [3, 'field 2: unexpected character after the closing quote', '2,"bad"x'],
      [4, 'expected 2 fields, got 3', '3,three,extra'],
      [5, 'field 2: a quote inside an unquoted field', '4,ab"c'],
    ]);
  });

  it('reports a quote that is never closed at its line, then reads the lines after it as rows', async () => {
    const items = await collect('ID,NAME\n1,one\n2,"never closed\n3,three\n4,four\n');
    expect(malformed(items).map((m) => [m.line, m.error])).toEqual([
      [3, 'a quote is not closed before the end of the file'],
    ]);
    expect(rows(items).map((r) => [r.line, r.fields.ID])).toEqual([
      [2, '1'],
      [4, '3'],
      [5, '4'],
    ]);
  });

  it('bounds a runaway quoted field by maxRecordChars and keeps raw text bounded', async () => {
    const long = `ID,NAME\n1,"${'x'.repeat(5000)}\n2,two\n`;
    const items = await collect(long, { maxRecordChars: 1000, maxRawChars: 100 });
    const [m] = malformed(items);
    expect(m).toMatchObject({ line: 2 });
    expect(m!.error).toMatch(/not closed within 1000 characters|longer than 1000 characters/);
    expect(m!.raw.length).toBeLessThan(200);
    expect(rows(items).map((r) => [r.line, r.fields.ID])).toEqual([[3, '2']]);
  });

  it('reports invalid UTF-8 instead of replacing characters', async () => {
    const items = await collect(
      Buffer.concat([Buffer.from('ID,NAME\n1,one\n2,'), Buffer.from([0xc3, 0x28]), Buffer.from('\n3,x\n')]),
    );
    expect(rows(items).map((r) => r.fields.ID)).toEqual(['1']);
    expect(malformed(items)[0]!.error).toMatch(/not valid utf-8.*rest of the file was not read/);
  });

  it('reads what csv-stringify writes, LF or CRLF, with and without a BOM', async () => {
    const columns = ['A', 'B'];
    const data = [
      { A: 'x,y', B: 'line\nbreak' },
      { A: '"q"', B: '' },
      { A: ' lead', B: 'trail ' },
    ];
    for (const o of [{}, { crlf: false }, { bom: false }]) {
      const items = await collect(csvFile(columns, data, o));
      expect(rows(items).map((r) => r.fields)).toEqual(data);
    }
  });
});

describe('XML', () => {
  it('reads element-style rows with escapes, CDATA and nil', async () => {
    const xml =
      '\uFEFF<?xml version="1.0" encoding="utf-8"?>\r\n<Document xmlns:i="http://www.w3.org/2001/XMLSchema-instance">\r\n' +
      '  <CUSTCUSTOMERGROUPENTITY>\r\n    <CUSTOMERGROUPID>10</CUSTOMERGROUPID>\r\n    <DESCRIPTION>A &amp; B &lt;x&gt;</DESCRIPTION>\r\n  </CUSTCUSTOMERGROUPENTITY>\r\n' +
      '  <CUSTCUSTOMERGROUPENTITY><CUSTOMERGROUPID>20</CUSTOMERGROUPID><DESCRIPTION><![CDATA[raw <text>]]></DESCRIPTION><NOTE i:nil="true" /></CUSTCUSTOMERGROUPENTITY>\r\n' +
      '</Document>\r\n';
    const items = await collect(pieces(Buffer.from(xml), 3), { fileName: 'Customer groups.xml' });
    expect(items).toEqual([
      {
        kind: 'row',
        entity: 'Customer groups',
        file: 'Customer groups.xml',
        line: 3,
        fields: { CUSTOMERGROUPID: '10', DESCRIPTION: 'A & B <x>' },
      },
      {
        kind: 'row',
        entity: 'Customer groups',
        file: 'Customer groups.xml',
        line: 7,
        fields: { CUSTOMERGROUPID: '20', DESCRIPTION: 'raw <text>', NOTE: null },
      },
    ]);
  });

  it('reads attribute-style rows', async () => {
    const items = await collect(
      xmlFile(['ID', 'NAME'], [{ ID: '1', NAME: 'a "b" & \'c\'\nd' }], { style: 'attributes' }),
      {
        fileName: 'x.xml',
      },
    );
    expect(rows(items).map((r) => r.fields)).toEqual([{ ID: '1', NAME: 'a "b" & \'c\'\nd' }]);
  });

  it('reports a row with a nested element and reads on; a syntax error ends the file with one report', async () => {
    const xml =
      '<D>\n<R><ID>1</ID></R>\n<R><ID>2</ID><X><Y>deep</Y></X></R>\n<R ID="3" />\n<R><ID>4</ID></Q>\n<R><ID>5</ID></R>\n</D>';
    const items = await collect(xml, { fileName: 'x.xml' });
    // saxes closes row 4 (its content is complete) before it reports the stray </Q>.
    expect(rows(items).map((r) => [r.line, r.fields.ID])).toEqual([
      [2, '1'],
      [4, '3'],
      [5, '4'],
    ]);
    expect(malformed(items).map((m) => m.line)).toEqual([3, 5]);
    expect(malformed(items)[1]!.error).toMatch(/not well-formed at line 5.*rest of the file was not read/);
    expect(rows(items).map((r) => r.fields.ID)).not.toContain('5');
  });

  it('refuses a DOCTYPE (no entity expansion)', async () => {
    const xml = '<?xml version="1.0"?><!DOCTYPE D [<!ENTITY a "aaaa">]><D><R><ID>&a;</ID></R></D>';
    const items = await collect(xml, { fileName: 'x.xml' });
    expect(rows(items)).toEqual([]);
    expect(malformed(items)[0]!.error).toMatch(/DOCTYPE is not allowed/);
  });
});

describe('JSON', () => {
  it('reads an array of flat objects, keeping numbers as written', async () => {
    const json =
      '[{"ID":"10","AMOUNT":12345678901234567890.50,"ACTIVE":true,"NOTE":null},\n{"ID":"20","AMOUNT":1}]';
    const items = await collect(pieces(Buffer.from(json), 4), { fileName: 'x.json' });
    expect(items).toEqual([
      {
        kind: 'row',
        entity: 'Customer groups',
        file: 'x.json',
        line: 1,
        fields: { ID: '10', AMOUNT: '12345678901234567890.50', ACTIVE: 'true', NOTE: null },
      },
      { kind: 'row', entity: 'Customer groups', file: 'x.json', line: 2, fields: { ID: '20', AMOUNT: '1' } },
    ]);
  });

  it('reports non-object and nested elements and reads on; a syntax error ends the file', async () => {
    const items = await collect('[{"ID":"1"}, 5, {"ID":{"x":1}}, {"ID":"4"}, {"ID": oops}]', {
      fileName: 'x.json',
    });
    expect(rows(items).map((r) => [r.line, r.fields.ID])).toEqual([
      [1, '1'],
      [4, '4'],
    ]);
    expect(malformed(items).map((m) => m.line)).toEqual([2, 3, 5]);
    expect(malformed(items).map((m) => m.error)).toEqual([
      'the element is not an object',
      'field ID is not a scalar',
      expect.stringMatching(
        /^the JSON is not well-formed \(.*\) after element 4; the rest of the file was not read$/,
      ),
    ]);
  });
});

describe('format detection', () => {
  it('detects by extension, else by the first character', async () => {
    expect(rows(await collect('[{"A":"1"}]', { fileName: 'export' }))[0]!.fields).toEqual({ A: '1' });
    expect(rows(await collect('<D><R A="1"/></D>', { fileName: 'export' }))[0]!.fields).toEqual({ A: '1' });
    expect(rows(await collect('A\n1\n', { fileName: 'export' }))[0]!.fields).toEqual({ A: '1' });
  });
});

describe('data packages', () => {
  const groups = {
    entity: 'Customer groups',
    format: 'csv' as const,
    columns: ['CUSTOMERGROUPID', 'DESCRIPTION'],
    rows: [
      { CUSTOMERGROUPID: '10', DESCRIPTION: 'Wholesale' },
      { CUSTOMERGROUPID: '20', DESCRIPTION: 'Retail, "big"' },
    ],
  };
  const terms = {
    entity: 'Terms of payment',
    format: 'xml' as const,
    columns: ['NAME'],
    rows: [{ NAME: 'Net30' }],
  };
  const modes = {
    entity: 'Delivery modes',
    format: 'json' as const,
    columns: ['CODE'],
    rows: [{ CODE: 'AIR' }],
  };

  it('reads every entity of the manifest in order, naming entity and file', async () => {
    const zip = await bytesOf(dataPackage([groups, terms, modes]));
    const items = await collect(pieces(zip, 1000), { fileName: 'export.zip' });
    expect(items.map((i) => [i.kind, i.entity, i.file, i.line])).toEqual([
      ['row', 'Customer groups', 'Customer groups.csv', 2],
      ['row', 'Customer groups', 'Customer groups.csv', 3],
      ['row', 'Terms of payment', 'Terms of payment.xml', 3],
      ['row', 'Delivery modes', 'Delivery modes.json', 1],
    ]);
    expect(rows(items)[1]!.fields).toEqual({ CUSTOMERGROUPID: '20', DESCRIPTION: 'Retail, "big"' });
  });

  const manifest = (entity: string) =>
    `<DataManagementPackageManifest xmlns="http://schemas.microsoft.com/dynamics/2015/01/DataManagement"><PackageEntityList><DataManagementPackageEntityData><EntityName>${entity}</EntityName></DataManagementPackageEntityData></PackageEntityList></DataManagementPackageManifest>`;
  const header =
    '<DataManagementPackageHeader xmlns="http://schemas.microsoft.com/dynamics/2015/01/DataManagement"><PackageVersion>2</PackageVersion></DataManagementPackageHeader>';
  const base = [
    { name: 'Manifest.xml', data: manifest('G') },
    { name: 'PackageHeader.xml', data: header },
    { name: 'G.csv', data: 'ID\n1\n2\n' },
  ];

  it('reads a hand-made package (the raw writer itself is sound)', async () => {
    expect(rows(await collect(rawZip(base), { fileName: 'p.zip' })).map((r) => r.fields.ID)).toEqual([
      '1',
      '2',
    ]);
  });

  const adversarial: [string, () => Promise<Buffer>, RegExp][] = [
    [
      'path traversal',
      async () => rawZip([...base, { name: '../../etc/cron.d/x', data: 'x' }]),
      /path traversal|invalid relative path/,
    ],
    [
      'absolute path',
      async () => rawZip([...base, { name: '/etc/passwd', data: 'x' }]),
      /path traversal|absolute path/,
    ],
    [
      'a drive-letter path',
      async () => rawZip([...base, { name: 'C:\\x.csv', data: 'x' }]),
      /path traversal|absolute path|invalid characters/,
    ],
    ['a folder', async () => rawZip([...base, { name: 'sub/G.csv', data: 'x' }]), /no folders/],
    [
      'an unexpected entry',
      async () => rawZip([...base, { name: 'run.sh', data: 'rm -rf /' }]),
      /unexpected entry "run.sh"/,
    ],
    ['a duplicate entry', async () => rawZip([...base, { name: 'g.CSV', data: 'ID\n3\n' }]), /appears twice/],
    ['a missing manifest', async () => rawZip(base.slice(1)), /Manifest.xml is missing/],
    ['a missing data file', async () => rawZip(base.slice(0, 2)), /no data file for it/],
    ['an Excel data file', async () => rawZip([base[0]!, base[1]!, { name: 'G.xlsx', data: 'PK' }]), /Excel/],
    [
      'an encrypted entry',
      async () => rawZip([...base.slice(0, 2), { name: 'G.csv', data: 'ID\n1\n', encrypted: true }]),
      /encrypted/,
    ],
    [
      'a ratio bomb',
      async () =>
        rawZip([...base.slice(0, 2), { name: 'G.csv', data: `ID\n${'0'.repeat(8 * 1024 * 1024)}\n` }]),
      /inflates \d+ times/,
    ],
    [
      'a bomb by total (declared)',
      async () =>
        rawZip([
          ...base.slice(0, 2),
          { name: 'G.csv', data: 'ID\n1\n', declaredUncompressedSize: 0xfffffff0 },
        ]),
      /more than \d+ bytes|inflates/,
    ],
    ['truncation', async () => rawZip(base).subarray(0, rawZip(base).length - 10), /not a complete zip/],
    [
      'a wrong manifest root',
      async () => rawZip([{ name: 'Manifest.xml', data: '<Evil/>' }, ...base.slice(1)]),
      /root element is Evil/,
    ],
  ];

  for (const [name, make, why] of adversarial)
    it(`rejects ${name} with nothing yielded`, async () => {
      const items: ParsedItem[] = [];
      const error = await (async () => {
        try {
          for await (const i of parseExport(Readable.from([await make()]), {
            entity: 'G',
            fileName: 'p.zip',
          }))
            items.push(i);
        } catch (e) {
          return e;
        }
      })();
      expect(items).toEqual([]);
      expect(error).toBeInstanceOf(PackageRejectedError);
      expect((error as Error).message).toMatch(why);
    });

  it('rejects a package above the total cap', async () => {
    const zip = await bytesOf(
      dataPackage([
        {
          ...groups,
          rows: Array.from({ length: 20_000 }, (_, i) => ({ CUSTOMERGROUPID: String(i), DESCRIPTION: 'd' })),
        },
      ]),
    );
    await expect(collect(zip, { zipLimits: { maxTotalUncompressedBytes: 100_000 } })).rejects.toThrow(
      /more than 100000 bytes/,
    );
  });

  it('rejects an archive cut at any point, before yielding a row', async () => {
    const zip = rawZip(base);
    for (let cut = 1; cut < zip.length; cut += 7) {
      const items: ParsedItem[] = [];
      await expect(
        (async () => {
          for await (const i of parseExport(Readable.from([zip.subarray(0, cut)]), {
            entity: 'G',
            fileName: 'p.zip',
          }))
            items.push(i);
        })(),
      ).rejects.toThrow();
      expect(items).toEqual([]);
    }
  });

  it('a JSON file named .zip is refused', async () => {
    await expect(collect('[]', { fileName: 'p.zip' })).rejects.toThrow(PackageRejectedError);
    await expect(collect('[]', { fileName: 'p.zip' })).rejects.toThrow(/not a zip archive/);
  });

  it('reads a body that starts with a zip signature as a package, whatever its name', async () => {
    const zip = await bytesOf(dataPackage([modes]));
    expect(rows(await collect(zip, { fileName: 'download' })).map((r) => r.entity)).toEqual([
      'Delivery modes',
    ]);
  });
});

it('jsonFile writes what the JSON reader reads', async () => {
  const data = [{ A: 'x' }, { A: '"\\\n' }];
  expect(rows(await collect(jsonFile(data), { fileName: 'a.json' })).map((r) => r.fields)).toEqual(data);
});
