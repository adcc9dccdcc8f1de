/**
 * The model's schedules (see world.ts): generated lists of steps over two flows that run side by
 * side on one transport. Source mutations and timer ticks name their flow; deliveries pick from
 * the one shared queue, so the two flows' messages interleave in any order.
 */
import fc from 'fast-check';
import type { FaultPoint } from '../../../src/lib/faults';

/** A poisoned version: the target always throws for it (plain Error, or PermanentError). */
export type Poison = 'none' | 'retry' | 'permanent';
export type QueueName = 'records' | 'control' | 'poison' | 'jobs';
export type FaultKind = 'throw' | 'crash' | 'pause';

/** Index into MODEL_FLOWS: which flow's source a step changes, or which flow's timer ticks. */
export type FlowIndex = 0 | 1;

/** The two flows every schedule runs side by side, interleaved on one transport. */
export const MODEL_FLOWS = ['leads', 'inspections'] as const;

export type Step =
  | { t: 'insert'; flow: FlowIndex; poison: Poison }
  | { t: 'update'; flow: FlowIndex; rec: number; poison: Poison }
  | { t: 'remove'; flow: FlowIndex; rec: number; poison: Poison }
  /** Allocates an id now (for an existing record, or a new one when rec is null), visible at lateCommit. */
  | { t: 'lateBegin'; flow: FlowIndex; rec: number | null; poison: Poison }
  | { t: 'lateCommit'; i: number }
  | { t: 'tick'; flow: FlowIndex; proc: number; fault: OpFault | null }
  /** Delivers the i-th visible message of a queue; dup: the delete is lost, the message stays. */
  | { t: 'deliver'; q: QueueName; i: number; proc: number; dup: boolean; fault: OpFault | null }
  /** Arms a fault for whatever operation reaches `point` next (nth time). */
  | { t: 'fault'; point: ModelFaultPoint; kind: FaultKind; nth: number }
  /** The next n target writes fail with a plain (retryable) error. */
  | { t: 'targetFail'; n: number }
  /** Resumes the i-th suspended operation (or kills its process there when crash). */
  | { t: 'resume'; i: number; crash: boolean }
  /** 'visibility': locked messages reappear; 'lease': also past the planner lease. */
  | { t: 'advance'; by: 'visibility' | 'lease' }
  // ---- the webhook flows (webhooks.ts) ----
  /**
   * F&O posts a Data export event (rows `first..first+rows-1` of the entity) to the business-event
   * intake. older: its ControlNumber is below every one so far (an older export after a newer);
   * expired: its DownloadURL has expired (the flow asks the package API for a fresh one).
   */
  | { t: 'beEvent'; first: number; rows: number; older: boolean; expired: boolean; fault: OpFault | null }
  /** F&O re-delivers the i-th event it posted (the same JSON). */
  | { t: 'beResend'; i: number }
  /** A recurring export puts a file on the polled activity's queue. */
  | { t: 'beEnqueue'; rows: number }
  /** The poll timer: dequeue, download, plan (its ack comes from the batch's completion). */
  | { t: 'bePoll'; proc: number; fault: OpFault | null }
  /**
   * F&O's side: the next download answers 503; the next ack is refused (as if it never arrived);
   * its clock passes the re-delivery interval (un-acknowledged messages come back).
   */
  | { t: 'beFno'; what: 'download503' | 'ackLost' | 'redeliver' }
  /** A WISEflow manager requests an update of flow `flow`: a signed FLOW_EXTERNAL_SOURCE webhook. */
  | { t: 'wfRequest'; flow: FlowIndex; fault: OpFault | null }
  /** WISEflow delivers the i-th webhook again (same request id, new call id). */
  | { t: 'wfResend'; i: number }
  /** The roster of a source changes (bit i: participant i+1); invalid: a non-numeric id too. */
  | { t: 'wfRoster'; flow: FlowIndex; src: 0 | 1; members: number; invalid: boolean }
  /** WISEflow's side: a 429 storm or 503s on the next n calls, or the flow archived (403) / restored. */
  | { t: 'wfApi'; flow: FlowIndex; what: '429' | '503' | 'archive' | 'restore'; n: number };

