/**
 * The `table` target: one entity per record in Azure Table storage, PK = view, RK = RecordID.
 * Every write is conditional: create (fails if the record exists), or read the stored version
 * and, if it is older than the incoming one, replace with If-Match on the read ETag. A lost race re-reads and decides again, so two writers
 * can never both apply, and an older version can never overwrite a newer one. Deletes keep a
 * tombstone (deleted = true) with their version, so a late older version cannot resurrect them.
 */
import type { TableClient } from '@azure/data-tables';
import {
  ensureTable,
  escapeKey,
  textFromProperties,
  textToProperties,
  unescapeKey,
} from '../storage/table-helpers';
import { statusOf } from '../errors';
import { PermanentError } from '../errors';
import type { ApplyOutcome, StoredTargetRecord, TargetReader, TargetRecord, TargetSystem } from '../ports';

/** Record keys are `<view>|<RecordID>`; the view becomes the partition. */
function splitKey(key: string): { pk: string; rk: string } {
  const i = key.indexOf('|');
  if (i <= 0) throw new Error(`record key ${JSON.stringify(key)} is not <view>|<RecordID>`);
  return { pk: escapeKey(key.slice(0, i)), rk: escapeKey(key.slice(i + 1)) };
}

export class TableTarget implements TargetSystem, TargetReader {
  constructor(private readonly table: TableClient) {}

  async ensureReady(): Promise<void> {
    await ensureTable(this.table);
  }

  async apply(record: TargetRecord): Promise<ApplyOutcome> {
    await ensureTable(this.table); // once per client
    const { pk, rk } = splitKey(record.key);
    const dataProps = textToProperties('data', JSON.stringify(record.data));
    if (!dataProps) throw new PermanentError(`record ${record.key} is larger than a table entity can hold`);
    const entity = {
      partitionKey: pk,
      rowKey: rk,
      version: record.version.toString(),
      deleted: record.deleted,
      ...dataProps,
    };
    // Most records of a backlog are new: try the create first (one request). A 409 means the
    // record exists: read its version and ETag, then replace only if ours is newer.
    let tryCreate = true;
    for (let attempt = 0; attempt < 20; attempt++) {
      let current: { version: string; etag: string } | undefined;
      if (!tryCreate) {
        try {
          const e = await this.table.getEntity<{ version: string }>(pk, rk, {
            queryOptions: { select: ['version'] },
          });
          current = { version: e.version, etag: e.etag };
        } catch (e) {
          if (statusOf(e) !== 404) throw e;
        }
        if (current && BigInt(current.version) >= record.version) return 'skipped';
      }
      try {
        if (current) await this.table.updateEntity(entity, 'Replace', { etag: current.etag });
        else await this.table.createEntity(entity);
        return 'applied';
      } catch (e) {
        const status = statusOf(e);
        tryCreate = false;
        if (status === 409 || status === 412) continue; // exists, or lost a race: decide again
        if (status === 400 || status === 413)
          throw new PermanentError(`target refused ${record.key}: ${status}`);
        throw e;
      }
    }
    throw new Error(`record ${record.key}: too many concurrent writers`);
  }

  async *list(): AsyncIterable<StoredTargetRecord> {
    await this.ensureReady();
    for await (const e of this.table.listEntities<Record<string, unknown>>()) {
      yield {
        key: `${unescapeKey(String(e.partitionKey))}|${unescapeKey(String(e.rowKey))}`,
        version: BigInt(String(e.version)),
        deleted: Boolean(e.deleted),
        data: JSON.parse(textFromProperties('data', e)) as Record<string, unknown>,
      };
    }
  }
}
