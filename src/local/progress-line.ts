/**
 * The `npm start` progress lines, from one /api/health answer: one line per flow, or one line
 * saying what health answered instead (storage down, a configuration problem). Anything that
 * is not a well-formed report is shown as it is, never dereferenced blindly: a 503 error body
 * used to print `Cannot read properties of undefined (reading 'padEnd')`.
 */
import { z } from 'zod';

const flowLine = z.object({
  flow: z.string(),
  status: z.string(),
  cursor: z.string().nullish(),
  batch: z
    .object({
      state: z.string(),
      done: z.number(),
      messages: z.number().nullable(),
      records: z.number().nullable(),
      applied: z.number(),
      skipped: z.number().optional(),
    })
    .nullable(),
  planning: z.object({ ageSeconds: z.number() }).nullish(),
  quarantine: z.object({ count: z.number() }),
  totals: z.object({ applied: z.number(), skipped: z.number() }),
  lag: z.object({ seconds: z.number().nullable() }).optional(),
  lastError: z.object({ message: z.string() }).nullable(),
});
const report = z.object({ flows: z.array(flowLine) });
const errorBody = z.object({ error: z.object({ message: z.string() }) });

export type FlowLine = z.infer<typeof flowLine>;

/** `pending(flow, cursor)`: changes the source has above the cursor, when the source is known. */
export function progressLines(
  time: string,
  httpStatus: number,
  body: unknown,
  pending: (flow: string, cursor: string | null | undefined) => number | undefined = () => undefined,
): string[] {
  const parsed = report.safeParse(body);
  if (!parsed.success) {
    const err = errorBody.safeParse(body);
    const what = err.success ? err.data.error.message : JSON.stringify(body)?.slice(0, 300);
    return [`${time} health answered ${httpStatus}: ${what}`];
  }
  return parsed.data.flows.map((h) => {
    const batch = h.batch
      ? `${h.batch.state} ${h.batch.done}/${h.batch.messages ?? '?'} msgs (${h.batch.records ?? '?'} records)`
      : h.planning
        ? `planning for ${h.planning.ageSeconds}s`
        : 'none';
    const lagging = pending(h.flow, h.cursor);
    // Applied and skipped count per message as it is done, the batch in flight included.
    const applied = h.totals.applied + (h.batch?.applied ?? 0);
    const skipped = h.totals.skipped + (h.batch?.skipped ?? 0);
    return (
      `${time} ${h.flow.padEnd(12)} ${h.status.padEnd(8)} cursor=${h.cursor ?? '-'} batch=${batch} ` +
      `applied=${applied} skipped=${skipped} quarantined=${h.quarantine.count}` +
      (lagging !== undefined ? ` lag=${lagging} changes not yet synced` : '') +
      (h.lag?.seconds != null ? ` syncedAgo=${h.lag.seconds}s` : '') +
      (h.lastError ? ` lastError="${h.lastError.message.slice(0, 120)}"` : '')
    );
  });
}
