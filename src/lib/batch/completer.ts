/**
 * Complete: on `batch-drained`, check the count, move the manifest to `completing` (ETag:
 * excludes a concurrent abandon), run the flow's own completion step (a view's cursor
 * compare-and-set, an event marked done), close the manifest and the stream state, and plan
 * again at once when the batch was full. Every step is safe to repeat: a crash anywhere is
 * finished by the next drain signal (a tick re-sends it for a drained batch not completed).
 */
import { AppError } from '../errors';
import type { Log } from '../ports';
import type { Engine } from './engine';
import type { BatchFlow } from './flow';
import { isDrained, textColumns, type Ledger, type Manifest } from './ledger';
import { plan } from './planner';
import { errorText } from '../errors';
import { isSimulatedCrash } from '../faults';

export type CompleteOutcome =
  | {
      kind: 'completed';
      stream: string;
      batchId: string;
      from: string | null;
      to: string;
      records: number;
      repolled: boolean;
      /** When the batch was planned (its duration, for telemetry). */
      startedAt: string;
    }
  | { kind: 'noop'; batchId: string; reason: string };

export async function completeBatch(
  e: Engine,
  flow: BatchFlow,
  stream: string,
  batchId: string,
  log: Log,
): Promise<CompleteOutcome> {
  const ledger = e.ledger(stream);
  for (let attempt = 0; attempt < 20; attempt++) {
    const m = await ledger.getManifest(batchId);
    if (!m) return { kind: 'noop', batchId, reason: 'no such batch' };
    if (
      m.state === 'completed' ||
      m.state === 'abandoned' ||
      m.state === 'blocked' ||
      m.state === 'dispatching'
    )
      return { kind: 'noop', batchId, reason: `batch is ${m.state}` };
    if (!isDrained(m)) return { kind: 'noop', batchId, reason: `not drained (${m.done}/${m.messageCount})` };
    const completing = m.state === 'completing' ? m : await ledger.transition(m, 'completing');
    if (!completing) continue; // changed meanwhile: look again
    return await finish(e, flow, ledger, completing, log);
  }
  throw new Error(`batch ${batchId}: the manifest kept changing while completing`);
}

async function finish(
  e: Engine,
  flow: BatchFlow,
  ledger: Ledger,
  m: Manifest,
  log: Log,
): Promise<CompleteOutcome> {
  const stream = ledger.stream;
  await e.faults.at('complete.flow', m.batchId);
  const state = await ledger.getState();
  let next: { flowState?: string } | void;
  try {
    next = await flow.onComplete(
      {
        stream,
        batchId: m.batchId,
        from: m.from,
        to: m.to,
        meta: m.meta,
        recordCount: m.recordCount,
        quarantined: m.quarantined,
        flowState: state.flowState,
      },
      log,
    );
  } catch (err) {
    if (err instanceof AppError && err.kind === 'conflict')
      await ledger.recordError(err.message, new Date(e.now()), { code: err.code, kind: err.kind });
    throw err;
  }
  await e.faults.at('complete.close', m.batchId);
  if (m.state !== 'completed') {
    const closed = await ledger.transition(m, 'completed', { completedAt: new Date(e.now()).toISOString() });
    if (!closed) return { kind: 'noop', batchId: m.batchId, reason: 'completed concurrently' };
  }
  await ledger.updateState((s) => ({
    currentBatchId: s.currentBatchId === m.batchId ? '' : (s.currentBatchId ?? ''),
    lastCompletedAt: new Date(e.now()).toISOString(),
    lastCompletedBatchId: m.batchId,
    recordsApplied: s.recordsApplied + m.applied,
    recordsSkipped: s.recordsSkipped + m.skipped,
    recordsQuarantined: s.recordsQuarantined + m.quarantined,
    batchesCompleted: s.batchesCompleted + 1,
    lastError: '',
    lastErrorCode: '',
    lastErrorKind: '',
    // A batch that was not full read everything committed before it was planned (health's lag).
    ...(m.full ? {} : { syncedAt: m.createdAt }),
    ...(next && next.flowState !== undefined ? textColumns('flowState', next.flowState) : {}),
  }));
  log.info('completed a batch', {
    stream,
    batchId: m.batchId,
    from: m.from ?? null,
    to: m.to,
    records: m.recordCount,
    applied: m.applied,
    skipped: m.skipped,
    quarantined: m.quarantined,
  });
  let repolled = false;
  if (m.full) {
    await e.faults.at('complete.poll', m.batchId);
    await planNext(e, flow, stream, m.batchId, log);
    repolled = true;
  }
  return {
    kind: 'completed',
    stream,
    batchId: m.batchId,
    from: m.from ?? null,
    to: m.to,
    records: m.recordCount,
    repolled,
    startedAt: m.createdAt,
  };
}

/**
 * A full batch is followed at once by the next one: planned right here, not through a `poll`
 * message, which cost a queue round trip (and a polling interval on storage queues) while the
 * target idled at every batch boundary. If planning fails, a `poll` message takes over, so the
 * failure gets the control queue's retries; the drain signal itself is not failed for it (its
 * redelivery would find the batch completed and plan nothing).
 */
async function planNext(
  e: Engine,
  flow: BatchFlow,
  stream: string,
  batchId: string,
  log: Log,
): Promise<void> {
  try {
    await plan(e, flow, log, { stream });
    return;
  } catch (err) {
    if (isSimulatedCrash(err)) throw err;
    log.warn('planning the batch after a full one failed; handing it to a poll message', {
      stream,
      batchId,
      error: errorText(err),
    });
  }
  await e.transport.send('control', [
    {
      messageId: `${batchId}:poll`,
      kind: 'poll',
      batchId,
      body: {
        type: 'poll',
        stream,
        reason: `batch ${batchId} was full`,
        traceparent: e.deps.traceparent?.(),
      },
    },
  ]);
}
