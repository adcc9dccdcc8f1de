/**
 * Model-based fault-schedule testing of the view sync (shared by test/model.test.ts and
 * test/model.long.test.ts).
 *
 * A schedule is a generated list of steps: source mutations (insert, update, delete through
 * State, late commits of a lower id), timer ticks, deliveries of queued messages in a chosen
 * order (with duplicates and redeliveries), faults armed at the pipeline's fault points (a
 * thrown Error, a process death = SimulatedCrash, or a PAUSE that suspends the operation there
 * so that other steps interleave with it), transient target failures, poisoned record versions,
 * and clock jumps (planner lease expiry, message visibility timeout).
 *
 * What is real: Azurite tables/blob (Ledger, Quarantine, TableTarget, BlobCursorStore), the
 * Flowfinity simulator over HTTP, and the core (plan / applyRecordsMessage /
 * handleControlMessage). What is modelled: the transport (an in-memory queue with storage-queue
 * semantics: dequeue count, retry, `<queue>-poison` after the delivery limit, no duplicate
 * detection, message visibility), the clock, and process identity (a crash kills a process and
 * every operation it had suspended; the next operation on that process runs with a new
 * instance id). Only one operation runs at a time; the others are parked at a fault point, so
 * every schedule is deterministic and replayable.
 *
 * After the steps the model QUIESCES (faults off, suspended operations resumed, late commits
 * committed, clock past the lease, then tick + deliver everything until nothing changes) and
 * checks DESIGN.md's invariants.
 */
import { randomBytes } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import fc from 'fast-check';
import { loadConfig } from '../../src/lib/config';
import { SimulatedCrash, isSimulatedCrash, type FaultPoint, type Faults } from '../../src/lib/faults';
import { createCursorStore, createServices, ensureInfrastructure } from '../../src/lib/services';
import { applyRecordsMessage } from '../../src/lib/sync/applier';
import { handleControlMessage } from '../../src/lib/sync/completer';
import type { SyncContext } from '../../src/lib/sync/context';
import { healthReport } from '../../src/lib/sync/health';
import { plan, type PlanOutcome } from '../../src/lib/sync/planner';
import { PermanentError } from '../../src/lib/errors';
import {
  type ApplyOutcome,
  type OutgoingMessage,
  type QueueRole,
  type TargetRecord,
  type TargetSystem,
  type Transport,
} from '../../src/lib/ports';
import { TableTarget } from '../../src/lib/targets/table-target';
import { startAzurite, type AzuriteInstance } from '../../src/local/azurite';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { quietLog, RecordingCursor, RecordingTarget } from './pipeline';
import type { Log } from '../../src/lib/log';

// ---- schedules ------------------------------------------------------------------------------

/** A poisoned version: the target always throws for it (plain Error, or PermanentError). */
export type Poison = 'none' | 'retry' | 'permanent';
export type QueueName = 'records' | 'control' | 'poison';
export type FaultKind = 'throw' | 'crash' | 'pause';

export type Step =
  | { t: 'insert'; poison: Poison }
  | { t: 'update'; rec: number; poison: Poison }
  | { t: 'remove'; rec: number; poison: Poison }
  /** Allocates an id now (for an existing record, or a new one when rec is null), visible at lateCommit. */
  | { t: 'lateBegin'; rec: number | null; poison: Poison }
  | { t: 'lateCommit'; i: number }
  | { t: 'tick'; proc: number; fault: OpFault | null }
  /** Delivers the i-th visible message of a queue; dup: the delete is lost, the message stays. */
  | { t: 'deliver'; q: QueueName; i: number; proc: number; dup: boolean; fault: OpFault | null }
  /** Arms a fault for whatever operation reaches `point` next (nth time). */
  | { t: 'fault'; point: FaultPoint; kind: FaultKind; nth: number }
  /** The next n target writes fail with a plain (retryable) error. */
  | { t: 'targetFail'; n: number }
  /** Resumes the i-th suspended operation (or kills its process there when crash). */
  | { t: 'resume'; i: number; crash: boolean }
  /** 'visibility': locked messages reappear; 'lease': also past the planner lease. */
  | { t: 'advance'; by: 'visibility' | 'lease' };

/**
 * A fault in the operation a step runs, at its `at`-th fault point (see OP_FAULT_POINTS): a
 * tick or poll plans, a records message applies, a drain signal completes.
 */
export interface OpFault {
  at: 0 | 1 | 2 | 3;
  kind: FaultKind;
}

const OP_FAULT_POINTS: Record<'plan' | 'apply' | 'complete', [FaultPoint, number][]> = {
  plan: [
    ['plan.viewQuery', 1],
    ['plan.manifestWrite', 1],
    ['plan.send', 1],
    ['plan.dispatched', 1],
  ],
  apply: [
    ['apply.record', 1],
    ['apply.record', 2],
    ['apply.ledger', 1],
    ['apply.drainSignal', 1],
  ],
  complete: [
    ['complete.cursorWrite', 1],
    ['complete.close', 1],
    ['complete.poll', 1],
    ['complete.close', 1],
  ],
};

export interface Schedule {
  initialRecords: number;
  maxBatch: number;
  recordsPerMessage: number;
  maxAttempts: number;
  steps: Step[];
}

