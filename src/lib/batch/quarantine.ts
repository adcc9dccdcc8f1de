/**
 * Quarantine: records (or raw source items) that cannot be applied, stored durably with their
 * payload, error and attempts so nothing is lost and an operator can inspect and replay them.
 * Table `<prefix>quarantine`, PK = flow, RK = `<kind>|<record id>|<version>` (or a hash of the
 * payload when the identity is unknown). The same record version quarantined twice is one entry.
 */
import { createHash } from 'node:crypto';
import type { TableClient } from '@azure/data-tables';
import { ensureTable, escapeKey, textFromProperties, textToProperties } from '../storage/table-helpers';
import { statusOf } from '../errors';

export type QuarantineKind =
  /** A record the target refused or kept failing on. */
  | 'record'
  /** A source item that failed validation (raw JSON kept). */
  | 'malformed'
  /** A record too large for one queue message. */
  | 'oversize'
  /**
   * A record that kept failing with an error a later attempt may not see (target down, 5xx,
   * timeout) through every delivery and the last delivery's own retries: not a bad record,
   * so `replay` once the target is back is the fix.
   */
  | 'transient-exhausted';

export interface QuarantineEntry {
  kind: QuarantineKind;
  /** The record's id within its flow, where known. */
  recordId?: string;
  /** The record's version where known, as a decimal string. */
  version?: string;
  /** The stream whose batch it came from (for a blocking entry: the batch to unblock). */
  stream?: string;
  batchId?: string;
  chunk?: number;
  /** The payload exactly as it would have been applied: a wire record (records.ts) as JSON, or the raw item. */
  payload: string;
  error: string;
  attempts: number;
  policy: 'quarantine' | 'block';
}

export interface StoredQuarantineEntry extends QuarantineEntry {
  id: string;
  quarantinedAt: string;
}

export class Quarantine {
  constructor(
    private readonly table: TableClient,
    readonly flow: string,
    private readonly now: () => number = Date.now,
  ) {}

  static idFor(e: Pick<QuarantineEntry, 'kind' | 'recordId' | 'version' | 'payload'>): string {
    if (e.recordId && e.version) return `${e.kind}|${escapeKey(e.recordId)}|${e.version}`;
    return `${e.kind}|sha256-${createHash('sha256').update(e.payload).digest('hex').slice(0, 32)}`;
  }

  /** Stores (or overwrites: the same record version quarantined twice is one entry). */
  async put(entry: QuarantineEntry): Promise<string> {
    await ensureTable(this.table);
    const id = Quarantine.idFor(entry);
    let payloadProps = textToProperties('payload', entry.payload);
    let truncated = false;
    if (!payloadProps) {
      // Over ~900K characters cannot be stored in one entity: keep the head and say so.
      payloadProps = textToProperties('payload', entry.payload.slice(0, 800_000))!;
      truncated = true;
    }
    await this.table.upsertEntity(
      {
        partitionKey: this.flow,
        rowKey: id,
        kind: entry.kind,
        recordId: entry.recordId ?? '',
        version: entry.version ?? '',
        stream: entry.stream ?? '',
        batchId: entry.batchId ?? '',
        chunk: entry.chunk ?? -1,
        error: entry.error.slice(0, 8000),
        attempts: entry.attempts,
        policy: entry.policy,
        payloadTruncated: truncated,
        quarantinedAt: new Date(this.now()).toISOString(),
        ...payloadProps,
      },
      'Replace',
    );
    return id;
  }

  async list(): Promise<StoredQuarantineEntry[]> {
    await ensureTable(this.table);
    const out: StoredQuarantineEntry[] = [];
    for await (const e of this.table.listEntities<Record<string, unknown>>({
      queryOptions: { filter: `PartitionKey eq '${this.flow.replace(/'/g, "''")}'` },
    })) {
      out.push({
        id: String(e.rowKey),
        kind: e.kind as QuarantineKind,
        recordId: e.recordId ? String(e.recordId) : undefined,
        version: e.version ? String(e.version) : undefined,
        // Entries written before flows have no stream: their stream was the flow itself.
        stream: e.stream ? String(e.stream) : this.flow,
        batchId: e.batchId ? String(e.batchId) : undefined,
        chunk: Number(e.chunk) >= 0 ? Number(e.chunk) : undefined,
        payload: textFromProperties('payload', e),
        error: String(e.error),
        attempts: Number(e.attempts),
        policy: e.policy === 'block' ? 'block' : 'quarantine',
        quarantinedAt: String(e.quarantinedAt),
      });
    }
    return out;
  }

  async count(): Promise<number> {
    await ensureTable(this.table);
    let n = 0;
    for await (const _ of this.table.listEntities({
      queryOptions: { filter: `PartitionKey eq '${this.flow.replace(/'/g, "''")}'`, select: ['RowKey'] },
    }))
      n++;
    return n;
  }

  async remove(id: string): Promise<void> {
    try {
      await this.table.deleteEntity(this.flow, id);
    } catch (e) {
      if (statusOf(e) !== 404) throw e;
    }
  }
}
