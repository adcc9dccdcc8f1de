/**
 * The external-source flow put together: the WISEflow client, the roster (a Flowfinity view),
 * the allocation memory (Table storage), the update routine, and the `jobs` handler that runs
 * the routine for each accepted FLOW_EXTERNAL_SOURCE webhook. Also what the operator CLI does by
 * hand: list a flow's sources, add one (reference validated), run the routine.
 *
 * The handler's contract with the jobs worker (src/lib/jobs/worker.ts): `done` when every source
 * synced (sync/done sent); `failed` with the reason when the routine failed permanently (it has
 * already sent sync/fail where WISEflow has a source to report on): the job is quarantined and
 * shown in health and the CLI. A transient failure is thrown and the queue retries the job; the
 * routine is idempotent, so a retry after a crash changes nothing that is already right.
 */
import type { TableClient } from '@azure/data-tables';
import type { ExternalSourceFlowConfig } from '../../config/external-source-flows';
import { errorText, isAppError, ValidationError } from '../../errors';
import { isSimulatedCrash } from '../../faults';
import { FlowfinityViewClient } from '../../flowfinity/view-client';
import type { JobHandler, JobResult } from '../../jobs/worker';
import type { Log, ViewSource } from '../../ports';
import type { WebhookRoute } from '../../webhooks/intake';
import { TableAllocationStore, type AllocationStore } from '../../wiseflow/allocation-store';
import type { ExternalSource } from '../../wiseflow/api';
import { WiseflowClient } from '../../wiseflow/client';
import { parseStrictReference } from '../../wiseflow/references';
import { flowfinityRoster, type RosterPort } from '../../wiseflow/roster';
import {
  runUpdateRoutine,
  type RoutineFaults,
  type UpdateReport,
  type UpdateRequest,
} from '../../wiseflow/update-routine';
import type { ExternalSourceRequest } from '../../wiseflow/webhook';
import { externalSourceJobSchema, externalSourceRoute } from './route';

export interface ExternalSourceServiceDeps {
  /** The allocation memory's table (`<prefix>wiseflowallocations`). */
  allocationTable: TableClient;
  log?: Log;
  /** Test hooks. */
  roster?: RosterPort;
  store?: AllocationStore;
  faults?: RoutineFaults;
  fetchImpl?: typeof fetch;
}

export class ExternalSourceService {
  readonly client: WiseflowClient;
  readonly handler: JobHandler;
  private readonly roster: RosterPort;
  private readonly store: AllocationStore;

  constructor(
    readonly flow: ExternalSourceFlowConfig,
    private readonly deps: ExternalSourceServiceDeps,
  ) {
    const w = flow.wiseflow;
    this.client = new WiseflowClient({
      baseUrl: w.baseUrl,
      auth: w.auth,
      timeoutMs: w.timeoutMs,
      maxRetries: w.maxRetries,
      maxWaitMs: w.maxWaitMs,
      rateLimits: w.rateLimits,
      log: deps.log,
      fetchImpl: deps.fetchImpl,
    });
    const r = flow.roster;
    const view: ViewSource = new FlowfinityViewClient({
      viewUrl: r.viewUrl,
      onBehalfOf: r.onBehalfOf,
      username: r.username,
      password: r.password,
      timeoutMs: r.timeoutMs,
      maxRetries: r.maxRetries,
    });
    this.roster =
      deps.roster ??
      flowfinityRoster(view, {
        referenceParam: r.referenceParam,
        participantField: r.participantField,
        stateField: r.stateField,
        excludeStates: r.excludeStates,
      });
    this.store = deps.store ?? new TableAllocationStore(deps.allocationTable);
    this.handler = {
      kind: flow.webhook.jobKind,
      run: async (job, ctx): Promise<JobResult> => {
        const parsed = externalSourceJobSchema.safeParse(job.body);
        if (!parsed.success)
          throw new ValidationError(
            `the stored job is not a WISEflow sync request: ${parsed.error.message}`,
            {
              code: 'invalid_job',
            },
          );
        let report: UpdateReport;
        try {
          report = await this.run(parsed.data, ctx.log);
        } catch (e) {
          if (isSimulatedCrash(e)) throw e; // a test's process death: nothing runs after it
          // The worker ends the job `failed` after this: tell WISEflow, or the manager would
          // see "Sync Requested" for ever. A permanent error ends it too (no retry).
          const final =
            ctx.lastDelivery || (isAppError(e) && e.kind !== 'transient' && e.kind !== 'conflict');
          if (final) await this.reportGiveUp(parsed.data, ctx.log);
          throw e;
        }
        return report.outcome === 'done'
          ? { outcome: 'done' }
          : { outcome: 'failed', reason: failureText(report) };
      },
    };
  }

