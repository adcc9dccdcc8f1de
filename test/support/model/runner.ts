/**
 * One schedule, run: two view-sync flows (`leads`, `inspections`) in one app, each with its own
 * Flowfinity simulator, cursor file and stream state, sharing one records queue, one control
 * queue, the state and quarantine tables and the target table, as a multi-flow deployment does.
 *
 * What is real: Azurite tables and blobs (Ledger, Quarantine, TableTarget, BlobCursorStore),
 * the simulators over HTTP, the composition root and the engine (plan / applyRecordsMessage /
 * handleControlMessage). What is modelled: the transport (an in-memory queue with storage-queue
 * semantics: dequeue count, retry, `<queue>-poison` after the delivery limit, no duplicate
 * detection, message visibility), the clock, and process identity (a crash kills a process and
 * every operation it had suspended; its next operation runs with a new instance id). Only one
 * operation runs at a time; the others are parked at a fault point, so every schedule is
 * deterministic and replayable.
 *
 * The webhook flows (a business-event flow and an external-source flow, webhooks.ts) share the
 * same transport (a `jobs` queue beside records and control), clock, processes and faults.
 */
import { randomBytes } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { applyRecordsMessage } from '../../../src/lib/batch/applier';
import { handleControlMessage } from '../../../src/lib/batch/control';
import type { Engine } from '../../../src/lib/batch/engine';
import { plan, type PlanOutcome } from '../../../src/lib/batch/planner';
import { createApp, createCursorStore } from '../../../src/lib/compose';
import { loadConfig } from '../../../src/lib/config';
import { PermanentError } from '../../../src/lib/errors';
import { isSimulatedCrash, SimulatedCrash, type FaultPoint, type Faults } from '../../../src/lib/faults';
import type { ViewSyncFlow } from '../../../src/lib/flows/view-sync/flow';
import { flowOfStream } from '../../../src/lib/batch/flow';
import type {
  ApplyOutcome,
  Log,
  OutgoingMessage,
  QueueRole,
  TargetRecord,
  TargetSystem,
  Transport,
} from '../../../src/lib/ports';
import { TableTarget } from '../../../src/lib/targets/table-target';
import { FlowfinitySimulator } from '../../../src/local/flowfinity-simulator';
import { RecordingCursor, RecordingTarget } from '../pipeline';
import {
  MODEL_FLOWS,
  OP_FAULT_POINTS,
  stepText,
  type FaultKind,
  type FlowIndex,
  type OpFault,
  type Poison,
  type QueueName,
  type Schedule,
  type Step,
} from './arbitraries';
import { newActivityId, WebhookSide, webhookSettings, type WebhookSims } from './webhooks';
import { checkCursorWrite, checkFinal, checkSingleFlight } from './invariants';
import type { ModelOptions, ModelStats, ModelStore } from './world';

export const LEASE_SECONDS = 60;
/** The model's stall watch; quiesce lets this much time pass between its rounds. */
export const STALL_SECONDS = 60;
/**
 * A deadlock net: an operation of the model never needs this long (everything is local). Not a
 * performance bound: on a starved 2-core machine (seen: a CI run beside `npm run test:long`)
 * one plan operation took over 30 s and then replayed in about 1 s.
 */
const OP_TIMEOUT_MS = 120_000;
const VISIBILITY_SECONDS = 30;

export interface QMsg {
  seq: number;
  queue: 'records' | 'control' | 'records-poison' | 'jobs';
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
  point: string;
  kind: FaultKind;
  countdown: number;
}

interface LateCommit {
  flow: FlowIndex;
  id: bigint;
  commit(): { RecordID: string; lastSubmissionId: bigint };
  poison: Poison;
}

/** One flow of the run: its source, its cursor (recorded) and its runtime. */
export interface FlowWorld {
  index: FlowIndex;
  name: string;
  sim: FlowfinitySimulator;
  cursor: RecordingCursor;
  flow: ViewSyncFlow;
  /** Ids allocated by late commits (the documented SYNC_LOOKBACK trade-off is checked at the end). */
  lateIds: Set<bigint>;
}

const isInjected = (e: unknown) =>
  isSimulatedCrash(e) || (e instanceof Error && e.message.startsWith('injected'));

