/**
 * Allocation memory: what syncbridge allocated to each external source last time, and the
 * allocation calls it was about to make (the intent), per flow + source.
 *
 * Why: the WISEflow API has no call that lists a source's allocations; it only answers "which
 * sources is this participant allocated to". The memory says which participants to ask about
 * (those syncbridge allocated before), and the intent, written BEFORE a state-changing call,
 * says which participants to re-check after a crash, so a rerun never repeats an allocation
 * call that already took effect.
 *
 * Writes are conditional (ETag): two runs for the same flow cannot both act on the same
 * memory; the loser gets a ConflictError and its job is retried.
 */
import type { TableClient } from '@azure/data-tables';
import { ConflictError, PermanentError, statusOf } from '../errors';
import { ensureTable, escapeKey, textFromProperties, textToProperties } from '../storage/table-helpers';

export interface AllocationIntent {
  add: string[];
  remove: string[];
  /** True when the intent is to remove every allocation in one call. */
  removeAll?: boolean;
}

export interface AllocationMemory {
  reference: string;
  /** Participant ids syncbridge knows to be allocated to the source (sorted, unique). */
  allocated: string[];
  /** Allocation calls about to be made; cleared once they are done and `allocated` updated. */
  pending?: AllocationIntent;
  updatedAt: string;
}

export interface StoredAllocationMemory {
  memory: AllocationMemory;
  etag: string;
}

export interface AllocationStore {
  get(flowId: string, sourceId: string): Promise<StoredAllocationMemory | undefined>;
  /**
   * Writes the memory if the stored one still has `etag` (undefined: only if there is none).
   * Returns the new ETag; throws ConflictError when someone else wrote first.
   */
  put(flowId: string, sourceId: string, memory: AllocationMemory, etag: string | undefined): Promise<string>;
}

/** About 40,000 participant ids with an intent of the same size. */
const MAX_MEMORY_CHARS = 480_000;

const conflict = (flowId: string, sourceId: string) =>
  new ConflictError(
    `allocation memory of flow ${flowId} source ${sourceId} was changed by another run; retry`,
    { code: 'allocation_memory_conflict' },
  );

/** Azure Table storage: PK = flow id, RK = source id; the lists as JSON text (split if large). */
export class TableAllocationStore implements AllocationStore {
  constructor(private readonly table: TableClient) {}

  async get(flowId: string, sourceId: string): Promise<StoredAllocationMemory | undefined> {
    await ensureTable(this.table);
    try {
      const e = await this.table.getEntity<Record<string, unknown>>(escapeKey(flowId), escapeKey(sourceId));
      const memory = JSON.parse(textFromProperties('memory', e)) as AllocationMemory;
      return { memory, etag: String(e.etag) };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  async put(
    flowId: string,
    sourceId: string,
    memory: AllocationMemory,
    etag: string | undefined,
  ): Promise<string> {
    await ensureTable(this.table);
    const json = JSON.stringify(memory);
    // Strings count twice (UTF-16) against the 1 MiB entity limit: stay well under it.
    const props = json.length <= MAX_MEMORY_CHARS ? textToProperties('memory', json) : undefined;
    if (!props)
      throw new PermanentError(
        `allocation memory of flow ${flowId} source ${sourceId} is too large for one table entity (${json.length} characters; at most ${MAX_MEMORY_CHARS}): the roster is too big for one source`,
        { code: 'allocation_memory_too_large' },
      );
    const entity = {
      partitionKey: escapeKey(flowId),
      rowKey: escapeKey(sourceId),
      reference: memory.reference,
      allocatedCount: memory.allocated.length,
      pending: memory.pending !== undefined,
      ...props,
    };
    try {
      const r =
        etag === undefined
          ? await this.table.createEntity(entity)
          : await this.table.updateEntity(entity, 'Replace', { etag });
      return String(r.etag);
    } catch (err) {
      const s = statusOf(err);
      if (s === 409 || s === 412) throw conflict(flowId, sourceId);
      throw err;
    }
  }
}

/** In-process store with the same contract (local runs, tests of the routine). */
export class MemoryAllocationStore implements AllocationStore {
  private readonly rows = new Map<string, { json: string; etag: string }>();
  private seq = 0;

  async get(flowId: string, sourceId: string): Promise<StoredAllocationMemory | undefined> {
    const row = this.rows.get(`${flowId}\n${sourceId}`);
    return row ? { memory: JSON.parse(row.json) as AllocationMemory, etag: row.etag } : undefined;
  }

  async put(
    flowId: string,
    sourceId: string,
    memory: AllocationMemory,
    etag: string | undefined,
  ): Promise<string> {
    const key = `${flowId}\n${sourceId}`;
    const row = this.rows.get(key);
    if (etag === undefined ? row !== undefined : row?.etag !== etag) throw conflict(flowId, sourceId);
    const next = `W/"${++this.seq}"`;
    this.rows.set(key, { json: JSON.stringify(memory), etag: next });
    return next;
  }
}
