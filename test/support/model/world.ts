/**
 * Model-based fault-schedule testing of the batch engine with two view-sync flows side by side,
 * and the business-event and external-source webhook flows interleaved with them (webhooks.ts)
 * (shared by test/model/model.test.ts and test/model/model.long.test.ts).
 *
 * A schedule (arbitraries.ts) is a generated list of steps: source mutations of either flow
 * (insert, update, delete through State, late commits of a lower id), either flow's timer
 * ticks, deliveries of queued messages of both flows in a chosen order (with duplicates and
 * redeliveries), faults armed at the engine's fault points (a thrown Error, a process death =
 * SimulatedCrash, or a PAUSE that suspends the operation there so that other steps interleave
 * with it), transient target failures, poisoned record versions, and clock jumps (planner lease
 * expiry, message visibility timeout). runner.ts runs it on real state; after the steps it
 * QUIESCES (faults off, suspended operations resumed, late commits committed, clock past the
 * lease, then tick both flows + deliver everything until nothing changes) and invariants.ts
 * checks DESIGN.md's invariants per flow, and that nothing crossed between the flows.
 */
import type { StoredTargetRecord, TargetReader, TargetSystem } from '../../../src/lib/ports';
import { scheduleText, type Schedule } from './arbitraries';
import { ScheduleRun } from './runner';
import { startWebhookSims, stopWebhookSims, type WebhookSims } from './webhooks';

export interface ModelOptions {
  poisonPolicy: 'quarantine' | 'block';
  /** SYNC_LOOKBACK (ids). Large enough by default to catch every late commit of a schedule. */
  lookback?: number;
  /**
   * A fresh target per schedule instead of the table target (a postgres TestTarget). With
   * `rows()` (a raw SELECT), the final check also compares every row's data with the source exactly.
   */
  store?: () => Promise<ModelStore>;
}

export type ModelStore = TargetSystem &
  TargetReader & { close(): Promise<void>; rows?(): Promise<StoredTargetRecord[]> };

/** What the schedules exercised (summed over all schedules of a world), to judge coverage. */
export interface ModelStats {
  schedules: number;
  steps: number;
  throws: number;
  crashes: number;
  pauses: number;
  resumed: number;
  opsKilledWithProcess: number;
  redeliveries: number;
  duplicateDeliveries: number;
  toPoisonQueue: number;
  batchesPlanned: number;
  batchesCompleted: number;
  batchesAbandoned: number;
  drainRepairs: number;
  quarantined: number;
  lateCommitsBelowCursor: number;
  recordsApplied: number;
  businessEvents: number;
  wiseflowRequests: number;
  webhooksAccepted: number;
  webhookDuplicates: number;
  webhookResends: number;
  jobsDone: number;
  jobsFailed: number;
  acks: number;
}

const emptyStats = (): ModelStats => ({
  schedules: 0,
  steps: 0,
  throws: 0,
  crashes: 0,
  pauses: 0,
  resumed: 0,
  opsKilledWithProcess: 0,
  redeliveries: 0,
  duplicateDeliveries: 0,
  toPoisonQueue: 0,
  batchesPlanned: 0,
  batchesCompleted: 0,
  batchesAbandoned: 0,
  drainRepairs: 0,
  quarantined: 0,
  lateCommitsBelowCursor: 0,
  recordsApplied: 0,
  businessEvents: 0,
  wiseflowRequests: 0,
  webhooksAccepted: 0,
  webhookDuplicates: 0,
  webhookResends: 0,
  jobsDone: 0,
  jobsFailed: 0,
  acks: 0,
});

export class ModelWorld {
  readonly stats: ModelStats = emptyStats();
  private constructor(
    private readonly connectionString: string,
    private readonly sims: WebhookSims,
  ) {}

  summary(): string {
    return Object.entries(this.stats)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
  }

  /**
   * One world per test file, over the run's shared Azurite (test/support/azurite.ts), with the
   * F&O, WISEflow and roster simulators its schedules share.
   */
  static async start(connectionString: string): Promise<ModelWorld> {
    return new ModelWorld(connectionString, await startWebhookSims());
  }

  async stop(): Promise<void> {
    await stopWebhookSims(this.sims);
  }

  /** Runs one schedule and throws (with the trace) if an invariant does not hold. */
  async check(schedule: Schedule, o: ModelOptions): Promise<void> {
    const run = await ScheduleRun.create(this.connectionString, schedule, o, this.stats, this.sims);
    let failure: unknown;
    try {
      await run.execute();
    } catch (e) {
      failure = e;
    } finally {
      await run.dispose();
    }
    if (failure !== undefined) throw failure;
    if (run.violations.length > 0) {
      const trace =
        run.trace.length > 120 ? [...run.trace.slice(0, 110), '…', ...run.trace.slice(-10)] : run.trace;
      throw new Error(
        `invariant violations for ${scheduleText(schedule)}:\n  - ${run.violations.join('\n  - ')}\n` +
          `trace:\n  ${trace.join('\n  ')}`,
      );
    }
  }
}
