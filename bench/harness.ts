/**
 * Wiring shared by the benchmarks: the real core (plan / apply / complete) on Azurite, the
 * Flowfinity simulator over HTTP, and the local host's storage-queue trigger driver for queue
 * semantics. Same idea as test/support/pipeline.ts (bench/ is compiled without test/).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { loadConfig, type Config } from '../src/lib/config';
import type { Log } from '../src/lib/log';
import { createApp, createCursorStore, type AppServices } from '../src/lib/compose';
import { tableClient } from '../src/lib/storage/clients';
import { applyRecordsMessage } from '../src/lib/batch/applier';
import { handleControlMessage } from '../src/lib/batch/control';
import { plan, type PlanOutcome } from '../src/lib/batch/planner';
import type {
  ApplyOutcome,
  CompareAndSetResult,
  CursorStore,
  TargetRecord,
  TargetSystem,
} from '../src/lib/ports';
import { PostgresTarget } from '../src/lib/targets/postgres-target';
import { TableTarget } from '../src/lib/targets/table-target';
import type { FlowfinitySimulator } from '../src/local/flowfinity-simulator';
import { StorageQueueDriver } from '../src/local/host/storage-queue-driver';
import { asWorker } from '../src/local/host/rpc';

export const VIEW = 'leads';

/** Collects errors instead of printing them; the runner reports how many there were. */
export class CountingLog implements Log {
  errors: string[] = [];
  warnings = 0;
  info(): void {}
  warn(): void {
    this.warnings++;
  }
  error(message: string, props?: Record<string, unknown>): void {
    if (this.errors.length < 20) this.errors.push(`${message} ${props ? JSON.stringify(props) : ''}`);
  }
}

export const shortId = () => randomBytes(4).toString('hex');

/**
 * The benchmark target: the real table target plus a fixed latency per write (a remote system's
 * round trip). Timestamps the first time each key|version is applied.
 */
export class LatencyTarget implements TargetSystem {
  applied = 0;
  skipped = 0;
  lastWriteAt = 0;
  readonly firstSeen = new Map<string, number>();
  /**
   * Time with no write in flight between the first write's start and the last write's end:
   * where the target waits for the pipeline (batch boundaries: drain, complete, re-plan).
   */
  idleMs = 0;
  private inFlight = 0;
  private idleSince: number | undefined;
  private started = false;
  constructor(
    private readonly inner: TargetSystem,
    private readonly latencyMs: number,
    private readonly trackKeys = false,
  ) {}
  ensureReady(): Promise<void> {
    return this.inner.ensureReady?.() ?? Promise.resolve();
  }
  async apply(r: TargetRecord): Promise<ApplyOutcome> {
    const begin = performance.now();
    if (this.inFlight++ === 0 && this.started && this.idleSince !== undefined)
      this.idleMs += begin - this.idleSince;
    this.started = true;
    let outcome: ApplyOutcome;
    try {
      if (this.latencyMs > 0) await sleep(this.latencyMs);
      outcome = await this.inner.apply(r);
    } finally {
      if (--this.inFlight === 0) this.idleSince = performance.now();
    }
    const now = Date.now();
    if (outcome === 'applied') {
      this.applied++;
      this.lastWriteAt = now;
      if (this.trackKeys && !this.firstSeen.has(r.key)) this.firstSeen.set(r.key, now);
    } else this.skipped++;
    return outcome;
  }
}

/**
 * A target whose whole cost is latency: the same conditional-write semantics as the table target
 * (version check, tombstones) in memory, plus the fixed latency. Shows what the algorithm does
 * when the target is a remote system and not this machine's Azurite.
 */
export class MemoryTarget implements TargetSystem {
  readonly rows = new Map<string, { version: bigint; deleted: boolean }>();
  async apply(r: TargetRecord): Promise<ApplyOutcome> {
    const current = this.rows.get(r.key);
    if (current && current.version >= r.version) return 'skipped';
    this.rows.set(r.key, { version: r.version, deleted: r.deleted });
    return 'applied';
  }
}

export type TargetKind = 'table' | 'memory' | 'postgres';

export function makeTarget(
  kind: TargetKind,
  connectionString: string,
  tableName: string,
  postgresUrl?: string,
): TargetSystem & { close?(): Promise<void> } {
  if (kind === 'memory') return new MemoryTarget();
  if (kind === 'postgres') {
    if (!postgresUrl) throw new Error('the postgres target needs a PostgreSQL connection string');
    // One connection per concurrent apply, as the app sizes its pool to the function's concurrency.
    const t = new PostgresTarget({
      connection: { kind: 'connectionString', connectionString: postgresUrl },
      table: tableName.toLowerCase(),
      poolSize: 16,
    });
    return Object.assign(t, { close: () => t.pool.end() });
  }
  return new TableTarget(tableClient({ kind: 'connectionString', connectionString }, tableName));
}

