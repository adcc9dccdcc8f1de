/**
 * The Service Bus queue properties infra gives the app's queues, read from
 * `infra/app/servicebus.bicep`, so that every test creates its queues on the Service Bus test
 * server exactly as they exist in Azure (the test server creates nothing on demand).
 *
 * The reader is deliberately small: it takes the `properties: { ... }` block of the
 * `Microsoft.ServiceBus/namespaces/queues` resource, whose values must be literals (bool, int,
 * quoted ISO 8601 duration) or `var`s holding an int literal, and the namespace's sku tier. It
 * throws when the file no longer has that shape, so a change in infra cannot silently leave the
 * tests on other properties.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { QueueOptions, ServiceBusTier } from './servicebus-server';

const BICEP = path.join(__dirname, '..', '..', 'infra', 'app', 'servicebus.bicep');

/** An ISO 8601 duration as ARM takes it (`P14D`, `PT5M`, `PT1H30M`, `PT0.5S`), in ms. */
export function isoDurationMs(value: string): number {
  const m = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(value);
  if (!m || value === 'P' || value.endsWith('T')) throw new Error(`not an ISO 8601 duration: ${value}`);
  const [, d, h, min, s] = m;
  return (((Number(d ?? 0) * 24 + Number(h ?? 0)) * 60 + Number(min ?? 0)) * 60 + Number(s ?? 0)) * 1000;
}

export interface InfraServiceBus {
  tier: ServiceBusTier;
  queue: QueueOptions;
}

export function readInfraServiceBus(file = BICEP): InfraServiceBus {
  const text = readFileSync(file, 'utf8').replace(/(^|\s)\/\/.*$/gm, '$1');
  const tierMatch = /sku:\s*\{[^}]*tier:\s*'(\w+)'/.exec(text);
  if (!tierMatch) throw new Error(`${file}: no namespace sku tier`);
  const tier = tierMatch[1]!.toLowerCase();
  if (tier !== 'standard' && tier !== 'premium') throw new Error(`${file}: unsupported tier ${tier}`);

  const at = text.indexOf("'Microsoft.ServiceBus/namespaces/queues@");
  if (at < 0) throw new Error(`${file}: no queues resource`);
  const open = text.indexOf('properties: {', at);
  const close = text.indexOf('}', open);
  if (open < 0 || close < 0) throw new Error(`${file}: no properties block in the queues resource`);
  const props = new Map<string, string>();
  for (const line of text.slice(open + 'properties: {'.length, close).split('\n')) {
    const kv = /^\s*(\w+):\s*(.+?)\s*$/.exec(line);
    if (kv) props.set(kv[1]!, kv[2]!);
  }
  const value = (key: string): string | undefined => {
    const v = props.get(key);
    if (v === undefined || /^'.*'$/.test(v) || /^(true|false|\d+)$/.test(v)) return v?.replace(/^'|'$/g, '');
    const decl = new RegExp(`^var\\s+${v}\\s*=\\s*(\\d+|true|false|'[^']*')\\s*$`, 'm').exec(text);
    if (!decl) throw new Error(`${file}: ${key}: ${v} is neither a literal nor a var holding one`);
    return decl[1]!.replace(/^'|'$/g, '');
  };
  const bool = (key: string) => (value(key) === undefined ? undefined : value(key) === 'true');
  const duration = (key: string) => (value(key) === undefined ? undefined : isoDurationMs(value(key)!));
  const int = (key: string) => (value(key) === undefined ? undefined : Number(value(key)));
  if (bool('requiresSession') || bool('enablePartitioning'))
    throw new Error(`${file}: sessions and partitioning are not modelled by the Service Bus test server`);
  const queue: QueueOptions = {
    maxDeliveryCount: int('maxDeliveryCount'),
    lockDurationMs: duration('lockDuration'),
    requiresDuplicateDetection: bool('requiresDuplicateDetection'),
    duplicateDetectionWindowMs: duration('duplicateDetectionHistoryTimeWindow'),
    defaultMessageTimeToLiveMs: duration('defaultMessageTimeToLive'),
    deadLetteringOnMessageExpiration: bool('deadLetteringOnMessageExpiration'),
    maxMessageSizeInKilobytes: int('maxMessageSizeInKilobytes'),
  };
  for (const k of Object.keys(queue) as (keyof QueueOptions)[]) if (queue[k] === undefined) delete queue[k];
  return { tier, queue };
}

/** The queue options infra gives the app's queues, with test-only overrides (e.g. a shorter lock). */
export function infraQueueOptions(overrides: QueueOptions = {}): QueueOptions {
  return { ...readInfraServiceBus().queue, ...overrides };
}
