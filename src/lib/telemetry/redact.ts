/**
 * What may reach telemetry: never a secret, a credential, a SAS query string or a record
 * payload. Applied to every log line's message and properties and to every span attribute
 * (telemetry processors, src/functions/00-telemetry.ts), so a secret quoted by an error message
 * from a library is masked too.
 *
 *   - the values of the app's secret settings (and of any setting named like a password, key,
 *     secret, token or connection), wherever they appear;
 *   - `AccountKey=`, `SharedAccessKey=`, `Password=` parts of connection strings;
 *   - the query string of every URL (SAS tokens live there; the path is kept);
 *   - `Authorization: ...` / `Bearer ...` values;
 *   - properties named like a payload (payload, data, body, records, fields) or a secret: dropped.
 */
const SECRET_NAME = /(password|secret|key|token|connection|credential|signature|sas)/i;
const PAYLOAD_NAME = /^(payload|data|body|records|fields|raw)$/i;

let known: string[] = [];

/**
 * Remembers the secret values of an environment (the app's settings): the names flagged secret
 * plus every name that looks like one. Short values are skipped (masking "1" would mask digits).
 */
export function registerSecrets(
  env: Record<string, string | undefined>,
  secretNames: Iterable<string> = [],
): void {
  const names = new Set(secretNames);
  const values = new Set(known);
  for (const [name, value] of Object.entries(env)) {
    if (!value || value.length < 6) continue;
    if (names.has(name) || SECRET_NAME.test(name)) {
      values.add(value);
      // A connection string's parts, in case one is quoted alone.
      for (const part of value.split(';')) {
        const v = part.slice(part.indexOf('=') + 1);
        if (/^(AccountKey|SharedAccessKey|SharedAccessSignature|Password)=/i.test(part) && v.length >= 6)
          values.add(v);
      }
    }
  }
  // Longest first, so a value containing another is masked whole.
  known = [...values].sort((a, b) => b.length - a.length);
}

export function clearSecrets(): void {
  known = [];
}

export function redactText(text: string): string {
  let out = text;
  for (const s of known) if (out.includes(s)) out = out.split(s).join('[redacted]');
  return out
    .replace(/\b(AccountKey|SharedAccessKey|SharedAccessSignature|Password|pwd)=[^;\s"']+/gi, '$1=[redacted]')
    .replace(/(https?:\/\/[^\s?#"'<>]+)\?[^\s#"'<>]*/gi, '$1?[query redacted]')
    .replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g, '$1 [redacted]')
    .replace(/\b(sig|signature|client_secret|code|access_token)=[^&\s"']+/gi, '$1=[redacted]');
}

export type Fields = Record<string, string | number | boolean>;

/** Properties as flat, safe telemetry fields: scalars kept (text redacted), objects as redacted JSON. */
export function redactFields(props: Record<string, unknown> | undefined): Fields {
  const out: Fields = {};
  if (!props) return out;
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (PAYLOAD_NAME.test(k) || (SECRET_NAME.test(k) && !/^(recordKey|keyCount)$/i.test(k))) {
      out[k] = '[omitted]';
      continue;
    }
    if (typeof v === 'number' || typeof v === 'boolean') out[k] = v;
    else if (typeof v === 'bigint') out[k] = v.toString();
    else if (typeof v === 'string') out[k] = redactText(v);
    else
      out[k] = redactText(
        JSON.stringify(v, (_key, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) ?? '',
      );
  }
  return out;
}
