/**
 * The view-sync flow: a Flowfinity view read from a cursor, plugged into the batch engine.
 *
 *   collect     read the cursor (`lastSubmissionId`), query the view for records above
 *               cursor − lookback, keep at most maxBatch new records (the view is sorted by
 *               lastSubmissionId and ids are unique, so a truncated batch ends at its last kept
 *               id), drop re-read records the flow already brought to a terminal outcome
 *               (window.ts), and yield the rest; the batch ends at the highest new id.
 *   onComplete  compare-and-set the cursor from the batch's `from` to its `to`, then remember
 *               the batch's versions in the lookback window and count the late commits caught.
 *
 * An empty result never touches the cursor (the tutorial's `last()` of an empty array bug).
 */
import { ConflictError, ValidationError } from '../../errors';
import type {
  BatchFlow,
  BatchSettings,
  CollectedItem,
  Collection,
  CollectInput,
  CompletedBatch,
} from '../../batch/flow';
import { stateOf } from '../../flowfinity/record';
import {
  PREVIOUS_LAST_SUBMISSION_ID,
  type CursorStore,
  type Log,
  type TargetSystem,
  type ViewSource,
} from '../../ports';
import { advanceWindow, decodeVersions, encodeVersions, trustedVersions, type WindowMemory } from './window';

export interface ViewSyncSettings extends BatchSettings {
  /** Ids below the cursor re-read on every run, to catch late commits. */
  lookback: number;
  /** Record field carrying the state name, and the state names applied as deletions. */
  stateField: string;
  deletedStates: string[];
}

export interface ViewSyncFlowOptions {
  name: string;
  settings: ViewSyncSettings;
  view: ViewSource;
  cursor: CursorStore;
  target: TargetSystem;
}

/** What the flow keeps on its stream between batches. */
interface ViewSyncState {
  window?: WindowMemory;
  late?: { caught: number; maxDepth: string; lastBatchId?: string };
}

/** What a batch's manifest carries to onComplete. */
interface BatchMeta {
  /** Versions of the batch inside the lookback window below its `to`. */
  versions: string;
  late: { count: number; maxDepth: string };
}

const parseJson = <T>(text: string | undefined): T | undefined => {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined; // unreadable memory only costs re-sends
  }
};

export class CursorConflictError extends ConflictError {
  constructor(flow: string, batchId: string, expected: bigint | undefined, current: bigint | undefined) {
    super(
      `cursor conflict completing batch ${batchId} of flow ${flow}: expected ${expected ?? '(none)'}, found ${current ?? '(none)'}. ` +
        'Another writer moved the cursor (a second app or flow on the same file?). The batch is left uncompleted; ' +
        'stop the other writer, then fix the cursor file.',
      { code: 'cursor_conflict' },
    );
    this.name = 'CursorConflictError';
  }
}

export interface ViewSyncDescription {
  cursor: string | null;
  cursorLocation: string;
  /** The cursor file's lease (Azure Files only); a stale one blocks every other writer. */
  cursorLease?: { leased: boolean; stale: boolean; ageSeconds: number | null } | { error: string };
  /** Problems worth an operator's look: the flow's health is `degraded` while there are any. */
  warnings?: string[];
  lookback: number;
  /** Records the lookback re-read that were not applied yet: committed late below the cursor. */
  lateCommits: { caught: number; maxDepth: string; lastBatchId: string | null };
}

export class ViewSyncFlow implements BatchFlow {
  readonly name: string;
  readonly settings: ViewSyncSettings;
  readonly target: TargetSystem;
  readonly view: ViewSource;
  readonly cursor: CursorStore;

  constructor(o: ViewSyncFlowOptions) {
    this.name = o.name;
    this.settings = o.settings;
    this.target = o.target;
    this.view = o.view;
    this.cursor = o.cursor;
  }

  /** A record in one of the deleted states is applied as a deletion (tombstone). */
  isDeleted(data: Record<string, unknown>): boolean {
    const state = stateOf(data, this.settings.stateField);
    return state !== undefined && this.settings.deletedStates.includes(state);
  }