export class ScheduleRun {
  readonly violations: string[] = [];
  readonly trace: string[] = [];
  readonly flows: FlowWorld[] = [];
  /** The records queue's dead letters: messages even the poison queue gave up on, and control messages past the limit. */
  readonly dead: QMsg[] = [];
  /** `<flow>|<RecordID>|<version>` (a target key and a version) → poison kind. */
  readonly poisoned = new Map<string, Poison>();
  readonly poisonAttempted = new Set<string>();
  /**
   * Versions whose apply failed transiently (target error, injected throw) on a delivery's last
   * attempt: quarantining them is allowed.
   */
  readonly justified = new Set<string>();
  readonly sentBatches = new Set<string>();
  readonly unexpectedErrors: string[] = [];
  readonly recording: RecordingTarget;
  /** Where the records end up: the table target, or the schedule's own store (ModelOptions.store). */
  readonly store: ModelStore;
  readonly stateTable: TableClient;
  readonly engine: Engine;
  /** The business-event flow's target (its own table), recorded like the views'. */
  readonly beStore: ModelStore;
  readonly beRecording: RecordingTarget;
  /** The webhook flows: intake, jobs worker, simulators' state, their invariants. */
  readonly webhooks: WebhookSide;
  /** The schedule's suffix of table, container and WISEflow flow names. */
  readonly id: string;

  private readonly queue: QMsg[] = [];
  private seq = 0;
  private opSeq = 0;
  private stepNo = 0;
  private active: Op | undefined;
  private readonly suspended: Op[] = [];
  private readonly incarnation = [0, 0];
  private armed: ArmedFault[] = [];
  private transientTargetFailures = 0;
  private clock = Date.UTC(2025, 0, 1);
  private readonly lateCommits: LateCommit[] = [];
  private readonly lastApplied = new Map<string, bigint>();
  readonly cleanup: (() => Promise<unknown>)[] = [];
  readonly log: Log = {
    info() {},
    warn: (message) => {
      if (message.startsWith('abandoned')) this.stats.batchesAbandoned++;
    },
    error() {},
  };

  private constructor(
    readonly schedule: Schedule,
    readonly o: ModelOptions,
    sims: FlowfinitySimulator[],
    connectionString: string,
    readonly stats: ModelStats,
    store: ModelStore | undefined,
    webhookSims: WebhookSims,
  ) {
    const id = randomBytes(4).toString('hex');
    this.id = id;
    const [a, b] = sims as [FlowfinitySimulator, FlowfinitySimulator];
    const activity = newActivityId();
    // The first flow uses the flat single-view settings, the second its own Flows__ settings.
    const config = loadConfig({
      FLOWFINITY_VIEW_URL: a.viewUrl,
      FLOWFINITY_ON_BEHALF_OF: 'admin',
      FLOWFINITY_USERNAME: a.username,
      FLOWFINITY_PASSWORD: a.password,
      FLOWFINITY_MAX_RETRIES: '0',
      FLOWFINITY_TIMEOUT_MS: '10000',
      SYNC_VIEW_NAME: MODEL_FLOWS[0],
      [`Flows__${MODEL_FLOWS[1]}__ViewUrl`]: b.viewUrl,
      [`Flows__${MODEL_FLOWS[1]}__MaxBatch`]: String(schedule.maxBatch2),
      SYNC_STALL_SECONDS: String(STALL_SECONDS),
      AzureWebJobsStorage: connectionString,
      TRANSPORT: 'storagequeue',
      CURSOR_STORE: 'blob',
      CURSOR_SHARE_NAME: `mcursor-${id}`,
      SYNC_TABLE_PREFIX: `m${id}`,
      TARGET_TABLE_NAME: `mtarget${id}`,
      SYNC_MAX_ATTEMPTS: String(schedule.maxAttempts),
      SYNC_MAX_BATCH: String(schedule.maxBatch),
      SYNC_RECORDS_PER_MESSAGE: String(schedule.recordsPerMessage),
      SYNC_LOOKBACK: String(o.lookback ?? 1000),
      SYNC_PLAN_LEASE_SECONDS: String(LEASE_SECONDS),
      POISON_POLICY: o.poisonPolicy,
      ...webhookSettings(webhookSims, id, activity),
    });
    const table = (name: string) =>
      TableClient.fromConnectionString(connectionString, name, { allowInsecureConnection: true });
    this.store = store ?? Object.assign(new TableTarget(table(`mtarget${id}`)), { close: async () => {} });
    this.recording = new RecordingTarget(new ModelTarget(this, this.store));
    const beTable = new TableTarget(table(`mbe${id}`));
    this.beStore = Object.assign(beTable, { close: async () => {} });
    // Its table is made on first use (TableTarget.apply/list): a schedule without business
    // events pays nothing for the flow.
    this.beRecording = new RecordingTarget(
      new ModelTarget(this, { apply: (r) => beTable.apply(r), ensureReady: async () => {} }),
    );
    const cursors = new Map<string, RecordingCursor>();
    for (const f of config.flows)
      cursors.set(
        f.name,
        new RecordingCursor(createCursorStore(config, f), (from, to) =>
          checkCursorWrite(this, this.flowNamed(f.name), from, to),
        ),
      );
    const app = createApp(config, {
      target: () => this.recording,
      cursor: (f) => cursors.get(f.name)!,
      businessEventTarget: () => this.beRecording,
      transport: new ModelTransport(this),
      faults: new ModelFaults(this),
      now: () => this.clock,
      // The applier's back-off before a redelivery: the model's deliveries are its own steps.
      sleep: async () => {},
      instanceId: 'p0.0',
    });
    this.engine = app.engine;
    MODEL_FLOWS.forEach((name, index) =>
      this.flows.push({
        index: index as FlowIndex,
        name,
        sim: sims[index]!,
        cursor: cursors.get(name)!,
        flow: app.flow(name),
        lateIds: new Set(),
      }),
    );
    this.stateTable = table(`m${id}state`);
    this.webhooks = new WebhookSide(this, webhookSims, config, app, activity, connectionString, id);
    for (const t of [`m${id}state`, `m${id}quarantine`, `mtarget${id}`, `mbe${id}`, ...this.webhooks.tables])
      this.cleanup.push(() => table(t).deleteTable());
    this.cleanup.push(() =>
      BlobServiceClient.fromConnectionString(connectionString)
        .getContainerClient(`mcursor-${id}`)
        .deleteIfExists(),
    );
  }

