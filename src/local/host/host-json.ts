/**
 * The parts of host.json the local host honours, with the Functions host's defaults.
 */
import { readFileSync } from 'node:fs';

export interface QueuesHostSettings {
  batchSize: number;
  newBatchThreshold: number;
  maxDequeueCount: number;
  visibilityTimeoutMs: number;
  maxPollingIntervalMs: number;
  messageEncoding: 'base64' | 'none';
}

export interface HostSettings {
  /**
   * host.json `functionTimeout` in ms; undefined = unbounded (`-1`). When host.json does not set
   * it: 30 minutes, the default of the Flex Consumption, Premium and Dedicated plans (the
   * legacy Consumption plan's default is 5 minutes).
   */
  functionTimeoutMs: number | undefined;
  queues: QueuesHostSettings;
  serviceBus: { maxConcurrentCalls: number; maxAutoLockRenewalDurationMs: number };
  http: { routePrefix: string };
}

/** Parses a .NET TimeSpan as host.json writes it: `[d.]hh:mm:ss[.fff]`. */
export function parseTimeSpanMs(value: string): number {
  const m = /^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$/.exec(value.trim());
  if (!m) throw new Error(`"${value}" is not a TimeSpan (expected [d.]hh:mm:ss[.fff])`);
  const [, d, h, min, s, frac] = m;
  const fraction = frac ? Number(`0.${frac}`) : 0;
  return ((Number(d ?? 0) * 24 + Number(h)) * 3600 + Number(min) * 60 + Number(s) + fraction) * 1000;
}

type Json = Record<string, unknown>;

const asObject = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});

function positiveInt(section: Json, key: string, fallback: number, min = 1): number {
  const v = section[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    throw new Error(`host.json: ${key} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return v;
}

function timeSpan(section: Json, key: string, fallbackMs: number): number {
  const v = section[key];
  if (v === undefined) return fallbackMs;
  if (typeof v !== 'string') throw new Error(`host.json: ${key} must be a TimeSpan string`);
  return parseTimeSpanMs(v);
}

export const DEFAULT_FUNCTION_TIMEOUT_MS = 30 * 60_000;

function functionTimeout(root: Json): number | undefined {
  const v = root.functionTimeout;
  if (v === undefined) return DEFAULT_FUNCTION_TIMEOUT_MS;
  if (v === '-1' || v === -1) return undefined;
  if (typeof v !== 'string') throw new Error('host.json: functionTimeout must be a TimeSpan string or "-1"');
  const ms = parseTimeSpanMs(v);
  if (ms <= 0) throw new Error('host.json: functionTimeout must be positive (or "-1" for unbounded)');
  return ms;
}

export function parseHostJson(json: unknown): HostSettings {
  const root = asObject(json);
  const extensions = asObject(root.extensions);
  const q = asObject(extensions.queues);
  const batchSize = positiveInt(q, 'batchSize', 16);
  const encoding = q.messageEncoding ?? 'base64';
  if (encoding !== 'base64' && encoding !== 'none')
    throw new Error(`host.json: messageEncoding must be "base64" or "none", got ${JSON.stringify(encoding)}`);
  const http = asObject(extensions.http);
  const sb = asObject(extensions.serviceBus);
  const routePrefix = http.routePrefix === undefined ? 'api' : String(http.routePrefix);
  return {
    functionTimeoutMs: functionTimeout(root),
    queues: {
      batchSize,
      newBatchThreshold: positiveInt(q, 'newBatchThreshold', Math.floor(batchSize / 2), 0),
      maxDequeueCount: positiveInt(q, 'maxDequeueCount', 5),
      visibilityTimeoutMs: timeSpan(q, 'visibilityTimeout', 0),
      maxPollingIntervalMs: timeSpan(q, 'maxPollingInterval', 60_000),
      messageEncoding: encoding,
    },
    serviceBus: {
      maxConcurrentCalls: positiveInt(sb, 'maxConcurrentCalls', 16),
      maxAutoLockRenewalDurationMs: timeSpan(sb, 'maxAutoLockRenewalDuration', 5 * 60_000),
    },
    http: { routePrefix: routePrefix.replace(/^\/+|\/+$/g, '') },
  };
}

export function readHostJson(path: string): HostSettings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read host.json at ${path}: ${(e as Error).message}`);
  }
  return parseHostJson(JSON.parse(text));
}
