/** Small helpers for Azure Table storage entities. */
import type { TableClient } from '@azure/data-tables';
import { statusOf } from '../errors';

/** A string property holds at most 64 KiB (32K UTF-16 chars); larger text is split over parts. */
const PART_CHARS = 30_000;
const MAX_PARTS = 30; // ~900K chars: under the 1 MiB entity limit

export function textToProperties(prefix: string, text: string): Record<string, string | number> | undefined {
  const parts = Math.max(1, Math.ceil(text.length / PART_CHARS));
  if (parts > MAX_PARTS) return undefined;
  const props: Record<string, string | number> = { [`${prefix}Parts`]: parts };
  for (let i = 0; i < parts; i++) props[`${prefix}${i}`] = text.slice(i * PART_CHARS, (i + 1) * PART_CHARS);
  return props;
}

export function textFromProperties(prefix: string, entity: Record<string, unknown>): string {
  const parts = Number(entity[`${prefix}Parts`] ?? 0);
  let text = '';
  for (let i = 0; i < parts; i++) text += String(entity[`${prefix}${i}`] ?? '');
  return text;
}

/** Row and partition keys may not contain / \ # ? or control characters. */
export function escapeKey(key: string): string {
  let out = '';
  for (const c of key) {
    const code = c.charCodeAt(0);
    const forbidden = '/\\#?%'.includes(c) || code < 0x20 || (code >= 0x7f && code <= 0x9f);
    out += forbidden ? `%${code.toString(16).padStart(2, '0')}` : c;
  }
  return out;
}
export function unescapeKey(key: string): string {
  return key.replace(/%([0-9a-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

const ensured = new WeakSet<TableClient>();
export async function ensureTable(client: TableClient): Promise<void> {
  if (ensured.has(client)) return;
  try {
    await client.createTable();
  } catch (e) {
    if (statusOf(e) !== 409) throw e;
  }
  ensured.add(client);
}
