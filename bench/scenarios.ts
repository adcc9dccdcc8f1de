/** The four measurements of `npm run bench`. Each cleans up what it created in Azurite. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { loadConfig } from '../src/lib/config';
import { tableClient } from '../src/lib/storage/clients';
import { TableTarget } from '../src/lib/targets/table-target';
import type { FlowfinitySimulator } from '../src/local/flowfinity-simulator';
import type { TargetRecord } from '../src/lib/ports';
import { parseTimerSchedule, TimerDriver } from '../src/local/host/timer-driver';
import {
  BenchPipeline,
  benchEnv,
  cleanupRun,
  CpuMeter,
  LatencyTarget,
  lastVersion,
  makeTarget,
  shortId,
  VIEW,
  type TargetKind,
} from './harness';
import type { PlanChildResult } from './plan-child';
import type { CountingProxy, Purpose } from './proxy';
import { runTutorialFlow } from './tutorial-flow';
import { Chunker } from '../src/lib/batch/chunker';
import { toWire } from '../src/lib/batch/dispatch';

// ---- 1. throughput ------------------------------------------------------------------------------

export interface ThroughputResult {
  impl: string;
  target: TargetKind;
  records: number;
  concurrency: number;
  maxBatch?: number;
  pollIntervalMs?: number;
  /** Start → cursor at the last record (the backlog is committed). */
  committedMs: number;
  /** Start → last target write. */
  appliedMs: number;
  recordsPerSec: number;
  batches: number;
  errors: number;
  /** CPU per record: this process (app + simulator) and the Azurite child. */
  cpuMsPerRecord: { bench: number; azurite: number };
  /** Time the target had no write in flight between the first and the last write (batch boundaries). */
  targetIdleMs?: number;
}

const perRecord = (cpu: { benchMs: number; azuriteMs: number }, n: number) => ({
  bench: cpu.benchMs / n,
  azurite: cpu.azuriteMs / n,
});

export async function syncbridgeThroughput(o: {
  connectionString: string;
  sim: FlowfinitySimulator;
  concurrency: number;
  latencyMs: number;
  pollIntervalMs: number;
  maxBatch: number;
  target?: TargetKind;
  postgresUrl?: string;
  /** More settings of the run (e.g. SYNC_RECORDS_PER_MESSAGE). */
  env?: Record<string, string>;
}): Promise<ThroughputResult> {
  const records = o.sim.size;
  const final = lastVersion(o.sim);
  const p = new BenchPipeline({
    connectionString: o.connectionString,
    sim: o.sim,
    concurrency: o.concurrency,
    targetLatencyMs: o.latencyMs,
    pollIntervalMs: o.pollIntervalMs,
    env: { SYNC_MAX_BATCH: String(o.maxBatch), ...o.env },
    target: o.target,
    postgresUrl: o.postgresUrl,
  });
  try {
    await p.start();
    await sleep(200);
    const cpu = new CpuMeter();
    const t0 = Date.now();
    const first = await p.tick(); // one timer tick; full batches chain by re-poll
    if (first.kind !== 'planned') throw new Error(`first tick did not plan: ${JSON.stringify(first)}`);
    const committedAt = await p.cursor.reached(final, 15 * 60_000);
    const appliedAt = p.target.lastWriteAt;
    const used = cpu.elapsed();
    await p.settle();
    if (p.target.applied !== records)
      throw new Error(
        `syncbridge applied ${p.target.applied} of ${records} records (${p.target.skipped} skipped)`,
      );
    return {
      impl: o.target === 'postgres' ? 'syncbridge → PostgreSQL' : 'syncbridge',
      target: o.target ?? 'table',
      records,
      concurrency: o.concurrency,
      maxBatch: o.maxBatch,
      pollIntervalMs: o.pollIntervalMs,
      committedMs: committedAt - t0,
      appliedMs: appliedAt - t0,
      recordsPerSec: records / ((committedAt - t0) / 1000),
      batches: p.cursor.writes.length,
      errors: p.log.errors.length,
      cpuMsPerRecord: perRecord(used, records),
      targetIdleMs: p.target.idleMs,
    };
  } finally {
    await p.stop();
    await p.cleanup();
  }
}