/**
 * A fault in the operation a step runs, at its `at`-th fault point (see OP_FAULT_POINTS): a
 * tick or poll plans, a records message applies, a drain signal completes.
 */
export interface OpFault {
  at: 0 | 1 | 2 | 3;
  kind: FaultKind;
}

/** Engine fault points, the webhook intake's, and the WISEflow update routine's. */
export type ModelFaultPoint =
  | FaultPoint
  | 'webhook.reserved'
  | 'webhook.sent'
  | 'webhook.flagged'
  | 'listSources'
  | 'addParticipants'
  | 'afterAdd'
  | 'removeParticipants'
  | 'writeMemory'
  | 'syncDone';

export const OP_FAULT_POINTS: Record<
  'plan' | 'apply' | 'complete' | 'intake' | 'routine',
  [ModelFaultPoint, number][]
> = {
  plan: [
    ['plan.collect', 1],
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
    ['complete.flow', 1],
    ['complete.close', 1],
    ['complete.poll', 1],
    ['complete.close', 1],
  ],
  // A webhook POST: after the marker, after the job message was sent, after it was flagged.
  intake: [
    ['webhook.reserved', 1],
    ['webhook.sent', 1],
    ['webhook.flagged', 1],
    ['webhook.sent', 1],
  ],
  // A WISEflow job (a business-event job plans: the `plan` points).
  routine: [
    ['listSources', 1],
    ['afterAdd', 1],
    ['writeMemory', 1],
    ['syncDone', 1],
  ],
};

export interface Schedule {
  initialRecords: number;
  /** The first flow's max batch (the flat SYNC_MAX_BATCH)... */
  maxBatch: number;
  /** ...and the second flow's (its own Flows__inspections__MaxBatch). */
  maxBatch2: number;
  recordsPerMessage: number;
  maxAttempts: number;
  steps: Step[];
}

export const FAULT_POINTS: ModelFaultPoint[] = [
  'plan.collect',
  'plan.manifestWrite',
  'plan.send',
  'plan.dispatched',
  'apply.record',
  'apply.ledger',
  'apply.drainSignal',
  'complete.flow',
  'complete.close',
  'complete.poll',
  'webhook.sent',
  'addParticipants',
  'removeParticipants',
  'writeMemory',
  'syncDone',
];

export function stepText(s: Step): string {
  const p = (x: Poison) => (x === 'none' ? '' : `!${x}`);
  const f = (i: FlowIndex) => MODEL_FLOWS[i].slice(0, 1);
  switch (s.t) {
    case 'insert':
      return `insert:${f(s.flow)}${p(s.poison)}`;
    case 'update':
    case 'remove':
      return `${s.t}:${f(s.flow)}(${s.rec})${p(s.poison)}`;
    case 'lateBegin':
      return `lateBegin:${f(s.flow)}(${s.rec ?? 'new'})${p(s.poison)}`;
    case 'lateCommit':
      return `lateCommit(${s.i})`;
    case 'tick':
      return `tick:${f(s.flow)}@p${s.proc}${opFaultText(s.fault)}`;
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
    case 'beEvent':
      return `beEvent(${s.first}+${s.rows}${s.older ? ',older' : ''}${s.expired ? ',expired' : ''})${opFaultText(s.fault)}`;
    case 'beResend':
      return `beResend(${s.i})`;
    case 'beEnqueue':
      return `beEnqueue(${s.rows})`;
    case 'bePoll':
      return `bePoll@p${s.proc}${opFaultText(s.fault)}`;
    case 'beFno':
      return `beFno(${s.what})`;
    case 'wfRequest':
      return `wfRequest:${s.flow}${opFaultText(s.fault)}`;
    case 'wfResend':
      return `wfResend(${s.i})`;
    case 'wfRoster':
      return `wfRoster:${s.flow}.${s.src}(${s.members.toString(2)}${s.invalid ? ',invalid' : ''})`;
    case 'wfApi':
      return `wfApi:${s.flow}(${s.what}${s.what === '429' || s.what === '503' ? `×${s.n}` : ''})`;
  }
}

const opFaultText = (f: OpFault | null) => (f ? `[${f.kind}@${f.at}]` : '');