export const FAULT_POINTS: FaultPoint[] = [
  'plan.viewQuery',
  'plan.manifestWrite',
  'plan.send',
  'plan.dispatched',
  'apply.record',
  'apply.ledger',
  'apply.drainSignal',
  'complete.cursorWrite',
  'complete.close',
  'complete.poll',
];

export function stepText(s: Step): string {
  const p = (x: Poison) => (x === 'none' ? '' : `!${x}`);
  switch (s.t) {
    case 'insert':
      return `insert${p(s.poison)}`;
    case 'update':
    case 'remove':
      return `${s.t}(${s.rec})${p(s.poison)}`;
    case 'lateBegin':
      return `lateBegin(${s.rec ?? 'new'})${p(s.poison)}`;
    case 'lateCommit':
      return `lateCommit(${s.i})`;
    case 'tick':
      return `tick@p${s.proc}${opFaultText(s.fault)}`;
    case 'deliver':
      return `deliver(${s.q}#${s.i}${s.dup ? ',dup' : ''})@p${s.proc}${opFaultText(s.fault)}`;
    case 'fault':
      return `${s.kind}(${s.point}${s.nth > 1 ? `#${s.nth}` : ''})`;
    case 'targetFail':
      return `targetFail(${s.n})`;
    case 'resume':
      return `resume(${s.i}${s.crash ? ',crash' : ''})`;
    case 'advance':
      return `advance(${s.by})`;
  }
}

const opFaultText = (f: OpFault | null) => (f ? `[${f.kind}@${f.at}]` : '');

export function scheduleText(s: Schedule): string {
  return (
    `{initial:${s.initialRecords}, maxBatch:${s.maxBatch}, perMessage:${s.recordsPerMessage}, ` +
    `maxAttempts:${s.maxAttempts}, steps:[${s.steps.map(stepText).join(', ')}]}`
  );
}

const withText = <T extends object>(value: T, text: (v: T) => string): T =>
  Object.assign(value, { [fc.toStringMethod]: () => text(value) });

const poisonArb: fc.Arbitrary<Poison> = fc.oneof(
  { weight: 12, arbitrary: fc.constant<Poison>('none') },
  { weight: 1, arbitrary: fc.constant<Poison>('retry') },
  { weight: 1, arbitrary: fc.constant<Poison>('permanent') },
);
const idx = fc.nat({ max: 40 });
const proc = fc.integer({ min: 0, max: 1 });
const opFault: fc.Arbitrary<OpFault | null> = fc.option(
  fc.record({
    at: fc.constantFrom<OpFault['at']>(0, 1, 2, 3),
    kind: fc.constantFrom<FaultKind>('throw', 'crash', 'pause'),
  }),
  { freq: 3 },
);

export const stepArb: fc.Arbitrary<Step> = fc
  .oneof(
    { weight: 3, arbitrary: fc.record({ t: fc.constant('insert' as const), poison: poisonArb }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('update' as const), rec: idx, poison: poisonArb }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('remove' as const), rec: idx, poison: poisonArb }) },
    {
      weight: 2,
      arbitrary: fc.record({ t: fc.constant('lateBegin' as const), rec: fc.option(idx), poison: poisonArb }),
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('lateCommit' as const), i: idx }) },
    { weight: 4, arbitrary: fc.record({ t: fc.constant('tick' as const), proc, fault: opFault }) },
    {
      weight: 10,
      arbitrary: fc.record({
        t: fc.constant('deliver' as const),
        q: fc.constantFrom<QueueName>('records', 'records', 'records', 'control', 'control', 'poison'),
        i: fc.nat({ max: 6 }),
        proc,
        dup: fc.nat({ max: 4 }).map((n) => n === 0),
        fault: opFault,
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant('fault' as const),
        point: fc.constantFrom(...FAULT_POINTS),
        kind: fc.constantFrom<FaultKind>('throw', 'crash', 'pause'),
        nth: fc.integer({ min: 1, max: 3 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ t: fc.constant('targetFail' as const), n: fc.integer({ min: 1, max: 3 }) }),
    },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('resume' as const), i: idx, crash: fc.boolean() }) },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant('advance' as const),
        by: fc.constantFrom('visibility', 'lease'),
      }),
    },
  )
  .map((s) => withText(s as Step, stepText));

export function scheduleArb(o: { maxSteps?: number } = {}): fc.Arbitrary<Schedule> {
  return fc
    .record({
      initialRecords: fc.integer({ min: 0, max: 5 }),
      maxBatch: fc.integer({ min: 1, max: 6 }),
      recordsPerMessage: fc.integer({ min: 1, max: 3 }),
      maxAttempts: fc.integer({ min: 2, max: 3 }),
      steps: fc.array(stepArb, { minLength: 1, maxLength: o.maxSteps ?? 30, size: 'max' }),
    })
    .map((s) => withText(s, scheduleText));
}

// ---- the world: one Azurite per test file ---------------------------------------------------

export interface ModelOptions {
  poisonPolicy: 'quarantine' | 'block';
  /** SYNC_LOOKBACK (ids). Large enough by default to catch every late commit of a schedule. */
  lookback?: number;
}

/** What the schedules exercised (summed over all schedules of a world), to judge coverage. */
export interface ModelStats {
  schedules: number;
  steps: number;
  throws: number;
  crashes: number;
  pauses: number;
  resumed: number;
  opsKilledWithProcess: number;
  redeliveries: number;
  duplicateDeliveries: number;
  toPoisonQueue: number;
  batchesPlanned: number;
  batchesCompleted: number;
  batchesAbandoned: number;
  drainRepairs: number;
  quarantined: number;
  lateCommitsBelowCursor: number;
  recordsApplied: number;
}

