/**
 * The webhook flows of the model (issue 12 item 4), run in the same schedules as the two view
 * syncs, on the same modelled transport (a `jobs` queue beside records and control), clock,
 * processes and fault points:
 *
 * - business events (`erp`): the F&O simulator's Data export events go through the REAL intake
 *   (createWebhookIntake + businessEventRoute) into the jobs queue; the REAL jobs worker
 *   (runWebhookJob + businessEventJobHandler) plans each export on its own stream; its records
 *   drain through the engine like the views'. Also polling mode: pollOnce dequeues, the batch's
 *   completion acknowledges. Events re-delivered, older exports after newer ones, expired URLs
 *   (fresh ones from the package API), 503 downloads, lost acks and F&O re-deliveries.
 * - external sources (`wiseflow`): signed FLOW_EXTERNAL_SOURCE webhooks from the WISEflow
 *   simulator through the real intake; the real ExternalSourceService handler (update routine,
 *   allocation memory on Azurite, roster simulator) in the jobs worker. Roster changes,
 *   duplicate webhooks, 429 storms, 503s, archived flows (403) and invalid rosters (permanent).
 *
 * The simulators are started once per world (ModelWorld) and shared by its schedules; each
 * schedule has its own F&O activity, WISEflow flows and roster references, tables and stores.
 * A webhook POST is an operation like a tick (it can throw, die or pause at the intake's fault
 * points); the sender retries a POST that got no 202, as F&O and WISEflow do.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import type { Engine } from '../../../src/lib/batch/engine';
import type { AppServices } from '../../../src/lib/compose';
import type { Config } from '../../../src/lib/config';
import type { BusinessEvent } from '../../../src/lib/finops';
import { BusinessEventFlow } from '../../../src/lib/flows/business-event/flow';
import { businessEventRoute } from '../../../src/lib/flows/business-event/route';
import {
  BUSINESS_EVENT_JOB_KIND,
  businessEventJobHandler,
  pollOnce,
  repairBusinessEventStreams,
  setFinopsLocalOverrides,
} from '../../../src/lib/flows/business-event/runtime';
import { ExternalSourceService } from '../../../src/lib/flows/external-source/service';
import { runWebhookJob, type JobHandler } from '../../../src/lib/jobs/worker';
import type { Log, StoredTargetRecord } from '../../../src/lib/ports';
import { createWebhookIntake, type IntakeResult, type WebhookIntake } from '../../../src/lib/webhooks';
import { WebhookStore } from '../../../src/lib/webhooks/store';
import { referenceFromFlowCode } from '../../../src/lib/wiseflow/references';
import { FinOpsSimulator } from '../../../src/local/finops-simulator';
import { localWiseflowSettings } from '../../../src/local/local-settings';
import { RosterSimulator } from '../../../src/local/roster-simulator';
import { WiseflowSimulator } from '../../../src/local/wiseflow-simulator';
import { OP_FAULT_POINTS, type FlowIndex, type OpFault, type Step } from './arbitraries';
import type { ScheduleRun } from './runner';

export const BE_FLOW = 'erp';
export const ES_FLOW = 'wiseflow';
const ENTITY = 'Customer groups';
const WEBHOOK_SECRET = 'model-webhook-secret-0123456789abcdef';
/** F&O re-delivers a dequeued message not acknowledged within this (its own clock). */
const REDELIVERY_MS = 60_000;
/** F&O and WISEflow retry a POST that got no 2xx; the model's senders try this many times. */
const SENDER_ATTEMPTS = 3;
/** Participants of every WISEflow flow of a schedule: 1..6. */
const PARTICIPANTS = [1, 2, 3, 4, 5, 6];

/** The external systems' simulators, shared by every schedule of a world. */
export interface WebhookSims {
  fno: FinOpsSimulator;
  wf: WiseflowSimulator;
  roster: RosterSimulator;
  /** The run whose acks the F&O simulator reports to (one schedule runs at a time). */
  current?: WebhookSide;
}

