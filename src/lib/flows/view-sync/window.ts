/**
 * The lookback window's memory: which versions (lastSubmissionIds) the flow has already brought
 * to a terminal outcome in the id range just below its cursor.
 *
 * A view may commit a record whose id was allocated before ids the cursor has already passed (a
 * late commit). Re-reading the last `lookback` ids on every run catches those, but re-sending
 * every record of the window to the target on every run is costly. Since lastSubmissionId is
 * unique system-wide, a version alone identifies (record, version): the flow keeps the versions
 * of its completed batches that fall inside the window, and drops a re-read record whose version
 * is among them at planning, without touching the target. What is left below the cursor is a
 * late commit, counted and applied.
 *
 * The memory only ever errs towards re-sending: it is trusted only for the cursor and lookback
 * it was computed for, and only completed batches add to it.
 */

/** Versions as text: sorted, unique, first in base 36 then base-36 deltas, comma-separated. */
export function encodeVersions(versions: Iterable<bigint>): string {
  const sorted = [...new Set(versions)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let prev = 0n;
  return sorted
    .map((v) => {
      const d = v - prev;
      prev = v;
      return d.toString(36);
    })
    .join(',');
}

export function decodeVersions(text: string | undefined): bigint[] {
  if (!text) return [];
  let prev = 0n;
  return text.split(',').map((d) => {
    let v = 0n;
    for (const c of d) v = v * 36n + BigInt(parseInt(c, 36));
    prev += v;
    return prev;
  });
}

export interface WindowMemory {
  /** The cursor the memory describes: versions in (at - lookback, at]. */
  at: string;
  lookback: number;
  versions: string;
}

/** The versions of `memory` if it describes exactly this cursor and lookback, else undefined. */
export function trustedVersions(
  memory: WindowMemory | undefined,
  cursor: bigint | undefined,
  lookback: number,
): Set<bigint> | undefined {
  if (!memory || cursor === undefined || memory.at !== cursor.toString() || memory.lookback !== lookback)
    return undefined;
  return new Set(decodeVersions(memory.versions));
}

/** The memory after a batch from `from` to `to` that brought `batchVersions` to a terminal outcome. */
export function advanceWindow(
  previous: WindowMemory | undefined,
  from: bigint | undefined,
  to: bigint,
  lookback: number,
  batchVersions: bigint[],
): WindowMemory {
  const floor = to - BigInt(lookback);
  const kept = [...(trustedVersions(previous, from, lookback) ?? []), ...batchVersions].filter(
    (v) => v > floor,
  );
  return { at: to.toString(), lookback, versions: encodeVersions(kept) };
}
