/**
 * The control queue: `batch-drained` goes to completion, `poll` goes to planning, each routed to
 * the flow its stream belongs to. A control message carries no records, so an invalid one (or
 * one for a flow this app does not have) is dropped with an error log: nothing is lost, a tick
 * repairs a drained batch whose signal went missing.
 */
import { errorText } from '../errors';
import type { Log } from '../ports';
import { completeBatch, type CompleteOutcome } from './completer';
import type { Engine } from './engine';
import { controlMessageSchema, decodeBody, describeIssues } from './messages';
import { plan, type PlanOutcome } from './planner';

export type ControlOutcome = CompleteOutcome | PlanOutcome | { kind: 'invalid'; error: string };

export async function handleControlMessage(e: Engine, input: unknown, log: Log): Promise<ControlOutcome> {
  const parsed = controlMessageSchema.safeParse(decodeBody(input));
  if (!parsed.success) {
    const error = `not a control message: ${describeIssues(parsed.error)}`;
    log.error('dropped an invalid control message (it carries no records)', { error });
    return { kind: 'invalid', error };
  }
  const msg = parsed.data;
  const flow = e.flowOf(msg.stream);
  if (!flow) {
    const error = `control message for stream ${JSON.stringify(msg.stream)}, which belongs to no flow of this app (flows: ${e.flows.map((f) => f.name).join(', ')})`;
    log.error('dropped a control message for an unknown flow', { error });
    return { kind: 'invalid', error };
  }
  try {
    if (msg.type === 'batch-drained') return await completeBatch(e, flow, msg.stream, msg.batchId, log);
    return await plan(e, flow, log, { stream: msg.stream });
  } catch (err) {
    log.error('control message failed', { type: msg.type, stream: msg.stream, error: errorText(err) });
    throw err;
  }
}