export async function startWebhookSims(): Promise<WebhookSims> {
  const fno = await FinOpsSimulator.start({ redeliveryMs: REDELIVERY_MS });
  // The business-event flows reach the simulator on loopback with its certificate (test only).
  setFinopsLocalOverrides({
    unsafeTestOnly: { allowLoopback: true, extraCaPem: fno.caPem },
    credential: fno.credential(),
  });
  const sims: WebhookSims = {
    fno,
    wf: await WiseflowSimulator.start(),
    roster: await RosterSimulator.start(),
  };
  fno.onAck = (correlationId) => sims.current?.onAck(correlationId);
  return sims;
}

export async function stopWebhookSims(s: WebhookSims): Promise<void> {
  await s.fno.close();
  await s.wf.stop();
  await s.roster.stop();
  setFinopsLocalOverrides(undefined);
}

/** The settings that add the two webhook flows to a schedule's app. */
export function webhookSettings(sims: WebhookSims, id: string, activity: string): Record<string, string> {
  return {
    [`Flows__${BE_FLOW}__Type`]: 'business-event',
    [`Flows__${BE_FLOW}__EntityKeys`]: `${ENTITY}=CustomerGroupId`,
    [`Flows__${BE_FLOW}__DownloadAllowedHosts`]: '127.0.0.1',
    [`Flows__${BE_FLOW}__FnoBaseUrl`]: sims.fno.baseUrl,
    [`Flows__${BE_FLOW}__PollActivityId`]: activity,
    [`Flows__${BE_FLOW}__TargetTableName`]: `mbe${id}`,
    ...localWiseflowSettings({
      flow: ES_FLOW,
      baseUrl: sims.wf.baseUrl,
      clientId: sims.wf.credentials.clientId,
      clientSecret: sims.wf.credentials.clientSecret,
      webhookSecret: WEBHOOK_SECRET,
      rosterViewUrl: sims.roster.viewUrl,
      rosterUsername: sims.roster.username,
      rosterPassword: sims.roster.password,
    }),
    // A failing call is retried by the jobs queue, not inside the client (the model's deliveries
    // are its own steps). 429s are still waited out by the client (RateLimit-Reset 0 here).
    WISEFLOW_MAX_RETRIES: '0',
  };
}

interface SentEvent {
  json: string;
  eventId: string;
  controlNumber: bigint;
  stream: string;
  /** key → Description of the row in this export. */
  rows: Map<string, string>;
}

interface Polled {
  correlationId: string;
  rows: Map<string, string>;
}

interface WfFlow {
  id: number;
  code: string;
  references: string[];
}

/** An accepted webhook: the marker it must bring to a terminal state. */
interface Accepted {
  route: string;
  eventId: string;
  /** business events: the export's stream; WISEflow: the flow. */
  be?: SentEvent;
  wf?: WfFlow;
}

const beKey = (id: string) => `${BE_FLOW}|${ENTITY}:CustomerGroupId=${id}`;

export class WebhookSide {
  readonly store: WebhookStore;
  readonly es: ExternalSourceService;
  readonly be: BusinessEventFlow;
  private readonly beIntake: WebhookIntake;
  private readonly esIntake: WebhookIntake;
  private readonly events: SentEvent[] = [];
  private readonly polled: Polled[] = [];
  private readonly calls: { payload: Record<string, unknown>; flow: WfFlow }[] = [];
  private readonly accepted = new Map<string, Accepted>();
  readonly wfFlows: WfFlow[] = [];
  private maxCn = 2n ** 60n;
  private minCn = 2n ** 60n;
  private exports = 0;
  private lastPollEmpty = true;
  private storeReady = false;
  /** Accepted events known to be done or failed (terminal: never read again). */
  private readonly terminal = new Set<string>();
  /** Some accepted event was not terminal at the last quiet check. */
  private unfinished = false;
  /** Some POST never got its 202 (its marker may be left pending). */
  private unanswered = false;
  readonly tables: string[];

