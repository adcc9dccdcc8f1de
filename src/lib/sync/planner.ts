/**
 * Plan: on a timer tick or a `poll` control message, plan the next batch of the view.
 *
 * 1. Single flight: if a batch is in flight, only report its progress, and repair it when its
 *    drain signal was lost (all messages counted, not completed) or its planner died while
 *    dispatching (lease expired: the batch is abandoned and re-planned from the same cursor;
 *    whatever of it was already delivered is harmless because applying is idempotent).
 * 2. Take the planner lease (ETag on the view state), read the cursor, stream the view from
 *    cursor - SYNC_LOOKBACK, keep at most SYNC_MAX_BATCH new records (the view is sorted by
 *    lastSubmissionId and ids are unique, so a truncated batch ends at its last kept id).
 * 3. Quarantine malformed and oversize items, write the manifest (from, to, message count),
 *    then send the messages with deterministic ids, then mark the manifest dispatched.
 * An empty result writes nothing and never touches the cursor.
 */
import { randomBytes } from 'node:crypto';
import { isSimulatedCrash } from '../faults';
import { stateOf } from '../flowfinity/record';
import { ValidationError } from '../errors';
import { PREVIOUS_LAST_SUBMISSION_ID } from '../ports';
import { errorText } from '../errors';
import type { Log } from '../ports';
import type { SyncContext } from './context';
import type { Manifest, ViewState } from './ledger';
import { recordsMessageId, type RecordsMessage, type WireRecord } from './messages';
import type { OutgoingMessage } from '../ports';

export type PlanOutcome =
  | { kind: 'empty'; cursor: string | null }
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

export function newBatchId(now: number): string {
  // Sortable by time, unique by randomness; safe in table keys and message ids.
  return `${now.toString(36).padStart(9, '0')}-${randomBytes(4).toString('hex')}`;
}

export function wireRecord(
  ctx: SyncContext,
  r: { recordId: string; version: bigint; data: Record<string, unknown> },
): WireRecord {
  return { id: r.recordId, v: r.version.toString(), del: isDeleted(ctx, r.data), data: r.data };
}

/** A record in one of SYNC_DELETED_STATES is applied as a deletion (tombstone). */
export function isDeleted(ctx: SyncContext, data: Record<string, unknown>): boolean {
  const state = stateOf(data, ctx.settings.stateField);
  return state !== undefined && ctx.settings.deletedStates.includes(state);
}