  static async create(
    connectionString: string,
    schedule: Schedule,
    o: ModelOptions,
    stats: ModelStats,
    webhookSims: WebhookSims,
  ): Promise<ScheduleRun> {
    // Seeds apart, so the two sources' records differ in content; ids are allocated from
    // different ranges too, as in one Flowfinity account where ids are system-wide.
    const sims = [
      await FlowfinitySimulator.start({ initialRecords: schedule.initialRecords, seed: 3 }),
      await FlowfinitySimulator.start({
        initialRecords: schedule.initialRecords,
        seed: 4,
        viewName: 'InspectionSync',
        firstSubmissionId: 5000n,
      }),
    ];
    const store = o.store ? await o.store() : undefined;
    const run = new ScheduleRun(schedule, o, sims, connectionString, stats, store, webhookSims);
    if (store) run.cleanup.push(() => store.close());
    await run.engine.ensureReady();
    WebhookSide.create(run.webhooks, run.id);
    webhookSims.current = run.webhooks;
    return run;
  }

  async dispose(): Promise<void> {
    if (this.webhooks.sims.current === this.webhooks) this.webhooks.sims.current = undefined;
    await Promise.all(this.flows.map((f) => f.sim.stop()));
    await Promise.all(this.cleanup.map((c) => c().catch(() => undefined)));
  }

  flowNamed(name: string): FlowWorld {
    return this.flows.find((f) => f.name === name)!;
  }

  // ---- hooks used by the model's ports ------------------------------------------------------

  /** The model's clock (ms). */
  now(): number {
    return this.clock;
  }

