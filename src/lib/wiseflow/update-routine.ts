/**
 * The WISEflow update routine: bring a flow's external-source allocations in line with the
 * roster, then report `sync/done` (or `sync/fail`) per reference.
 *
 * 1. List the flow's external sources. None: derive a reference from the flow code (strict
 *    pattern), create the source (409: it exists, list again) and continue ("a manually created
 *    empty flow").
 * 2. For each source, or only the one the request names:
 *    a. desired = roster(reference);
 *    b. what is allocated now: the API cannot list a source's allocations, so the routine asks,
 *       per participant, which sources the participant is allocated to, for every participant
 *       that is desired, was allocated by syncbridge last time (allocation memory), or was in an
 *       interrupted intent (`verify: 'known'`, the default). `verify: 'memory'` trusts the memory
 *       and re-checks only an interrupted intent (fewer calls; blind to changes made by hand);
 *       `verify: 'flow'` asks about every participant of the flow (sees allocations made by
 *       hand to anyone). The first sync of a source (no memory yet) asks about every
 *       participant of the flow unless `discoverOnFirstSync` is false;
 *    c. write the intent (ETag-conditional), add the missing participants in ONE call, remove the
 *       extra ones (one call each, or one "remove all" when the roster is empty), then write the
 *       memory; d. `sync/done` with the reference.
 * 3. A permanent failure (403 flow archived / SIS on, 404, 400, an invalid roster) reports
 *    `sync/fail` for the affected reference and ends with outcome `failed` and the reason: the
 *    caller quarantines the job. A transient failure (5xx, timeout, 429 beyond patience, a
 *    concurrent run) is thrown: the queue retries the job.
 *
 * Running the same request again changes nothing: the second run finds the allocations already
 * right and makes no allocation call. A crash between an allocation call and the memory write is
 * repaired by the next run: the intent names the participants to re-check, so no call that
 * already took effect is repeated. Every step is a named fault point.
 */
import { ConflictError, isAppError, PermanentError, TransientError, type AppError } from '../errors';
import { isSimulatedCrash } from '../faults';
import type { Log } from '../ports';
import type { ExternalSource, FlowParticipant } from './api';
import type { AllocationMemory, AllocationStore } from './allocation-store';
import type { WiseflowClient } from './client';
import { referenceFromFlowCode } from './references';
import { compareIds, type RosterPort } from './roster';

export const UPDATE_ROUTINE_FAULT_POINTS = [
  'listSources',
  'createSource',
  'roster',
  'readMemory',
  'verify',
  'writeIntent',
  'addParticipants',
  'afterAdd',
  'removeParticipants',
  'afterRemove',
  'writeMemory',
  'syncDone',
  'syncFail',
] as const;
export type UpdateRoutineFaultPoint = (typeof UPDATE_ROUTINE_FAULT_POINTS)[number];

/** Fault injection: `at` may throw (the step fails) or throw a SimulatedCrash (the process dies there). */
export interface RoutineFaults {
  at(point: UpdateRoutineFaultPoint, detail?: string): Promise<void>;
}
const noFaults: RoutineFaults = { at: async () => {} };

/** The client calls the routine makes. */
export type WiseflowApi = Pick<
  WiseflowClient,
  | 'listSources'
  | 'createSource'
  | 'syncDone'
  | 'syncFail'
  | 'addParticipants'
  | 'removeAllAllocations'
  | 'removeParticipant'
  | 'sourcesOfParticipant'
  | 'listFlowParticipants'
>;

export interface UpdateRoutineDeps {
  client: WiseflowApi;
  roster: RosterPort;
  store: AllocationStore;
  log?: Log;
  faults?: RoutineFaults;
  /** See the module comment. Default 'known'. */
  verify?: 'known' | 'memory' | 'flow';
  /**
   * The first time a source is synced (no memory yet), ask about EVERY participant of the flow,
   * so allocations made before syncbridge (by hand, by another integration) are seen and the
   * extra ones removed. Default true.
   */
  discoverOnFirstSync?: boolean;
  /**
   * What the roster's ids are: WISEflow participant ids (default), or WISEflow user ids, mapped
   * to participant ids through the flow's participant list (a roster user who is not a
   * participant of the flow fails the roster).
   */
  rosterIds?: 'participantId' | 'userId';
  /** Per-participant reads in flight at once within one run. Default 8. */
  readConcurrency?: number;
  /** Description of a source syncbridge creates. */
  sourceDescription?: string;
  now?: () => number;
}

