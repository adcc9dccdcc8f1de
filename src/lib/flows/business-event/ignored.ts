/**
 * Business events answered 202 and ignored (activation test, not on the allow-lists), counted by
 * reason in this process: the function logs the running count with every ignored event, so a
 * misconfigured allow-list shows up as a growing number in the logs.
 */
const counts = new Map<string, number>();

/** Counts one ignored event; returns the count of its reason so far. */
export function countIgnored(reason: string): number {
  const n = (counts.get(reason) ?? 0) + 1;
  counts.set(reason, n);
  return n;
}

export function ignoredCounts(): Record<string, number> {
  return Object.fromEntries(counts);
}