const emptyStats = (): ModelStats => ({
  schedules: 0,
  steps: 0,
  throws: 0,
  crashes: 0,
  pauses: 0,
  resumed: 0,
  opsKilledWithProcess: 0,
  redeliveries: 0,
  duplicateDeliveries: 0,
  toPoisonQueue: 0,
  batchesPlanned: 0,
  batchesCompleted: 0,
  batchesAbandoned: 0,
  drainRepairs: 0,
  quarantined: 0,
  lateCommitsBelowCursor: 0,
  recordsApplied: 0,
});

export class ModelWorld {
  readonly stats: ModelStats = emptyStats();
  private constructor(readonly azurite: AzuriteInstance) {}

  summary(): string {
    return Object.entries(this.stats)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
  }

  static async start(): Promise<ModelWorld> {
    return new ModelWorld(await startAzurite());
  }

  async stop(): Promise<void> {
    await this.azurite.stop();
  }

  /** Runs one schedule and throws (with the trace) if an invariant does not hold. */
  async check(schedule: Schedule, o: ModelOptions): Promise<void> {
    const run = await ScheduleRun.create(this.azurite.connectionString, schedule, o, this.stats);
    let failure: unknown;
    try {
      await run.execute();
    } catch (e) {
      failure = e;
    } finally {
      await run.dispose();
    }
    if (failure !== undefined) throw failure;
    if (run.violations.length > 0) {
      const trace =
        run.trace.length > 120 ? [...run.trace.slice(0, 110), '…', ...run.trace.slice(-10)] : run.trace;
      throw new Error(
        `invariant violations for ${scheduleText(schedule)}:\n  - ${run.violations.join('\n  - ')}\n` +
          `trace:\n  ${trace.join('\n  ')}`,
      );
    }
  }
}

// ---- one schedule ---------------------------------------------------------------------------

const LEASE_SECONDS = 60;
/** SYNC_STALL_SECONDS of the model; quiesce lets this much time pass between its rounds. */
const STALL_SECONDS = 60;
/**
 * A deadlock net: an operation of the model never needs this long (everything is local). Not a
 * performance bound: on a starved 2-core machine (seen: a CI run beside `npm run test:long`)
 * one plan operation took over 30 s and then replayed in about 1 s.
 */
const OP_TIMEOUT_MS = 120_000;
const VISIBILITY_SECONDS = 30;

interface QMsg {
  seq: number;
  queue: 'records' | 'control' | 'records-poison';
  messageId: string;
  batchId?: string;
  text: string;
  dequeueCount: number;
  /** Operation holding it (invisible while locked). */
  lockedBy?: number;
}

type Settled = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Op {
  id: number;
  proc: number;
  incarnation: number;
  label: string;
  msg?: QMsg;
  dup?: boolean;
  /** Delivery attempt that quarantines failing records (delivery limit reached, or poison queue). */
  isolating: boolean;
  done?: Promise<Settled>;
  onPause?: () => void;
  resume?: (crash: boolean) => void;
  pausedAt?: string;
  /** The step's own fault: fires when this operation reaches `point` for the `countdown`-th time. */
  fault?: ArmedFault;
}

interface ArmedFault {
  point: FaultPoint;
  kind: FaultKind;
  countdown: number;
}

const isInjected = (e: unknown) =>
  isSimulatedCrash(e) || (e instanceof Error && e.message.startsWith('injected'));

class ScheduleRun {
  readonly violations: string[] = [];
  readonly trace: string[] = [];

  private readonly queue: QMsg[] = [];
  /** Dead letters: control messages past the limit, and poison-queue messages past the limit. */
  private readonly dead: QMsg[] = [];
  private seq = 0;
  private opSeq = 0;
  private active: Op | undefined;
  private readonly suspended: Op[] = [];
  private readonly incarnation = [0, 0];
  private armed: ArmedFault[] = [];
  private transientTargetFailures = 0;
  private clock = Date.UTC(2025, 0, 1);
  private readonly lateCommits: { id: bigint; commit(): unknown; poison: Poison; rec: string | undefined }[] =
    [];
  private readonly lateIds = new Set<bigint>();
  /** `${RecordID}|${version}` → poison kind. */
  private readonly poisoned = new Map<string, Poison>();
  private readonly poisonAttempted = new Set<string>();
  /**
   * Versions whose apply failed transiently (target error, injected throw) on a delivery's last
   * attempt: quarantining them is allowed.
   */
  private readonly justified = new Set<string>();
  private readonly lastApplied = new Map<string, bigint>();
  private readonly sentBatches = new Set<string>();
  private readonly unexpectedErrors: string[] = [];
  private readonly base: SyncContext;
  private readonly tableTarget: TableTarget;
  private readonly recording: RecordingTarget;
  private readonly cursor: RecordingCursor;
  private readonly stateTable: TableClient;
  private readonly cleanup: (() => Promise<unknown>)[] = [];
  private readonly log: Log = {
    info() {},
    warn: (message) => {
      if (message.startsWith('abandoned')) this.stats.batchesAbandoned++;
    },
    error() {},
  };