  async faultAt(point: string, detail?: string): Promise<void> {
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
        const body = JSON.parse(op.msg.text) as { stream: string; records: { id: string; v: string }[] };
        const r = body.records.find((x) => x.id === id);
        if (r) this.justified.add(`${flowOfStream(body.stream)}|${r.id}|${r.v}`);
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
    const rv = `${r.key}|${r.version}`;
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

  newOp(proc: number, label: string, extra: Partial<Op> = {}): Op {
    return {
      id: ++this.opSeq,
      proc,
      incarnation: this.incarnation[proc]!,
      label,
      isolating: false,
      ...extra,
    };
  }

  /** The engine as process `op.proc` in its current incarnation sees it. */
  engineFor(op: Op): Engine {
    return this.engine.withDeps({ instanceId: `p${op.proc}.${op.incarnation}` });
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

  /** Runs one operation of a webhook step (a POST, a poll) as process `proc`. */
  runOp(
    proc: number,
    label: string,
    fault: OpFault | null,
    role: keyof typeof OP_FAULT_POINTS,
    fn: (e: Engine) => Promise<unknown>,
  ): Promise<Settled | 'paused'> {
    return this.start(this.newOp(proc, label, { fault: opFaultFor(role, fault) }), fn);
  }

  private start(op: Op, fn: (e: Engine) => Promise<unknown>): Promise<Settled | 'paused'> {
    const engine = this.engineFor(op);
    const paused = this.pauseSignal(op);
    this.active = op;
    op.done = fn(engine).then(
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
    if (q === 'jobs') return this.queue.filter((m) => m.queue === 'jobs' && m.lockedBy === undefined);
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
      m.queue === 'jobs'
        ? WebhookSide.jobRole(body)
        : m.queue !== 'control'
          ? 'apply'
          : (body as { type?: string }).type === 'poll'
            ? 'plan'
            : 'complete';
    op.fault = opFaultFor(role, fault);
    return this.start(op, (e) =>
      m.queue === 'jobs'
        ? this.webhooks.runJob(e, body, m.dequeueCount, this.log)
        : m.queue === 'control'
          ? handleControlMessage(e, body, this.log)
          : applyRecordsMessage(
              e,
              body,
              poison
                ? { deliveryCount: m.dequeueCount, poison: true, poisonReason: 'delivery limit exceeded' }
                : { deliveryCount: m.dequeueCount },
              this.log,
            ),
    );
  }

  private tick(f: FlowWorld, procNo: number, fault: OpFault | null = null): Promise<Settled | 'paused'> {
    return this.start(this.newOp(procNo, `tick ${f.name}`, { fault: opFaultFor('plan', fault) }), (e) =>
      plan(e, f.flow, this.log),
    );
  }

  private pick<T>(list: T[], i: number): T | undefined {
    return list.length ? list[i % list.length] : undefined;
  }

  private poison(f: FlowWorld, r: { RecordID: string; lastSubmissionId: bigint }, p: Poison): void {
    if (p !== 'none') this.poisoned.set(`${f.name}|${r.RecordID}|${r.lastSubmissionId}`, p);
  }

  // ---- the schedule ---------------------------------------------------------------------------

  async execute(): Promise<void> {
    this.stats.schedules++;
    this.stats.steps += this.schedule.steps.length;
    for (const [n, step] of this.schedule.steps.entries()) {
      this.stepNo = n;
      this.trace.push(`${n}: ${stepText(step)}`);
      await this.step(step);
      await checkSingleFlight(this, `after step ${n} (${stepText(step)})`);
    }
    await this.quiesce();
    const finals = await this.webhooks.finalRequests();
    await this.drainJobs();
    await checkFinal(this);
    await this.webhooks.checkFinal(finals);
    this.stats.recordsApplied += this.recording.writes;
    if (this.violations.length && this.unexpectedErrors.length)
      this.violations.push(`(unexpected errors seen: ${[...new Set(this.unexpectedErrors)].join('; ')})`);
  }

  private async step(s: Step): Promise<void> {
    switch (s.t) {
      case 'insert': {
        const f = this.flows[s.flow]!;
        this.poison(f, f.sim.insert(), s.poison);
        return;
      }
      case 'update':
      case 'remove': {
        const f = this.flows[s.flow]!;
        const target = this.pick(f.sim.snapshot(), s.rec);
        if (!target) return;
        const r = s.t === 'update' ? f.sim.update(target.RecordID) : f.sim.remove(target.RecordID);
        this.poison(f, r, s.poison);
        return;
      }
      case 'lateBegin': {
        const f = this.flows[s.flow]!;
        const rec = s.rec === null ? undefined : this.pick(f.sim.snapshot(), s.rec)?.RecordID;
        if (s.rec !== null && rec === undefined) return;
        const late = f.sim.beginLateCommit(rec);
        f.lateIds.add(late.id);
        this.lateCommits.push({ flow: s.flow, id: late.id, commit: late.commit, poison: s.poison });
        return;
      }
      case 'lateCommit': {
        if (!this.lateCommits.length) return;
        const late = this.lateCommits.splice(s.i % this.lateCommits.length, 1)[0]!;
        await this.commitLate(late);
        return;
      }
      case 'tick':
        await this.tick(this.flows[s.flow]!, s.proc, s.fault);
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
      default:
        await this.webhooks.step(s, this.stepNo);
        return;
    }
  }

  private async commitLate(late: LateCommit): Promise<void> {
    const f = this.flows[late.flow]!;
    const cursor = await f.cursor.read();
    if (cursor !== undefined && late.id <= cursor) this.stats.lateCommitsBelowCursor++;
    this.poison(f, late.commit(), late.poison);
  }

  /** Delivers the jobs queue until it is empty (the final WISEflow requests of quiesce). */
  private async drainJobs(): Promise<void> {
    for (let n = 0; n < 200; n++) {
      const m = this.queue.find((x) => x.queue === 'jobs');
      if (!m) return;
      await this.deliver(m, 0, false);
    }
    this.violations.push('quiesce: the jobs queue did not drain in 200 deliveries');
  }

  private async quiesce(): Promise<void> {
    this.trace.push('quiesce:');
    this.armed = [];
    this.transientTargetFailures = 0;
    this.webhooks.faultsOff();
    while (this.suspended.length) {
      const op = this.suspended.shift()!;
      await this.continueOp(op, false);
      await checkSingleFlight(this, `quiesce: after resuming op ${op.id}`);
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
      const outcomes: (PlanOutcome | undefined)[] = [];
      for (const f of this.flows) {
        const t = await this.tick(f, 0);
        await checkSingleFlight(this, `quiesce: after tick ${round} of ${f.name}`);
        outcomes.push(t !== 'paused' && t.ok ? (t.value as PlanOutcome) : undefined);
      }
      await this.webhooks.quiesceRound();
      let deliveries = 0;
      while (this.queue.length) {
        if (++deliveries > 4000) {
          this.violations.push('quiesce: more than 4000 deliveries in one round');
          return;
        }
        await this.deliver(this.queue[0]!, 0, false);
      }
      if (this.lateCommits.length) continue;
      let quiet = this.recording.writes === writesBefore;
      for (const [i, f] of this.flows.entries()) {
        const outcome = outcomes[i];
        if (outcome?.kind === 'blocked') continue; // a blocked flow waits for its operator
        const quietTick =
          outcome?.kind === 'empty' || (outcome?.kind === 'planned' && outcome.from === outcome.to);
        const state = await this.engine.ledger(f.name).getState();
        if (!quietTick || state.currentBatchId) quiet = false;
      }
      if (quiet && (await this.webhooks.quiet())) return;
    }
    const lines: string[] = [];
    for (const f of this.flows) {
      const ledger = this.engine.ledger(f.name);
      const state = await ledger.getState();
      const m = state.currentBatchId ? await ledger.getManifest(state.currentBatchId) : undefined;
      lines.push(
        `${f.name}: batch in flight ${state.currentBatchId ?? 'none'} ` +
          `(${m ? `${m.state} ${m.done}/${m.messageCount} from ${m.from} to ${m.to}` : 'no manifest'}), ` +
          `cursor ${await f.cursor.read()}, lastError ${state.lastError ?? 'none'}`,
      );
    }
    this.violations.push(
      `did not quiesce in 40 rounds: ${lines.join('; ')}; dead letters ${this.dead.length}`,
    );
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
    private readonly inner: TargetSystem,
  ) {}
  ensureReady() {
    return this.inner.ensureReady?.() ?? Promise.resolve();
  }
  apply(r: TargetRecord): Promise<ApplyOutcome> {
    return this.run.targetApply(this.inner, r);
  }
}

export function errorName(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

export function summarize(v: unknown): string {
  if (v instanceof Error) return errorName(v);
  if (typeof v !== 'object' || v === null) return String(v);
  const o = v as Record<string, unknown>;
  return Object.entries(o)
    .filter(([k]) => k !== 'batchId')
    .map(([k, x]) => `${k}=${String(x)}`)
    .join(' ');
}