/** Splits records into messages of at most N records and at most maxBytes of JSON. */
export function chunkRecords(records: WireRecord[], perMessage: number, maxBytes: number): WireRecord[][] {
  const chunks: WireRecord[][] = [];
  let current: WireRecord[] = [];
  let bytes = 200; // envelope
  for (const r of records) {
    const size = Buffer.byteLength(JSON.stringify(r)) + 1;
    if (current.length > 0 && (current.length >= perMessage || bytes + size > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 200;
    }
    current.push(r);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/**
 * The planner lease belongs to one plan() invocation, not to a process: a timer tick and a
 * `poll` message can run at once in the same instance and must exclude each other too.
 */
const leaseHeld = (s: ViewState, ctx: SyncContext) =>
  s.leaseOwner !== undefined && (s.leaseUntil ?? 0) > ctx.now();

export async function plan(ctx: SyncContext, log: Log): Promise<PlanOutcome> {
  const { ledger } = ctx;
  const owner = `${ctx.instanceId}/${randomBytes(4).toString('hex')}`;
  let state = await ledger.getViewState();
  if (state.blocked) return { kind: 'blocked', reason: state.blocked };

  if (state.currentBatchId) {
    const outcome = await inspectBatchInFlight(ctx, state, state.currentBatchId, log);
    if (outcome) return outcome;
    state = await ledger.getViewState();
  }

  // Take the planner lease.
  if (leaseHeld(state, ctx)) return { kind: 'busy', leaseOwner: state.leaseOwner };
  const leased = await ledger.tryUpdateViewState(state, {
    leaseOwner: owner,
    leaseUntil: ctx.now() + ctx.settings.planLeaseSeconds * 1000,
  });
  if (!leased) return { kind: 'busy' };
  if (leased.currentBatchId) {
    // Another planner finished a batch between our read and our lease: nothing to do now.
    await releaseLease(ctx, owner);
    return { kind: 'busy' };
  }

  let outcome: PlanOutcome;
  try {
    outcome = await planNewBatch(ctx, owner, log);
  } catch (e) {
    // A process that dies keeps its lease until it expires: so must a simulated crash.
    if (!isSimulatedCrash(e))
      await releaseLease(ctx, owner).catch((err) =>
        log.warn('could not release the planner lease', { error: errorText(err) }),
      );
    throw e;
  }
  // A run that got this far reached the view: a previous run's error is no longer current.
  await releaseLease(ctx, owner, { clearError: true });
  return outcome;
}

async function releaseLease(
  ctx: SyncContext,
  owner: string,
  o: { clearError?: boolean } = {},
): Promise<void> {
  await ctx.ledger.updateViewState((s) =>
    s.leaseOwner === owner
      ? {
          leaseOwner: '',
          leaseUntil: 0,
          ...(o.clearError && s.lastError ? { lastError: '', lastErrorAt: '' } : {}),
        }
      : undefined,
  );
}

/** Reports on the batch in flight and repairs it when needed; undefined = go on and plan. */
async function inspectBatchInFlight(
  ctx: SyncContext,
  state: ViewState,
  batchId: string,
  log: Log,
): Promise<PlanOutcome | undefined> {
  const m = await ctx.ledger.getManifest(batchId);
  if (!m || m.state === 'completed' || m.state === 'abandoned') {
    await ctx.ledger.updateViewState((s) =>
      s.currentBatchId === batchId ? { currentBatchId: '' } : undefined,
    );
    return undefined;
  }
  if (m.state === 'blocked')
    return { kind: 'blocked', reason: `batch ${batchId} is blocked by a poison record` };
  if (m.state === 'dispatching') {
    if (leaseHeld(state, ctx))
      return { kind: 'in-flight', batchId, state: m.state, done: m.done, messages: m.messageCount };
    // The planner that dispatched it is gone (lease expired): abandon and re-plan.
    const abandoned = await ctx.ledger.transition(m, 'abandoned');
    if (!abandoned)
      return { kind: 'in-flight', batchId, state: 'changing', done: m.done, messages: m.messageCount };
    log.warn('abandoned a batch whose dispatch was interrupted; re-planning from the same cursor', {
      batchId,
    });
    await ctx.ledger.updateViewState((s) =>
      s.currentBatchId === batchId ? { currentBatchId: '' } : undefined,
    );
    return undefined;
  }
  // dispatched or completing
  if (m.done >= m.messageCount) {
    log.warn('batch drained but not completed: re-sending its drain signal', { batchId });
    // Its own message id: the first signal's id may still be inside Service Bus's duplicate
    // detection window (e.g. when that signal was dead-lettered), and completing is idempotent.
    await sendDrained(ctx, m, `repair-${ctx.now()}`);
    return { kind: 'repaired-drain', batchId };
  }
  // Stall watch: a message lost outside the pipeline (e.g. a storage queue's `-poison-poison`)
  // would hold the batch forever. Without progress for SYNC_STALL_SECONDS, abandon it and
  // re-plan from the same cursor: nothing was moved past, and re-applied versions are skipped.
  if (state.progressBatchId !== batchId || state.progressDone !== m.done) {
    await ctx.ledger.updateViewState(() => ({
      progressBatchId: batchId,
      progressDone: m.done,
      progressAt: ctx.now(),
    }));
  } else if (ctx.now() - (state.progressAt ?? ctx.now()) > ctx.settings.stallSeconds * 1000) {
    if (await ctx.ledger.transition(m, 'abandoned')) {
      log.error('batch made no progress; abandoned and re-planned from the same cursor', {
        batchId,
        done: m.done,
        messages: m.messageCount,
        stalledSeconds: Math.round((ctx.now() - (state.progressAt ?? 0)) / 1000),
      });
      await ctx.ledger.updateViewState((s) =>
        s.currentBatchId === batchId ? { currentBatchId: '' } : undefined,
      );
      return undefined;
    }
  }
  return { kind: 'in-flight', batchId, state: m.state, done: m.done, messages: m.messageCount };
}

export async function sendDrained(
  ctx: SyncContext,
  m: Pick<Manifest, 'batchId'>,
  repair?: string,
): Promise<void> {
  await ctx.transport.send('control', [
    {
      messageId: repair ? `${m.batchId}:drained:${repair}` : `${m.batchId}:drained`,
      kind: 'batch-drained',
      batchId: m.batchId,
      body: { type: 'batch-drained', view: ctx.settings.viewName, batchId: m.batchId },
    },
  ]);
}

/** RecordID and lastSubmissionId of a malformed item where they can be read, for operators. */
function identityOf(raw: string): { recordId?: string; version?: string } {
  try {
    const o = JSON.parse(raw) as Record<string, unknown>;
    const recordId =
      typeof o.RecordID === 'string' || typeof o.RecordID === 'number' ? String(o.RecordID) : undefined;
    const v = String(o.lastSubmissionId ?? '');
    return { recordId, version: /^\d+$/.test(v) ? v : undefined };
  } catch {
    return {};
  }
}

async function planNewBatch(ctx: SyncContext, owner: string, log: Log): Promise<PlanOutcome> {
  const { settings } = ctx;
  const from = await ctx.cursor.read();
  const queryFrom =
    from === undefined
      ? undefined
      : from > BigInt(settings.lookback)
        ? from - BigInt(settings.lookback)
        : undefined;
  await ctx.faults.at('plan.viewQuery');
  const kept: WireRecord[] = [];
  let newRecords = 0;
  let to = from;
  let full = false;
  const malformed: { raw: string; error: string }[] = [];
  const controller = new AbortController();
  let previous: bigint | undefined;
  for await (const item of ctx.view.query({ [PREVIOUS_LAST_SUBMISSION_ID]: queryFrom }, controller.signal)) {
    if (item.kind === 'malformed') {
      malformed.push({ raw: item.raw, error: item.error });
      continue;
    }
    const r = item.record;
    if (previous !== undefined && r.version <= previous)
      throw new ValidationError(
        `the view is not sorted by lastSubmissionId ascending (${r.version} after ${previous}); set the view's sort order`,
      );
    previous = r.version;
    // A view that ignores the parameter would re-send old records: skip them.
    if (queryFrom !== undefined && r.version <= queryFrom) continue;
    const isNew = from === undefined || r.version > from;
    if (isNew) {
      if (newRecords >= settings.maxBatch) {
        full = true;
        break; // leaving the loop aborts the request
      }
      newRecords++;
      if (to === undefined || r.version > to) to = r.version;
    }
    kept.push(wireRecord(ctx, r));
  }
  controller.abort();

  // Malformed items: durably quarantined before the cursor can ever pass them.
  for (const bad of malformed) {
    await ctx.quarantine.put({
      kind: 'malformed',
      ...identityOf(bad.raw),
      payload: bad.raw,
      error: bad.error,
      attempts: 0,
      policy: settings.poisonPolicy,
    });
    log.warn('quarantined a malformed view record', { error: bad.error });
  }

  if (kept.length === 0 || to === undefined) {
    if (malformed.length > 0) log.warn('the view returned only malformed records; cursor unchanged');
    return { kind: 'empty', cursor: from?.toString() ?? null };
  }

  const oversize = kept.filter((r) => Buffer.byteLength(JSON.stringify(r)) + 300 > settings.maxMessageBytes);
  for (const r of oversize) {
    await ctx.quarantine.put({
      kind: 'oversize',
      recordId: r.id,
      version: r.v,
      payload: JSON.stringify(r.data),
      error: `record is larger than one queue message (${settings.maxMessageBytes} bytes of JSON); use TRANSPORT=servicebus (premium) or trim the view's fields`,
      attempts: 0,
      policy: settings.poisonPolicy,
    });
    log.error('quarantined a record too large for one queue message', { recordId: r.id, version: r.v });
  }
  const sendable = oversize.length ? kept.filter((r) => !oversize.includes(r)) : kept;
  const chunks = chunkRecords(sendable, settings.recordsPerMessage, settings.maxMessageBytes);

  const batchId = newBatchId(ctx.now());
  const manifest = await ctx.ledger.createManifest({
    batchId,
    from,
    to,
    messageCount: chunks.length,
    recordCount: sendable.length,
    full,
    createdAt: new Date(ctx.now()).toISOString(),
  });
  await ctx.faults.at('plan.manifestWrite');
  // Claim the view for this batch only while this plan still holds the lease and no batch is
  // in flight: a planner that stalled past its lease must not replace a batch planned since.
  const claimed = await ctx.ledger.updateViewState((s) =>
    s.leaseOwner === owner && (s.leaseUntil ?? 0) > ctx.now() && !s.currentBatchId
      ? { currentBatchId: batchId }
      : undefined,
  );
  if (claimed.currentBatchId !== batchId) {
    await ctx.ledger.transition(manifest, 'abandoned');
    log.warn('lost the planner lease while planning; dropped the batch before sending it', { batchId });
    return { kind: 'busy', leaseOwner: claimed.leaseOwner };
  }

  if (chunks.length === 0) {
    // Everything was quarantined: nothing to wait for.
    await sendDrained(ctx, manifest);
  }
  const messages: OutgoingMessage[] = chunks.map((records, chunk) => {
    const body: RecordsMessage = { type: 'records', view: settings.viewName, batchId, chunk, records };
    return { messageId: recordsMessageId(batchId, chunk), kind: 'records', batchId, body };
  });
  const SEND_GROUP = 50;
  for (let i = 0; i < messages.length; i += SEND_GROUP) {
    await ctx.faults.at('plan.send', String(i / SEND_GROUP));
    await ctx.transport.send('records', messages.slice(i, i + SEND_GROUP));
  }
  await ctx.faults.at('plan.dispatched');
  // Conditional: if the batch already drained and completed, its state must stay completed.
  const latest = await ctx.ledger.getManifest(batchId);
  if (latest?.state === 'dispatching')
    await ctx.ledger.transition(latest, 'dispatched', { dispatchedAt: new Date(ctx.now()).toISOString() });

  log.info('planned a batch', {
    batchId,
    from: from?.toString() ?? null,
    to: to.toString(),
    records: sendable.length,
  });
  return {
    kind: 'planned',
    batchId,
    from: from?.toString() ?? null,
    to: to.toString(),
    records: sendable.length,
    messages: chunks.length,
    full,
  };
}
