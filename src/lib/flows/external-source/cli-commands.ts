/**
 * The operator CLI's `jobs` and `sources` commands (src/cli.ts routes to them). Output is plain
 * text, one line per item; errors are AppErrors whose message says what to do.
 */
import type { AppServices } from '../../compose';
import { ConfigError, ValidationError } from '../../errors';
import type { MarkerState } from '../../webhooks/store';
import { failureText, wiseflowFlowId, type ExternalSourceService } from './service';

const print = (line: string) => console.log(line);
const iso = (ms?: number) => (ms ? new Date(ms).toISOString() : '-');

export async function jobsCommand(
  app: AppServices,
  sub: string | undefined,
  o: { failed?: boolean },
): Promise<number> {
  if (sub !== 'list') throw new ValidationError('usage: jobs list [--failed]');
  const state: MarkerState | undefined = o.failed ? 'failed' : undefined;
  const markers = await app.webhookStore.list({ state });
  if (markers.length === 0) print(o.failed ? 'no failed jobs' : 'no webhook jobs');
  for (const m of markers)
    print(
      `${m.route}/${m.eventId}  ${m.state}  kind=${m.jobKind} attempts=${m.attempts} received=${iso(m.receivedAt)} finished=${iso(m.completedAt)}` +
        (m.reason ? `\n  reason: ${m.reason}` : ''),
    );
  return 0;
}

function service(app: AppServices): ExternalSourceService {
  if (!app.externalSource)
    throw new ConfigError([
      'no external-source flow is configured: set Flows__<name>__Type=external-source and the WISEFLOW_* settings',
    ]);
  return app.externalSource;
}

export async function externalSourceCommand(
  app: AppServices,
  sub: string | undefined,
  args: string[],
  o: { reference?: string; description?: string },
): Promise<number> {
  const [flowArg, referenceArg] = args;
  if (!sub || !['list', 'add', 'sync'].includes(sub) || flowArg === undefined)
    throw new ValidationError(
      'usage: sources list <wiseflowFlowId> | sources add <wiseflowFlowId> <reference> | sources sync <wiseflowFlowId> [--reference REF]',
    );
  const s = service(app);
  const flowId = wiseflowFlowId(flowArg);
  if (sub === 'list') {
    const sources = await s.listSources(flowId);
    if (sources.length === 0)
      print(`flow ${flowId} has no external source (the first sync request creates one)`);
    for (const src of sources)
      print(
        `${src.reference}  id=${src.id} state=${src.state ?? '-'} lastRequestedSync=${src.lastRequestedSync ?? '-'} lastSync=${src.lastSync ?? '-'}`,
      );
    return 0;
  }
  if (sub === 'add') {
    if (referenceArg === undefined)
      throw new ValidationError('usage: sources add <wiseflowFlowId> <reference>');
    const created = await s.addSource(flowId, referenceArg, o.description);
    print(`created external source ${created.reference} (id ${created.id}) on flow ${flowId}`);
    return 0;
  }
  const report = await s.run({ flowId, reference: o.reference });
  for (const src of report.sources)
    print(
      `${src.reference}  ${src.result}${src.created ? ' (created)' : ''} roster=${src.desired} added=${src.added.length} removed=${src.removed.length}`,
    );
  if (report.outcome === 'failed') {
    print(`failed: ${failureText(report)}`);
    return 1;
  }
  return 0;
}