  private constructor(
    readonly schedule: Schedule,
    private readonly o: ModelOptions,
    private readonly sim: FlowfinitySimulator,
    connectionString: string,
    private readonly stats: ModelStats,
  ) {
    const id = randomBytes(4).toString('hex');
    const config = loadConfig({
      FLOWFINITY_VIEW_URL: sim.viewUrl,
      FLOWFINITY_ON_BEHALF_OF: 'admin',
      FLOWFINITY_USERNAME: sim.username,
      FLOWFINITY_PASSWORD: sim.password,
      FLOWFINITY_MAX_RETRIES: '0',
      SYNC_STALL_SECONDS: String(STALL_SECONDS),
      FLOWFINITY_TIMEOUT_MS: '10000',
      AzureWebJobsStorage: connectionString,
      TRANSPORT: 'storagequeue',
      CURSOR_STORE: 'blob',
      CURSOR_SHARE_NAME: `mcursor-${id}`,
      SYNC_TABLE_PREFIX: `m${id}`,
      TARGET_TABLE_NAME: `mtarget${id}`,
      SYNC_VIEW_NAME: 'leads',
      SYNC_MAX_ATTEMPTS: String(schedule.maxAttempts),
      SYNC_MAX_BATCH: String(schedule.maxBatch),
      SYNC_RECORDS_PER_MESSAGE: String(schedule.recordsPerMessage),
      SYNC_LOOKBACK: String(o.lookback ?? 1000),
      SYNC_PLAN_LEASE_SECONDS: String(LEASE_SECONDS),
      POISON_POLICY: o.poisonPolicy,
    });
    this.tableTarget = new TableTarget(
      TableClient.fromConnectionString(connectionString, config.target.tableName, {
        allowInsecureConnection: true,
      }),
    );
    this.recording = new RecordingTarget(new ModelTarget(this, this.tableTarget));
    this.cursor = new RecordingCursor(createCursorStore(config), (from, to) =>
      this.checkCursorWrite(from, to),
    );
    const services = createServices(config, {
      target: this.recording,
      cursor: this.cursor,
      transport: new ModelTransport(this),
      faults: new ModelFaults(this),
      now: () => this.clock,
      instanceId: 'p0.0',
    });
    this.base = services.ctx;
    this.stateTable = TableClient.fromConnectionString(connectionString, `${config.tablePrefix}state`, {
      allowInsecureConnection: true,
    });
    for (const t of [
      `${config.tablePrefix}state`,
      `${config.tablePrefix}quarantine`,
      config.target.tableName,
    ])
      this.cleanup.push(() =>
        TableClient.fromConnectionString(connectionString, t, {
          allowInsecureConnection: true,
        }).deleteTable(),
      );
    this.cleanup.push(() =>
      BlobServiceClient.fromConnectionString(connectionString)
        .getContainerClient(config.cursor.shareName)
        .deleteIfExists(),
    );
  }

  static async create(
    connectionString: string,
    schedule: Schedule,
    o: ModelOptions,
    stats: ModelStats,
  ): Promise<ScheduleRun> {
    const sim = await FlowfinitySimulator.start({ initialRecords: schedule.initialRecords, seed: 3 });
    const run = new ScheduleRun(schedule, o, sim, connectionString, stats);
    await ensureInfrastructure({ ctx: run.base } as Parameters<typeof ensureInfrastructure>[0]);
    return run;
  }

  async dispose(): Promise<void> {
    await this.sim.stop();
    for (const c of this.cleanup) await c().catch(() => undefined);
  }

  // ---- hooks used by the model's ports ------------------------------------------------------

  async faultAt(point: FaultPoint, detail?: string): Promise<void> {
    const op = this.active;
    if (!op) {
      this.violations.push(`fault point ${point} reached outside any operation`);
      return;
    }
    let a: ArmedFault;
    if (op.fault?.point === point) {
      a = op.fault;
      if (--a.countdown > 0) return;
      op.fault = undefined;
    } else {
      const i = this.armed.findIndex((x) => x.point === point);
      if (i < 0) return;
      a = this.armed[i]!;
      if (--a.countdown > 0) return;
      this.armed.splice(i, 1);
    }
    this.trace.push(`    ${a.kind} at ${point}${detail ? ` (${detail})` : ''} in op ${op.id}`);
    this.stats[a.kind === 'throw' ? 'throws' : a.kind === 'crash' ? 'crashes' : 'pauses']++;
    if (a.kind === 'throw') {
      // On a delivery's last attempt the applier quarantines a record whose apply fails, and
      // this point is inside that per-record step: the record may then be quarantined.
      if (point === 'apply.record' && op.isolating && op.msg && detail) {
        const id = detail.slice(detail.lastIndexOf(':') + 1);
        const body = JSON.parse(op.msg.text) as { records: { id: string; v: string }[] };
        const r = body.records.find((x) => x.id === id);
        if (r) this.justified.add(`${r.id}|${r.v}`);
      }
      throw new Error(`injected failure at ${point}`);
    }
    if (a.kind === 'crash') throw new SimulatedCrash(point);
    // pause: park the operation here until a resume step (or the process dies).
    await new Promise<void>((resolve, reject) => {
      op.pausedAt = point;
      op.resume = (crash) => (crash ? reject(new SimulatedCrash(point)) : resolve());
      op.onPause!();
    });
    this.active = op;
  }

