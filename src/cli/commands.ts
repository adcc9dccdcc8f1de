/**
 * The operator CLI's commands. Each returns its result as data (printed as JSON with --json)
 * and its human lines; failures are AppErrors with what is wrong and what to do.
 */
import { discardQuarantined, replayQuarantined } from '../lib/batch/operations';
import type { AppServices } from '../lib/compose';
import { AppError, ConflictError, ValidationError } from '../lib/errors';
import { flowReport, healthReport, type FlowReport } from '../lib/health';
import type { Log } from '../lib/ports';
import { progressReporter, renderEntry, renderFlow, watchBars, watchLine, type Io } from './render';

export interface Result {
  data: unknown;
  lines: string[];
  /** Exit code when not 0 (e.g. a replay with failures). */
  code?: number;
}

export interface Ctx {
  app: AppServices;
  io: Io;
  json: boolean;
  /** Logs of engine steps go to stderr: stdout is the command's result. */
  log: Log;
}

/**
 * `status --watch`: refreshes every `intervalMs` until `untilSeconds` pass (or Ctrl-C): live
 * cli-progress bars on a terminal, a line per flow per refresh elsewhere.
 */
export async function statusWatch(
  c: Ctx,
  flow: string | undefined,
  o: { intervalMs: number; untilSeconds: number },
): Promise<Result> {
  const bars = c.io.isTTY && !c.json ? watchBars(c.io) : undefined;
  const deadline = Date.now() + o.untilSeconds * 1000;
  let last: FlowReport[] = [];
  let stop = false;
  const onSignal = () => (stop = true);
  process.once('SIGINT', onSignal);
  try {
    while (!stop) {
      last = flow ? [await flowReport(c.app, flow)] : (await healthReport(c.app)).flows;
      for (const h of last) {
        if (bars) bars.show(h);
        else if (!c.json) c.io.out(`${new Date().toISOString().slice(11, 19)} ${h.flow} ${watchLine(h)}`);
      }
      if (Date.now() + o.intervalMs > deadline) break;
      await new Promise((r) => setTimeout(r, o.intervalMs));
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    bars?.stop();
  }
  return { data: flow ? last[0] : { flows: last }, lines: [] };
}

export function pickFlow(app: AppServices, name: string | undefined): string {
  if (name) return app.flow(name).name;
  if (app.flows.length === 1) return app.flows[0]!.name;
  throw new ValidationError(
    `this app has ${app.flows.length ? `several flows (${app.flows.map((f) => f.name).join(', ')})` : 'no view-sync flow'}; name one with --flow`,
  );
}

export async function status(c: Ctx, flow: string | undefined): Promise<Result> {
  if (flow) {
    const h = await flowReport(c.app, flow);
    return { data: h, lines: renderFlow(h), code: h.status === 'blocked' || h.status === 'lagging' ? 3 : 0 };
  }
  const r = await healthReport(c.app);
  const lines = [`overall ${r.status.toUpperCase()}`, ''];
  for (const h of r.flows) lines.push(...renderFlow(h), '');
  return { data: r, lines, code: r.status === 'blocked' || r.status === 'lagging' ? 3 : 0 };
}

function parseCursor(value: string | undefined, what: string): bigint {
  if (value === undefined || !/^\d{1,30}$/.test(value))
    throw new ValidationError(
      `${what} must be a lastSubmissionId (a whole number), got ${JSON.stringify(value ?? '')}`,
    );
  return BigInt(value);
}

/**
 * Runs `change` (a cursor compare-and-set) while holding the flow's planner lease, taken when no
 * batch is in flight: a plan cannot start meanwhile (it finds the lease held and answers busy),
 * so no batch can be planned from the old cursor and then fail its own compare-and-set. Waits up
 * to `waitSeconds` for a gap between batches; `force` skips all of it.
 */
async function whileIdle<T>(
  c: Ctx,
  flow: string,
  o: { force: boolean; waitSeconds: number; what: string },
  change: () => Promise<T>,
): Promise<T> {
  if (o.force) return change();
  const e = c.app.engine;
  const ledger = e.ledger(flow);
  const owner = `cli/${process.pid}/${Math.random().toString(36).slice(2, 8)}`;
  const deadline = Date.now() + o.waitSeconds * 1000;
  for (;;) {
    const s = await ledger.getState();
    const leaseHeld = s.leaseOwner && (s.leaseUntil ?? 0) > e.now();
    if (!s.currentBatchId && !leaseHeld) {
      const leased = await ledger.tryUpdateState(s, {
        leaseOwner: owner,
        leaseUntil: e.now() + 60_000,
        leaseSince: e.now(),
      });
      if (leased && !leased.currentBatchId)
        try {
          return await change();
        } finally {
          await ledger.updateState((x) =>
            x.leaseOwner === owner ? { leaseOwner: '', leaseUntil: 0, leaseSince: 0 } : undefined,
          );
        }
    }
    if (Date.now() >= deadline) {
      const h = await flowReport(c.app, flow);
      const busy = h.batch
        ? `batch ${h.batch.id} is in flight (${h.batch.state}, ${h.batch.done}/${h.batch.messages ?? '?'} messages)`
        : h.planning
          ? `a plan has been running for ${h.planning.ageSeconds}s`
          : 'batches kept starting';
      throw new ConflictError(
        `flow ${flow}: ${busy}; its completion moves the cursor, so ${o.what} now would race it. Waited ${o.waitSeconds}s for a gap between batches; try again (--wait SECONDS), or pass --force`,
        { code: 'batch_in_flight' },
      );
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

export async function cursorGet(c: Ctx, flowName: string | undefined): Promise<Result> {
  const flow = c.app.flow(pickFlow(c.app, flowName));
  const value = await flow.cursor.read();
  const data = { flow: flow.name, cursor: value?.toString() ?? null, location: flow.cursor.describe() };
  return { data, lines: [`${flow.name}: cursor ${data.cursor ?? '(none)'} (${data.location})`] };
}

export interface CursorSetOptions {
  flow?: string;
  value: string | undefined;
  /** Only if the cursor is this now (compare-and-set against what the operator saw). */
  expect?: string;
  yes: boolean;
  force: boolean;
  /** How long to wait for a gap between batches. */
  waitSeconds: number;
}

export async function cursorSet(c: Ctx, o: CursorSetOptions): Promise<Result> {
  const flow = c.app.flow(pickFlow(c.app, o.flow));
  const next = parseCursor(o.value, 'the new cursor');
  const checkExpected = (current: bigint | undefined) => {
    if (o.expect !== undefined && (current?.toString() ?? 'none') !== o.expect)
      throw new ConflictError(
        `flow ${flow.name}: the cursor is ${current ?? '(none)'}, not ${o.expect} as --expect says; nothing changed`,
        { code: 'cursor_changed' },
      );
  };
  const seen = await flow.cursor.read();
  checkExpected(seen);
  if (!o.yes)
    throw new ValidationError(
      `this would move the cursor of flow ${flow.name} ${seen ?? '(none)'} → ${next} (${flow.cursor.describe()}); add --yes to do it`,
      { code: 'confirmation_required' },
    );
  // Read again between batches: a batch that completed while we waited moved it.
  const { current, res } = await whileIdle(c, flow.name, { ...o, what: 'moving the cursor' }, async () => {
    const now = await flow.cursor.read();
    checkExpected(now);
    return { current: now, res: await flow.cursor.compareAndSet(now, next) };
  });
  if (!res.ok)
    throw new ConflictError(
      `flow ${flow.name}: the cursor changed meanwhile (now ${res.current ?? '(none)'}); nothing changed`,
      { code: 'cursor_changed' },
    );
  const forward = current !== undefined && next > current;
  const data = {
    flow: flow.name,
    from: current?.toString() ?? null,
    to: next.toString(),
    location: flow.cursor.describe(),
  };
  return {
    data,
    lines: [
      `${flow.name}: cursor ${current ?? '(none)'} → ${next} (${data.location})`,
      forward
        ? `  changes with lastSubmissionId ${current! + 1n}..${next} that were not synced yet will NOT be synced`
        : '  the next sync re-reads from there; versions the target already has are skipped',
    ],
  };
}

export async function quarantineList(c: Ctx, flowName: string | undefined): Promise<Result> {
  const flow = pickFlow(c.app, flowName);
  const entries = await c.app.engine.quarantine(flow).list();
  const lines = entries.length
    ? entries.flatMap((e) => renderEntry(e))
    : [`flow ${flow}: quarantine is empty`];
  // The list shows what and why; a payload only with `quarantine show <id>`.
  return { data: { flow, entries: entries.map(({ payload: _p, ...e }) => e) }, lines };
}

export async function quarantineShow(
  c: Ctx,
  flowName: string | undefined,
  id: string | undefined,
): Promise<Result> {
  if (!id) throw new ValidationError('quarantine show needs an entry id (see: quarantine list)');
  const flow = pickFlow(c.app, flowName);
  const entry = (await c.app.engine.quarantine(flow).list()).find((e) => e.id === id);
  if (!entry)
    throw new AppError('validation', `flow ${flow} has no quarantine entry ${id} (see: quarantine list)`, {
      code: 'not_found',
    });
  return { data: entry, lines: renderEntry(entry, true) };
}

export async function quarantineAct(
  c: Ctx,
  action: 'replay' | 'discard',
  flowName: string | undefined,
  ids: string[],
  all: boolean,
): Promise<Result> {
  const selection = all ? ('all' as const) : ids;
  if (selection !== 'all' && selection.length === 0)
    throw new ValidationError(`quarantine ${action} needs entry ids (see: quarantine list) or --all`);
  const flow = c.app.flow(pickFlow(c.app, flowName));
  let report;
  if (action === 'replay') {
    const p = progressReporter(c.io, `replaying ${flow.name}`, c.json);
    try {
      report = await replayQuarantined(c.app.engine, flow, selection, c.log, (d, t) => p.update(d, t));
    } finally {
      p.stop();
    }
  } else report = await discardQuarantined(c.app.engine, flow, selection, c.log);
  const lines = [
    `${action}: ${report.done.length} done, ${report.skipped.length} skipped, ${report.failed.length} failed (flow ${flow.name})`,
    ...report.done.map((d) => `  done    ${d}`),
    ...report.skipped.map((s) => `  skipped ${s.id}: ${s.reason}`),
    ...report.failed.map((f) => `  failed  ${f.id}: ${f.error}`),
  ];
  return { data: { flow: flow.name, ...report }, lines, code: report.failed.length ? 1 : 0 };
}

export interface BackfillOptions {
  flow: string | undefined;
  from: string | undefined;
  yes: boolean;
  force: boolean;
  wait: boolean;
  waitSeconds: number;
  timeoutSeconds: number;
  pollMs?: number;
}

/**
 * Re-syncs a flow from an earlier lastSubmissionId: compare-and-set the cursor back, ask the
 * running app to plan at once (a `poll` on the control queue), and follow until the cursor is
 * back where it was. Safe by the target's version check: a version it already has is skipped,
 * so only what is missing or older in the target is written.
 */
export async function backfill(c: Ctx, o: BackfillOptions): Promise<Result> {
  if (!o.flow) throw new ValidationError('backfill needs a flow: backfill <flow> --from <lastSubmissionId>');
  const flow = c.app.flow(o.flow);
  const from = parseCursor(o.from, '--from');
  const current = await flow.cursor.read();
  if (current !== undefined && from > current)
    throw new ValidationError(
      `--from ${from} is past the cursor ${current} of flow ${flow.name}: a backfill goes back (to skip ahead, use cursor set)`,
    );
  if (!o.yes)
    throw new ValidationError(
      `this would re-sync flow ${flow.name} from ${from} (cursor ${current ?? '(none)'} → ${from}); add --yes to do it`,
      { code: 'confirmation_required' },
    );
  const before = await flowReport(c.app, flow.name);
  if (current === undefined || from < current) {
    const res = await whileIdle(c, flow.name, { ...o, what: 'a backfill' }, () =>
      flow.cursor.compareAndSet(current, from),
    );
    if (!res.ok)
      throw new ConflictError(
        `flow ${flow.name}: the cursor changed meanwhile (now ${res.current ?? '(none)'}); nothing changed`,
        {
          code: 'cursor_changed',
        },
      );
  }
  const startedAt = c.app.engine.now();
  await c.app.engine.transport.send('control', [
    {
      messageId: `backfill-${flow.name}-${startedAt}`,
      kind: 'poll',
      body: { type: 'poll', stream: flow.name, reason: `backfill from ${from} (operator CLI)` },
    },
  ]);
  const target = current ?? from;
  const summary = (h: FlowReport, done: boolean) => ({
    flow: flow.name,
    from: from.toString(),
    previousCursor: current?.toString() ?? null,
    cursor: (h.cursor as string | null | undefined) ?? null,
    done,
    applied: h.totals.applied - before.totals.applied,
    skipped: h.totals.skipped - before.totals.skipped,
    quarantined: h.totals.quarantined - before.totals.quarantined,
    batches: h.totals.batches - before.totals.batches,
  });
  if (!o.wait) {
    return {
      data: summary(before, false),
      lines: [
        `${flow.name}: cursor ${current ?? '(none)'} → ${from}; asked the app to plan (follow with: syncbridge status ${flow.name})`,
      ],
    };
  }
  const span = Number(target - from) || 1;
  const p = progressReporter(c.io, `backfill ${flow.name}`, c.json);
  const deadline = Date.now() + o.timeoutSeconds * 1000;
  try {
    for (;;) {
      const h = await flowReport(c.app, flow.name);
      const at = h.cursor ? BigInt(h.cursor as string) : from;
      p.update(Math.min(span, Number(at - from)), span);
      const s = summary(h, true);
      // Done once the cursor is back where it was, nothing is in flight, and a batch completed
      // (or there was nothing to re-read).
      if (at >= target && !h.batch && !h.planning && (s.batches > 0 || from === target)) {
        p.stop();
        return {
          data: s,
          lines: [
            `${flow.name}: backfill from ${from} done in ${s.batches} batch(es): ${s.applied} applied, ${s.skipped} skipped as already current, ${s.quarantined} quarantined; cursor ${h.cursor}`,
          ],
        };
      }
      if (h.status === 'blocked')
        throw new AppError('permanent', `flow ${flow.name} is blocked: ${h.problems.join('; ')}`);
      if (Date.now() > deadline)
        throw new AppError(
          'transient',
          `backfill of ${flow.name} not done after ${o.timeoutSeconds}s (cursor ${h.cursor ?? '(none)'} of ${target}); is the app running? It goes on in the background: follow with syncbridge status ${flow.name}`,
          { code: 'timeout' },
        );
      await new Promise((r) => setTimeout(r, o.pollMs ?? 1000));
    }
  } finally {
    p.stop();
  }
}

/** `cursor break-lease`: code 0 when the lease was broken or there was none, 1 when refused. */
export async function breakCursorLease(
  c: Ctx,
  flowName: string | undefined,
  force: boolean,
): Promise<Result> {
  const flow = c.app.flow(pickFlow(c.app, flowName));
  if (!flow.cursor.breakLease)
    throw new ValidationError(
      `flow ${flow.name}'s cursor (${flow.cursor.describe()}) is not in an Azure file share: it has no lease to break`,
    );
  const result = await flow.cursor.breakLease({ force });
  const data = { flow: flow.name, cursor: flow.cursor.describe(), ...result };
  // Refused: a holder was seen (its stamp age is known) and its lease left alone.
  const refused = !result.broken && result.holderStampAgeMs !== undefined;
  return {
    data,
    lines: [
      refused
        ? `refused: ${flow.name}'s cursor lease has a healthy holder (it wrote ${Math.round(result.holderStampAgeMs! / 1000)} s ago); --force breaks it anyway`
        : result.broken
          ? `broke the lease on ${flow.cursor.describe()}`
          : `no lease on ${flow.cursor.describe()}: nothing to break`,
    ],
    code: refused ? 1 : 0,
  };
}