  constructor(
    private readonly run: ScheduleRun,
    readonly sims: WebhookSims,
    readonly config: Config,
    readonly app: AppServices,
    readonly activity: string,
    connectionString: string,
    id: string,
  ) {
    const table = (name: string) =>
      TableClient.fromConnectionString(connectionString, name, { allowInsecureConnection: true });
    // The model's clock: claim leases and the intake's timestamp window follow the schedule's time.
    const now = () => run.now();
    this.store = new WebhookStore(table(`m${id}webhooks`), { now });
    this.es = new ExternalSourceService(config.externalSourceFlows[0]!, {
      allocationTable: table(`m${id}wiseflowallocations`),
      faults: { at: (point, detail) => run.faultAt(point, detail) },
    });
    this.be = app.businessEventFlows[0]!;
    const intakeOptions = {
      store: this.store,
      transport: app.engine.transport,
      now,
      faults: { at: (point: string, detail?: string) => run.faultAt(point, detail) },
      // A duplicate of a pending event re-sends at once (the model's clock stands still in a step).
      pendingWaitMs: 0,
    };
    this.beIntake = createWebhookIntake(businessEventRoute(app.businessEventFlows), intakeOptions);
    this.esIntake = createWebhookIntake(this.es.route(), intakeOptions);
    this.tables = [`m${id}webhooks`, `m${id}wiseflowallocations`];
  }

  static create(side: WebhookSide, id: string): void {
    // Two WISEflow flows: one with no source yet (the routine creates it from the flow code),
    // one with two sources.
    const { wf, roster } = side.sims;
    const a = `MA${id}`;
    const b = `MB${id}`;
    const aId = wf.addFlow({ code: a, participants: PARTICIPANTS });
    const bId = wf.addFlow({ code: b, participants: PARTICIPANTS });
    wf.addSource(bId, `${b}-X`);
    wf.addSource(bId, `${b}-Y`, [6]);
    side.wfFlows.push(
      { id: aId, code: a, references: [referenceFromFlowCode(a, String(aId))] },
      { id: bId, code: b, references: [`${b}-X`, `${b}-Y`] },
    );
    roster.set(side.wfFlows[0]!.references[0]!, [1, 2, 3]);
    roster.set(`${b}-X`, [2, 4]);
    roster.set(`${b}-Y`, []);
  }

  // ---- steps --------------------------------------------------------------------------------

  async step(s: Step, n: number): Promise<void> {
    const { fno, wf, roster } = this.sims;
    switch (s.t) {
      case 'beEvent': {
        const rows = new Map<string, string>();
        const spec = [];
        for (let i = s.first; i < s.first + s.rows; i++) {
          spec.push({ CustomerGroupId: `G${i}`, Description: `s${n}` });
          rows.set(beKey(`G${i}`), `s${n}`);
        }
        const handle = fno.addExport({
          entity: ENTITY,
          format: 'csv',
          columns: ['CustomerGroupId', 'Description'],
          rows: spec,
        });
        const controlNumber = s.older ? (this.minCn -= 7n) : (this.maxCn += 3n);
        const e = fno.businessEventJson(handle, {
          controlNumber,
          urlTtlMs: s.expired ? -60_000 : undefined,
        });
        const event: BusinessEvent = {
          BusinessEventId: 'DataExportBusinessEvent',
          ControlNumber: controlNumber.toString(),
          EventId: e.eventId,
        } as BusinessEvent;
        const sent: SentEvent = {
          json: e.json,
          eventId: e.eventId,
          controlNumber,
          stream: this.be.eventStream(event),
          rows,
        };
        this.events.push(sent);
        this.run.stats.businessEvents++;
        await this.post('be', e.json, { 'content-type': 'application/json' }, s.fault, { be: sent });
        return;
      }
      case 'beResend': {
        const e = this.events[s.i % Math.max(1, this.events.length)];
        if (!e) return;
        this.run.stats.webhookResends++;
        await this.post('be', e.json, { 'content-type': 'application/json' }, null, { be: e });
        return;
      }
      case 'beEnqueue': {
        const x = this.exports++;
        const rows = new Map<string, string>();
        const spec = [];
        for (let i = 0; i < s.rows; i++) {
          spec.push({ CustomerGroupId: `P${x}-${i}`, Description: `polled ${x}` });
          rows.set(beKey(`P${x}-${i}`), `polled ${x}`);
        }
        const handle = fno.addExport({
          entity: ENTITY,
          format: 'csv',
          columns: ['CustomerGroupId', 'Description'],
          rows: spec,
        });
        this.polled.push({ correlationId: fno.enqueue(this.activity, handle).correlationId, rows });
        return;
      }
      case 'bePoll':
        await this.poll(s.proc, s.fault);
        return;
      case 'beFno':
        if (s.what === 'download503') fno.faults.failNext(1, { route: 'download', status: 503 });
        // F&O refuses the ack (as a stale PopReceipt): the message comes back and is acked then.
        else if (s.what === 'ackLost') fno.faults.failNext(1, { route: 'ack', status: 400 });
        else fno.advance(REDELIVERY_MS + 1);
        return;
      case 'wfRequest': {
        const flow = this.wfFlows[s.flow]!;
        const payload = wf.externalSourcePayload(flow.id, { timestampMs: this.run.now() });
        this.calls.push({ payload, flow });
        this.run.stats.wiseflowRequests++;
        await this.postWiseflow(payload, flow, s.fault);
        return;
      }
      case 'wfResend': {
        const c = this.calls[s.i % Math.max(1, this.calls.length)];
        if (!c) return;
        this.run.stats.webhookResends++;
        await this.postWiseflow(c.payload, c.flow, null);
        return;
      }
      case 'wfRoster': {
        const flow = this.wfFlows[s.flow]!;
        const reference = flow.references[s.src % flow.references.length]!;
        const ids: (number | string)[] = PARTICIPANTS.filter((_, i) => (s.members >> i) & 1);
        if (s.invalid) ids.push('not-a-participant');
        roster.set(reference, ids);
        return;
      }
      case 'wfApi': {
        const flow = this.wfFlows[s.flow]!;
        if (s.what === '429') wf.faults.rateLimitStorm(s.n, 0);
        else if (s.what === '503') wf.faults.failNext(s.n, 503);
        else wf.setArchived(flow.id, s.what === 'archive');
        return;
      }
      default:
        throw new Error(`not a webhook step: ${s.t}`);
    }
  }

