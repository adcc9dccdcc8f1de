/**
 * Builds a business-event flow's adapters from its configuration (safe HTTP client, downloader,
 * F&O API clients), its webhook job handler, and its poll step. compose.ts calls these.
 *
 * Local runs and tests reach the F&O simulator on loopback with a self-signed certificate and get
 * its tokens from it: that is `setFinopsLocalOverrides`, called in code by `npm start` and the
 * tests, never from a setting (a setting could be flipped in production).
 */
import { odata } from '@azure/data-tables';
import { ClientSecretCredential, ManagedIdentityCredential, type TokenCredential } from '@azure/identity';
import { z } from 'zod';
import type { Engine } from '../../batch/engine';
import type { BatchSettings } from '../../batch/flow';
import { plan, type PlanOutcome } from '../../batch/planner';
import type { BusinessEventFlowConfig } from '../../config';
import { AppError, errorText, PermanentError, TransientError } from '../../errors';
import {
  businessEventSchema,
  FinOpsApiClient,
  PackageApiClient,
  RecurringIntegrationClient,
  SafeDownloader,
  SafeHttpClient,
  factsOf,
  type BusinessEvent,
  type UnsafeTestOnlyOptions,
} from '../../finops';
import type { JobHandler, JobResult } from '../../jobs/worker';
import type { Log, TargetSystem } from '../../ports';
import { BusinessEventFlow } from './flow';

export const BUSINESS_EVENT_JOB_KIND = 'business-event';

export interface FinopsLocalOverrides {
  /** Loopback and the simulator's CA. */
  unsafeTestOnly?: UnsafeTestOnlyOptions;
  /** Tokens from the simulator instead of Entra. */
  credential?: TokenCredential;
}

// Process-wide, like the app itself (getApp): the local host loads the function modules into
// the process that called this.
const OVERRIDES = Symbol.for('syncbridge.finops.localOverrides');
type Holder = { [OVERRIDES]?: FinopsLocalOverrides };

/** Local runs and tests only: let the F&O flows reach the simulator. */
export function setFinopsLocalOverrides(o: FinopsLocalOverrides | undefined): void {
  (globalThis as Holder)[OVERRIDES] = o;
}

export function finopsLocalOverrides(): FinopsLocalOverrides | undefined {
  return (globalThis as Holder)[OVERRIDES];
}

function credentialOf(
  api: NonNullable<BusinessEventFlowConfig['finops']['api']>,
  fallback: () => TokenCredential,
) {
  if (api.clientSecret && api.tenantId && api.clientId)
    return new ClientSecretCredential(api.tenantId, api.clientId, api.clientSecret);
  if (api.clientId) return new ManagedIdentityCredential({ clientId: api.clientId });
  return fallback();
}

export function createBusinessEventFlow(
  cfg: BusinessEventFlowConfig,
  o: {
    target: TargetSystem;
    defaultCredential: () => TokenCredential;
    overrides?: FinopsLocalOverrides;
    now?: () => number;
  },
): BusinessEventFlow {
  const f = cfg.finops;
  const http = new SafeHttpClient({
    allowedPrivateCidrs: f.download.allowedPrivateCidrs,
    timeoutMs: f.download.timeoutMs,
    maxRedirects: f.download.maxRedirects,
    unsafeTestOnly: o.overrides?.unsafeTestOnly,
  });
  const downloader = new SafeDownloader({
    http,
    allowedHosts: f.download.allowedHosts,
    maxBytes: f.download.maxBytes,
  });
  let packageApi: PackageApiClient | undefined;
  let recurring: RecurringIntegrationClient | undefined;
  if (f.api) {
    const api = new FinOpsApiClient({
      baseUrl: f.api.baseUrl,
      scope: f.api.scope,
      credential: o.overrides?.credential ?? credentialOf(f.api, o.defaultCredential),
      http,
    });
    packageApi = new PackageApiClient(api);
    if (cfg.polling) recurring = new RecurringIntegrationClient(api, downloader, cfg.polling.activityId);
  }
  const settings: BatchSettings = cfg.batch;
  return new BusinessEventFlow({
    name: cfg.name,
    settings,
    target: o.target,
    finops: f,
    downloader,
    packageApi,
    recurring,
    pollEntity: cfg.polling?.entity,
    now: o.now,
  });
}