export interface UpdateRequest {
  flowId: string;
  flowCode?: string;
  /** Sync only this source. */
  reference?: string;
  requestId?: string;
}

export interface RoutineFailure {
  /** The reference concerned; absent for a failure of the whole flow (flow not found). */
  reference?: string;
  /** Stable code: `wiseflow_forbidden`, `wiseflow_not_found`, `invalid_roster`, ... */
  code: string;
  /** Why, safe to show (no secret, no payload). */
  reason: string;
  upstreamStatus?: number;
  /** Whether `sync/fail` was accepted by WISEflow for this reference. */
  syncFailReported: boolean;
}

export interface SourceReport {
  sourceId: string;
  reference: string;
  created: boolean;
  /** Participants in the roster. */
  desired: number;
  added: string[];
  removed: string[];
  result: 'done' | 'failed';
  failure?: RoutineFailure;
}

export interface UpdateReport {
  flowId: string;
  requestId?: string;
  /** `failed` when any source (or the flow) failed permanently: quarantine the job with `failures`. */
  outcome: 'done' | 'failed';
  sources: SourceReport[];
  /** References of sources this run created. */
  sourcesCreated: string[];
  failures: RoutineFailure[];
}

const DEFAULT_DESCRIPTION = 'Created by syncbridge';

/** Permanent for the routine: retrying the job cannot fix it. */
const isPermanent = (e: unknown): e is AppError =>
  isAppError(e) && (e.kind === 'permanent' || e.kind === 'validation');

export async function runUpdateRoutine(req: UpdateRequest, deps: UpdateRoutineDeps): Promise<UpdateReport> {
  return new Run(req, deps).run();
}

class Run {
  private readonly faults: RoutineFaults;
  private readonly report: UpdateReport;
  private readonly now: () => number;
  private flowParticipants?: Promise<FlowParticipant[]>;

  constructor(
    private readonly req: UpdateRequest,
    private readonly d: UpdateRoutineDeps,
  ) {
    this.faults = d.faults ?? noFaults;
    this.now = d.now ?? Date.now;
    this.report = {
      flowId: req.flowId,
      requestId: req.requestId,
      outcome: 'done',
      sources: [],
      sourcesCreated: [],
      failures: [],
    };
  }

  async run(): Promise<UpdateReport> {
    const { flowId } = this.req;
    let sources: ExternalSource[];
    try {
      await this.faults.at('listSources', flowId);
      sources = await this.d.client.listSources(flowId);
    } catch (e) {
      if (!isSimulatedCrash(e) && isPermanent(e)) return this.failFlow(e);
      throw e;
    }

    const created = new Set<string>();
    if (sources.length === 0) {
      const made = await this.createSource();
      if (!made) return this.finish();
      sources = [made];
      created.add(made.id);
    }

    let targets = sources;
    if (this.req.reference !== undefined) {
      targets = sources.filter((s) => s.reference === this.req.reference);
      if (targets.length === 0) {
        this.fail({
          reference: this.req.reference,
          code: 'source_not_found',
          reason: `flow ${flowId} has no external source with reference ${this.req.reference}`,
          syncFailReported: false,
        });
        return this.finish();
      }
    }

    for (const source of targets) {
      try {
        this.report.sources.push(await this.syncSource(source, created.has(source.id)));
      } catch (e) {
        if (isSimulatedCrash(e) || !isPermanent(e)) throw e;
        const failure = await this.reportFailure(source.reference, e);
        this.report.sources.push({
          sourceId: source.id,
          reference: source.reference,
          created: created.has(source.id),
          desired: 0,
          added: [],
          removed: [],
          result: 'failed',
          failure,
        });
      }
    }
    return this.finish();
  }

  // ---- steps ------------------------------------------------------------------------------------