  send(role: QueueRole, messages: OutgoingMessage[]): void {
    for (const m of messages) {
      if (role === 'records' && m.batchId) this.sentBatches.add(m.batchId);
      this.queue.push({
        seq: this.seq++,
        queue: role as 'records' | 'control',
        messageId: m.messageId,
        batchId: m.batchId,
        text: JSON.stringify(m.body),
        dequeueCount: 0,
      });
    }
  }

  async targetApply(inner: TargetSystem, r: TargetRecord): Promise<ApplyOutcome> {
    const rv = `${r.key.slice(r.key.indexOf('|') + 1)}|${r.version}`;
    if (this.transientTargetFailures > 0) {
      this.transientTargetFailures--;
      if (this.active?.isolating) this.justified.add(rv);
      throw new Error(`injected target timeout on ${rv}`);
    }
    const p = this.poisoned.get(rv);
    if (p && p !== 'none') {
      this.poisonAttempted.add(rv);
      throw p === 'permanent'
        ? new PermanentError(`target refuses ${rv}`)
        : new Error(`injected poison ${rv}`);
    }
    const outcome = await inner.apply(r);
    if (outcome === 'applied') {
      const last = this.lastApplied.get(r.key);
      if (last !== undefined && r.version <= last)
        this.violations.push(`target applied ${r.key} v${r.version} after v${last}`);
      this.lastApplied.set(r.key, r.version);
    }
    return outcome;
  }

  // ---- running operations -------------------------------------------------------------------

  private newOp(proc: number, label: string, extra: Partial<Op> = {}): Op {
    return {
      id: ++this.opSeq,
      proc,
      incarnation: this.incarnation[proc]!,
      label,
      isolating: false,
      ...extra,
    };
  }

  private ctxFor(op: Op): SyncContext {
    return { ...this.base, instanceId: `p${op.proc}.${op.incarnation}` };
  }

