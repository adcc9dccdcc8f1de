/** Terminal rendering of the CLI's results: health per flow, quarantine entries, progress. */
import { MultiBar, Presets, SingleBar } from 'cli-progress';
import type { StoredQuarantineEntry } from '../lib/batch/quarantine';
import type { FlowReport } from '../lib/health';

export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** Progress bars only on a terminal; lines elsewhere. */
  isTTY: boolean;
  /** Where a progress bar draws (stderr, so that stdout stays parseable). */
  barStream?: NodeJS.WritableStream;
}

const ago = (s: number | null | undefined) =>
  s === null || s === undefined
    ? 'never'
    : s < 120
      ? `${s}s ago`
      : s < 7200
        ? `${Math.round(s / 60)} min ago`
        : `${(s / 3600).toFixed(1)} h ago`;

/** A static bar for a snapshot (status): `[#####-----] 50%`. */
export function bar(fraction: number, width = 24): string {
  const f = Math.max(0, Math.min(1, fraction));
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${Math.round(f * 100)}%`;
}

export function renderFlow(h: FlowReport): string[] {
  const lines: string[] = [];
  const cursor = h.cursor === undefined ? '' : `  cursor ${String(h.cursor ?? '(none)')}`;
  const where = typeof h.cursorLocation === 'string' ? ` (${h.cursorLocation})` : '';
  lines.push(`${h.flow}  ${h.status.toUpperCase()}${cursor}${where}`);
  if (h.batch) {
    const b = h.batch;
    lines.push(
      `  batch     ${b.id} ${b.state}, ${b.done}/${b.messages ?? '?'} messages, ${b.records ?? '?'} records ` +
        `(applied ${b.applied}, skipped ${b.skipped}, quarantined ${b.quarantined}), started ${ago(b.ageSeconds)}`,
    );
    if (b.progress !== null) lines.push(`            ${bar(b.progress)}`);
  } else lines.push('  batch     none in flight');
  if (h.planning) lines.push(`  planning  since ${h.planning.since} (${h.planning.ageSeconds}s)`);
  const lag = h.lag;
  lines.push(
    `  lag       caught up ${ago(lag.seconds)}${lag.maxSeconds ? ` (alert over ${lag.maxSeconds}s)` : ''}; cursor last moved ${ago(lag.cursorAgeSeconds)}`,
  );
  lines.push(
    `  records   applied ${h.totals.applied}, skipped as not newer ${h.totals.skipped}, quarantined ${h.totals.quarantined} in ${h.totals.batches} batches`,
  );
  lines.push(`  quarantine ${h.quarantine.count} entr${h.quarantine.count === 1 ? 'y' : 'ies'}`);
  lines.push(`  last success ${h.lastCompletedAt ?? 'never'}`);
  if (h.lastError)
    lines.push(
      `  last error   ${h.lastError.at ?? ''} ${h.lastError.kind ? `[${h.lastError.kind}] ` : ''}${h.lastError.message}`,
    );
  for (const p of h.problems) lines.push(`  ! ${p}`);
  return lines;
}

export function renderEntry(e: StoredQuarantineEntry, full = false): string[] {
  const lines = [
    `${e.id}`,
    `  ${e.kind} record=${e.recordId ?? '?'} version=${e.version ?? '?'} attempts=${e.attempts} policy=${e.policy} at=${e.quarantinedAt}`,
    `  error: ${e.error}`,
  ];
  if (full) {
    lines.push(`  stream=${e.stream ?? '-'} batch=${e.batchId ?? '-'} message=${e.chunk ?? '-'}`);
    lines.push(
      `  payload: ${e.payload.length > 4000 ? `${e.payload.slice(0, 4000)}... (${e.payload.length} chars)` : e.payload}`,
    );
  }
  return lines;
}

/** A progress reporter: a cli-progress bar on a terminal, a line per step elsewhere (quiet with --json). */
export function progressReporter(io: Io, label: string, json: boolean) {
  let b: SingleBar | undefined;
  let lastLine = -1;
  return {
    update(done: number, total: number) {
      if (io.isTTY) {
        if (!b) {
          b = new SingleBar(
            {
              format: `${label} {bar} {value}/{total}`,
              stream: io.barStream ?? process.stderr,
              hideCursor: true,
            },
            Presets.shades_classic,
          );
          b.start(total, done);
        } else {
          b.setTotal(total);
          b.update(done);
        }
      } else if (!json && done !== lastLine) {
        lastLine = done;
        io.err(`${label} ${done}/${total}`);
      }
    },
    stop() {
      b?.stop();
    },
  };
}

/** One line of `status --watch` for a flow: what the progress bar's payload shows. */
export function watchLine(h: FlowReport): string {
  const b = h.batch;
  const batch = b
    ? `${b.state} ${b.done}/${b.messages ?? '?'} msgs, applied ${b.applied} skipped ${b.skipped}`
    : h.planning
      ? `planning ${h.planning.ageSeconds}s`
      : 'idle';
  return `${h.status.toUpperCase()} cursor ${String(h.cursor ?? '-')} | ${batch} | lag ${h.lag.seconds ?? '?'}s | quarantine ${h.quarantine.count}`;
}

/** Live bars for `status --watch` on a terminal: one per flow, the batch in flight's messages. */
export function watchBars(io: Io) {
  const multi = new MultiBar(
    {
      format: '{flow} {bar} {value}/{total} {line}',
      stream: io.barStream ?? process.stderr,
      hideCursor: true,
      clearOnComplete: false,
    },
    Presets.shades_classic,
  );
  const bars = new Map<string, SingleBar>();
  return {
    show(h: FlowReport) {
      const total = h.batch?.messages ?? 0;
      const payload = { flow: h.flow.padEnd(12), line: watchLine(h) };
      let b = bars.get(h.flow);
      if (!b) bars.set(h.flow, (b = multi.create(Math.max(total, 1), 0, payload)));
      b.setTotal(Math.max(total, 1));
      b.update(h.batch ? h.batch.done : 0, payload);
    },
    stop() {
      multi.stop();
    },
  };
}
