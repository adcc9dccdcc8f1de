/**
 * The data the Functions host hands a language worker for one invocation, in the shapes of the
 * host's RPC messages (`RpcTypedData`). The local host builds these and lets the app's own
 * `@azure/functions` package turn them into the handler's arguments through the programming
 * model it registered (`getInvocationModel(...).getArguments()`), exactly as the worker does:
 * strings that parse as JSON become values, trigger metadata keys are camel-cased, timer inputs
 * are camel-cased, an `http` input becomes an `HttpRequest`. So a handler sees in the local host
 * what it would see in Azure, and a difference in that conversion shows up in a test here.
 */
import type { HttpResponseInit } from '@azure/functions';

export type RpcTypedData =
  { string: string } | { json: string } | { bytes: Uint8Array } | { http: RpcHttpRequest };

export interface RpcHttpRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  query: Record<string, string>;
  params: Record<string, string>;
  body?: { bytes: Uint8Array };
}

/** One invocation's trigger input and trigger metadata, as the host sends them. */
export interface RpcInvocation {
  input: RpcTypedData;
  triggerMetadata: Record<string, RpcTypedData>;
}

/** A value as the host serializes a binding value: text as a string, bytes as bytes, the rest as JSON. */
export function toRpcTypedData(value: unknown): RpcTypedData {
  if (typeof value === 'string') return { string: value };
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return { bytes: value };
  return { json: JSON.stringify(value ?? null) };
}

/** The host's ToRpc of trigger metadata: null values are skipped, strings stay strings, the rest is JSON. */
export function toRpcTriggerMetadata(bindingData: Record<string, unknown>): Record<string, RpcTypedData> {
  const out: Record<string, RpcTypedData> = {};
  for (const [key, value] of Object.entries(bindingData)) {
    if (value === null || value === undefined) continue;
    out[key] = typeof value === 'string' ? { string: value } : { json: JSON.stringify(value) };
  }
  return out;
}

/** The HTTP response the worker returns (`RpcHttp`), as `toRpcHttp` of @azure/functions builds it. */
export interface RpcHttpResponse {
  statusCode?: string;
  headers?: Record<string, string>;
  body?: { bytes?: Uint8Array; string?: string; json?: string };
  cookies?: unknown[];
}

/** Back from the worker's `RpcHttp` to a response the local HTTP server writes (cookies are not carried). */
export function fromRpcHttpResponse(rpc: RpcHttpResponse | undefined): HttpResponseInit {
  if (!rpc) return { status: 204 };
  const b = rpc.body;
  const body = b?.bytes !== undefined ? Buffer.from(b.bytes) : (b?.string ?? b?.json);
  return { status: Number(rpc.statusCode ?? 200), headers: rpc.headers ?? {}, body };
}

function camelKey(key: string): string {
  return key.charAt(0).toLowerCase() + key.slice(1);
}

function camelValue(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) return v.map(camelValue);
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [camelKey(k), camelValue(x)]));
}

function fromTypedData(data: RpcTypedData): unknown {
  if ('json' in data) return JSON.parse(data.json);
  if ('bytes' in data) return Buffer.from(data.bytes);
  if ('http' in data)
    throw new Error('workerView does not convert http inputs (the local host uses the programming model)');
  try {
    return JSON.parse(data.string);
  } catch {
    return data.string;
  }
}

/**
 * What a queue handler receives for `rpc`, for callers that drive a trigger without the local
 * host (the pipeline harness, benchmarks): the worker's `fromRpcTypedData` and
 * `fromRpcTriggerMetadata` (JSON-parse strings when possible, camel-case metadata keys). The
 * local host itself uses the real package's conversion; test/pipeline/local-host.test.ts checks
 * that this one gives the same.
 */
export function workerView(rpc: RpcInvocation): { input: unknown; triggerMetadata: Record<string, unknown> } {
  const triggerMetadata: Record<string, unknown> = {};
  for (const [key, data] of Object.entries(rpc.triggerMetadata))
    triggerMetadata[camelKey(key)] = camelValue(fromTypedData(data));
  return { input: fromTypedData(rpc.input), triggerMetadata };
}

/** A driver's `invoke` for a handler that takes what the worker would hand it (see workerView). */
export function asWorker(
  handler: (input: unknown, triggerMetadata: Record<string, unknown>) => Promise<unknown>,
): (rpc: RpcInvocation) => Promise<unknown> {
  return (rpc) => {
    const w = workerView(rpc);
    return handler(w.input, w.triggerMetadata);
  };
}
