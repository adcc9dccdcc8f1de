/**
 * Timer triggers with the Functions host's semantics: an NCRONTAB schedule (six fields, seconds
 * first; day-of-month AND day-of-week, no `L`/`#`: src/lib/ncrontab.ts) or a TimeSpan interval
 * (`hh:mm:ss`), one run at a time per function (a tick that comes
 * while a run is still going is skipped, like the host's singleton lock), `runOnStartup`, and a
 * throwing run is not fatal (the host logs the failed invocation).
 */
import { parseNcrontab } from '../../lib/ncrontab';
import type { InvokeFn, TriggerDriver } from './driver';
import { parseTimeSpanMs } from './host-json';

export interface TimerInput {
  isPastDue: boolean;
  schedule: { adjustForDST: boolean };
  scheduleStatus: { last: string; next: string; lastUpdated: string };
}

/** Computes occurrences of a timer schedule. */
export interface TimerSchedule {
  /** The first occurrence strictly after `after`. */
  nextAfter(after: Date): Date;
}

/** Parses a timer trigger's `schedule`: NCRONTAB with 6 fields, or a TimeSpan like `00:05:00`. */
export function parseTimerSchedule(schedule: string, timeZone = 'UTC'): TimerSchedule {
  const expr = schedule.trim();
  if (/^(\d+\.)?\d{1,2}:\d{1,2}:\d{1,2}$/.test(expr)) {
    const intervalMs = parseTimeSpanMs(expr);
    if (intervalMs <= 0) throw new Error(`timer schedule "${schedule}" must be a positive interval`);
    return { nextAfter: (after) => new Date(after.getTime() + intervalMs) };
  }
  // Validated now, so a bad schedule fails start-up rather than the first tick.
  const ncrontab = parseNcrontab(expr);
  ncrontab.nextAfter(new Date(), timeZone); // and its time zone (WEBSITE_TIME_ZONE)
  return { nextAfter: (after) => ncrontab.nextAfter(after, timeZone) };
}

export interface TimerDriverOptions {
  functionName: string;
  schedule: TimerSchedule;
  runOnStartup: boolean;
  invoke: InvokeFn;
  log?: (level: 'info' | 'warn' | 'error', line: string) => void;
}

/** setTimeout takes at most 2^31-1 ms. */
const MAX_TIMEOUT_MS = 2_147_483_647;

export class TimerDriver implements TriggerDriver {
  readonly description: string;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  private last: Date | undefined;

  constructor(private readonly o: TimerDriverOptions) {
    this.description = `timer ${o.functionName}`;
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.scheduleAfter(new Date());
    if (this.o.runOnStartup) void this.tick(new Date(), 'startup');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  isIdle(): boolean {
    return this.running === undefined;
  }

  /** Runs the function now (waiting for a run in progress first); rejects if it throws. */
  async runNow(): Promise<void> {
    while (this.running) await this.running;
    await this.run(new Date());
  }

  private scheduleAfter(after: Date): void {
    if (this.stopped) return;
    const due = this.o.schedule.nextAfter(after);
    const arm = () => {
      const wait = due.getTime() - Date.now();
      if (wait > MAX_TIMEOUT_MS) {
        this.timer = setTimeout(arm, MAX_TIMEOUT_MS);
        return;
      }
      this.timer = setTimeout(
        () => {
          this.timer = undefined;
          void this.tick(due, 'schedule');
        },
        Math.max(0, wait),
      );
    };
    arm();
  }

  private async tick(due: Date, why: 'schedule' | 'startup'): Promise<void> {
    // Next occurrence after the later of the one just due and now: missed ticks are not replayed.
    if (why === 'schedule') this.scheduleAfter(new Date(Math.max(due.getTime(), Date.now())));
    if (this.stopped) return;
    if (this.running) {
      this.o.log?.('warn', `[${this.o.functionName}] timer tick skipped: the previous run is still going`);
      return;
    }
    try {
      await this.run(due);
    } catch {
      // Logged by run(); a failing timer run is not fatal.
    }
  }

  private run(due: Date): Promise<void> {
    const now = new Date();
    // The host's TimerInfo (PascalCase JSON); the worker camel-cases it into a TimerInput.
    const input = {
      Schedule: { AdjustForDST: false },
      ScheduleStatus: {
        Last: (this.last ?? due).toISOString(),
        Next: this.o.schedule.nextAfter(now).toISOString(),
        LastUpdated: now.toISOString(),
      },
      IsPastDue: false,
    };
    this.last = due;
    // A failure is not logged here: the host logs every failed invocation once, as Azure does
    // (logging it here too printed each failing tick twice).
    const run = this.o
      .invoke({ input: { json: JSON.stringify(input) }, triggerMetadata: {} })
      .then(() => undefined);
    const tracked = run.then(
      () => undefined,
      () => undefined,
    );
    this.running = tracked;
    void tracked.then(() => {
      if (this.running === tracked) this.running = undefined;
    });
    return run;
  }
}