  /** Runs (or continues) `op` until it finishes or parks at a fault point. */
  private async drive(op: Op, paused: Promise<'paused'>): Promise<Settled | 'paused'> {
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), OP_TIMEOUT_MS)));
    const r = await Promise.race([op.done!, paused, hung]);
    clearTimeout(timer);
    this.active = undefined;
    if (r === 'hung')
      throw new Error(`op ${op.id} (${op.label}) neither finished nor paused in ${OP_TIMEOUT_MS} ms`);
    if (r === 'paused') {
      this.suspended.push(op);
      this.trace.push(`    op ${op.id} (${op.label}) suspended at ${op.pausedAt}`);
      return r;
    }
    this.settle(op, r);
    return r;
  }

  /** The promise that resolves when `op` parks at a pause fault (set up before it runs). */
  private pauseSignal(op: Op): Promise<'paused'> {
    return new Promise<'paused'>((resolve) => (op.onPause = () => resolve('paused')));
  }

  private start(op: Op, fn: (ctx: SyncContext) => Promise<unknown>): Promise<Settled | 'paused'> {
    const ctx = this.ctxFor(op);
    const paused = this.pauseSignal(op);
    this.active = op;
    op.done = fn(ctx).then(
      (value): Settled => ({ ok: true, value }),
      (error: unknown): Settled => ({ ok: false, error }),
    );
    return this.drive(op, paused);
  }

  private continueOp(op: Op, crash: boolean): Promise<Settled | 'paused'> {
    const paused = this.pauseSignal(op);
    this.active = op;
    op.resume!(crash);
    return this.drive(op, paused);
  }

  private settle(op: Op, r: Settled): void {
    const text = r.ok ? summarize(r.value) : `threw ${errorName(r.error)}`;
    if (r.ok) {
      const kind = (r.value as { kind?: string } | undefined)?.kind;
      if (kind === 'planned') this.stats.batchesPlanned++;
      if (kind === 'completed') this.stats.batchesCompleted++;
      if (kind === 'repaired-drain') this.stats.drainRepairs++;
    }
    this.trace.push(`    op ${op.id} (${op.label}) → ${text}`);
    if (!r.ok && !isInjected(r.error)) this.unexpectedErrors.push(`${op.label}: ${errorName(r.error)}`);
    const m = op.msg;
    if (m && m.lockedBy === op.id) {
      m.lockedBy = undefined;
      if (r.ok) {
        if (op.dup) this.stats.duplicateDeliveries++;
        else this.removeMsg(m);
      } else if (!isSimulatedCrash(r.error) && m.dequeueCount >= this.schedule.maxAttempts) {
        this.removeMsg(m);
        this.toPoison(m);
      }
    }
    if (!r.ok && isSimulatedCrash(r.error)) this.kill(op.proc);
  }

  private removeMsg(m: QMsg): void {
    const i = this.queue.indexOf(m);
    if (i >= 0) this.queue.splice(i, 1);
  }

  private toPoison(m: QMsg): void {
    this.stats.toPoisonQueue++;
    if (m.queue === 'records')
      this.queue.push({ ...m, seq: this.seq++, queue: 'records-poison', dequeueCount: 0 });
    else this.dead.push(m);
  }

  /** The process dies: every operation it had suspended dies with it, their messages reappear. */
  private kill(proc: number): void {
    this.incarnation[proc]!++;
    for (const op of [...this.suspended]) {
      if (op.proc !== proc) continue;
      this.suspended.splice(this.suspended.indexOf(op), 1);
      if (op.msg?.lockedBy === op.id) op.msg.lockedBy = undefined;
      this.trace.push(`    op ${op.id} (${op.label}) died with process p${proc}`);
      this.stats.opsKilledWithProcess++;
    }
  }

  private visible(q: QueueName): QMsg[] {
    const name = q === 'poison' ? 'records-poison' : q;
    return this.queue.filter((m) => m.queue === name && m.lockedBy === undefined);
  }

  private async deliver(
    m: QMsg,
    procNo: number,
    dup: boolean,
    fault: OpFault | null = null,
  ): Promise<Settled | 'paused' | 'dead'> {
    m.dequeueCount++;
    if (m.dequeueCount > 1) this.stats.redeliveries++;
    if (m.dequeueCount > this.schedule.maxAttempts) {
      // The host moves a message past the limit before invoking (a process died on its last try).
      this.removeMsg(m);
      this.toPoison(m);
      this.trace.push(`    ${m.queue} ${m.messageId} past the delivery limit → poison`);
      return 'dead';
    }
    const poison = m.queue === 'records-poison';
    const op = this.newOp(procNo, `${m.queue} ${m.messageId} #${m.dequeueCount}`, {
      msg: m,
      dup,
      isolating: poison || m.dequeueCount >= this.schedule.maxAttempts,
    });
    m.lockedBy = op.id;
    const body: unknown = JSON.parse(m.text);
    const role =
      m.queue !== 'control' ? 'apply' : (body as { type?: string }).type === 'poll' ? 'plan' : 'complete';
    op.fault = opFaultFor(role, fault);
    return this.start(op, (ctx) =>
      m.queue === 'control'
        ? handleControlMessage(ctx, body, this.log)
        : applyRecordsMessage(
            ctx,
            body,
            poison
              ? { deliveryCount: m.dequeueCount, poison: true, poisonReason: 'delivery limit exceeded' }
              : { deliveryCount: m.dequeueCount },
            this.log,
          ),
    );
  }

  private tick(procNo: number, fault: OpFault | null = null): Promise<Settled | 'paused'> {
    return this.start(this.newOp(procNo, 'tick', { fault: opFaultFor('plan', fault) }), (ctx) =>
      plan(ctx, this.log),
    );
  }

  private pick<T>(list: T[], i: number): T | undefined {
    return list.length ? list[i % list.length] : undefined;
  }

  private poison(rv: string, p: Poison): void {
    if (p !== 'none') this.poisoned.set(rv, p);
  }

  // ---- the schedule ---------------------------------------------------------------------------

  async execute(): Promise<void> {
    this.stats.schedules++;
    this.stats.steps += this.schedule.steps.length;
    for (const [n, step] of this.schedule.steps.entries()) {
      this.trace.push(`${n}: ${stepText(step)}`);
      await this.step(step);
      await this.checkSingleFlight(`after step ${n} (${stepText(step)})`);
    }
    await this.quiesce();
    await this.checkFinal();
    this.stats.recordsApplied += this.recording.writes;
    if (this.violations.length && this.unexpectedErrors.length)
      this.violations.push(`(unexpected errors seen: ${[...new Set(this.unexpectedErrors)].join('; ')})`);
  }

  private async step(s: Step): Promise<void> {
    const visible = this.sim.snapshot();
    switch (s.t) {
      case 'insert': {
        const r = this.sim.insert();
        this.poison(`${r.RecordID}|${r.lastSubmissionId}`, s.poison);
        return;
      }
      case 'update':
      case 'remove': {
        const target = this.pick(visible, s.rec);
        if (!target) return;
        const r = s.t === 'update' ? this.sim.update(target.RecordID) : this.sim.remove(target.RecordID);
        this.poison(`${r.RecordID}|${r.lastSubmissionId}`, s.poison);
        return;
      }
      case 'lateBegin': {
        const rec = s.rec === null ? undefined : this.pick(visible, s.rec)?.RecordID;
        if (s.rec !== null && rec === undefined) return;
        const late = this.sim.beginLateCommit(rec);
        this.lateIds.add(late.id);
        this.lateCommits.push({ ...late, poison: s.poison, rec });
        return;
      }
      case 'lateCommit': {
        if (!this.lateCommits.length) return;
        const late = this.lateCommits.splice(s.i % this.lateCommits.length, 1)[0]!;
        await this.commitLate(late);
        return;
      }
      case 'tick':
        await this.tick(s.proc, s.fault);
        return;
      case 'deliver': {
        const m = this.pick(this.visible(s.q), s.i);
        if (m) await this.deliver(m, s.proc, s.dup, s.fault);
        return;
      }
      case 'fault':
        this.armed.push({ point: s.point, kind: s.kind, countdown: s.nth });
        return;
      case 'targetFail':
        this.transientTargetFailures += s.n;
        return;
      case 'resume': {
        if (!this.suspended.length) return;
        const op = this.suspended.splice(s.i % this.suspended.length, 1)[0]!;
        this.stats.resumed++;
        await this.continueOp(op, s.crash);
        return;
      }
      case 'advance':
        this.clock += (s.by === 'lease' ? LEASE_SECONDS + 1 : VISIBILITY_SECONDS + 1) * 1000;
        // The visibility timeout of every received message has passed: they reappear.
        for (const m of this.queue) m.lockedBy = undefined;
        return;
    }
  }

  private async commitLate(late: {
    id: bigint;
    commit(): unknown;
    poison: Poison;
    rec: string | undefined;
  }): Promise<void> {
    const cursor = await this.base.cursor.read();
    if (cursor !== undefined && late.id <= cursor) this.stats.lateCommitsBelowCursor++;
    const r = late.commit() as { RecordID: string; lastSubmissionId: bigint };
    this.poison(`${r.RecordID}|${r.lastSubmissionId}`, late.poison);
  }

  private async quiesce(): Promise<void> {
    this.trace.push('quiesce:');
    this.armed = [];
    this.transientTargetFailures = 0;
    while (this.suspended.length) {
      const op = this.suspended.shift()!;
      await this.continueOp(op, false);
      await this.checkSingleFlight(`quiesce: after resuming op ${op.id}`);
    }
    this.clock += (LEASE_SECONDS + 1) * 1000;
    for (const m of this.queue) m.lockedBy = undefined;

    for (let round = 0; round < 40; round++) {
      // Time passes between rounds: a batch stuck on a message lost outside the pipeline (dead-
      // lettered from the poison queue) is abandoned by the stall watch and re-planned.
      if (round > 0) this.clock += (STALL_SECONDS + 1) * 1000;
      // Late commits land after the first round, so the cursor has usually passed their ids.
      if (round === 1) while (this.lateCommits.length) await this.commitLate(this.lateCommits.shift()!);
      const writesBefore = this.recording.writes;
      const t = await this.tick(0);
      await this.checkSingleFlight(`quiesce: after tick ${round}`);
      const outcome = t !== 'paused' && t.ok ? (t.value as PlanOutcome) : undefined;
      let deliveries = 0;
      while (this.queue.length) {
        if (++deliveries > 2000) {
          this.violations.push('quiesce: more than 2000 deliveries in one round');
          return;
        }
        await this.deliver(this.queue[0]!, 0, false);
      }
      if (outcome?.kind === 'blocked') return;
      if (this.lateCommits.length) continue;
      const quietTick =
        outcome?.kind === 'empty' || (outcome?.kind === 'planned' && outcome.from === outcome.to);
      const state = await this.base.ledger.getViewState();
      if (quietTick && this.recording.writes === writesBefore && !state.currentBatchId) return;
    }
    const state = await this.base.ledger.getViewState();
    const m = state.currentBatchId ? await this.base.ledger.getManifest(state.currentBatchId) : undefined;
    this.violations.push(
      `did not quiesce in 40 rounds: batch in flight ${state.currentBatchId ?? 'none'} ` +
        `(${m ? `${m.state} ${m.done}/${m.messageCount} from ${m.from} to ${m.to}` : 'no manifest'}), ` +
        `cursor ${await this.base.cursor.read()}, lastError ${state.lastError ?? 'none'}, dead letters ${this.dead.length}`,
    );
  }

  // ---- checks ---------------------------------------------------------------------------------

  private async targetRecords() {
    const out = new Map<string, { version: bigint; deleted: boolean }>();
    for await (const r of this.tableTarget.list()) out.set(r.key, r);
    return out;
  }

  private async quarantined(): Promise<Set<string>> {
    const out = new Set<string>();
    for (const q of await this.base.quarantine.list()) {
      if (q.kind !== 'record') this.violations.push(`unexpected ${q.kind} quarantine entry: ${q.error}`);
      out.add(`${q.recordId}|${q.version}`);
    }
    return out;
  }

  /** Every successful cursor write: increasing, and never past a record the target lacks. */
  private async checkCursorWrite(from: bigint | undefined, to: bigint): Promise<void> {
    if (from !== undefined && to <= from)
      this.violations.push(`cursor write ${from} → ${to} does not increase`);
    const prev = this.cursor.writes.at(-2);
    if (prev && to <= prev.to) this.violations.push(`cursor went from ${prev.to} back to ${to}`);
    const target = await this.targetRecords();
    const q = this.o.poisonPolicy === 'quarantine' ? await this.quarantined() : new Set<string>();
    for (const s of this.sim.snapshot()) {
      // A late commit below the cursor is the documented SYNC_LOOKBACK trade-off: checked at the end.
      if (s.lastSubmissionId > to || this.lateIds.has(s.lastSubmissionId)) continue;
      const t = target.get(`leads|${s.RecordID}`);
      if ((!t || t.version < s.lastSubmissionId) && !q.has(`${s.RecordID}|${s.lastSubmissionId}`))
        this.violations.push(
          `cursor ${from ?? '∅'} → ${to} passed ${s.RecordID} v${s.lastSubmissionId} (target has ${t?.version ?? 'nothing'})`,
        );
    }
  }

  /** At most one batch in flight, and it is the view's current batch. */
  private async checkSingleFlight(when: string): Promise<void> {
    const state = await this.base.ledger.getViewState();
    const inFlight: string[] = [];
    for await (const e of this.stateTable.listEntities<{ batchId: string; state: string }>({
      queryOptions: { filter: `RowKey eq 'manifest'`, select: ['batchId', 'state'] },
    })) {
      const live =
        e.state === 'dispatched' ||
        e.state === 'completing' ||
        (e.state === 'dispatching' &&
          (e.batchId === state.currentBatchId || this.sentBatches.has(e.batchId)));
      if (live)
        inFlight.push(`${e.batchId}:${e.state}${e.batchId === state.currentBatchId ? '(current)' : ''}`);
    }
    const stray = inFlight.some((b) => !b.endsWith('(current)'));
    if (inFlight.length > 1 || stray) {
      const v = `${when}: ${inFlight.length} batches in flight [${inFlight.join(', ')}]`;
      if (!this.violations.some((x) => x.includes('batches in flight'))) this.violations.push(v);
    }
  }

  private async checkFinal(): Promise<void> {
    const dup = this.recording.duplicates();
    if (dup.length) this.violations.push(`applied more than once: ${dup.join(', ')}`);
    const target = await this.targetRecords();
    const q = await this.quarantined();
    this.stats.quarantined += q.size;
    const blocking = this.o.poisonPolicy === 'block';
    const cursor = await this.base.cursor.read();
    const state = await this.base.ledger.getViewState();
    // A records message that even the poison queue gave up on is lost unless it was counted
    // (a duplicate of a message already done) or its batch was abandoned and re-planned.
    for (const m of this.dead.filter((d) => d.queue === 'records-poison')) {
      const { batchId, chunk } = JSON.parse(m.text) as { batchId: string; chunk: number };
      if (await this.base.ledger.isMarked(batchId, chunk)) continue;
      const manifest = await this.base.ledger.getManifest(batchId);
      if (manifest?.state !== 'abandoned')
        this.violations.push(
          `records message ${m.messageId} was dead-lettered from the poison queue uncounted`,
        );
    }

    const seen = new Set<string>();
    for (const s of this.sim.snapshot()) {
      const key = `leads|${s.RecordID}`;
      seen.add(key);
      const t = target.get(key);
      const rv = `${s.RecordID}|${s.lastSubmissionId}`;
      if (t && t.version > s.lastSubmissionId)
        this.violations.push(`${key}: target v${t.version} newer than source v${s.lastSubmissionId}`);
      if (t && t.version === s.lastSubmissionId) {
        const deleted = s.fields.State === 'Deleted';
        if (t.deleted !== deleted)
          this.violations.push(`${key}: deleted=${t.deleted}, source State=${String(s.fields.State)}`);
        continue;
      }
      if (q.has(rv)) continue; // the latest version is quarantined (or blocks the view)
      // Behind the block: not synced yet (a blocked view does not re-read its lookback window either).
      if (
        blocking &&
        state.blocked &&
        (cursor === undefined || s.lastSubmissionId > cursor || this.lateIds.has(s.lastSubmissionId))
      )
        continue;
      this.violations.push(
        `${key}: target v${t?.version ?? 'nothing'}, source v${s.lastSubmissionId} (not quarantined)`,
      );
    }
    for (const k of target.keys()) if (!seen.has(k)) this.violations.push(`${k}: in target only`);

    // The quarantine holds exactly the poisoned versions that reached the target, plus versions
    // whose transient target failure happened on the final (isolating) delivery.
    for (const rv of q)
      if (!this.poisonAttempted.has(rv) && !this.justified.has(rv))
        this.violations.push(`quarantined ${rv}, which is neither poisoned nor failed on its last delivery`);
    if (!blocking) {
      for (const rv of this.poisonAttempted)
        if (!q.has(rv)) this.violations.push(`poisoned ${rv} was not quarantined`);
      if (state.blocked)
        this.violations.push(`view blocked under POISON_POLICY=quarantine: ${state.blocked}`);
    } else {
      const entries = await this.base.quarantine.list();
      if (entries.some((e) => e.policy !== 'block'))
        this.violations.push('a block-policy entry is not marked block');
      if (q.size > 0) {
        const h = await healthReport(this.base);
        if (h.status !== 'blocked')
          this.violations.push(`${q.size} poison records but health says ${h.status}`);
        const again = await plan(this.ctxFor(this.newOp(0, 'final tick')), quietLog).catch((e: unknown) => e);
        if ((again as PlanOutcome).kind !== 'blocked')
          this.violations.push(`a tick of the blocked view answered ${summarize(again)}`);
      } else if (state.blocked)
        this.violations.push(`view blocked without a poison record: ${state.blocked}`);
    }
  }
}

