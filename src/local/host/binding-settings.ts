/**
 * Resolving app settings the way the Functions host does for bindings: `%NAME%` placeholders in
 * binding properties, and `connection` names that point at a setting.
 */

export type SettingsLookup = (name: string) => string | undefined;

/** Replaces every `%NAME%` with the setting's value; `%%` is a literal `%`. Throws on an unset name. */
export function resolvePlaceholders(value: string, lookup: SettingsLookup, where: string): string {
  return value.replace(/%([^%]*)%/g, (_m, name: string) => {
    if (name === '') return '%';
    const resolved = lookup(name);
    if (resolved === undefined)
      throw new Error(`${where}: app setting "${name}" (referenced as %${name}%) is not set`);
    return resolved;
  });
}

/** Properties that hold setting names or binding plumbing, never resolved. */
const NOT_RESOLVED = new Set(['name', 'type', 'direction', 'connection']);

/** A copy of a binding with `%NAME%` resolved in its string properties. */
export function resolveBinding(
  binding: Record<string, unknown>,
  lookup: SettingsLookup,
  where: string,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(binding)) {
    out[key] =
      typeof value === 'string' && !NOT_RESOLVED.has(key)
        ? resolvePlaceholders(value, lookup, `${where} (${key})`)
        : value;
  }
  return out;
}

export interface ResolvedConnection {
  settingName: string;
  connectionString?: string;
  /** `<connection>__fullyQualifiedNamespace` / `__serviceUri` style identity-based settings. */
  identityProperties: Record<string, string>;
}

/** Looks up a binding's `connection` setting (or its `__` identity-based variant). */
export function resolveConnection(
  connection: unknown,
  defaultName: string,
  lookup: SettingsLookup,
  listNames: () => string[],
): ResolvedConnection {
  const settingName = typeof connection === 'string' && connection !== '' ? connection : defaultName;
  const identityProperties: Record<string, string> = {};
  const prefix = `${settingName}__`;
  for (const name of listNames()) {
    if (name.startsWith(prefix)) {
      const v = lookup(name);
      if (v !== undefined) identityProperties[name.slice(prefix.length)] = v;
    }
  }
  const direct = lookup(settingName);
  return { settingName, connectionString: direct || undefined, identityProperties };
}
