/** Condition waits for tests: poll until something holds, instead of sleeping a fixed time. */

export interface WaitOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Pause between checks (default 20 ms). */
  intervalMs?: number;
  /** What was awaited, for the error. */
  what?: string;
}

/** Resolves once `check()` is truthy (it may be async); rejects with `what` after the timeout. */
export async function waitFor<T>(check: () => T | Promise<T>, o: WaitOptions = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (o.timeoutMs ?? 10_000);
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${o.what ?? 'a condition'}`);
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 20));
  }
}
