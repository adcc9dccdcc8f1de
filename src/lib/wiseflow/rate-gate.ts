/**
 * A rate gate for one API credential: at most `limit` requests in any window of `windowMs`, for
 * several windows at once (WISEflow: 200 per second and 5,000 per minute), plus the server's own
 * feedback (429, RateLimit-Remaining/RateLimit-Reset) which pauses every caller of the gate.
 *
 * Why a sliding window counted from COMPLETION: a slot is taken when a request starts and is
 * given back one window length after its response arrived. The server receives a request after
 * the client starts it and before the client has its response, so the next request using the
 * slot reaches the server at least one full window after the previous one did, whatever the
 * network delays: the server can never count more than `limit` requests in a window from this
 * process. Libraries with a fixed-interval reservoir (bottleneck's `reservoirRefreshInterval`)
 * allow up to twice the limit across a refresh boundary, and counting from the start time lets
 * jitter push `limit + 1` requests into the server's window; so this is hand-written (~100 lines).
 *
 * Waiters are served first come, first served. One gate per credential per process: client.ts
 * keeps them. Across several processes (Function instances) each has its own gate; the
 * server's feedback is then what keeps the sum in check (docs/wiseflow.md).
 */

export interface RateWindow {
  limit: number;
  windowMs: number;
}

interface WindowState extends RateWindow {
  inFlight: number;
  /** Times at which cooling slots become free again, ascending (from `head`). */
  cooling: number[];
  head: number;
}

export type ReleaseSlot = () => void;

export class RateGate {
  private readonly windows: WindowState[];
  private readonly waiters: (() => void)[] = [];
  private pausedUntil = 0;
  private budget?: { remaining: number; until: number };
  private timer?: NodeJS.Timeout;
  private timerAt = 0;

  constructor(
    windows: RateWindow[],
    private readonly now: () => number = Date.now,
  ) {
    if (windows.length === 0) throw new Error('a rate gate needs at least one window');
    for (const w of windows)
      if (!(Number.isInteger(w.limit) && w.limit > 0 && w.windowMs > 0))
        throw new Error(`invalid rate window ${JSON.stringify(w)}`);
    this.windows = windows.map((w) => ({ ...w, inFlight: 0, cooling: [], head: 0 }));
  }

  /** Waits for a slot in every window; call the returned function when the response arrived (or failed). */
  async acquire(): Promise<ReleaseSlot> {
    await new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      this.pump();
    });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const t = this.now();
      for (const w of this.windows) {
        w.inFlight--;
        w.cooling.push(t + w.windowMs);
      }
      this.pump();
    };
  }

  /** Nobody starts a request before `untilMs` (a 429, or RateLimit-Remaining 0). */
  pauseUntil(untilMs: number): void {
    if (untilMs > this.pausedUntil) this.pausedUntil = untilMs;
    this.pump();
  }

  /**
   * The server said `remaining` requests are left until `untilMs`. Other processes may be using
   * the same credential, so this can be lower than what the windows allow: honour the lower.
   */
  observeRemaining(remaining: number, untilMs: number): void {
    if (remaining <= 0) return this.pauseUntil(untilMs);
    this.budget = { remaining, until: untilMs };
    this.pump();
  }

  /** Requests waiting for a slot (for health and tests). */
  get waiting(): number {
    return this.waiters.length;
  }

  private pump(): void {
    while (this.waiters.length > 0) {
      const now = this.now();
      let waitUntil = now;
      let blockedByInFlight = false;
      if (this.pausedUntil > waitUntil) waitUntil = this.pausedUntil;
      if (this.budget && this.budget.until <= now) this.budget = undefined;
      if (this.budget && this.budget.remaining <= 0) waitUntil = Math.max(waitUntil, this.budget.until);
      for (const w of this.windows) {
        while (w.head < w.cooling.length && w.cooling[w.head]! <= now) w.head++;
        if (w.head > 1024 && w.head * 2 > w.cooling.length) {
          w.cooling = w.cooling.slice(w.head);
          w.head = 0;
        }
        const used = w.inFlight + (w.cooling.length - w.head);
        if (used >= w.limit) {
          // Full: the earliest cooling slot frees it; with none cooling, a release will pump again.
          if (w.head < w.cooling.length) waitUntil = Math.max(waitUntil, w.cooling[w.head]!);
          else blockedByInFlight = true;
        }
      }
      if (blockedByInFlight) return;
      if (waitUntil > now) {
        this.wakeAt(waitUntil);
        return;
      }
      for (const w of this.windows) w.inFlight++;
      if (this.budget) this.budget.remaining--;
      this.waiters.shift()!();
    }
  }

  private wakeAt(at: number): void {
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.pump();
      },
      Math.max(1, at - this.now()),
    );
  }
}