  /** Creates the flow's first source; undefined when it cannot (a permanent refusal, recorded). */
  private async createSource(): Promise<ExternalSource | undefined> {
    const { flowId } = this.req;
    const reference = this.req.reference ?? referenceFromFlowCode(this.req.flowCode, flowId);
    try {
      await this.faults.at('createSource', `${flowId}/${reference}`);
      const s = await this.d.client.createSource(flowId, {
        reference,
        description: this.d.sourceDescription ?? DEFAULT_DESCRIPTION,
      });
      this.report.sourcesCreated.push(s.reference);
      this.d.log?.info('WISEflow external source created', {
        flowId,
        reference: s.reference,
        sourceId: s.id,
      });
      return s;
    } catch (e) {
      if (isSimulatedCrash(e)) throw e;
      if (e instanceof ConflictError) {
        // It exists: created by an earlier run whose answer was lost, or by a manager just now.
        const again = await this.d.client.listSources(flowId);
        const found = again.find((s) => s.reference === reference);
        if (found) return found;
        throw new TransientError(
          `WISEflow answered 409 for source ${reference} of flow ${flowId} but does not list it`,
          {
            code: 'wiseflow_inconsistent',
            cause: e,
          },
        );
      }
      if (isPermanent(e)) {
        this.fail({
          reference,
          code: e.code,
          reason: `cannot create external source ${reference}: ${e.message}`,
          upstreamStatus: e.upstreamStatus,
          // There is no source to report on: sync/fail would answer 404.
          syncFailReported: false,
        });
        return undefined;
      }
      throw e;
    }
  }

  private async syncSource(source: ExternalSource, created: boolean): Promise<SourceReport> {
    const { flowId } = this.req;
    const { client } = this.d;
    const at = `${flowId}/${source.reference}`;

    await this.faults.at('roster', at);
    const desired = await this.desired(source.reference);

    await this.faults.at('readMemory', at);
    const stored = await this.d.store.get(flowId, source.id);
    let etag = stored?.etag;
    const memory = stored?.memory;
    const remembered = new Set(memory?.allocated ?? []);
    const pending = memory?.pending;
    const pendingIds = new Set([...(pending?.add ?? []), ...(pending?.remove ?? [])]);

    await this.faults.at('verify', at);
    const verify = this.d.verify ?? 'known';
    let current: Set<string>;
    if (verify === 'flow' || (!memory && (this.d.discoverOnFirstSync ?? true))) {
      const everyone = new Set((await this.participantsOfFlow()).map((p) => p.participantId));
      current = await this.allocatedAmong(source, union(everyone, desired, remembered, pendingIds));
    } else if (verify === 'known') {
      current = await this.allocatedAmong(source, union(desired, remembered, pendingIds));
    } else {
      current = new Set(remembered);
      if (pending) {
        // An interrupted "remove all" may have removed any remembered participant: check them all.
        const check = pending.removeAll ? union(remembered, pendingIds) : pendingIds;
        const allocated = await this.allocatedAmong(source, check);
        for (const p of check)
          if (allocated.has(p)) current.add(p);
          else current.delete(p);
      }
    }

    const toAdd = [...desired].filter((p) => !current.has(p)).sort(compareIds);
    const toRemove = [...current].filter((p) => !desired.has(p)).sort(compareIds);
    const save = async (m: Omit<AllocationMemory, 'updatedAt' | 'reference'>) => {
      etag = await this.put(source, { reference: source.reference, ...m, updatedAt: this.iso() }, etag);
    };

    if (toAdd.length > 0 || toRemove.length > 0) {
      // One "remove all" call instead of one per participant when nobody should stay.
      const removeAll = desired.size === 0 && toRemove.length > 1;
      await this.faults.at('writeIntent', at);
      await save({ allocated: sorted(current), pending: { add: toAdd, remove: toRemove, removeAll } });
      if (toAdd.length > 0) {
        await this.faults.at('addParticipants', at);
        await client.addParticipants(flowId, source.id, toAdd);
        await this.faults.at('afterAdd', at);
      }
      if (removeAll) {
        await this.faults.at('removeParticipants', at);
        await client.removeAllAllocations(flowId, source.id);
        await this.faults.at('afterRemove', at);
      } else {
        for (const p of toRemove) {
          await this.faults.at('removeParticipants', `${at}/${p}`);
          try {
            await client.removeParticipant(flowId, source.id, p);
          } catch (e) {
            // 404: no longer allocated (removed meanwhile): the goal is reached.
            if (!(isAppError(e) && e.upstreamStatus === 404)) throw e;
          }
          await this.faults.at('afterRemove', `${at}/${p}`);
        }
      }
      await this.faults.at('writeMemory', at);
      await save({ allocated: sorted(desired) });
    } else if (!memory || pending || !sameSet(remembered, current)) {
      // Nothing to change in WISEflow, but the memory is missing, stale or holds a finished intent.
      await this.faults.at('writeMemory', at);
      await save({ allocated: sorted(current) });
    }

    await this.faults.at('syncDone', at);
    await client.syncDone(flowId, source.reference);
    this.d.log?.info('WISEflow external source synced', {
      flowId,
      reference: source.reference,
      added: toAdd.length,
      removed: toRemove.length,
    });
    return {
      sourceId: source.id,
      reference: source.reference,
      created,
      desired: desired.size,
      added: toAdd,
      removed: toRemove,
      result: 'done',
    };
  }