  private postWiseflow(payload: Record<string, unknown>, flow: WfFlow, fault: OpFault | null) {
    const call = this.sims.wf.buildWebhookCall(payload, {
      secret: WEBHOOK_SECRET,
      timestampMs: this.run.now(),
    });
    return this.post('es', call.body, call.headers, fault, { wf: flow });
  }

  /**
   * One delivery by the sender: POSTs until a 202 (at most SENDER_ATTEMPTS). A POST that died
   * or hangs (paused) is retried at once, as a sender whose request failed or timed out does.
   */
  private async post(
    which: 'be' | 'es',
    body: string,
    headers: Record<string, string>,
    fault: OpFault | null,
    about: Omit<Accepted, 'route' | 'eventId'>,
  ): Promise<void> {
    const intake = which === 'be' ? this.beIntake : this.esIntake;
    // Made on first use: a schedule without webhooks pays nothing for them.
    if (!this.storeReady) {
      await this.store.ensureReady();
      this.storeReady = true;
    }
    for (let attempt = 0; attempt < SENDER_ATTEMPTS; attempt++) {
      const r = await this.run.runOp(
        0,
        `POST ${intake.route}${attempt ? ` (retry ${attempt})` : ''}`,
        attempt === 0 ? fault : null,
        'intake',
        () => intake.handle({ method: 'POST', url: `/api/webhooks/${intake.route}`, headers, body }),
      );
      if (r === 'paused' || !r.ok) continue;
      const res = r.value as IntakeResult;
      if (res.status >= 500) continue;
      if (res.status !== 202 || res.outcome === 'ignored' || !res.eventId) {
        this.run.violations.push(
          `a valid ${intake.route} webhook was answered ${res.status} ${JSON.stringify(res.body)}`,
        );
        return;
      }
      this.run.stats.webhooksAccepted++;
      if (res.outcome === 'duplicate') this.run.stats.webhookDuplicates++;
      this.accepted.set(`${intake.route}|${res.eventId}`, {
        route: intake.route,
        eventId: res.eventId,
        ...about,
      });
      return;
    }
    this.unanswered = true;
  }

  private async poll(proc: number, fault: OpFault | null): Promise<void> {
    const r = await this.run.runOp(proc, `poll ${BE_FLOW}`, fault, 'plan', (e) =>
      pollOnce(e, this.be, this.run.log),
    );
    this.lastPollEmpty = r !== 'paused' && r.ok && (r.value as { kind: string }).kind === 'empty';
  }

