/**
 * Child process of the F&O CSV benchmark, so the memory figure is that of the app side alone (the
 * simulator runs in the parent). It processes one export END TO END on the app's code path:
 *
 *   BusinessEventFlow.collect (SafeDownloader over HTTPS → streaming CSV parser → record ids by
 *   entity key fields, version = the event's ControlNumber)
 *   → Chunker (the dispatcher's: SYNC_RECORDS_PER_MESSAGE records, the transport's byte cap)
 *   → each chunk as the records message's JSON, parsed back with the applier's zod schema
 *   → target.apply(targetRecordOf(...)) for every record (a conditional write, as the applier does).
 *
 * Not in the figure: the queue medium and the ledger (Azure Storage / Service Bus round trips,
 * measured by the throughput section) and the target's own storage (see CompactVersionTarget).
 *
 * Input: env BENCH_FINOPS = JSON {url, caPem, controlNumber}. Output: one JSON line on stdout.
 */
import { createHash } from 'node:crypto';
import { Chunker, wireBytes } from '../src/lib/batch/chunker';
import { toWire } from '../src/lib/batch/dispatch';
import type { CollectedItem } from '../src/lib/batch/flow';
import { recordsMessageSchema } from '../src/lib/batch/messages';
import { SafeDownloader } from '../src/lib/finops/download';
import { readFinopsSettings } from '../src/lib/finops/settings';
import { SafeHttpClient } from '../src/lib/finops/safe-http';
import { BusinessEventFlow } from '../src/lib/flows/business-event/flow';
import type { ApplyOutcome, TargetRecord, TargetSystem } from '../src/lib/ports';
import { targetRecordOf, type WireRecord } from '../src/lib/records';

export interface FinopsCsvChildResult {
  rows: number;
  malformed: number;
  messages: number;
  applied: number;
  seconds: number;
  /** The kernel's high-water mark of the child's resident set (process.resourceUsage().maxRSS). */
  peakRssBytes: number;
  /** Highest sampled RSS (every 20 ms), for comparison. */
  sampledPeakRssBytes: number;
}

/**
 * Conditional writes against the highest version seen per key, as a target must do them. The
 * versions live in a fixed open-addressing table of 64-bit key hashes (2^21 slots: 32 MB, counted
 * in the figure), because a Map of a million keys would measure the JS heap of a stand-in target
 * (~250 MB) rather than the app.
 */
class CompactVersionTarget implements TargetSystem {
  private readonly keys: BigUint64Array;
  private readonly versions: BigInt64Array;
  private readonly mask: bigint;
  constructor(bits = 21) {
    this.keys = new BigUint64Array(2 ** bits);
    this.versions = new BigInt64Array(2 ** bits);
    this.mask = BigInt(2 ** bits - 1);
  }
  async apply(r: TargetRecord): Promise<ApplyOutcome> {
    const h = createHash('sha256').update(r.key).digest().readBigUInt64BE(0) | 1n; // 0 = empty slot
    let i = Number(h & this.mask);
    while (this.keys[i] !== 0n && this.keys[i] !== h) i = (i + 1) & Number(this.mask);
    if (this.keys[i] === h && this.versions[i]! >= r.version) return 'skipped';
    this.keys[i] = h;
    this.versions[i] = r.version;
    return 'applied';
  }
}

const quiet = { info() {}, warn() {}, error() {} };
const RECORDS_PER_MESSAGE = 20;
const MAX_MESSAGE_BYTES = 64 * 1024; // a storage-queue message

export async function processExport(
  url: string,
  caPem: string,
  controlNumber: string,
): Promise<FinopsCsvChildResult> {
  let sampled = process.memoryUsage().rss;
  const timer = setInterval(() => {
    sampled = Math.max(sampled, process.memoryUsage().rss);
  }, 20);
  const http = new SafeHttpClient({
    timeoutMs: 60_000,
    unsafeTestOnly: { allowLoopback: true, extraCaPem: caPem },
  });
  const finops = readFinopsSettings({
    FNO_ENTITY_KEYS: 'Customers V3=dataAreaId,CUSTOMERACCOUNT',
    FNO_DOWNLOAD_ALLOWED_HOSTS: '127.0.0.1',
    FNO_DOWNLOAD_MAX_BYTES: String(4 * 1024 ** 3),
  });
  const target = new CompactVersionTarget();
  const flow = new BusinessEventFlow({
    name: 'erp',
    settings: {
      maxBatch: 5000,
      recordsPerMessage: RECORDS_PER_MESSAGE,
      maxAttempts: 5,
      planLeaseSeconds: 600,
      stallSeconds: 1800,
      poisonPolicy: 'quarantine',
      retryBackoffMs: [0],
      planDeadlineSeconds: 420,
    },
    target,
    finops,
    downloader: new SafeDownloader({
      http,
      allowedHosts: finops.download.allowedHosts,
      maxBytes: 4 * 1024 ** 3,
    }),
  });
  const event = {
    BusinessEventId: 'DataExportBusinessEvent',
    ControlNumber: controlNumber,
    EventId: 'bench-event',
    DownloadURL: url,
    EntityName: 'Customers V3',
  };
  const t0 = performance.now();
  const collection = await flow.collect({
    stream: 'erp:ev-bench',
    input: { kind: 'event', event },
    flowState: undefined,
    signal: new AbortController().signal,
    log: quiet,
  });
  let rows = 0;
  let malformed = 0;
  let messages = 0;
  let applied = 0;
  const chunker = new Chunker(RECORDS_PER_MESSAGE, MAX_MESSAGE_BYTES);
  const send = async (records: WireRecord[]) => {
    messages++;
    const text = JSON.stringify({
      type: 'records',
      stream: 'erp:ev-bench',
      batchId: 'b',
      chunk: messages,
      records,
    });
    const msg = recordsMessageSchema.parse(JSON.parse(text));
    for (const r of msg.records) if ((await target.apply(targetRecordOf('erp', r))) === 'applied') applied++;
  };
  for await (const item of collection.items as AsyncIterable<CollectedItem>) {
    if (item.kind === 'malformed') {
      malformed++;
      continue;
    }
    rows++;
    const wire = toWire(item);
    const closed = chunker.add(wire, wireBytes(wire));
    if (closed) await send(closed);
  }
  const last = chunker.flush();
  if (last) await send(last);
  collection.end();
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  http.close();
  sampled = Math.max(sampled, process.memoryUsage().rss);
  return {
    rows,
    malformed,
    messages,
    applied,
    seconds,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    sampledPeakRssBytes: sampled,
  };
}

if (require.main === module) {
  const input = JSON.parse(process.env.BENCH_FINOPS ?? '{}') as {
    url: string;
    caPem: string;
    controlNumber: string;
  };
  processExport(input.url, input.caPem, input.controlNumber ?? '5637144576')
    .then((r) => process.stdout.write(`${JSON.stringify(r)}\n`))
    .catch((e: unknown) => {
      process.stderr.write(
        `finops-csv-child failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
      );
      process.exit(1);
    });
}