export function scheduleText(s: Schedule): string {
  return (
    `{initial:${s.initialRecords}, maxBatch:${s.maxBatch}/${s.maxBatch2}, perMessage:${s.recordsPerMessage}, ` +
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
const flow = fc.constantFrom<FlowIndex>(0, 1);
const proc = fc.integer({ min: 0, max: 1 });
const opFault: fc.Arbitrary<OpFault | null> = fc.option(
  fc.record({
    at: fc.constantFrom<OpFault['at']>(0, 1, 2, 3),
    kind: fc.constantFrom<FaultKind>('throw', 'crash', 'pause'),
  }),
  { freq: 3 },
);

/** The webhook flows' steps, interleaved with the view-sync steps in the same schedules. */
const webhookSteps: fc.WeightedArbitrary<Step>[] = [
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('beEvent' as const),
      first: fc.nat({ max: 4 }),
      rows: fc.integer({ min: 1, max: 3 }),
      older: fc.nat({ max: 4 }).map((n) => n === 0),
      expired: fc.nat({ max: 5 }).map((n) => n === 0),
      fault: opFault,
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('beResend' as const), i: idx }) },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('beEnqueue' as const), rows: fc.integer({ min: 1, max: 3 }) }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('bePoll' as const), proc, fault: opFault }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('beFno' as const),
      what: fc.constantFrom('download503' as const, 'ackLost' as const, 'redeliver' as const),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('wfRequest' as const), flow, fault: opFault }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('wfResend' as const), i: idx }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('wfRoster' as const),
      flow,
      src: fc.constantFrom<0 | 1>(0, 1),
      members: fc.nat({ max: 63 }),
      invalid: fc.nat({ max: 6 }).map((n) => n === 0),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('wfApi' as const),
      flow,
      what: fc.constantFrom(
        '429' as const,
        '429' as const,
        '503' as const,
        'archive' as const,
        'restore' as const,
      ),
      n: fc.integer({ min: 1, max: 3 }),
    }),
  },
];

/** The steps of a schedule; `webhooks: false` leaves out the webhook flows' steps. */
const stepsArb = (webhooks: boolean): fc.Arbitrary<Step> =>
  fc
    .oneof(
      { weight: 3, arbitrary: fc.record({ t: fc.constant('insert' as const), flow, poison: poisonArb }) },
      {
        weight: 3,
        arbitrary: fc.record({ t: fc.constant('update' as const), flow, rec: idx, poison: poisonArb }),
      },
      {
        weight: 1,
        arbitrary: fc.record({ t: fc.constant('remove' as const), flow, rec: idx, poison: poisonArb }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          t: fc.constant('lateBegin' as const),
          flow,
          rec: fc.option(idx),
          poison: poisonArb,
        }),
      },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('lateCommit' as const), i: idx }) },
      { weight: 4, arbitrary: fc.record({ t: fc.constant('tick' as const), flow, proc, fault: opFault }) },
      {
        weight: 10,
        arbitrary: fc.record({
          t: fc.constant('deliver' as const),
          q: webhooks
            ? fc.constantFrom<QueueName>(
                'records',
                'records',
                'records',
                'control',
                'control',
                'poison',
                'jobs',
                'jobs',
              )
            : fc.constantFrom<QueueName>('records', 'records', 'records', 'control', 'control', 'poison'),
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
      ...(webhooks ? webhookSteps : []),
    )
    .map((s) => withText(s as Step, stepText));

export const stepArb: fc.Arbitrary<Step> = stepsArb(true);

/**
 * webhooks (default true): the business-event and external-source flows' steps are generated
 * too, interleaved with the view syncs' in the same schedule.
 */
export function scheduleArb(o: { maxSteps?: number; webhooks?: boolean } = {}): fc.Arbitrary<Schedule> {
  return fc
    .record({
      initialRecords: fc.integer({ min: 0, max: 5 }),
      maxBatch: fc.integer({ min: 1, max: 6 }),
      maxBatch2: fc.integer({ min: 1, max: 6 }),
      recordsPerMessage: fc.integer({ min: 1, max: 3 }),
      maxAttempts: fc.integer({ min: 2, max: 3 }),
      steps: fc.array(stepsArb(o.webhooks ?? true), {
        minLength: 1,
        maxLength: o.maxSteps ?? 30,
        size: 'max',
      }),
    })
    .map((s) => withText(s, scheduleText));
}
