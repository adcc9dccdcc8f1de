/**
 * Per-entity key fields, and the record id built from them.
 *
 * Setting format (FNO_ENTITY_KEYS), flat so it fits one app setting:
 *
 *   Customer groups=CustomerGroupId; Sales order lines V2=dataAreaId,SalesOrderNumber,LineCreationSequenceNumber
 *
 * entities separated by `;`, the entity name and its key fields by `=`, key fields by `,`.
 * A JSON object works too: {"Customer groups": ["CustomerGroupId"]}. Entity and field names are
 * matched case-insensitively (F&O exports often write column headers in upper case).
 *
 * Record id: `<entity>:<field>=<value>;<field>=<value>` with the configured (canonical) names and
 * `%`, `:`, `;`, `=` percent-encoded inside names and values, so two different keys never give
 * the same id. The flow turns it into a record key with records.ts `recordKey(flow, id)`.
 */
import { z } from 'zod';
import { ConfigError } from '../errors';
import { boundedRaw, DEFAULT_MAX_RAW_CHARS, type EntityRow, type MalformedRow } from './parse/types';

export interface EntityKeyConfig {
  /** The entity's name as configured (canonical casing). */
  entity: string;
  fields: readonly string[];
}

export class EntityKeys {
  private readonly byName = new Map<string, EntityKeyConfig>();

  constructor(entries: readonly EntityKeyConfig[]) {
    for (const e of entries) {
      const k = e.entity.trim().toLowerCase();
      if (this.byName.has(k)) throw new ConfigError(`FNO_ENTITY_KEYS: entity ${e.entity} is listed twice`);
      this.byName.set(k, { entity: e.entity.trim(), fields: e.fields.map((f) => f.trim()) });
    }
  }

  /** The key configuration of an entity, or undefined when it has none. */
  get(entity: string): EntityKeyConfig | undefined {
    return this.byName.get(entity.trim().toLowerCase());
  }

  /** The configured entity names (canonical casing). */
  entities(): string[] {
    return [...this.byName.values()].map((e) => e.entity);
  }
}

const name = z
  .string()
  .trim()
  .min(1, 'a name is empty')
  .max(200, 'a name is longer than 200 characters')
  .refine((s) => ![...s].some((c) => c.charCodeAt(0) < 0x20), 'a name contains a control character');

const jsonForm = z.record(name, z.array(name).min(1, 'an entity needs at least one key field'));

/**
 * Parses FNO_ENTITY_KEYS. Throws ConfigError naming the setting and what is wrong.
 * An empty value is allowed and configures no entity.
 */
export function parseEntityKeysSetting(value: string, setting = 'FNO_ENTITY_KEYS'): EntityKeys {
  const text = value.trim();
  if (text === '') return new EntityKeys([]);
  const problems: string[] = [];
  let entries: EntityKeyConfig[] = [];
  if (text.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new ConfigError(`${setting}: starts with "{" but is not valid JSON`);
    }
    const r = jsonForm.safeParse(parsed);
    if (!r.success) throw new ConfigError(r.error.issues.map((i) => `${setting}: ${i.message}`));
    entries = Object.entries(r.data).map(([entity, fields]) => ({ entity, fields }));
  } else {
    for (const part of text.split(';')) {
      if (part.trim() === '') continue;
      const eq = part.indexOf('=');
      if (eq < 0) {
        problems.push(`${setting}: "${part.trim()}" has no "=" (expected Entity name=KeyField1,KeyField2)`);
        continue;
      }
      const entity = name.safeParse(part.slice(0, eq));
      const fields = part
        .slice(eq + 1)
        .split(',')
        .map((f) => name.safeParse(f));
      const bad = [entity, ...fields].find((r) => !r.success);
      if (bad && !bad.success) {
        problems.push(`${setting}: "${part.trim()}": ${bad.error.issues[0]?.message ?? 'invalid'}`);
        continue;
      }
      entries.push({ entity: entity.data!, fields: fields.map((f) => f.data!) });
    }
  }
  for (const e of entries) {
    const seen = new Set<string>();
    for (const f of e.fields) {
      if (seen.has(f.toLowerCase()))
        problems.push(`${setting}: entity ${e.entity} lists key field ${f} twice`);
      seen.add(f.toLowerCase());
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  try {
    return new EntityKeys(entries);
  } catch (e) {
    if (e instanceof ConfigError)
      throw new ConfigError(e.problems.map((p) => p.replace('FNO_ENTITY_KEYS', setting)));
    throw e;
  }
}

/**
 * Parses an allow-list setting (FNO_ALLOWED_EVENT_IDS, FNO_ALLOWED_ENTITIES): `*` allows
 * everything; otherwise names separated by `;` (the separator FNO_ENTITY_KEYS uses between
 * entities). An empty value allows nothing.
 */
export function parseAllowListSetting(value: string): '*' | string[] {
  const text = value.trim();
  if (text === '*') return '*';
  return text
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

const escapePart = (s: string) =>
  s.replace(/[%:;=]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export type RecordIdResult = { ok: true; id: string } | { ok: false; malformed: MalformedRow };

/**
 * The record id of a row from its entity's key fields. A row without the key configuration, or
 * with a key field missing or empty, is reported as malformed with its file and line.
 */
export function recordIdOf(
  row: EntityRow,
  keys: EntityKeys,
  maxRawChars: number = DEFAULT_MAX_RAW_CHARS,
): RecordIdResult {
  const malformed = (error: string): RecordIdResult => ({
    ok: false,
    malformed: {
      kind: 'malformed',
      entity: row.entity,
      file: row.file,
      line: row.line,
      error,
      raw: boundedRaw(JSON.stringify(row.fields), maxRawChars),
    },
  });
  const config = keys.get(row.entity);
  if (!config) return malformed(`entity ${row.entity} has no key fields configured (FNO_ENTITY_KEYS)`);
  const lowerNames = new Map<string, string>();
  for (const f of Object.keys(row.fields))
    if (!lowerNames.has(f.toLowerCase())) lowerNames.set(f.toLowerCase(), f);
  const parts: string[] = [];
  for (const field of config.fields) {
    const column = field in row.fields ? field : lowerNames.get(field.toLowerCase());
    const value = column === undefined ? undefined : row.fields[column];
    if (value === undefined) return malformed(`key field ${field} is missing`);
    if (value === null || value === '') return malformed(`key field ${field} is empty`);
    parts.push(`${escapePart(field)}=${escapePart(value)}`);
  }
  return { ok: true, id: `${escapePart(config.entity)}:${parts.join(';')}` };
}
