/**
 * Plan: on a timer tick, a `poll` control message or a job, plan the stream's next batch.
 *
 * 1. Single flight: if a batch is in flight, only report its progress, and repair it when its
 *    drain signal was lost (all messages counted, not completed) or its planner died while
 *    dispatching (lease expired: the batch is abandoned and the stream re-planned from the same
 *    position; whatever of it was already delivered is harmless because applying is
 *    idempotent). Stall watch: a batch that makes no progress for `stallSeconds` is abandoned
 *    and re-planned too (a message lost outside the pipeline would otherwise hold it forever).
 * 2. Take the planner lease (ETag on the stream state), ask the flow to collect, and dispatch
 *    what it yields (dispatch.ts): malformed items are quarantined as they come, records are
 *    chunked into messages and sent, and the manifest is finalised with the flow's end.
 * An empty collection writes nothing: no manifest, and the flow's position is never touched.
 *
 * Deadline: a plan behind a timer tick or a `poll` message must end well inside the host's
 * functionTimeout (host.json, 10 min), or the host restarts the worker and every message in
 * flight loses a delivery. The view client's own bounds (timeout × retries + back-off) can add
 * up to more than that, so the plan's source is read under SYNC_PLAN_DEADLINE_SECONDS: when it
 * passes, the source's request is aborted (its AbortSignal), the plan fails with a
 * PlanDeadlineError and releases its lease; a batch it had started dispatching is left
 * `dispatching` without a lease, which the next plan abandons and re-plans from the same
 * position (what was sent is harmless: applying is idempotent).
 */
import { randomBytes } from 'node:crypto';
import { errorText, TransientError } from '../errors';
import { isSimulatedCrash } from '../faults';
import type { Log } from '../ports';
import { Dispatcher, sendDrained } from './dispatch';
import type { Engine } from './engine';
import type { BatchFlow } from './flow';
import { isDrained, type Ledger, type StreamState } from './ledger';

export type PlanOutcome =
  | { kind: 'empty'; from: string | null }
  | {
      kind: 'planned';
      batchId: string;
      from: string | null;
      to: string;
      records: number;
      messages: number;
      full: boolean;
    }
  | { kind: 'in-flight'; batchId: string; state: string; done: number; messages: number }
  | { kind: 'repaired-drain'; batchId: string }
  | { kind: 'busy'; leaseOwner?: string }
  | { kind: 'blocked'; reason: string };

export interface PlanOptions {
  /** Default: the flow's own stream (its name). */
  stream?: string;
  /** Handed to the flow's collect (an event for a per-event stream). */
  input?: unknown;
}

/** The error code of a completion that found the stream's position moved by another writer. */
export const CURSOR_CONFLICT = 'cursor_conflict';

/** The plan's deadline passed while it was reading its source. */
export class PlanDeadlineError extends TransientError {
  constructor(stream: string, seconds: number) {
    super(
      `planning stream ${stream} passed its deadline of ${seconds} s (SYNC_PLAN_DEADLINE_SECONDS) while reading its source: ` +
        'the request was aborted and the planner lease released; the next tick or poll tries again. ' +
        'If the source is this slow every time, lower FLOWFINITY_TIMEOUT_MS × FLOWFINITY_MAX_RETRIES or SYNC_MAX_BATCH.',
      { code: 'plan_deadline' },
    );
    this.name = 'PlanDeadlineError';
  }
}

/**
 * The planner lease belongs to one plan() invocation, not to a process: a timer tick and a
 * `poll` message can run at once in the same instance and must exclude each other too.
 */
const leaseHeld = (s: StreamState, e: Engine) => s.leaseOwner !== undefined && (s.leaseUntil ?? 0) > e.now();