function opFaultFor(role: keyof typeof OP_FAULT_POINTS, f: OpFault | null): ArmedFault | undefined {
  if (!f) return undefined;
  const [point, countdown] = OP_FAULT_POINTS[role][f.at]!;
  return { point, kind: f.kind, countdown };
}

class ModelFaults implements Faults {
  constructor(private readonly run: ScheduleRun) {}
  at(point: FaultPoint, detail?: string): Promise<void> {
    return this.run.faultAt(point, detail);
  }
}

class ModelTransport implements Transport {
  readonly maxMessageBytes = 48 * 1024;
  constructor(private readonly run: ScheduleRun) {}
  async send(queue: QueueRole, messages: OutgoingMessage[]): Promise<void> {
    this.run.send(queue, messages);
  }
  async close(): Promise<void> {}
}

class ModelTarget implements TargetSystem {
  constructor(
    private readonly run: ScheduleRun,
    private readonly inner: TableTarget,
  ) {}
  ensureReady() {
    return this.inner.ensureReady();
  }
  apply(r: TargetRecord): Promise<ApplyOutcome> {
    return this.run.targetApply(this.inner, r);
  }
}

function errorName(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function summarize(v: unknown): string {
  if (v instanceof Error) return errorName(v);
  if (typeof v !== 'object' || v === null) return String(v);
  const o = v as Record<string, unknown>;
  return Object.entries(o)
    .filter(([k]) => k !== 'batchId')
    .map(([k, x]) => `${k}=${String(x)}`)
    .join(' ');
}
