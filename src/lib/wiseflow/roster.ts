/**
 * The roster port: who SHOULD be allocated to an external source, by its reference. The default
 * implementation queries a Flowfinity view (through the ViewSource port) with the reference as a
 * view parameter and reads one configurable field of each record as the WISEflow participant id.
 *
 * A roster that cannot be trusted is not half-applied: a malformed item, a record without the
 * field, or a value that is not a WISEflow participant id (a whole number) fails the whole
 * roster with a PermanentError `invalid_roster` (the routine then reports sync/fail). Records in
 * an excluded state (default `Deleted`, Flowfinity's archive-instead-of-delete pattern) are left
 * out. Duplicates are folded.
 */
import { PermanentError } from '../errors';
import { stateOf } from '../flowfinity/record';
import type { ViewParams, ViewSource } from '../ports';

export interface RosterPort {
  /** Participant ids (decimal strings, unique) that should be allocated to the source `reference`. */
  desiredParticipants(reference: string): Promise<string[]>;
}

export interface FlowfinityRosterOptions {
  /** The view parameter that carries the reference (e.g. `reference`). */
  referenceParam: string;
  /** The record field holding the WISEflow participant id (e.g. `WiseflowParticipantId`). */
  participantField: string;
  /** Other view parameters sent on every query. */
  extraParams?: ViewParams;
  /** Field with the record's state; default `State`. */
  stateField?: string;
  /** States whose records are not part of the roster; default `['Deleted']`. */
  excludeStates?: string[];
  /** More items fail the roster (protects memory, the API budget and the memory entity size). Default 20,000. */
  maxParticipants?: number;
}

const MAX_PROBLEMS_LISTED = 5;

export function flowfinityRoster(view: ViewSource, o: FlowfinityRosterOptions): RosterPort {
  const stateField = o.stateField ?? 'State';
  const excluded = new Set(o.excludeStates ?? ['Deleted']);
  const max = o.maxParticipants ?? 20_000;
  return {
    async desiredParticipants(reference: string): Promise<string[]> {
      const ids = new Set<string>();
      const problems: string[] = [];
      let items = 0;
      for await (const item of view.query({ ...o.extraParams, [o.referenceParam]: reference })) {
        items++;
        if (items > max) throw invalid(reference, [`more than ${max} roster items`]);
        if (item.kind === 'malformed') {
          problems.push(`item ${item.index}: ${item.error}`);
          continue;
        }
        const { record } = item;
        const state = stateOf(record.data, stateField);
        if (state !== undefined && excluded.has(state)) continue;
        const raw = record.data[o.participantField];
        const id = participantIdOf(raw);
        if (id === undefined)
          problems.push(
            `record ${record.recordId}: ${o.participantField} ${raw === undefined || raw === null ? 'is missing' : 'is not a WISEflow participant id (a whole number)'}`,
          );
        else ids.add(id);
      }
      if (problems.length > 0) throw invalid(reference, problems);
      return [...ids].sort(compareIds);
    },
  };
}

/** A WISEflow participant id from a roster value: a whole number, or a string of digits. */
export function participantIdOf(v: unknown): string | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v > 0 ? String(v) : undefined;
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  if (!/^\d{1,15}$/.test(s)) return undefined;
  const n = String(Number(s));
  return n === '0' ? undefined : n;
}

/** Numeric order for decimal id strings (no leading zeros). */
export const compareIds = (a: string, b: string): number =>
  a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);

function invalid(reference: string, problems: string[]): PermanentError {
  const shown = problems.slice(0, MAX_PROBLEMS_LISTED);
  const more = problems.length > shown.length ? ` (and ${problems.length - shown.length} more)` : '';
  return new PermanentError(`invalid roster for reference ${reference}: ${shown.join('; ')}${more}`, {
    code: 'invalid_roster',
    details: { reference, problems: shown, count: problems.length },
  });
}