export async function tutorialThroughput(o: {
  connectionString: string;
  sim: FlowfinitySimulator;
  latencyMs: number;
  target?: TargetKind;
}): Promise<ThroughputResult> {
  const id = shortId();
  const container = BlobServiceClient.fromConnectionString(o.connectionString).getContainerClient(
    `tutorial-${id}`,
  );
  const tableName = `tut${id}`;
  const target = new LatencyTarget(
    makeTarget(o.target ?? 'table', o.connectionString, tableName),
    o.latencyMs,
  );
  await target.ensureReady();
  try {
    const cpu = new CpuMeter();
    const run = await runTutorialFlow({
      viewUrl: o.sim.viewUrl,
      onBehalfOf: 'admin',
      username: o.sim.username,
      password: o.sim.password,
      container,
      target,
      viewName: VIEW,
    });
    const used = cpu.elapsed();
    if (target.applied !== o.sim.size) throw new Error(`tutorial applied ${target.applied} of ${o.sim.size}`);
    const ms = run.finishedAt - run.startedAt;
    return {
      impl: 'tutorial flow',
      target: o.target ?? 'table',
      records: run.records,
      concurrency: 1,
      committedMs: ms,
      appliedMs: target.lastWriteAt - run.startedAt,
      recordsPerSec: run.records / (ms / 1000),
      batches: 1,
      errors: 0,
      cpuMsPerRecord: perRecord(used, run.records),
    };
  } finally {
    await Promise.allSettled([
      TableClient.fromConnectionString(o.connectionString, tableName, {
        allowInsecureConnection: true,
      }).deleteTable(),
      container.deleteIfExists(),
    ]);
  }
}

/**
 * The machine's ceiling for the target alone: `writes` target writes (same adapter, same latency)
 * from `concurrency` workers, with no pipeline around them. Neither implementation can beat it.
 */
export async function targetCeiling(o: {
  connectionString: string;
  concurrency: number;
  latencyMs: number;
  writes: number;
  target?: TargetKind;
  /**
   * Write the records of this view (same keys, versions and data as syncbridge writes them), so
   * the comparison is per record of the same size; without it, small synthetic records.
   */
  sim?: FlowfinitySimulator;
}): Promise<ThroughputResult> {
  const records: TargetRecord[] | undefined = o.sim
    ?.snapshot()
    .slice(0, o.writes)
    .map((r) => ({
      key: `${VIEW}|${r.RecordID}`,
      version: r.lastSubmissionId,
      deleted: false,
      data: { RecordID: r.RecordID, lastSubmissionId: r.lastSubmissionId.toString(), ...r.fields },
    }));
  const tableName = `ceil${shortId()}`;
  const target = new LatencyTarget(
    makeTarget(o.target ?? 'table', o.connectionString, tableName),
    o.latencyMs,
  );
  await target.ensureReady();
  try {
    const cpu = new CpuMeter();
    const t0 = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (next < o.writes) {
          const i = next++;
          const record = records?.[i];
          if (record) {
            await target.apply(record);
            continue;
          }
          await target.apply({
            key: `${VIEW}|${String(i + 1).padStart(9, '0')}`,
            version: BigInt(1000 + i),
            deleted: false,
            data: {
              Company: 'Contoso Ltd',
              Industry: { Selection: 'Energy' },
              Notes: 'x'.repeat(200),
              n: String(i),
            },
          });
        }
      }),
    );
    const ms = Date.now() - t0;
    return {
      impl: `${o.concurrency} bare workers (no pipeline)`,
      target: o.target ?? 'table',
      records: o.writes,
      concurrency: o.concurrency,
      committedMs: ms,
      appliedMs: ms,
      recordsPerSec: o.writes / (ms / 1000),
      batches: 0,
      errors: 0,
      cpuMsPerRecord: perRecord(cpu.elapsed(), o.writes),
    };
  } finally {
    await TableClient.fromConnectionString(o.connectionString, tableName, { allowInsecureConnection: true })
      .deleteTable()
      .catch(() => {});
  }
}

/** Runs the tutorial flow three times on a tiny view to show its empty-result bug. */
export async function tutorialEmptyResultBug(o: {
  connectionString: string;
  sim: FlowfinitySimulator;
}): Promise<{ runs: { records: number; cursorWritten: string }[] }> {
  const id = shortId();
  const container = BlobServiceClient.fromConnectionString(o.connectionString).getContainerClient(
    `tutorial-${id}`,
  );
  const tableName = `tut${id}`;
  const storage = { kind: 'connectionString' as const, connectionString: o.connectionString };
  const target = new TableTarget(tableClient(storage, tableName));
  await target.ensureReady();
  const runs: { records: number; cursorWritten: string }[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const r = await runTutorialFlow({
        viewUrl: o.sim.viewUrl,
        onBehalfOf: 'admin',
        username: o.sim.username,
        password: o.sim.password,
        container,
        target,
        viewName: VIEW,
      });
      runs.push({ records: r.records, cursorWritten: r.cursorWritten });
    }
    return { runs };
  } finally {
    await Promise.allSettled([
      TableClient.fromConnectionString(o.connectionString, tableName, {
        allowInsecureConnection: true,
      }).deleteTable(),
      container.deleteIfExists(),
    ]);
  }
}