// ---- the webhook job ------------------------------------------------------------------------

/** What the route enqueues: the flow it chose and the validated envelope (JSON-safe). */
export const businessEventJobSchema = z.object({
  flow: z.string(),
  event: businessEventSchema,
});
export type BusinessEventJob = z.infer<typeof businessEventJobSchema>;

/**
 * Plans the event's batch. The job is done once the batch is planned (its records then drain
 * through the records and control queues; onComplete marks the export done). A failure that
 * cannot heal (an expired URL without the package API, a host that is not allowed, a rejected
 * package) ends the job `failed` with the reason, and is put in the flow's quarantine too, so
 * health and the CLI show it.
 */
export function businessEventJobHandler(engine: Engine, flows: readonly BusinessEventFlow[]): JobHandler {
  return {
    kind: BUSINESS_EVENT_JOB_KIND,
    run: async (job, ctx): Promise<JobResult> => {
      const parsed = businessEventJobSchema.safeParse(job.body);
      if (!parsed.success) return { outcome: 'failed', reason: 'the stored job is not a business event' };
      const flow = flows.find((f) => f.name === parsed.data.flow);
      if (!flow)
        return {
          outcome: 'failed',
          reason: `no business-event flow named ${parsed.data.flow} is configured any more`,
        };
      const event = parsed.data.event;
      try {
        const outcome = await plan(engine, flow, ctx.log, {
          stream: flow.eventStream(event),
          input: { kind: 'event', event },
        });
        return planned(outcome, flow.eventStream(event), ctx.log);
      } catch (e) {
        if (e instanceof AppError && e.kind !== 'transient' && e.kind !== 'conflict')
          await quarantineEvent(engine, flow, event, e);
        throw e;
      }
    },
  };
}

function planned(outcome: PlanOutcome, stream: string, log: Log): JobResult {
  if (outcome.kind === 'busy')
    throw new TransientError(`the stream ${stream} is being planned by another worker`, {
      code: 'plan_busy',
    });
  if (outcome.kind === 'blocked')
    return { outcome: 'failed', reason: `stream ${stream} is blocked: ${outcome.reason}` };
  log.info('business event planned', { stream, ...outcome });
  return { outcome: 'done' };
}

/** The event's identity and reason in the flow's quarantine (never its DownloadURL: a SAS secret). */
async function quarantineEvent(engine: Engine, flow: BusinessEventFlow, event: BusinessEvent, e: unknown) {
  const facts = factsOf(event);
  await engine
    .quarantine(flow.name)
    .put({
      kind: 'malformed',
      recordId: `event:${facts.eventId}`,
      version: facts.controlNumber.toString(),
      stream: flow.eventStream(event),
      payload: JSON.stringify({
        BusinessEventId: facts.businessEventId,
        EventId: facts.eventId,
        ControlNumber: facts.controlNumber.toString(),
        EntityName: facts.entityName,
        ExecutionId: facts.executionId,
      }),
      error: errorText(e),
      attempts: 1,
      policy: 'quarantine',
    })
    .catch(() => {});
}

// ---- polling ---------------------------------------------------------------------------------

export type PollResult =
  | { kind: 'empty' }
  | { kind: 'planned'; correlationId: string; stream: string; outcome: PlanOutcome['kind'] }
  /** Already applied (a re-delivery after a crash before the ack): acknowledged now. */
  | { kind: 'acknowledged'; correlationId: string; stream: string }
  | { kind: 'quarantined'; correlationId: string; stream: string; reason: string };