  async collect(c: CollectInput): Promise<Collection> {
    const { lookback, maxBatch } = this.settings;
    const from = await this.cursor.read();
    const queryFrom =
      from === undefined ? undefined : from > BigInt(lookback) ? from - BigInt(lookback) : undefined;
    const known = trustedVersions(parseJson<ViewSyncState>(c.flowState)?.window, from, lookback);
    let to = from;
    let full = false;
    let kept = 0;
    let newRecords = 0;
    const versions: bigint[] = [];
    let late = 0;
    let maxDepth = 0n;
    const view = this.view;
    const isDeleted = (data: Record<string, unknown>) => this.isDeleted(data);

    async function* items(): AsyncGenerator<CollectedItem> {
      let previous: bigint | undefined;
      for await (const item of view.query({ [PREVIOUS_LAST_SUBMISSION_ID]: queryFrom }, c.signal)) {
        if (item.kind === 'malformed') {
          const identity = identityOf(item.raw);
          const v = identity.version === undefined ? undefined : BigInt(identity.version);
          // A malformed item already quarantined in the window is not quarantined again.
          if (v !== undefined && from !== undefined && v <= from && known?.has(v)) continue;
          if (v !== undefined) versions.push(v);
          yield { kind: 'malformed', raw: item.raw, error: item.error, ...identity };
          continue;
        }
        const r = item.record;
        if (previous !== undefined && r.version <= previous)
          throw new ValidationError(
            `the view is not sorted by lastSubmissionId ascending (${r.version} after ${previous}); set the view's sort order`,
            { code: 'view_not_sorted' },
          );
        previous = r.version;
        // A view that ignores the parameter would re-send old records: skip them.
        if (queryFrom !== undefined && r.version <= queryFrom) continue;
        if (from === undefined || r.version > from) {
          if (newRecords >= maxBatch) {
            full = true;
            return; // leaving the loop aborts the request
          }
          newRecords++;
          if (to === undefined || r.version > to) to = r.version;
        } else {
          // Inside the lookback window. Already applied: drop it without touching the target.
          if (known?.has(r.version)) continue;
          if (known) {
            late++;
            const depth = from - r.version;
            if (depth > maxDepth) maxDepth = depth;
          }
        }
        kept++;
        versions.push(r.version);
        yield {
          kind: 'record',
          id: r.recordId,
          version: r.version,
          deleted: isDeleted(r.data),
          data: r.data,
        };
      }
    }

    return {
      from: from?.toString(),
      items: items(),
      end: () => {
        if (kept === 0 || to === undefined) {
          if (late > 0) c.log.warn('late commits found', { flow: this.name, late });
          return undefined;
        }
        const floor = to - BigInt(lookback);
        const meta: BatchMeta = {
          versions: encodeVersions(versions.filter((v) => v > floor)),
          late: { count: late, maxDepth: maxDepth.toString() },
        };
        if (late > 0)
          c.log.warn('the lookback caught records committed late below the cursor', {
            flow: this.name,
            late,
            maxDepth: maxDepth.toString(),
          });
        return { to: to.toString(), full, meta: JSON.stringify(meta) };
      },
    };
  }

  async onComplete(b: CompletedBatch, log: Log): Promise<{ flowState: string }> {
    const from = b.from === undefined ? undefined : BigInt(b.from);
    const to = BigInt(b.to);
    if (from === undefined || to > from) {
      const res = await this.cursor.compareAndSet(from, to);
      // A lost response whose retry saw our own write reports the value we wrote: done.
      if (!res.ok && res.current !== to)
        throw new CursorConflictError(this.name, b.batchId, from, res.current);
    }
    const state = parseJson<ViewSyncState>(b.flowState) ?? {};
    const meta = parseJson<BatchMeta>(b.meta);
    const caught = meta?.late.count ?? 0;
    const prevDepth = BigInt(state.late?.maxDepth ?? '0');
    const depth = BigInt(meta?.late.maxDepth ?? '0');
    const next: ViewSyncState = {
      window: advanceWindow(state.window, from, to, this.settings.lookback, decodeVersions(meta?.versions)),
      late: {
        caught: (state.late?.caught ?? 0) + caught,
        maxDepth: (depth > prevDepth ? depth : prevDepth).toString(),
        lastBatchId: caught > 0 ? b.batchId : state.late?.lastBatchId,
      },
    };
    if (caught > 0) log.info('applied late commits', { flow: this.name, caught, maxDepth: depth.toString() });
    return { flowState: JSON.stringify(next) };
  }

  /** A stale lease on the cursor file (a crashed holder) shown in health, with what to do. */
  private async describeLease(): Promise<Pick<ViewSyncDescription, 'cursorLease' | 'warnings'>> {
    if (!this.cursor.leaseStatus) return {};
    try {
      const s = await this.cursor.leaseStatus();
      const ageSeconds = s.ageMs === undefined ? null : Math.round(s.ageMs / 1000);
      return {
        cursorLease: { leased: s.leased, stale: s.stale, ageSeconds },
        ...(s.stale
          ? {
              warnings: [
                `the cursor file ${this.cursor.describe()} holds a stale lease (unchanged for ${ageSeconds} s): ` +
                  `other writers get 412 LeaseIdMissing; run \`syncbridge cursor break-lease --flow ${this.name}\``,
              ],
            }
          : {}),
      };
    } catch (e) {
      return { cursorLease: { error: e instanceof Error ? e.message : String(e) } };
    }
  }

  /** The cursor is neither where the batch starts (it can complete) nor where it ends (it did). */
  async completionConflict(b: {
    batchId: string;
    from: string | undefined;
    to: string;
  }): Promise<string | undefined> {
    const current = await this.cursor.read();
    const from = b.from === undefined ? undefined : BigInt(b.from);
    if (current === from || current === BigInt(b.to)) return undefined;
    return new CursorConflictError(this.name, b.batchId, from, current).message;
  }

  async describe(flowState: string | undefined): Promise<ViewSyncDescription> {
    const cursor = await this.cursor.read();
    const late = parseJson<ViewSyncState>(flowState)?.late;
    const lease = await this.describeLease();
    return {
      cursor: cursor?.toString() ?? null,
      cursorLocation: this.cursor.describe(),
      ...lease,
      lookback: this.settings.lookback,
      lateCommits: {
        caught: late?.caught ?? 0,
        maxDepth: late?.maxDepth ?? '0',
        lastBatchId: late?.lastBatchId ?? null,
      },
    };
  }
}

/** RecordID and lastSubmissionId of a malformed item where they can be read, for operators. */
function identityOf(raw: string): { id?: string; version?: string } {
  try {
    const o = JSON.parse(raw) as Record<string, unknown>;
    const id =
      typeof o.RecordID === 'string' || typeof o.RecordID === 'number' ? String(o.RecordID) : undefined;
    const v = String(o.lastSubmissionId ?? '');
    return { id, version: /^\d+$/.test(v) ? v : undefined };
  } catch {
    return {};
  }
}
