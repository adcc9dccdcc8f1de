/**
 * Writers of F&O export files from rows, streamed: CSV (with csv-stringify), XML (element or
 * attribute style), JSON arrays, and data packages (zip, with yazl). The F&O simulator serves
 * them, the benchmark streams a million rows through them, and the parser property tests check
 * that the parsers read back exactly the rows written. Never deployed.
 */
import { Readable } from 'node:stream';
import { stringify } from 'csv-stringify';
import { ZipFile } from 'yazl';

export type ExportRow = Record<string, string>;
export type TextFormat = 'csv' | 'xml' | 'json';

export interface CsvFileOptions {
  /** UTF-8 byte-order mark first; default true (F&O writes one). */
  bom?: boolean;
  /** CRLF line endings; default true (F&O's). */
  crlf?: boolean;
}

/** A CSV file: the header, then one record per row; quotes only where needed. */
export function csvFile(
  columns: readonly string[],
  rows: Iterable<ExportRow>,
  o: CsvFileOptions = {},
): Readable {
  const out = stringify({
    header: true,
    columns: [...columns],
    bom: o.bom ?? true,
    record_delimiter: o.crlf === false ? 'unix' : 'windows',
    // csv-stringify quotes only its own record delimiter; any line break must be quoted (F&O does).
    quoted_match: /[\r\n]/,
  });
  // csv-stringify emits one small chunk per record: join them into ~64 KB chunks (a million
  // tiny writes into a socket or a deflate stream cost far more than the CSV itself).
  return Readable.from(rechunk(Readable.from(rows, { objectMode: true }).pipe(out)));
}

async function* rechunk(source: AsyncIterable<Buffer | string>, size = 64 * 1024): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let length = 0;
  for await (const c of source) {
    const b = typeof c === 'string' ? Buffer.from(c, 'utf8') : c;
    parts.push(b);
    length += b.length;
    if (length >= size) {
      yield Buffer.concat(parts);
      parts = [];
      length = 0;
    }
  }
  if (length > 0) yield Buffer.concat(parts);
}

export interface XmlFileOptions {
  /** 'elements' (F&O XML-Element, default) or 'attributes' (XML-Attribute). */
  style?: 'elements' | 'attributes';
  /** Row element name; default 'ROW'. */
  rowName?: string;
  /** Root element name; default 'Document'. */
  rootName?: string;
  bom?: boolean;
}

const escapeXml = (s: string, inAttribute: boolean) =>
  s.replace(/[&<>"'\r\n\t]/g, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      case "'":
        return '&apos;';
      // A parser normalises CR (and, in attributes, LF and tab) unless they are character references.
      case '\r':
        return '&#13;';
      case '\n':
        return inAttribute ? '&#10;' : '\n';
      default:
        return inAttribute ? '&#9;' : '\t';
    }
  });

export function xmlFile(
  columns: readonly string[],
  rows: Iterable<ExportRow>,
  o: XmlFileOptions = {},
): Readable {
  const rowName = o.rowName ?? 'ROW';
  const root = o.rootName ?? 'Document';
  const style = o.style ?? 'elements';
  function* lines(): Generator<string> {
    yield `${o.bom === false ? '' : '\uFEFF'}<?xml version="1.0" encoding="utf-8"?>\r\n<${root}>\r\n`;
    for (const row of rows) {
      if (style === 'attributes')
        yield `  <${rowName}${columns.map((c) => ` ${c}="${escapeXml(row[c] ?? '', true)}"`).join('')} />\r\n`;
      else
        yield `  <${rowName}>\r\n${columns.map((c) => `    <${c}>${escapeXml(row[c] ?? '', false)}</${c}>\r\n`).join('')}  </${rowName}>\r\n`;
    }
    yield `</${root}>\r\n`;
  }
  return Readable.from(batched(lines()));
}

/** A JSON array of flat objects. */
export function jsonFile(rows: Iterable<ExportRow>): Readable {
  function* parts(): Generator<string> {
    yield '[';
    let first = true;
    for (const row of rows) {
      yield `${first ? '' : ','}\r\n${JSON.stringify(row)}`;
      first = false;
    }
    yield '\r\n]';
  }
  return Readable.from(batched(parts()));
}

