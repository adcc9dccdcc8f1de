/**
 * Child process of the F&O CSV benchmark: downloads one export from the simulator through the
 * safe downloader and parses it with the export parser, building each row's record id, so the
 * memory figure is that of the download + parse side alone (the simulator runs in the parent).
 *
 * Input: env BENCH_FINOPS = JSON {url, caPem}. Output: one JSON line on stdout.
 */
import { SafeDownloader } from '../src/lib/finops/download';
import { parseEntityKeysSetting, recordIdOf } from '../src/lib/finops/entity-keys';
import { parseExport } from '../src/lib/finops/parse';
import { SafeHttpClient } from '../src/lib/finops/safe-http';

export interface FinopsCsvChildResult {
  rows: number;
  malformed: number;
  bytes: number;
  seconds: number;
  /** The kernel's high-water mark of the child's resident set (process.resourceUsage().maxRSS). */
  peakRssBytes: number;
  /** Highest sampled RSS (every 20 ms), for comparison. */
  sampledPeakRssBytes: number;
}

export async function downloadAndParse(url: string, caPem: string): Promise<FinopsCsvChildResult> {
  let sampled = process.memoryUsage().rss;
  const timer = setInterval(() => {
    sampled = Math.max(sampled, process.memoryUsage().rss);
  }, 20);
  const http = new SafeHttpClient({
    timeoutMs: 60_000,
    unsafeTestOnly: { allowLoopback: true, extraCaPem: caPem },
  });
  const downloader = new SafeDownloader({ http, allowedHosts: ['127.0.0.1'], maxBytes: 4 * 1024 ** 3 });
  const keys = parseEntityKeysSetting('Customers V3=dataAreaId,CUSTOMERACCOUNT');
  const t0 = performance.now();
  const dl = await downloader.download(url);
  let bytes = 0;
  dl.body.on('data', (c: Buffer) => (bytes += c.length));
  let rows = 0;
  let malformed = 0;
  for await (const item of parseExport(dl.body, { entity: 'Customers V3', fileName: dl.fileName })) {
    if (item.kind === 'row' && recordIdOf(item, keys).ok) rows++;
    else malformed++;
  }
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  http.close();
  sampled = Math.max(sampled, process.memoryUsage().rss);
  return {
    rows,
    malformed,
    bytes,
    seconds,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    sampledPeakRssBytes: sampled,
  };
}

if (require.main === module) {
  const input = JSON.parse(process.env.BENCH_FINOPS ?? '{}') as { url: string; caPem: string };
  downloadAndParse(input.url, input.caPem)
    .then((r) => process.stdout.write(`${JSON.stringify(r)}\n`))
    .catch((e: unknown) => {
      process.stderr.write(
        `finops-csv-child failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
      );
      process.exit(1);
    });
}