  /** The jobs worker, as process `e` sees it: the real handlers of both webhook flows. */
  runJob(e: Engine, body: unknown, deliveryCount: number, log: Log) {
    const handlers = new Map<string, JobHandler>([
      [BUSINESS_EVENT_JOB_KIND, businessEventJobHandler(e, this.app.businessEventFlows)],
      [this.es.handler.kind, this.es.handler],
    ]);
    return runWebhookJob(
      body,
      { deliveryCount, maxDeliveries: this.run.schedule.maxAttempts },
      { store: this.store, handlers, log },
    );
  }

  /** Which op-fault points a jobs message's delivery uses. */
  static jobRole(body: unknown): keyof typeof OP_FAULT_POINTS {
    return (body as { jobKind?: string }).jobKind === BUSINESS_EVENT_JOB_KIND ? 'plan' : 'routine';
  }

  // ---- F&O's ack: the package must be fully applied by then ---------------------------------

  async onAck(correlationId: string): Promise<void> {
    const p = this.polled.find((x) => x.correlationId === correlationId);
    if (!p) return;
    this.run.stats.acks++;
    const target = await this.beTarget();
    const q = await this.beQuarantined();
    for (const [key, desc] of p.rows) {
      const t = target.get(key);
      if (t?.data.Description !== desc && ![...q].some((x) => x.startsWith(`${key}|`)))
        this.run.violations.push(
          `F&O message ${correlationId} acknowledged before ${key} was applied (target has ${t ? String(t.data.Description) : 'nothing'})`,
        );
    }
  }

  private async beTarget(): Promise<Map<string, StoredTargetRecord>> {
    const out = new Map<string, StoredTargetRecord>();
    for await (const r of this.run.beStore.list()) out.set(r.key, r);
    return out;
  }

  /** `<key>|<version>` of the business-event flow's quarantined records, and its other entries. */
  private async beQuarantined(): Promise<Set<string>> {
    const out = new Set<string>();
    for (const q of await this.run.engine.quarantine(BE_FLOW).list())
      out.add(
        q.kind === 'transient-exhausted' || q.kind === 'record'
          ? `${BE_FLOW}|${q.recordId}|${q.version}`
          : `${q.kind}:${q.recordId}`,
      );
    return out;
  }

  // ---- quiescing ----------------------------------------------------------------------------

  /** Faults off on the external systems' side (their switches are shared by the world's schedules). */
  faultsOff(): void {
    const { fno, wf } = this.sims;
    fno.faults.clear();
    wf.faults.failNext(0);
    wf.faults.rateLimitStorm(0);
    for (const f of this.wfFlows) wf.setArchived(f.id, false);
  }

  /** A quiesce round: F&O's clock past the re-delivery interval, then poll until empty. */
  async quiesceRound(): Promise<void> {
    // The redispatch timer: jobs of events whose worker died holding the claim, or never sent.
    // (Only once something is left to re-send: each run is four table queries.)
    if (this.storeReady && (this.unfinished || this.unanswered))
      for (const intake of [this.beIntake, this.esIntake])
        await this.run.runOp(0, `redispatch ${intake.route}`, null, 'intake', () => intake.redispatchStale());
    // The flow's repair timer (time passes between rounds): exports whose batch is in flight.
    if ([...this.accepted.values()].some((a) => a.be) || this.polled.length)
      await this.run.runOp(0, `repair ${BE_FLOW}`, null, 'plan', (e) =>
        repairBusinessEventStreams(e, this.be, this.run.log),
      );
    this.lastPollEmpty = true;
    const waiting = this.sims.fno.activity(this.activity).some((m) => !m.acked);
    if (!waiting) return;
    this.sims.fno.advance(REDELIVERY_MS + 1);
    let first = true;
    let empty = true;
    for (let i = 0; i < 20; i++) {
      await this.poll(0, null);
      if (first) empty = this.lastPollEmpty;
      first = false;
      if (this.lastPollEmpty) break;
    }
    this.lastPollEmpty = empty;
  }