/** CPU time of this process and of the Azurite child (Linux /proc; 0 where unavailable). */
export class CpuMeter {
  private readonly azuritePid = findChildPid('azurite');
  private start = this.read();
  reset(): void {
    this.start = this.read();
  }
  /** CPU milliseconds since reset(). */
  elapsed(): { benchMs: number; azuriteMs: number } {
    const now = this.read();
    return { benchMs: now.bench - this.start.bench, azuriteMs: now.azurite - this.start.azurite };
  }
  private read(): { bench: number; azurite: number } {
    const u = process.cpuUsage();
    return { bench: (u.user + u.system) / 1000, azurite: this.azuritePid ? procCpuMs(this.azuritePid) : 0 };
  }
}

/** CPU milliseconds a process has used so far (Linux /proc; 0 elsewhere). */
export function procCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 (1-based), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

function findChildPid(cmdPart: string): number | undefined {
  try {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid !== process.pid) continue;
        if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(cmdPart)) return Number(d);
      } catch {
        // the process ended meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return undefined;
}

/** Remembers when the cursor reached each value. */
export class TimedCursor implements CursorStore {
  writes: { to: bigint; at: number }[] = [];
  private waiters: { target: bigint; resolve: (at: number) => void }[] = [];
  constructor(private readonly inner: CursorStore) {}
  read() {
    return this.inner.read();
  }
  describe() {
    return this.inner.describe();
  }
  async compareAndSet(expected: bigint | undefined, next: bigint): Promise<CompareAndSetResult> {
    const r = await this.inner.compareAndSet(expected, next);
    if (r.ok) {
      const at = Date.now();
      this.writes.push({ to: next, at });
      this.waiters = this.waiters.filter((w) => {
        if (next < w.target) return true;
        w.resolve(at);
        return false;
      });
    }
    return r;
  }
  /** Resolves with the time the cursor reached at least `target`. */
  reached(target: bigint, timeoutMs: number): Promise<number> {
    const done = this.writes.find((w) => w.to >= target);
    if (done) return Promise.resolve(done.at);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`cursor did not reach ${target} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.push({
        target,
        resolve: (at) => {
          clearTimeout(timer);
          resolve(at);
        },
      });
    });
  }
}

export interface BenchPipelineOptions {
  connectionString: string;
  sim: FlowfinitySimulator;
  /** Queue driver maxConcurrency (host.json queues.batchSize). */
  concurrency: number;
  targetLatencyMs: number;
  /** Pause of an idle queue poller, in ms. */
  pollIntervalMs: number;
  env?: Record<string, string>;
  trackKeys?: boolean;
  /** Default 'table' (the real TableTarget on Azurite). */
  target?: TargetKind;
  /** The PostgreSQL server of the `postgres` target. */
  postgresUrl?: string;
}

/** Environment for a syncbridge run with its own queues, tables and cursor container. */
export function benchEnv(
  connectionString: string,
  sim: FlowfinitySimulator,
  id: string,
  extra: Record<string, string> = {},
) {
  return {
    FLOWFINITY_VIEW_URL: sim.viewUrl,
    FLOWFINITY_ON_BEHALF_OF: 'admin',
    FLOWFINITY_USERNAME: sim.username,
    FLOWFINITY_PASSWORD: sim.password,
    FLOWFINITY_MAX_RETRIES: '2',
    FLOWFINITY_TIMEOUT_MS: '120000',
    AzureWebJobsStorage: connectionString,
    TRANSPORT: 'storagequeue',
    CURSOR_STORE: 'blob',
    CURSOR_SHARE_NAME: `cursor-${id}`,
    SYNC_RECORDS_QUEUE: `records-${id}`,
    SYNC_CONTROL_QUEUE: `control-${id}`,
    SYNC_TABLE_PREFIX: `b${id}`,
    TARGET_TABLE_NAME: `bt${id}`,
    SYNC_VIEW_NAME: VIEW,
    SYNC_MAX_ATTEMPTS: '5',
    ...extra,
  };
}

export class BenchPipeline {
  readonly id = shortId();
  readonly config: Config;
  readonly app: AppServices;
  readonly target: LatencyTarget;
  readonly cursor: TimedCursor;
  readonly log = new CountingLog();
  private readonly drivers: StorageQueueDriver[];
  private readonly closeTarget: () => Promise<void>;

  constructor(private readonly o: BenchPipelineOptions) {
    this.config = loadConfig(benchEnv(o.connectionString, o.sim, this.id, o.env));
    const inner = makeTarget(
      o.target ?? 'table',
      o.connectionString,
      this.config.flows[0]!.target.tableName,
      o.postgresUrl,
    );
    this.closeTarget = () => inner.close?.() ?? Promise.resolve();
    this.target = new LatencyTarget(inner, o.targetLatencyMs, o.trackKeys);
    this.cursor = new TimedCursor(createCursorStore(this.config, this.config.flows[0]!));
    this.app = createApp(this.config, { target: () => this.target, cursor: () => this.cursor });
    const engine = this.app.engine;
    const log = this.log;
    const driver = (
      queueName: string,
      invoke: (body: unknown, meta: Record<string, unknown>) => Promise<unknown>,
    ) =>
      new StorageQueueDriver({
        connectionString: o.connectionString,
        queueName,
        invoke: asWorker(invoke),
        maxConcurrency: o.concurrency,
        // The deployed transport is Service Bus, whose trigger keeps maxConcurrentCalls (16)
        // invocations in flight and starts the next message as soon as one ends. A storage
        // queue host with batchSize 16 and newBatchThreshold 8 instead lets its in-flight count
        // sag to 8 before it fetches again (and may then run up to 24): neither is "concurrency
        // 16". Fetching whenever a slot frees models the Service Bus trigger.
        newBatchThreshold: o.concurrency - 1,
        pollIntervalMs: o.pollIntervalMs,
        maxDequeueCount: 5,
        visibilityTimeoutMs: 10_000,
        messageEncoding: 'base64',
        log: (line) => log.error(line),
      });
    this.drivers = [
      driver(this.config.transport.recordsQueue, (body, meta) =>
        applyRecordsMessage(engine, body, { deliveryCount: Number(meta.dequeueCount) }, log),
      ),
      driver(`${this.config.transport.recordsQueue}-poison`, (body, meta) =>
        applyRecordsMessage(engine, body, { deliveryCount: Number(meta.dequeueCount), poison: true }, log),
      ),
      driver(this.config.transport.controlQueue, (body) => handleControlMessage(engine, body, log)),
    ];
  }

  get flow() {
    return this.app.flows[0]!;
  }

  get tables() {
    return {
      ledgerTable: `${this.config.tablePrefix}state`,
      quarantineTable: `${this.config.tablePrefix}quarantine`,
      targetTable: this.config.flows[0]!.target.tableName,
    };
  }

  async start(): Promise<this> {
    await this.app.engine.ensureReady(); // creates the tables and queues before measuring
    for (const d of this.drivers) await d.start();
    return this;
  }

  async stop(): Promise<void> {
    await Promise.all(this.drivers.map((d) => d.stop()));
    await this.app.close();
    await this.closeTarget();
  }

  tick(): Promise<PlanOutcome> {
    return plan(this.app.engine, this.flow, this.log);
  }

  /** Waits until every driver is idle for `quietMs`. */
  async settle(timeoutMs = 120_000, quietMs = 300): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let quietSince = Date.now();
    while (Date.now() < deadline) {
      await sleep(25);
      if (!this.drivers.every((d) => d.isIdle())) quietSince = Date.now();
      else if (Date.now() - quietSince >= quietMs) return;
    }
    throw new Error('queues did not settle');
  }

  /** Deletes what this run created in Azurite, so memory does not pile up across runs. */
  async cleanup(): Promise<void> {
    await cleanupRun(this.o.connectionString, this.id);
  }
}

/** Deletes the queues, tables and container of run `id` (see benchEnv). */
export async function cleanupRun(connectionString: string, id: string): Promise<void> {
  const allowInsecureConnection = true;
  const tables = [`b${id}state`, `b${id}quarantine`, `bt${id}`];
  const queues = QueueServiceClient.fromConnectionString(connectionString);
  const blobs = BlobServiceClient.fromConnectionString(connectionString);
  await Promise.allSettled([
    ...tables.map((t) =>
      TableClient.fromConnectionString(connectionString, t, { allowInsecureConnection }).deleteTable(),
    ),
    ...[`records-${id}`, `records-${id}-poison`, `control-${id}`].map((q) =>
      queues.getQueueClient(q).deleteIfExists(),
    ),
    blobs.getContainerClient(`cursor-${id}`).deleteIfExists(),
  ]);
}

/** Highest lastSubmissionId the simulator holds. */
export function lastVersion(sim: FlowfinitySimulator): bigint {
  const all = sim.snapshot();
  return all[all.length - 1]!.lastSubmissionId;
}
