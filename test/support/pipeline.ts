/**
 * A view-sync pipeline for tests: real Azurite (tables, queues, blob cursor), the real
 * Flowfinity simulator over HTTP, the real core, and the local host's storage-queue trigger
 * driver for queue semantics (dequeue count, retry after visibility timeout, poison queue).
 * Observers record every target write and every cursor write so the invariants can be checked.
 */
import { randomBytes } from 'node:crypto';
import { applyRecordsMessage } from '../../src/lib/batch/applier';
import { handleControlMessage } from '../../src/lib/batch/control';
import type { Engine } from '../../src/lib/batch/engine';
import { flowHealth } from '../../src/lib/batch/health';
import { replayQuarantined } from '../../src/lib/batch/operations';
import { plan, type PlanOutcome } from '../../src/lib/batch/planner';
import { createApp, createCursorStore, type AppServices } from '../../src/lib/compose';
import { loadConfig, type Config } from '../../src/lib/config';
import type { FaultPoint, Faults } from '../../src/lib/faults';
import type { ViewSyncFlow } from '../../src/lib/flows/view-sync/flow';
import type {
  Log,
  ApplyOutcome,
  StoredTargetRecord,
  TargetReader,
  CompareAndSetResult,
  CursorStore,
  TargetRecord,
  TargetSystem,
  Transport,
} from '../../src/lib/ports';
import { TableTarget } from '../../src/lib/targets/table-target';
import { tableClient } from '../../src/lib/storage/clients';
import { StorageQueueDriver } from '../../src/local/host/storage-queue-driver';
import type { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { createServiceBusDriver } from '../../src/local/host/servicebus-driver';
import type { TriggerDriver } from '../../src/local/host/driver';
import { deadLetterReasonOf } from '../../src/lib/transport/dead-letter';
import type { AzureFilesServer } from './azure-files-server';
import { infraQueueOptions } from './infra-queues';
import type { ServiceBusTestServer } from './servicebus-server';
import { asWorker } from '../../src/local/host/rpc';

/** JSON with bigints as text and object keys sorted (jsonb keeps its own key order). */
const bigintText = (_k: string, v: unknown) =>
  typeof v === 'bigint'
    ? v.toString()
    : v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v;

export const quietLog: Log = { info() {}, warn() {}, error() {} };

/** The Azure adapters' protocol-level test servers: Service Bus (AMQP) and Azure Files (REST). */
export interface AzureTestServers {
  serviceBus: ServiceBusTestServer;
  files: AzureFilesServer;
}

export interface PipelineOptions {
  azuriteConnectionString: string;
  /** Run with TRANSPORT=servicebus and CURSOR_STORE=fileshare over these servers. */
  azure?: AzureTestServers;
  sim: FlowfinitySimulator;
  env?: Record<string, string>;
  faults?: Faults;
  /** Wraps the real table target (e.g. to make it fail). */
  wrapTarget?: (t: TargetSystem) => TargetSystem;
  maxDequeueCount?: number;
  concurrency?: number;
  /**
   * The target records go to instead of the default table target (a postgres TestTarget from
   * test/support/targets.ts); `rows()`, when it has one, is what its users read (a raw SELECT).
   */
  store?: TargetSystem & TargetReader & { rows?(): Promise<StoredTargetRecord[]> };
}

export class RecordingTarget implements TargetSystem {
  /** key|version → how many times it was applied (a value above 1 is a duplicated effect). */
  readonly applied = new Map<string, number>();
  writes = 0;
  constructor(private readonly inner: TargetSystem) {}
  ensureReady() {
    return this.inner.ensureReady?.() ?? Promise.resolve();
  }
  async apply(r: TargetRecord): Promise<ApplyOutcome> {
    const outcome = await this.inner.apply(r);
    if (outcome === 'applied') {
      this.writes++;
      const k = `${r.key}|${r.version}`;
      this.applied.set(k, (this.applied.get(k) ?? 0) + 1);
    }
    return outcome;
  }
  duplicates(): string[] {
    return [...this.applied].filter(([, n]) => n > 1).map(([k]) => k);
  }
}

/** Records every successful cursor write, to check monotonicity and what it passed. */
export class RecordingCursor implements CursorStore {
  readonly writes: { from: bigint | undefined; to: bigint }[] = [];
  constructor(
    private readonly inner: CursorStore,
    private readonly onWrite?: (from: bigint | undefined, to: bigint) => Promise<void>,
  ) {}
  read() {
    return this.inner.read();
  }
  describe() {
    return this.inner.describe();
  }
  async compareAndSet(expected: bigint | undefined, next: bigint): Promise<CompareAndSetResult> {
    const r = await this.inner.compareAndSet(expected, next);
    if (r.ok) {
      this.writes.push({ from: expected, to: next });
      await this.onWrite?.(expected, next);
    }
    return r;
  }
}

export class Pipeline {
  readonly config: Config;
  readonly app: AppServices;
  /** The engine the drivers run with (replaceable: see wrapTransport). */
  engine: Engine;
  readonly target: RecordingTarget;
  readonly cursor: RecordingCursor;
  /** Invariant violations seen while running (cursor passing an unapplied record...). */
  readonly violations: string[] = [];
  private readonly drivers: TriggerDriver[];
  /** Added to Date.now() for the pipeline's clock (to expire a crashed planner's lease). */
  clockOffsetMs = 0;
  /** The engine's back-off waits, recorded instead of slept (the schedule is the settings'). */
  readonly waits: number[] = [];
  private readonly store: TargetSystem & TargetReader & { rows?(): Promise<StoredTargetRecord[]> };

  /** The settings the pipeline runs with (what a CLI pointed at it reads). */
  readonly env: Record<string, string>;

  constructor(private readonly o: PipelineOptions) {
    const id = randomBytes(4).toString('hex');
    this.env = {
      FLOWFINITY_VIEW_URL: o.sim.viewUrl,
      FLOWFINITY_ON_BEHALF_OF: 'admin',
      FLOWFINITY_USERNAME: o.sim.username,
      FLOWFINITY_PASSWORD: o.sim.password,
      FLOWFINITY_MAX_RETRIES: '2',
      FLOWFINITY_TIMEOUT_MS: '5000',
      AzureWebJobsStorage: o.azuriteConnectionString,
      TRANSPORT: 'storagequeue',
      CURSOR_STORE: 'blob',
      CURSOR_SHARE_NAME: `cursor-${id}`,
      SYNC_RECORDS_QUEUE: `records-${id}`,
      SYNC_CONTROL_QUEUE: `control-${id}`,
      SYNC_JOBS_QUEUE: `jobs-${id}`,
      SYNC_TABLE_PREFIX: `t${id}`,
      TARGET_TABLE_NAME: `target${id}`,
      SYNC_VIEW_NAME: 'leads',
      SYNC_MAX_ATTEMPTS: String(o.maxDequeueCount ?? 3),
      ...(o.azure
        ? {
            TRANSPORT: 'servicebus',
            ServiceBusConnection: o.azure.serviceBus.connectionString,
            CURSOR_STORE: 'fileshare',
            CURSOR_STORAGE_CONNECTION: o.azure.files.connectionString,
          }
        : {}),
      ...o.env,
    };
    this.config = loadConfig(this.env);
    const flowConfig = this.config.flows[0]!;
    this.store = o.store ?? new TableTarget(tableClient(this.config.storage, flowConfig.target.tableName));
    const inner = o.wrapTarget ? o.wrapTarget(this.store) : this.store;
    this.target = new RecordingTarget(inner);
    this.cursor = new RecordingCursor(createCursorStore(this.config, flowConfig), (from, to) =>
      this.checkCursorWrite(from, to),
    );
    this.app = createApp(this.config, {
      target: () => this.target,
      faults: o.faults,
      cursor: () => this.cursor,
      now: () => Date.now() + this.clockOffsetMs,
      sleep: async (ms) => {
        this.waits.push(ms);
      },
    });
    this.engine = this.app.engine;
    const maxAttempts = o.maxDequeueCount ?? 3;
    const records = this.config.transport.recordsQueue;
    const control = this.config.transport.controlQueue;
    const jobs = this.config.transport.jobsQueue;
    type Invoke = (body: unknown, meta: Record<string, unknown>) => Promise<unknown>;
    const driver = (queueName: string, invoke: Invoke): TriggerDriver => {
      const common = {
        queueName,
        invoke: asWorker(invoke),
        maxConcurrency: o.concurrency ?? 8,
        pollIntervalMs: 20,
      };
      if (o.azure)
        return createServiceBusDriver({ ...common, connectionString: o.azure.serviceBus.connectionString });
      return new StorageQueueDriver({
        ...common,
        connectionString: o.azuriteConnectionString,
        newBatchThreshold: 4,
        maxDequeueCount: maxAttempts,
        visibilityTimeoutMs: 0,
        receiveVisibilityTimeoutMs: 60_000,
        messageEncoding: 'base64',
      });
    };
    if (o.azure) {
      // Queue properties as infra creates them (infra/app/servicebus.bicep), with the max
      // delivery count = SYNC_MAX_ATTEMPTS as infra wires it, and a 1-minute lock instead of
      // infra's 5 so that a lock lost to a crash expires within a test's patience.
      for (const q of [records, control, jobs])
        o.azure.serviceBus.createQueue(
          q,
          infraQueueOptions({ maxDeliveryCount: maxAttempts, lockDurationMs: 60_000 }),
        );
    }
    const deliveryCount = (meta: Record<string, unknown>) => Number(meta.dequeueCount ?? meta.deliveryCount);
    this.drivers = [
      driver(records, (body, meta) =>
        applyRecordsMessage(this.engine, body, { deliveryCount: deliveryCount(meta) }, quietLog),
      ),
      driver(o.azure ? `${records}/$deadletterqueue` : `${records}-poison`, (body, meta) =>
        applyRecordsMessage(
          this.engine,
          body,
          {
            deliveryCount: deliveryCount(meta),
            poison: true,
            poisonReason: deadLetterReasonOf(meta),
          },
          quietLog,
        ),
      ),
      driver(control, (body) => handleControlMessage(this.engine, body, quietLog)),
    ];
  }

  get flow(): ViewSyncFlow {
    return this.app.flows[0]!;
  }

  get ledger() {
    return this.engine.ledger(this.flow.name);
  }

  get quarantine() {
    return this.engine.quarantine(this.flow.name);
  }

  health() {
    return flowHealth(this.engine, this.flow);
  }

  replay(ids: string[] | 'all') {
    return replayQuarantined(this.engine, this.flow, ids, quietLog);
  }

  /** Puts a wrapper around the transport every step sends through. */
  wrapTransport(wrap: (t: Transport) => Transport): void {
    this.engine = this.engine.withDeps({ transport: wrap(this.engine.transport) });
  }

  async start(): Promise<this> {
    await this.engine.ensureReady();
    for (const d of this.drivers) await d.start();
    return this;
  }

  async stop(): Promise<void> {
    for (const d of this.drivers) await d.stop();
    await this.app.close();
  }

  /** Moves the clock past the planner lease, as time passing after a planner died. */
  expireLease(): void {
    this.clockOffsetMs += (this.flow.settings.planLeaseSeconds + 1) * 1000;
  }

  /** A timer tick. */
  tick(): Promise<PlanOutcome> {
    return plan(this.engine, this.flow, quietLog);
  }

  /** Waits until every queue driver is idle for `quietMs`, with a look at each queue after the quiet began. */
  async settle(timeoutMs = 60_000, quietMs = 150): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let quietSince = Date.now();
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      // Each queue must also have been looked at after the quiet began: a message sent by the
      // last invocation is then surely seen, however late a busy machine polls.
      if (!this.drivers.every((d) => d.isIdle())) quietSince = Date.now();
      else if (Date.now() - quietSince >= quietMs && this.drivers.every((d) => d.isIdle(quietSince))) return;
    }
    throw new Error('queues did not settle');
  }

  /**
   * Ticks and settles until a tick plans nothing and nothing is in flight. Errors thrown by a
   * tick (injected faults) are collected, as the timer would log them and tick again.
   */
  async syncUntilQuiet(maxTicks = 200): Promise<{ ticks: number; errors: unknown[] }> {
    const errors: unknown[] = [];
    for (let ticks = 1; ticks <= maxTicks; ticks++) {
      let outcome: PlanOutcome | undefined;
      try {
        outcome = await this.tick();
      } catch (e) {
        errors.push(e);
      }
      await this.settle();
      if (outcome?.kind === 'blocked') return { ticks, errors };
      // A planner that died holds its lease until it expires: let that time pass.
      if (outcome?.kind === 'busy' || (outcome?.kind === 'in-flight' && outcome.state === 'dispatching'))
        this.expireLease();
      if (outcome?.kind === 'empty') {
        const state = await this.ledger.getState();
        if (!state.currentBatchId) return { ticks, errors };
      }
    }
    throw new Error(`pipeline did not quiesce in ${maxTicks} ticks`);
  }

  async targetRecords() {
    const out = new Map<string, { version: bigint; deleted: boolean; data: Record<string, unknown> }>();
    for await (const r of this.store.list()) out.set(r.key, r);
    return out;
  }

  /** The differences between the simulator's records and the target (empty = equal). */
  async diffWithSource(except: Set<string> = new Set()): Promise<string[]> {
    const target = await this.targetRecords();
    const diffs: string[] = [];
    const seen = new Set<string>();
    for (const s of this.o.sim.snapshot()) {
      const key = `leads|${s.RecordID}`;
      seen.add(key);
      if (except.has(key)) continue;
      const t = target.get(key);
      const deleted = s.fields.State === 'Deleted';
      if (!t) diffs.push(`${key}: missing in target`);
      else if (t.version !== s.lastSubmissionId)
        diffs.push(`${key}: target v${t.version}, source v${s.lastSubmissionId}`);
      else if (t.deleted !== deleted)
        diffs.push(`${key}: deleted ${t.deleted}, source state ${String(s.fields.State)}`);
    }
    for (const k of target.keys()) if (!seen.has(k)) diffs.push(`${k}: in target only`);
    return diffs;
  }

  /**
   * The target's rows as its users read them (a postgres target: a raw SELECT) against the
   * source, exactly: every key, version, deleted flag and the whole data document (the view's
   * record: RecordID, lastSubmissionId and its fields). Empty = equal.
   */
  async diffRowsExactly(): Promise<string[]> {
    const rows = this.store.rows
      ? await this.store.rows()
      : [...(await this.targetRecords()).entries()].map(([key, r]) => ({ key, ...r }));
    const byKey = new Map(rows.map((r) => [r.key, r]));
    const diffs: string[] = [];
    const sourceKeys = new Set<string>();
    for (const s of this.o.sim.snapshot()) {
      const key = `leads|${s.RecordID}`;
      sourceKeys.add(key);
      const row = byKey.get(key);
      if (!row) {
        diffs.push(`${key}: no row`);
        continue;
      }
      const { lastSubmissionId, ...data } = row.data;
      const expected = {
        key,
        version: s.lastSubmissionId,
        deleted: s.fields.State === 'Deleted',
        data: { RecordID: s.RecordID, ...s.fields },
      };
      const actual = { key, version: row.version, deleted: row.deleted, data };
      if (JSON.stringify(actual, bigintText) !== JSON.stringify(expected, bigintText))
        diffs.push(
          `${key}: row ${JSON.stringify(actual, bigintText)} ≠ source ${JSON.stringify(expected, bigintText)}`,
        );
      if (String(lastSubmissionId) !== s.lastSubmissionId.toString())
        diffs.push(`${key}: data.lastSubmissionId ${String(lastSubmissionId)} ≠ ${s.lastSubmissionId}`);
    }
    for (const k of byKey.keys()) if (!sourceKeys.has(k)) diffs.push(`${k}: a row the source does not have`);
    return diffs;
  }

  /** Cursor writes must increase and never pass a record the target does not have. */
  private async checkCursorWrite(from: bigint | undefined, to: bigint): Promise<void> {
    if (from !== undefined && to < from) this.violations.push(`cursor decreased ${from} → ${to}`);
    const prev = this.cursor.writes.at(-2);
    if (prev && to < prev.to) this.violations.push(`cursor went back from ${prev.to} to ${to}`);
    const target = await this.targetRecords();
    const quarantined = new Set(
      (await this.quarantine.list()).map(
        (q) => `leads|${q.recordId}|${q.kind === 'malformed' ? '*' : q.version}`,
      ),
    );
    for (const s of this.o.sim.snapshot()) {
      if (s.lastSubmissionId > to) continue;
      const key = `leads|${s.RecordID}`;
      const t = target.get(key);
      const isQuarantined = quarantined.has(`${key}|${s.lastSubmissionId}`) || quarantined.has(`${key}|*`);
      if ((!t || t.version < s.lastSubmissionId) && !isQuarantined)
        this.violations.push(
          `cursor ${to} passed ${key} v${s.lastSubmissionId} (target has ${t?.version ?? 'nothing'})`,
        );
    }
  }
}

/** Faults that fire when `point` is reached for the `nth` time (1-based), `times` times. */
export function faultAt(
  point: FaultPoint,
  make: () => Error,
  o: { nth?: number; times?: number } = {},
): Faults & { fired: number } {
  let hits = 0;
  const f = {
    fired: 0,
    async at(p: FaultPoint) {
      if (p !== point) return;
      hits++;
      if (hits >= (o.nth ?? 1) && f.fired < (o.times ?? 1)) {
        f.fired++;
        throw make();
      }
    },
  };
  return f;
}