export async function plan(e: Engine, flow: BatchFlow, log: Log, o: PlanOptions = {}): Promise<PlanOutcome> {
  const stream = o.stream ?? flow.name;
  const ledger = e.ledger(stream);
  const owner = `${e.instanceId}/${randomBytes(4).toString('hex')}`;
  let state = await ledger.getState();
  if (state.blocked) return { kind: 'blocked', reason: state.blocked };

  if (state.currentBatchId) {
    const outcome = await inspectBatchInFlight(e, flow, ledger, state, state.currentBatchId, log);
    if (outcome) return outcome;
    state = await ledger.getState();
  }

  if (leaseHeld(state, e)) return { kind: 'busy', leaseOwner: state.leaseOwner };
  const leased = await ledger.tryUpdateState(state, {
    leaseOwner: owner,
    leaseUntil: e.now() + flow.settings.planLeaseSeconds * 1000,
    leaseSince: e.now(),
  });
  if (!leased) return { kind: 'busy' };
  if (leased.currentBatchId) {
    // Another planner finished a batch between our read and our lease: nothing to do now.
    await releaseLease(ledger, owner);
    return { kind: 'busy' };
  }

  let outcome: PlanOutcome;
  const deadline = new AbortController();
  const seconds = flow.settings.planDeadlineSeconds;
  const timer = setTimeout(() => deadline.abort(new PlanDeadlineError(stream, seconds)), seconds * 1000);
  try {
    outcome = await planNewBatch(e, flow, ledger, owner, leased, o.input, log, deadline.signal);
  } catch (err) {
    // A process that dies keeps its lease until it expires: so must a simulated crash.
    if (!isSimulatedCrash(err))
      await releaseLease(ledger, owner).catch((x) =>
        log.warn('could not release the planner lease', { error: errorText(x) }),
      );
    throw err;
  } finally {
    clearTimeout(timer);
  }
  // A run that got this far reached its source: a previous run's error is no longer current.
  // An empty collection means the stream was caught up when the plan began (health's lag).
  await releaseLease(ledger, owner, {
    clearError: outcome.kind !== 'busy',
    syncedAt: outcome.kind === 'empty' ? leased.leaseSince : undefined,
  });
  return outcome;
}

async function releaseLease(
  ledger: Ledger,
  owner: string,
  o: { clearError?: boolean; syncedAt?: number } = {},
): Promise<void> {
  await ledger.updateState((s) =>
    s.leaseOwner === owner
      ? {
          leaseOwner: '',
          leaseUntil: 0,
          leaseSince: 0,
          ...(o.clearError && s.lastError
            ? { lastError: '', lastErrorAt: '', lastErrorCode: '', lastErrorKind: '' }
            : {}),
          ...(o.syncedAt ? { syncedAt: new Date(o.syncedAt).toISOString() } : {}),
        }
      : undefined,
  );
}

