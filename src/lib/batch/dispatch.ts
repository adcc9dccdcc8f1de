/**
 * Dispatch: turns a flow's collected records into the messages of one batch, as they come.
 *
 * - Records are chunked into messages of at most `recordsPerMessage` records and at most the
 *   transport's `maxMessageBytes` of JSON. A record that cannot fit one message even alone is
 *   quarantined (`oversize`, its whole wire form kept): there is nothing to retry.
 * - The manifest is written (state `dispatching`) and the stream claimed for the batch just
 *   before the first messages are sent, so an empty collection costs nothing.
 * - Messages go out in groups with deterministic ids (`<batchId>:<chunk>`): a re-send after a
 *   crash is dropped by duplicate detection where the medium has it, and counted once by the
 *   ledger anyway. The planner lease is renewed between groups; a planner that lost it stops.
 *   One group is in flight while the next is collected (parsing and sending overlap); a group
 *   starts only after the previous one was sent, and finish() waits for the last one, so a
 *   batch is never `dispatched` before all its messages are.
 * - finish(): the manifest gets its final message count and moves to `dispatched` (ETag: a
 *   concurrent abandon wins or loses as a whole). If every message was already done by then,
 *   the planner sends the drain signal itself.
 */
import { randomBytes } from 'node:crypto';
import type { Log, OutgoingMessage } from '../ports';
import type { WireRecord } from '../records';
import { Chunker, wireBytes } from './chunker';
import type { Engine } from './engine';
import type { BatchEnd, BatchFlow, CollectedRecord } from './flow';
import { isDrained, textColumns, type Ledger, type Manifest } from './ledger';
import { recordsMessageId, type RecordsMessage } from './messages';

/**
 * Messages handed to the transport at once (it splits them into SDK batches). The first groups
 * are small so that the appliers start while the rest of the view is still being read: with a
 * fixed 50, the first message of a 1,000-record batch left only after all 1,000 were parsed, and
 * the target idled for that long at every batch boundary. Then the groups double up to 50.
 */
const FIRST_SEND_GROUP = 2;
const SEND_GROUP = 50;

export function newBatchId(now: number): string {
  // Sortable by time, unique by randomness; safe in table keys and message ids.
  return `${now.toString(36).padStart(9, '0')}-${randomBytes(4).toString('hex')}`;
}

export const toWire = (r: CollectedRecord): WireRecord => ({
  id: r.id,
  v: r.version.toString(),
  del: r.deleted,
  data: r.data,
});

export type DispatchResult =
  | { kind: 'dispatched'; manifest: Manifest; messages: number; records: number; oversize: number }
  | { kind: 'empty' }
  /** The planner lease was lost while dispatching: the batch (if any) was dropped. */
  | { kind: 'lost'; leaseOwner?: string };

export async function sendDrained(
  e: Engine,
  stream: string,
  batchId: string,
  repair?: string,
): Promise<void> {
  await e.transport.send('control', [
    {
      messageId: repair ? `${batchId}:drained:${repair}` : `${batchId}:drained`,
      kind: 'batch-drained',
      batchId,
      body: { type: 'batch-drained', stream, batchId, traceparent: e.deps.traceparent?.() },
    },
  ]);
}

export class Dispatcher {
  private manifest: Manifest | undefined;
  private readonly batchId: string;
  private readonly chunker: Chunker;
  private outbox: OutgoingMessage[] = [];
  private chunks = 0;
  private records = 0;
  private oversize = 0;
  private groups = 0;
  private lostTo: { leaseOwner?: string } | undefined;
  /** The group being sent while the next one is collected. */
  private sending: Promise<void> | undefined;

  constructor(
    private readonly e: Engine,
    private readonly flow: BatchFlow,
    private readonly ledger: Ledger,
    private readonly owner: string,
    private readonly from: string | undefined,
    private readonly log: Log,
  ) {
    this.batchId = newBatchId(e.now());
    this.chunker = new Chunker(flow.settings.recordsPerMessage, e.transport.maxMessageBytes);
  }

  /** The lease was lost: the caller stops collecting. */
  get lost(): boolean {
    return this.lostTo !== undefined;
  }

  get recordCount(): number {
    return this.records;
  }

  async add(r: CollectedRecord): Promise<void> {
    const wire = toWire(r);
    const size = wireBytes(wire);
    const max = this.e.transport.maxMessageBytes;
    this.records++;
    if (!this.chunker.fits(size)) {
      this.oversize++;
      await this.e.quarantine(this.flow.name).put({
        kind: 'oversize',
        recordId: r.id,
        version: wire.v,
        stream: this.ledger.stream,
        payload: JSON.stringify(wire),
        error: `record is larger than one queue message (${max} bytes of JSON); trim the source's fields (with Service Bus, SERVICE_BUS_TIER=premium raises the limit to about 968 KiB)`,
        attempts: 0,
        policy: this.flow.settings.poisonPolicy,
      });
      this.log.error('quarantined a record too large for one queue message', {
        recordId: r.id,
        version: wire.v,
      });
      return;
    }
    const closed = this.chunker.add(wire, size);
    if (closed) this.queueMessage(closed);
    if (this.outbox.length >= Math.min(SEND_GROUP, FIRST_SEND_GROUP << this.groups)) await this.flush();
  }

  private queueMessage(records: WireRecord[]): void {
    const chunk = this.chunks++;
    const body: RecordsMessage = {
      type: 'records',
      stream: this.ledger.stream,
      batchId: this.batchId,
      chunk,
      records,
      traceparent: this.e.deps.traceparent?.(),
    };
    this.outbox.push({
      messageId: recordsMessageId(this.batchId, chunk),
      kind: 'records',
      batchId: this.batchId,
      body,
    });
  }

