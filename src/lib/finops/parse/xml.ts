/**
 * XML rows of an entity file, streamed with saxes (a well-kept, conformant, non-validating
 * streaming parser that expands no DTD entities).
 *
 * Shape (F&O data management "XML-Element" and "XML-Attribute" formats):
 *
 *   <Document>
 *     <CUSTCUSTOMERGROUPENTITY CUSTOMERGROUPID="10" DESCRIPTION="Wholesale" />      attributes
 *     <CUSTCUSTOMERGROUPENTITY><CUSTOMERGROUPID>20</CUSTOMERGROUPID>...</...>          elements
 *   </Document>
 *
 * Every child of the root element is a row; its attributes and its child elements' text are its
 * fields (`i:nil="true"`/`xsi:nil="true"` gives null). A row with a nested element inside a
 * field, text directly inside it, or a field given twice is reported as malformed and the next
 * rows are read. A document that is not well-formed (or has a DOCTYPE, refused as a precaution)
 * cannot be read past the error: the rows before it are kept, and one malformed item reports
 * the line of the error and that the rest of the file was not read.
 */
import { SaxesParser } from 'saxes';
import { InvalidTextError } from './decode';
import { boundedRaw, type ParsedItem } from './types';

export interface XmlOptions {
  entity: string;
  file: string;
  maxRawChars: number;
}

const isNamespaceDeclaration = (name: string) => name === 'xmlns' || name.startsWith('xmlns:');
const isNil = (attrs: Record<string, string>) =>
  Object.entries(attrs).some(([k, v]) => (k === 'nil' || k.endsWith(':nil')) && v.trim() === 'true');

export async function* xmlRows(
  chunks: AsyncIterable<string>,
  o: XmlOptions,
): AsyncGenerator<ParsedItem, void, undefined> {
  const parser = new SaxesParser({ position: true });
  const out: ParsedItem[] = [];
  let depth = 0;
  let rowLine = 0;
  let rowFields: [string, string | null][] = [];
  let rowNames = new Set<string>();
  let rowError: string | undefined;
  let fieldName = '';
  let fieldText = '';
  let fieldNil = false;
  let pendingLine = 1;

  const malformed = (line: number, error: string, raw: string): ParsedItem => ({
    kind: 'malformed',
    entity: o.entity,
    file: o.file,
    line,
    error,
    raw: boundedRaw(raw, o.maxRawChars),
  });
  const addField = (name: string, value: string | null) => {
    if (rowNames.has(name)) rowError ??= `field ${name} given twice`;
    rowNames.add(name);
    rowFields.push([name, value]);
  };

  parser.on('doctype', () => {
    throw new Error('a DOCTYPE is not allowed in an export file');
  });
  parser.on('opentagstart', () => {
    if (depth === 1) pendingLine = parser.line;
  });
  parser.on('opentag', (tag) => {
    depth++;
    const attrs = tag.attributes as Record<string, string>;
    if (depth === 2) {
      rowLine = pendingLine;
      rowFields = [];
      rowNames = new Set();
      rowError = undefined;
      for (const [k, v] of Object.entries(attrs)) if (!isNamespaceDeclaration(k)) addField(k, v);
    } else if (depth === 3) {
      fieldName = tag.name;
      fieldText = '';
      fieldNil = isNil(attrs);
    } else if (depth > 3) {
      rowError ??= `element ${tag.name} is nested inside field ${fieldName}`;
    }
  });
  const onText = (text: string) => {
    if (depth === 3) fieldText += text;
    else if (depth === 2 && text.trim() !== '') rowError ??= 'text directly inside the row element';
  };
  parser.on('text', onText);
  parser.on('cdata', onText);
  parser.on('closetag', () => {
    if (depth === 3) addField(fieldName, fieldNil && fieldText === '' ? null : fieldText);
    else if (depth === 2) {
      const fields = Object.fromEntries(rowFields);
      if (rowError !== undefined) out.push(malformed(rowLine, rowError, JSON.stringify(fields)));
      else out.push({ kind: 'row', entity: o.entity, file: o.file, line: rowLine, fields });
    }
    depth--;
  });

  const notWellFormed = (e: unknown): ParsedItem => {
    const why = e instanceof Error ? e.message.replace(/^[^:]*:\d+:\d+: /, '') : String(e);
    return malformed(
      parser.line,
      `the XML is not well-formed at line ${parser.line} (${why}); the rest of the file was not read`,
      depth >= 2 ? JSON.stringify(Object.fromEntries(rowFields)) : '',
    );
  };

  try {
    for await (const chunk of chunks) {
      try {
        parser.write(chunk);
      } catch (e) {
        yield* out.splice(0, out.length);
        yield notWellFormed(e);
        return;
      }
      yield* out.splice(0, out.length);
    }
  } catch (e) {
    if (!(e instanceof InvalidTextError)) throw e;
    yield* out.splice(0, out.length);
    yield malformed(
      parser.line,
      `${e.message} (from line ${parser.line} on); the rest of the file was not read`,
      '',
    );
    return;
  }
  try {
    parser.close();
  } catch (e) {
    yield* out.splice(0, out.length);
    yield notWellFormed(e);
    return;
  }
  yield* out.splice(0, out.length);
}