/** Reports on the batch in flight and repairs it when needed; undefined = go on and plan. */
async function inspectBatchInFlight(
  e: Engine,
  flow: BatchFlow,
  ledger: Ledger,
  state: StreamState,
  batchId: string,
  log: Log,
): Promise<PlanOutcome | undefined> {
  const clearCurrent = () =>
    ledger.updateState((s) => (s.currentBatchId === batchId ? { currentBatchId: '' } : undefined));
  const m = await ledger.getManifest(batchId);
  if (!m || m.state === 'completed' || m.state === 'abandoned') {
    await clearCurrent();
    return undefined;
  }
  const inFlight = (st: string = m.state): PlanOutcome => ({
    kind: 'in-flight',
    batchId,
    state: st,
    done: m.done,
    messages: m.messageCount,
  });
  if (m.state === 'blocked')
    return { kind: 'blocked', reason: `batch ${batchId} is blocked by a poison record` };
  if (m.state === 'dispatching') {
    if (leaseHeld(state, e)) return inFlight();
    // The planner that dispatched it is gone (lease expired): abandon and re-plan.
    const abandoned = await ledger.transition(m, 'abandoned');
    if (!abandoned) return inFlight('changing');
    log.warn('abandoned a batch whose dispatch was interrupted; re-planning from the same position', {
      stream: ledger.stream,
      batchId,
    });
    await clearCurrent();
    return undefined;
  }
  // dispatched or completing
  if (isDrained(m)) {
    // While the flow's completion keeps conflicting (another writer moved the cursor), every
    // repair would only fail its deliveries into the control queue's dead-letter queue, one per
    // tick. Pause until the flow says the conflict is gone (the operator fixed the cursor).
    if (state.lastErrorCode === CURSOR_CONFLICT && flow.completionConflict) {
      const conflict = await flow.completionConflict({ batchId, from: m.from, to: m.to });
      if (conflict) {
        log.warn('drain repair paused: the completion still conflicts', { stream: ledger.stream, batchId });
        return {
          kind: 'blocked',
          reason: `batch ${batchId} is drained; its completion is paused until the conflict is resolved: ${conflict}`,
        };
      }
    }
    log.warn('batch drained but not completed: re-sending its drain signal', {
      stream: ledger.stream,
      batchId,
    });
    // Its own message id: the first signal's id may still be inside Service Bus's duplicate
    // detection window (e.g. when that signal was dead-lettered), and completing is idempotent.
    await sendDrained(e, ledger.stream, batchId, `repair-${e.now()}`);
    return { kind: 'repaired-drain', batchId };
  }
  // Stall watch: a message lost outside the pipeline (e.g. a storage queue's `-poison-poison`)
  // would hold the batch forever. Without progress for stallSeconds, abandon it and re-plan
  // from the same position: nothing was moved past, and re-applied versions are skipped.
  if (state.progressBatchId !== batchId || state.progressDone !== m.done) {
    await ledger.updateState(() => ({ progressBatchId: batchId, progressDone: m.done, progressAt: e.now() }));
  } else if (e.now() - (state.progressAt ?? e.now()) > flow.settings.stallSeconds * 1000) {
    if (await ledger.transition(m, 'abandoned')) {
      log.error('batch made no progress; abandoned and re-planned from the same position', {
        stream: ledger.stream,
        batchId,
        done: m.done,
        messages: m.messageCount,
        stalledSeconds: Math.round((e.now() - (state.progressAt ?? 0)) / 1000),
      });
      await clearCurrent();
      return undefined;
    }
  }
  return inFlight();
}

async function planNewBatch(
  e: Engine,
  flow: BatchFlow,
  ledger: Ledger,
  owner: string,
  state: StreamState,
  input: unknown,
  log: Log,
  deadline: AbortSignal,
): Promise<PlanOutcome> {
  await e.faults.at('plan.collect');
  const controller = new AbortController();
  const collection = await flow.collect({
    stream: ledger.stream,
    input,
    flowState: state.flowState,
    signal: AbortSignal.any([controller.signal, deadline]),
    log,
  });
  const dispatcher = new Dispatcher(e, flow, ledger, owner, collection.from, log);
  const quarantine = e.quarantine(flow.name);
  try {
    for await (const item of collection.items) {
      // A source that ignores its signal still cannot run the plan past its deadline.
      if (deadline.aborted) throw deadline.reason;
      if (item.kind === 'malformed') {
        // Durably quarantined before the stream's position can ever pass it.
        await quarantine.put({
          kind: 'malformed',
          recordId: item.id,
          version: item.version,
          stream: ledger.stream,
          payload: item.raw,
          error: item.error,
          attempts: 0,
          policy: flow.settings.poisonPolicy,
        });
        log.warn('quarantined a malformed source item', { stream: ledger.stream, error: item.error });
        continue;
      }
      await dispatcher.add(item);
      if (dispatcher.lost) break; // leaving the loop ends the flow's source (aborts its request)
    }
  } finally {
    controller.abort();
  }
  const from = collection.from ?? null;
  const result = await dispatcher.finish(dispatcher.lost ? undefined : collection.end());
  if (result.kind === 'lost') return { kind: 'busy', leaseOwner: result.leaseOwner };
  if (result.kind === 'empty') return { kind: 'empty', from };
  const m = result.manifest;
  log.info('planned a batch', {
    stream: ledger.stream,
    batchId: m.batchId,
    from,
    to: m.to,
    records: result.records,
  });
  return {
    kind: 'planned',
    batchId: m.batchId,
    from,
    to: m.to,
    records: result.records,
    messages: result.messages,
    full: m.full,
  };
}