  /** Writes the manifest and claims the stream for it; false when the lease is gone. */
  private async open(): Promise<boolean> {
    if (this.manifest) return true;
    if (this.lostTo) return false;
    const e = this.e;
    const manifest = await this.ledger.createManifest({
      batchId: this.batchId,
      from: this.from,
      createdAt: new Date(e.now()).toISOString(),
    });
    await e.faults.at('plan.manifestWrite');
    // Claim the stream for this batch only while this plan still holds the lease and no batch
    // is in flight: a planner that stalled past its lease must not replace a batch planned since.
    const claimed = await this.ledger.updateState((s) =>
      s.leaseOwner === this.owner && (s.leaseUntil ?? 0) > e.now() && !s.currentBatchId
        ? { currentBatchId: this.batchId }
        : undefined,
    );
    if (claimed.currentBatchId !== this.batchId) {
      await this.ledger.transition(manifest, 'abandoned');
      this.log.warn('lost the planner lease while planning; dropped the batch before sending it', {
        batchId: this.batchId,
      });
      this.lostTo = { leaseOwner: claimed.leaseOwner };
      return false;
    }
    this.manifest = manifest;
    return true;
  }

  private async flush(): Promise<void> {
    if (this.outbox.length === 0) return;
    await this.sent();
    if (!(await this.open())) return;
    await this.renewLease();
    if (this.lostTo) return;
    await this.e.faults.at('plan.send', String(this.groups++));
    const group = this.outbox;
    this.outbox = [];
    const sending = this.e.transport.send('records', group);
    // Awaited by the next flush or by finish(); until then a failure must not go unhandled.
    sending.catch(() => {});
    this.sending = sending;
  }

  /** Waits for the group in flight; rethrows its failure. */
  private async sent(): Promise<void> {
    const sending = this.sending;
    this.sending = undefined;
    await sending;
  }

  /** Keeps the planner lease while a long batch is dispatched; marks the dispatch lost when gone. */
  private async renewLease(): Promise<void> {
    const e = this.e;
    const leaseMs = this.flow.settings.planLeaseSeconds * 1000;
    const state = await this.ledger.getState();
    const ours = state.leaseOwner === this.owner && (state.leaseUntil ?? 0) > e.now();
    if (ours && (state.leaseUntil ?? 0) - e.now() > leaseMs / 2) return;
    const renewed = ours
      ? await this.ledger.tryUpdateState(state, { leaseUntil: e.now() + leaseMs })
      : undefined;
    if (renewed) return;
    const current = await this.ledger.getState();
    if (current.leaseOwner === this.owner && (current.leaseUntil ?? 0) > e.now()) return; // raced with ourselves
    this.lostTo = { leaseOwner: current.leaseOwner };
    this.log.warn('lost the planner lease while dispatching; stopped sending the batch', {
      batchId: this.batchId,
    });
    // Another planner abandons the batch once it sees the lease gone; do it now if it has not.
    const m = await this.ledger.getManifest(this.batchId);
    if (m?.state === 'dispatching') await this.ledger.transition(m, 'abandoned');
  }

  private lostResult(): DispatchResult {
    return { kind: 'lost', leaseOwner: this.lostTo?.leaseOwner };
  }

  /** Sends what is left and finalises the manifest. `end` undefined: the collection was empty. */
  async finish(end: BatchEnd | undefined): Promise<DispatchResult> {
    if (this.lost) return this.lostResult();
    if (!end) {
      if (this.records > 0)
        throw new Error(
          `flow ${this.flow.name} collected ${this.records} record(s) but gave the batch no end`,
        );
      return { kind: 'empty' };
    }
    const last = this.chunker.flush();
    if (last) this.queueMessage(last);
    if (!(await this.open())) return this.lostResult();
    while (this.outbox.length > 0) {
      await this.flush();
      if (this.lost) return this.lostResult();
    }
    await this.sent();
    await this.e.faults.at('plan.dispatched');
    const final = {
      messageCount: this.chunks,
      recordCount: this.records - this.oversize,
      to: end.to,
      full: end.full,
      dispatchedAt: new Date(this.e.now()).toISOString(),
      ...textColumns('meta', end.meta),
    };
    for (let attempt = 0; attempt < 100; attempt++) {
      const m = await this.ledger.getManifest(this.batchId);
      if (m?.state !== 'dispatching' && m?.state !== 'blocked') {
        // Abandoned meanwhile (this planner was judged dead): a newer plan owns the stream.
        this.log.warn('the batch was abandoned while it was dispatched', {
          batchId: this.batchId,
          state: m?.state,
        });
        return { kind: 'lost', leaseOwner: undefined };
      }
      // A poison record may have blocked the batch while it was still being sent: it stays
      // blocked, with its final counts, until an operator resolves the block.
      const next = await this.ledger.transition(m, m.state === 'blocked' ? 'blocked' : 'dispatched', final);
      if (!next) continue; // a message was counted meanwhile: read the counters again
      if (isDrained(next)) await sendDrained(this.e, this.ledger.stream, this.batchId);
      return {
        kind: 'dispatched',
        manifest: next,
        messages: this.chunks,
        records: final.recordCount,
        oversize: this.oversize,
      };
    }
    throw new Error(`batch ${this.batchId}: the manifest kept changing while it was finalised`);
  }
}