// ---- 2. cost ------------------------------------------------------------------------------------

export interface CostResult {
  recordsPerMessage: number;
  concurrency: number;
  records: number;
  messages: number;
  counts: Record<Purpose, number>;
  /** (queue + ledger + quarantine + cursor) / records: the goal's figure. */
  perRecord: number;
  /** Idle polling (empty receives, get-properties) per record, at this run's duration. */
  idlePerRecord: number;
  targetPerRecord: number;
  durationMs: number;
}

export async function costRun(o: {
  proxy: CountingProxy;
  sim: FlowfinitySimulator;
  recordsPerMessage: number;
  concurrency: number;
  pollIntervalMs: number;
}): Promise<CostResult> {
  const records = o.sim.size;
  const final = lastVersion(o.sim);
  const p = new BenchPipeline({
    connectionString: o.proxy.connectionString,
    sim: o.sim,
    concurrency: o.concurrency,
    targetLatencyMs: 0,
    pollIntervalMs: o.pollIntervalMs,
    env: { SYNC_RECORDS_PER_MESSAGE: String(o.recordsPerMessage) },
  });
  try {
    await p.start();
    await p.settle();
    o.proxy.reset(p.tables);
    const t0 = Date.now();
    const first = await p.tick();
    if (first.kind !== 'planned') throw new Error(`first tick did not plan: ${JSON.stringify(first)}`);
    await p.cursor.reached(final, 10 * 60_000);
    await p.settle();
    const counts = o.proxy.snapshot();
    const durationMs = Date.now() - t0;
    if (p.target.applied !== records) throw new Error(`applied ${p.target.applied} of ${records} records`);
    const work = counts.queue + counts.ledger + counts.quarantine + counts.cursor;
    return {
      recordsPerMessage: o.recordsPerMessage,
      concurrency: o.concurrency,
      records,
      messages: first.messages,
      counts,
      perRecord: work / records,
      idlePerRecord: counts['queue-idle'] / records,
      targetPerRecord: counts.target / records,
      durationMs,
    };
  } finally {
    await p.stop();
    await p.cleanup();
  }
}

// ---- 3. memory ----------------------------------------------------------------------------------

export interface MemoryResult extends PlanChildResult {
  viewRecords: number;
  maxBatch: number;
}

