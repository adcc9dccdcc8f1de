/**
 * What the export parsers yield: a row, or a malformed row that is reported, never dropped.
 */

/** One entity row. `fields` keeps every column as text (numbers as written), in file order. */
export interface EntityRow {
  kind: 'row';
  entity: string;
  /** The file the row came from (a package's entry name, or the downloaded file's name). */
  file: string;
  /**
   * 1-based position: CSV and XML, the physical line where the row starts; JSON, the element's
   * position in the top-level array.
   */
  line: number;
  fields: Record<string, string | null>;
}

/** A row that could not be read. `raw` is the row's text, cut to a bounded length. */
export interface MalformedRow {
  kind: 'malformed';
  entity: string;
  file: string;
  line: number;
  error: string;
  raw: string;
}

export type ParsedItem = EntityRow | MalformedRow;

/** Longest `raw` text kept for a malformed row (characters). */
export const DEFAULT_MAX_RAW_CHARS = 2048;

export function boundedRaw(text: string, maxChars: number): string {
  return text.length <= maxChars
    ? text
    : `${text.slice(0, maxChars)}…(${text.length - maxChars} more characters)`;
}