/**
 * One poll: dequeue (204 = empty), then process the message as an event on its own stream. Its
 * ack comes from the flow's onComplete, once the batch drained. A message whose stream is
 * already done (F&O re-delivered it because we crashed before acknowledging) is acknowledged
 * with its new receipt and nothing is applied again. A message that can never be processed is
 * quarantined with the reason and acknowledged (it would come back every 30 minutes otherwise).
 * 429 Retry-After and 5xx are retried inside the API client.
 */
export async function pollOnce(
  engine: Engine,
  flow: BusinessEventFlow,
  log: Log,
  signal?: AbortSignal,
): Promise<PollResult> {
  if (!flow.recurring)
    throw new PermanentError(`flow ${flow.name} has no polling configured`, {
      code: 'polling_not_configured',
    });
  const message = await flow.recurring.dequeue(signal);
  if (!message) return { kind: 'empty' };
  const stream = flow.messageStream(message);
  const state = await engine.ledger(stream).getState();
  if (BusinessEventFlow.isDone(state.flowState)) {
    await flow.ack(message.rawBody, stream, log);
    return { kind: 'acknowledged', correlationId: message.correlationId, stream };
  }
  try {
    const outcome = await plan(engine, flow, log, { stream, input: { kind: 'dequeued', message } });
    log.info('dequeued message planned', { flow: flow.name, stream, ...outcome });
    return { kind: 'planned', correlationId: message.correlationId, stream, outcome: outcome.kind };
  } catch (e) {
    // Transient: the message comes back; configuration (F&O refused our token): fix and retry.
    if (!(e instanceof AppError) || ['transient', 'conflict', 'configuration'].includes(e.kind)) throw e;
    await engine.quarantine(flow.name).put({
      kind: 'malformed',
      recordId: `message:${message.correlationId}`,
      stream,
      payload: JSON.stringify({ CorrelationId: message.correlationId }),
      error: errorText(e),
      attempts: 1,
      policy: 'quarantine',
    });
    await flow.ack(message.rawBody, stream, log);
    return { kind: 'quarantined', correlationId: message.correlationId, stream, reason: errorText(e) };
  }
}

// ---- repair ----------------------------------------------------------------------------------

/** NCRONTAB of the repair timer (business-event-repair-timer.ts): every 5 minutes, as SYNC_SCHEDULE's default. */
export const BUSINESS_EVENT_REPAIR_SCHEDULE = '0 */5 * * * *';

/**
 * Repairs the flow's exports whose batch is still in flight. An export's stream is planned once,
 * by its job (or its poll), so nothing else would ever look at it again: a drain signal lost
 * between the ledger count and its send (a crash there), or a records message lost beyond the
 * poison queue, would hold the export in flight for ever, never completed (never marked done,
 * never acknowledged). View-sync streams get this from every timer tick; here the repair timer
 * runs plan() on each stream in flight, with no input, so it only does plan's in-flight part:
 * re-send a lost drain signal, abandon a stalled batch (stall watch), re-dispatch one whose
 * planner died. A stream with nothing in flight is not touched. Returns the streams looked at.
 */
export async function repairBusinessEventStreams(
  engine: Engine,
  flow: BusinessEventFlow,
  log: Log,
): Promise<{ stream: string; outcome: PlanOutcome['kind'] }[]> {
  const low = `view|${flow.name}:`;
  const high = `view|${flow.name};`; // ';' follows ':'
  const streams: string[] = [];
  for await (const r of engine.deps.stateTable.listEntities<Record<string, unknown>>({
    queryOptions: {
      filter: odata`PartitionKey ge ${low} and PartitionKey lt ${high} and RowKey eq 'state'`,
      select: ['PartitionKey', 'currentBatchId'],
    },
  }))
    if (r.currentBatchId) streams.push(String(r.partitionKey).slice('view|'.length));
  const out: { stream: string; outcome: PlanOutcome['kind'] }[] = [];
  for (const stream of streams) {
    const outcome = await plan(engine, flow, log, { stream });
    if (outcome.kind !== 'in-flight') log.info('business-event export repaired', { stream, ...outcome });
    out.push({ stream, outcome: outcome.kind });
  }
  return out;
}