export async function planMemory(o: {
  connectionString: string;
  sim: FlowfinitySimulator;
  maxBatch?: number;
}): Promise<MemoryResult> {
  const id = shortId();
  const env = benchEnv(
    o.connectionString,
    o.sim,
    id,
    o.maxBatch ? { SYNC_MAX_BATCH: String(o.maxBatch) } : {},
  );
  const maxBatch = loadConfig(env).flows[0]!.batch.maxBatch;
  try {
    const child = spawn(process.execPath, ['--expose-gc', path.join(__dirname, 'plan-child.js')], {
      env: { ...process.env, BENCH_PLAN_ENV: JSON.stringify(env) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    if (code !== 0) throw new Error(`plan child exited with ${code}: ${err}`);
    const result = JSON.parse(out.trim().split('\n').pop()!) as PlanChildResult;
    return { ...result, viewRecords: o.sim.size, maxBatch };
  } finally {
    await cleanupRun(o.connectionString, id);
  }
}

// ---- 4. latency ---------------------------------------------------------------------------------

export interface LatencyResult {
  scheduleSec: number;
  durationSec: number;
  changes: number;
  seen: number;
  medianMs: number;
  p90Ms: number;
  maxMs: number;
  minMs: number;
}

export async function changeLatency(o: {
  connectionString: string;
  sim: FlowfinitySimulator;
  concurrency: number;
  latencyMs: number;
  pollIntervalMs: number;
  scheduleSec: number;
  durationSec: number;
  changes: number;
}): Promise<LatencyResult> {
  const p = new BenchPipeline({
    connectionString: o.connectionString,
    sim: o.sim,
    concurrency: o.concurrency,
    targetLatencyMs: o.latencyMs,
    pollIntervalMs: o.pollIntervalMs,
    trackKeys: true,
  });
  const timer = new TimerDriver({
    functionName: 'syncTimer',
    schedule: parseTimerSchedule(`*/${o.scheduleSec} * * * * *`),
    runOnStartup: false,
    invoke: () => p.tick(),
    log: (level, line) => {
      if (level === 'error') p.log.error(line);
    },
  });
  const changes: { key: string; at: number }[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    await p.start();
    await timer.start();
    const offsets = Array.from({ length: o.changes }, () => Math.random() * o.durationSec * 1000).sort(
      (a, b) => a - b,
    );
    await new Promise<void>((resolve) => {
      for (const off of offsets)
        timers.push(
          setTimeout(() => {
            const r = o.sim.insert();
            changes.push({ key: `${VIEW}|${r.RecordID}`, at: Date.now() });
          }, off),
        );
      timers.push(setTimeout(resolve, o.durationSec * 1000 + 10));
    });
    const deadline = Date.now() + (o.scheduleSec + 20) * 1000;
    while (Date.now() < deadline && changes.some((c) => !p.target.firstSeen.has(c.key))) await sleep(100);
    const lags = changes
      .filter((c) => p.target.firstSeen.has(c.key))
      .map((c) => p.target.firstSeen.get(c.key)! - c.at)
      .sort((a, b) => a - b);
    const q = (f: number) => lags[Math.min(lags.length - 1, Math.floor(f * lags.length))] ?? NaN;
    return {
      scheduleSec: o.scheduleSec,
      durationSec: o.durationSec,
      changes: changes.length,
      seen: lags.length,
      medianMs: median(lags),
      p90Ms: q(0.9),
      maxMs: lags[lags.length - 1] ?? NaN,
      minMs: lags[0] ?? NaN,
    };
  } finally {
    timers.forEach(clearTimeout);
    await timer.stop();
    await p.stop();
    await p.cleanup();
  }
}

function median(sorted: number[]): number {
  if (sorted.length === 0) return NaN;
  const m = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
}

// ---- 5. planning speed --------------------------------------------------------------------------

export interface PlanSpeedResult {
  records: number;
  messages: number;
  /** Reading the view: request, streamed JSON parse, record validation (the flow's collect alone). */
  collectMs: number;
  /** The same plus the wire form and chunking into messages (no sending). */
  chunkMs: number;
  /** A whole plan: the above plus the manifest, the lease and sending every message. */
  planMs: number;
  cpuMs: { bench: number; azurite: number };
}

/**
 * Plans ONE batch of the whole view (SYNC_MAX_BATCH = its size) with no queue driver running,
 * three times over: collect only, collect + chunk, and the real plan(), so the table shows where
 * the time goes.
 */
export async function planSpeed(o: {
  connectionString: string;
  sim: FlowfinitySimulator;
}): Promise<PlanSpeedResult> {
  const records = o.sim.size;
  const p = new BenchPipeline({
    connectionString: o.connectionString,
    sim: o.sim,
    concurrency: 1,
    targetLatencyMs: 0,
    pollIntervalMs: 100,
    env: { SYNC_MAX_BATCH: String(records) },
  });
  try {
    await p.app.engine.ensureReady();
    const collect = async (chunk: boolean) => {
      const c = await p.flow.collect({
        stream: p.flow.name,
        input: undefined,
        flowState: undefined,
        signal: new AbortController().signal,
        log: p.log,
      });
      const chunker = new Chunker(p.flow.settings.recordsPerMessage, p.app.engine.transport.maxMessageBytes);
      let n = 0;
      let messages = 0;
      for await (const item of c.items) {
        if (item.kind !== 'record') continue;
        n++;
        if (chunk && chunker.add(toWire(item))) messages++;
      }
      if (n !== records) throw new Error(`collect read ${n} of ${records} records`);
      return messages;
    };
    let t = performance.now();
    await collect(false);
    const collectMs = performance.now() - t;
    t = performance.now();
    await collect(true);
    const chunkMs = performance.now() - t;
    const cpu = new CpuMeter();
    t = performance.now();
    const outcome = await p.tick();
    const planMs = performance.now() - t;
    const used = cpu.elapsed();
    if (outcome.kind !== 'planned' || outcome.records !== records)
      throw new Error(`plan did not plan the whole view: ${JSON.stringify(outcome)}`);
    return {
      records,
      messages: outcome.messages,
      collectMs,
      chunkMs,
      planMs,
      cpuMs: { bench: used.benchMs, azurite: used.azuriteMs },
    };
  } finally {
    await p.stop();
    await p.cleanup();
  }
}