  /** Quiet: the round's first poll found nothing and no business-event stream has a batch in flight. */
  async quiet(): Promise<boolean> {
    if (!this.lastPollEmpty) return false;
    // A claim of a dead worker runs out after the store's lease (model time): wait for it.
    this.unfinished = false;
    for (const [k, a] of this.accepted) {
      if (this.terminal.has(k)) continue;
      const m = await this.store.get({ route: a.route, eventId: a.eventId });
      if (m?.state === 'done' || m?.state === 'failed') this.terminal.add(k);
      else this.unfinished = true;
    }
    if (this.unfinished) return false;
    for (const a of this.accepted.values())
      if (a.be && (await this.run.engine.ledger(a.be.stream).getState()).currentBatchId) return false;
    return true;
  }

  /** After the pipeline is quiet: one last request per WISEflow flow, so its allocations can be compared. */
  async finalRequests(): Promise<Accepted[]> {
    const out: Accepted[] = [];
    // Only the flows that got a request in the schedule (the others owe nothing).
    const requested = new Set([...this.accepted.values()].map((a) => a.wf));
    for (const flow of this.wfFlows.filter((f) => requested.has(f))) {
      const payload = this.sims.wf.externalSourcePayload(flow.id, { timestampMs: this.run.now() });
      const before = this.accepted.size;
      await this.postWiseflow(payload, flow, null);
      if (this.accepted.size === before)
        this.run.violations.push(`the final request of WISEflow flow ${flow.code} was not accepted`);
      out.push([...this.accepted.values()].at(-1)!);
    }
    return out;
  }

  // ---- the invariants -----------------------------------------------------------------------