export function exportFile(
  format: TextFormat,
  columns: readonly string[],
  rows: Iterable<ExportRow>,
): Readable {
  return format === 'csv'
    ? csvFile(columns, rows)
    : format === 'xml'
      ? xmlFile(columns, rows)
      : jsonFile(rows);
}

export interface PackageEntity {
  entity: string;
  format: TextFormat;
  columns: readonly string[];
  rows: Iterable<ExportRow>;
  /** Data file name inside the package; default `<entity>.<format>`. */
  fileName?: string;
}

export interface PackageOptions {
  definitionGroup?: string;
  /** Extra entries (adversarial packages for tests). */
  extra?: { name: string; data: Buffer }[];
}

const escapeText = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const DM_NS = 'http://schemas.microsoft.com/dynamics/2015/01/DataManagement';

export function manifestXml(
  entities: readonly PackageEntity[],
  definitionGroup = 'syncbridge-export',
): string {
  const formats = { csv: 'CSV-Unicode', xml: 'XML-Element', json: 'JSON' };
  const list = entities
    .map(
      (e, i) =>
        `<DataManagementPackageEntityData><DefaultRefreshType>IncrementalPush</DefaultRefreshType><Disable>false</Disable>` +
        `<EntityName>${escapeText(e.entity)}</EntityName><ExecutionUnit>1</ExecutionUnit>` +
        `<LevelInExecutionUnit>${i + 1}</LevelInExecutionUnit><SequenceInLevel>1</SequenceInLevel>` +
        `<SourceFormat>${formats[e.format]}</SourceFormat></DataManagementPackageEntityData>`,
    )
    .join('');
  return (
    `<?xml version="1.0" encoding="utf-8"?>\r\n<DataManagementPackageManifest xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="${DM_NS}">` +
    `<DefinitionGroupName>${escapeText(definitionGroup)}</DefinitionGroupName><Description>${escapeText(definitionGroup)}</Description>` +
    `<PackageEntityList>${list}</PackageEntityList></DataManagementPackageManifest>`
  );
}

export function packageHeaderXml(definitionGroup = 'syncbridge-export'): string {
  return (
    `<?xml version="1.0" encoding="utf-8"?>\r\n<DataManagementPackageHeader xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="${DM_NS}">` +
    `<Description>${escapeText(definitionGroup)}</Description>` +
    `<ManifestType>Microsoft.Dynamics.AX.Framework.Tools.DataManagement.Serialization.DataManagementPackageManifest</ManifestType>` +
    `<PackageType>DefinitionGroup</PackageType><PackageVersion>2</PackageVersion></DataManagementPackageHeader>`
  );
}

/** A data package (zip), streamed: the data files are compressed as they are generated. */
export function dataPackage(entities: readonly PackageEntity[], o: PackageOptions = {}): Readable {
  const zip = new ZipFile();
  const mtime = new Date('2024-01-01T00:00:00Z');
  zip.addBuffer(Buffer.from(manifestXml(entities, o.definitionGroup), 'utf8'), 'Manifest.xml', { mtime });
  zip.addBuffer(Buffer.from(packageHeaderXml(o.definitionGroup), 'utf8'), 'PackageHeader.xml', { mtime });
  for (const e of entities)
    zip.addReadStream(exportFile(e.format, e.columns, e.rows), e.fileName ?? `${e.entity}.${e.format}`, {
      mtime,
    });
  for (const x of o.extra ?? []) zip.addBuffer(x.data, x.name, { mtime });
  zip.end();
  return Readable.from(zip.outputStream as AsyncIterable<Buffer>);
}

/** Joins small strings into ~64 KB chunks (fewer, larger writes). */
function* batched(parts: Iterable<string>, size = 64 * 1024): Generator<Buffer> {
  let buf: string[] = [];
  let length = 0;
  for (const p of parts) {
    buf.push(p);
    length += p.length;
    if (length >= size) {
      yield Buffer.from(buf.join(''), 'utf8');
      buf = [];
      length = 0;
    }
  }
  if (buf.length > 0) yield Buffer.from(buf.join(''), 'utf8');
}