  /** The roster of `reference` as WISEflow participant ids. */
  private async desired(reference: string): Promise<Set<string>> {
    const ids = await this.d.roster.desiredParticipants(reference);
    if ((this.d.rosterIds ?? 'participantId') === 'participantId') return new Set(ids);
    const byUser = new Map<string, string>();
    for (const p of await this.participantsOfFlow()) if (p.userId) byUser.set(p.userId, p.participantId);
    const missing = ids.filter((u) => !byUser.has(u));
    if (missing.length > 0)
      throw new PermanentError(
        `invalid roster for reference ${reference}: user(s) ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ` (and ${missing.length - 10} more)` : ''} are not participants of flow ${this.req.flowId}`,
        {
          code: 'invalid_roster',
          details: { reference, missingUsers: missing.slice(0, 10), count: missing.length },
        },
      );
    return new Set(ids.map((u) => byUser.get(u)!));
  }

  /** The flow's participants, read once per run. */
  private participantsOfFlow(): Promise<FlowParticipant[]> {
    this.flowParticipants ??= this.d.client.listFlowParticipants(this.req.flowId);
    return this.flowParticipants;
  }

  /** Which of `participants` are allocated to `source` now, asking WISEflow per participant. */
  private async allocatedAmong(source: ExternalSource, participants: Set<string>): Promise<Set<string>> {
    const { flowId } = this.req;
    const out = new Set<string>();
    await eachLimited([...participants], this.d.readConcurrency ?? 8, async (p) => {
      try {
        const sources = await this.d.client.sourcesOfParticipant(flowId, p);
        if (sources.some((s) => s.id === source.id)) out.add(p);
      } catch (e) {
        // 404: not a participant of the flow, so not allocated.
        if (!(isAppError(e) && e.upstreamStatus === 404)) throw e;
      }
    });
    return out;
  }

  private async put(source: ExternalSource, m: AllocationMemory, etag: string | undefined): Promise<string> {
    try {
      return await this.d.store.put(this.req.flowId, source.id, m, etag);
    } catch (e) {
      if (e instanceof ConflictError)
        throw new TransientError(
          `another run is updating flow ${this.req.flowId} source ${source.reference}; this job will be retried`,
          { code: 'concurrent_run', cause: e },
        );
      throw e;
    }
  }

  /** sync/fail for one reference; a transient failure of that call is thrown (the job retries). */
  private async reportFailure(reference: string, e: AppError): Promise<RoutineFailure> {
    const { flowId } = this.req;
    let reported = false;
    let note = '';
    try {
      await this.faults.at('syncFail', `${flowId}/${reference}`);
      await this.d.client.syncFail(flowId, reference);
      reported = true;
    } catch (e2) {
      if (isSimulatedCrash(e2) || !isPermanent(e2)) throw e2;
      note = ` (sync/fail refused too: ${e2.message})`;
    }
    const failure: RoutineFailure = {
      reference,
      code: e.code,
      reason: `${e.message}${note}`,
      upstreamStatus: e.upstreamStatus,
      syncFailReported: reported,
    };
    this.fail(failure);
    return failure;
  }

  private failFlow(e: AppError): UpdateReport {
    this.fail({
      code: e.code,
      reason: `flow ${this.req.flowId}: ${e.message}`,
      upstreamStatus: e.upstreamStatus,
      syncFailReported: false,
    });
    return this.finish();
  }

  private fail(f: RoutineFailure): void {
    this.report.failures.push(f);
    this.report.outcome = 'failed';
    this.d.log?.warn('WISEflow update failed permanently', {
      flowId: this.req.flowId,
      reference: f.reference,
      code: f.code,
      reason: f.reason,
    });
  }

  private finish(): UpdateReport {
    return this.report;
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}

const union = (...sets: Set<string>[]): Set<string> => new Set(sets.flatMap((s) => [...s]));
const sorted = (s: Iterable<string>): string[] => [...s].sort(compareIds);
const sameSet = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((x) => b.has(x));

/** Runs `fn` over `items` with at most `limit` in flight; the first error is thrown after all settle. */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { e: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !failure) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failure ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.e;
}
