/**
 * The request shape the intake takes: only what it needs, so it works with the Functions
 * runtime's `HttpRequest` as is (headers with `get`, a web `ReadableStream` body), with a plain
 * `node:http` request adapted in a few lines, and in tests.
 */

/** A web ReadableStream, as far as the intake uses it. */
export interface ByteStreamReader {
  read(): Promise<{ done: boolean; value?: unknown }>;
  cancel(reason?: unknown): Promise<void>;
  releaseLock?(): void;
}
export interface ByteStream {
  getReader(): ByteStreamReader;
}

export type RequestBody = AsyncIterable<unknown> | ByteStream | Uint8Array | string | null | undefined;

/**
 * Header lookup. Either an object with `get(name)` (a Fetch `Headers`: repeated headers come
 * back joined with ", ") or a record of lower- or mixed-case names (arrays are joined the same
 * way).
 */
export type HeaderSource =
  { get(name: string): string | null } | Readonly<Record<string, string | readonly string[] | undefined>>;

export interface WebhookRequest {
  method: string;
  /** The request URL (absolute or path); the intake only reports its path. */
  url: string;
  headers: HeaderSource;
  body: RequestBody;
}

/** Reads one header, case-insensitively; repeated headers are joined with ", " (Fetch semantics). */
export type HeaderReader = (name: string) => string | undefined;

export function headerReader(source: HeaderSource): HeaderReader {
  if (typeof (source as { get?: unknown }).get === 'function') {
    const h = source as { get(name: string): string | null };
    return (name) => h.get(name) ?? undefined;
  }
  const lower = new Map<string, string>();
  for (const [k, v] of Object.entries(source as Record<string, string | readonly string[] | undefined>)) {
    if (v === undefined) continue;
    const key = k.toLowerCase();
    const text = typeof v === 'string' ? v : v.join(', ');
    const prev = lower.get(key);
    lower.set(key, prev === undefined ? text : `${prev}, ${text}`);
  }
  return (name) => lower.get(name.toLowerCase());
}