  async checkFinal(finals: Accepted[]): Promise<void> {
    const v = this.run.violations;
    if (!this.storeReady && this.polled.length === 0) return;
    const quarantine = await this.run.engine.quarantine(BE_FLOW).list();
    const q = await this.beQuarantined();

    // Every accepted webhook reaches a terminal outcome: its job done (sync/done sent, or the
    // export applied) or failed (quarantined, sync/fail where WISEflow has a source to report on).
    // Every export whose stream completed (an event the sender gave up on can still be run: the
    // redispatch timer sends the job of a marker left pending).
    const doneStreams = new Set<string>();
    for (const e of this.events)
      if (BusinessEventFlow.isDone((await this.run.engine.ledger(e.stream).getState()).flowState))
        doneStreams.add(e.stream);
    // Rows of an export whose job failed (quarantined for the operator to replay) may already be
    // in the target: its messages went out before the job gave up (long run, seed 1192043307:
    // the last delivery failed after dispatching, before the batch was finalised). They are its
    // real rows at its ControlNumber, and a replay runs the export to completion.
    const failedRows = new Set<string>();
    for (const a of this.accepted.values()) {
      const m = await this.store.get({ route: a.route, eventId: a.eventId });
      if (a.be && m?.state === 'failed')
        for (const [key] of a.be.rows) failedRows.add(`${key}|${a.be.controlNumber}`);
    }
    for (const a of this.accepted.values()) {
      const m = await this.store.get({ route: a.route, eventId: a.eventId });
      if (!m || (m.state !== 'done' && m.state !== 'failed')) {
        v.push(
          `accepted webhook ${a.route}/${a.eventId} never reached a terminal outcome (marker ${m?.state ?? 'missing'})`,
        );
        continue;
      }
      if (m.state === 'failed') this.run.stats.jobsFailed++;
      else this.run.stats.jobsDone++;
      if (a.be) {
        const state = await this.run.engine.ledger(a.be.stream).getState();
        const done = BusinessEventFlow.isDone(state.flowState);
        const eventQuarantined = quarantine.some((x) => x.recordId === `event:${a.be!.eventId}`);
        if (!done && m.state === 'done' && !eventQuarantined)
          v.push(
            `business event ${a.eventId}: job done but its export (stream ${a.be.stream}) never completed`,
          );
      }
      if (a.wf && m.state === 'done') {
        const synced = this.sims.wf.syncCalls.some(
          (c) => c.flowId === a.wf!.id && c.kind === 'done' && c.status === 200,
        );
        if (!synced) v.push(`WISEflow request ${a.eventId} done without any sync/done for flow ${a.wf.code}`);
      }
    }
    for (const x of quarantine)
      if (
        x.kind !== 'transient-exhausted' ||
        !this.run.justified.has(`${BE_FLOW}|${x.recordId}|${x.version}`)
      )
        v.push(
          `unexpected quarantine entry of ${BE_FLOW}: ${x.kind} ${x.recordId} v${x.version ?? ''}: ${x.error}`,
        );

    // The target equals the source modulo quarantine: per key, the newest export that completed
    // (an older export after a newer changes nothing); polled files' rows; nothing else.
    const target = await this.beTarget();
    const expected = new Map<string, { version: bigint; desc: string }>();
    const known = new Map<string, Set<bigint>>();
    for (const e of this.events)
      for (const [key, desc] of e.rows) {
        known.set(key, (known.get(key) ?? new Set()).add(e.controlNumber));
        const x = expected.get(key);
        if (doneStreams.has(e.stream) && (!x || x.version < e.controlNumber))
          expected.set(key, { version: e.controlNumber, desc });
      }
    for (const [key, x] of expected) {
      const t = target.get(key);
      if (q.has(`${key}|${x.version}`)) continue;
      if (t && t.version > x.version && failedRows.has(`${key}|${t.version}`)) continue;
      if (!t || t.version !== x.version || t.data.Description !== x.desc)
        v.push(
          `${key}: target ${t ? `v${t.version} ${String(t.data.Description)}` : 'nothing'}, newest completed export v${x.version} ${x.desc}`,
        );
    }
    const polledKeys = new Map<string, string>();
    for (const p of this.polled) for (const [k, d] of p.rows) polledKeys.set(k, d);
    for (const [key, t] of target) {
      if (polledKeys.has(key)) continue;
      if (!known.get(key)?.has(t.version)) v.push(`${key} v${t.version}: in the target, from no export sent`);
      else if (!expected.has(key) && !failedRows.has(`${key}|${t.version}`))
        v.push(`${key} v${t.version}: applied from an export that never completed`);
    }
    // Polling: every file F&O handed out is acknowledged in the end, and its rows are applied.
    const activity = new Map(this.sims.fno.activity(this.activity).map((m) => [m.correlationId, m]));
    for (const p of this.polled) {
      const m = activity.get(p.correlationId);
      if (m && m.deliveries > 0 && !m.acked) v.push(`F&O message ${p.correlationId} was never acknowledged`);
      if (!m?.acked) continue;
      for (const [key, desc] of p.rows)
        if (target.get(key)?.data.Description !== desc && ![...q].some((x) => x.startsWith(`${key}|`)))
          v.push(`${key}: polled row not in the target (${String(target.get(key)?.data.Description)})`);
    }
    const dup = this.run.beRecording.duplicates();
    if (dup.length) v.push(`business-event rows applied more than once: ${dup.join(', ')}`);

    // WISEflow: after the final request, each source's allocations equal its roster, unless that
    // request failed permanently (an invalid roster: sync/fail, quarantined).
    for (const a of finals) {
      if (!a?.wf) continue;
      const m = await this.store.get({ route: a.route, eventId: a.eventId });
      if (m?.state === 'failed') {
        if (!/invalid_roster/.test(m.reason ?? ''))
          v.push(`the final request of ${a.wf.code} failed: ${m.reason ?? ''}`);
        continue;
      }
      for (const reference of a.wf.references) {
        const want = this.sims.roster.roster(reference).filter((p) => Number.isFinite(p));
        let have: number[] = [];
        try {
          have = this.sims.wf.allocations(a.wf.id, reference);
        } catch {
          v.push(`${a.wf.code}: source ${reference} does not exist after a sync`);
          continue;
        }
        if (want.join(',') !== have.join(','))
          v.push(`${a.wf.code}/${reference}: allocations [${have.join(',')}], roster [${want.join(',')}]`);
      }
    }
    // No allocation change is made twice: an add of someone already allocated, a second removal.
    for (const c of this.sims.wf.allocationCalls) {
      if (!this.wfFlows.some((f) => f.id === c.flowId) || c.status !== 200) continue;
      if (c.kind === 'add' && c.changed < c.participantIds.length)
        v.push(`${c.reference}: add [${c.participantIds.join(',')}] changed only ${c.changed}`);
      if (c.kind === 'removeOne' && c.changed === 0)
        v.push(`${c.reference}: removed ${c.participantIds.join(',')} twice`);
    }
  }
}

export const newActivityId = () => randomUUID();
export const newWebhookRunId = () => randomBytes(4).toString('hex');
export type { FlowIndex };
