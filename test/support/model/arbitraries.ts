/**
 * The model's schedules (see world.ts): generated lists of steps over two flows that run side by
 * side on one transport. Source mutations and timer ticks name their flow; deliveries pick from
 * the one shared queue, so the two flows' messages interleave in any order.
 */
import fc from 'fast-check';
import type { FaultPoint } from '../../../src/lib/faults';

/** A poisoned version: the target always throws for it (plain Error, or PermanentError). */
export type Poison = 'none' | 'retry' | 'permanent';
export type QueueName = 'records' | 'control' | 'poison';
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

export const OP_FAULT_POINTS: Record<'plan' | 'apply' | 'complete', [FaultPoint, number][]> = {
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

export const FAULT_POINTS: FaultPoint[] = [
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

export const stepArb: fc.Arbitrary<Step> = fc
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
      maxBatch2: fc.integer({ min: 1, max: 6 }),
      recordsPerMessage: fc.integer({ min: 1, max: 3 }),
      maxAttempts: fc.integer({ min: 2, max: 3 }),
      steps: fc.array(stepArb, { minLength: 1, maxLength: o.maxSteps ?? 30, size: 'max' }),
    })
    .map((s) => withText(s, scheduleText));
}