  /** The intake route of `POST /api/webhooks/external-source`. */
  route(): WebhookRoute<ExternalSourceRequest> {
    return externalSourceRoute(this.flow);
  }

  /** Runs the update routine for one WISEflow flow (all its sources, or the one named). */
  async run(req: UpdateRequest, log: Log | undefined = this.deps.log): Promise<UpdateReport> {
    const report = await runUpdateRoutine(
      { flowId: req.flowId, flowCode: req.flowCode, reference: req.reference, requestId: req.requestId },
      {
        client: this.client,
        roster: this.roster,
        store: this.store,
        log,
        faults: this.deps.faults,
        verify: this.flow.routine.verify,
        discoverOnFirstSync: this.flow.routine.discoverOnFirstSync,
        rosterIds: this.flow.roster.idKind,
        sourceDescription: this.flow.routine.sourceDescription,
      },
    );
    log?.info('WISEflow update routine finished', {
      flowId: report.flowId,
      requestId: report.requestId,
      outcome: report.outcome,
      sources: report.sources.map((s) => ({
        reference: s.reference,
        result: s.result,
        added: s.added.length,
        removed: s.removed.length,
      })),
    });
    return report;
  }

  /**
   * Best effort `sync/fail` for the sources a job was about when the job is given up (its
   * retries ran out): the named source, else every source still PENDING. Failures are logged.
   */
  async reportGiveUp(req: UpdateRequest, log: Log | undefined = this.deps.log): Promise<string[]> {
    const reported: string[] = [];
    try {
      const references = req.reference
        ? [req.reference]
        : (await this.client.listSources(req.flowId))
            .filter((s) => s.state === 'PENDING')
            .map((s) => s.reference);
      for (const reference of references) {
        await this.client.syncFail(req.flowId, reference);
        reported.push(reference);
      }
    } catch (e) {
      log?.warn('WISEflow sync/fail after giving up could not be sent', {
        flowId: req.flowId,
        error: errorText(e),
      });
    }
    if (reported.length)
      log?.warn('WISEflow job given up: sync/fail reported', { flowId: req.flowId, reported });
    return reported;
  }

  listSources(flowId: string): Promise<ExternalSource[]> {
    return this.client.listSources(wiseflowFlowId(flowId));
  }

  /** Creates an external source; the reference must be creatable through the API (strict pattern). */
  addSource(flowId: string, reference: string, description?: string): Promise<ExternalSource> {
    return this.client.createSource(wiseflowFlowId(flowId), {
      reference: parseStrictReference(reference),
      description: description ?? this.flow.routine.sourceDescription,
    });
  }
}

/** A WISEflow flow id as the user typed it: digits only. */
export function wiseflowFlowId(input: string): string {
  const s = input.trim();
  if (!/^\d{1,18}$/.test(s))
    throw new ValidationError(
      `WISEflow flow id ${JSON.stringify(input.slice(0, 40))} must be a whole number`,
      {
        code: 'invalid_flow_id',
      },
    );
  return s;
}

/** The quarantine reason: one line per failure, codes first (safe: no secret, no payload). */
export function failureText(report: UpdateReport): string {
  return report.failures
    .map(
      (f) =>
        `${f.reference ? `reference ${f.reference}` : `flow ${report.flowId}`}: ${f.code}: ${f.reason}${f.syncFailReported ? ' (sync/fail reported)' : ''}`,
    )
    .join('; ');
}
