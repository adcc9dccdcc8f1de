/**
 * DESIGN.md's invariants, checked on a schedule run (runner.ts), per flow, plus the one that
 * two flows add: nothing crosses between them (a record of one flow never reaches the other's
 * keys, quarantine, cursor or batches).
 */
import { flowOfStream } from '../../../src/lib/batch/flow';
import { flowHealth } from '../../../src/lib/batch/health';
import { plan, type PlanOutcome } from '../../../src/lib/batch/planner';
import type { StoredTargetRecord } from '../../../src/lib/ports';
import { splitRecordKey } from '../../../src/lib/records';
import { quietLog } from '../pipeline';
import { summarize, type FlowWorld, type ScheduleRun } from './runner';
import { BE_FLOW } from './webhooks';

/** Every target record: key → version and deleted flag. */
async function targetRecords(run: ScheduleRun) {
  const out = new Map<string, { version: bigint; deleted: boolean }>();
  for await (const r of run.store.list()) out.set(r.key, r);
  return out;
}

/** A flow's quarantine as `<flow>|<RecordID>|<version>` (the keys the run poisons and justifies). */
async function quarantined(run: ScheduleRun, f: FlowWorld): Promise<Set<string>> {
  const out = new Set<string>();
  for (const q of await run.engine.quarantine(f.name).list()) {
    // A record the target refuses is `record`; one that only ever failed transiently, through
    // the last delivery's own retries, is `transient-exhausted` (never passed off as permanent).
    const poison = run.poisoned.get(`${f.name}|${q.recordId}|${q.version}`);
    if (q.kind !== 'record' && q.kind !== 'transient-exhausted')
      run.violations.push(`unexpected ${q.kind} quarantine entry of ${f.name}: ${q.error}`);
    else if (
      poison === 'permanent' &&
      q.kind !== 'record' &&
      // Every try of its last delivery met an injected transient target failure before the
      // target could refuse it: `transient-exhausted` is then what the applier saw (long run,
      // seed 3064923995: targetFail(3) ate the last delivery's three in-process rounds).
      !run.justified.has(`${f.name}|${q.recordId}|${q.version}`)
    )
      run.violations.push(`${f.name}: permanent poison ${q.recordId} quarantined as ${q.kind}`);
    else if (poison !== 'permanent' && q.kind === 'record')
      run.violations.push(`${f.name}: transient failure of ${q.recordId} quarantined as permanent`);
    if (q.stream !== f.name)
      run.violations.push(`${f.name}'s quarantine holds an entry of stream ${q.stream}`);
    out.add(`${f.name}|${q.recordId}|${q.version}`);
  }
  return out;
}

/** Every successful cursor write: increasing, and never past a record the target lacks. */
export async function checkCursorWrite(
  run: ScheduleRun,
  f: FlowWorld,
  from: bigint | undefined,
  to: bigint,
): Promise<void> {
  if (from !== undefined && to <= from)
    run.violations.push(`${f.name}: cursor write ${from} → ${to} does not increase`);
  const prev = f.cursor.writes.at(-2);
  if (prev && to <= prev.to) run.violations.push(`${f.name}: cursor went from ${prev.to} back to ${to}`);
  const target = await targetRecords(run);
  const q = run.o.poisonPolicy === 'quarantine' ? await quarantined(run, f) : new Set<string>();
  for (const s of f.sim.snapshot()) {
    // A late commit below the cursor is the documented SYNC_LOOKBACK trade-off: checked at the end.
    if (s.lastSubmissionId > to || f.lateIds.has(s.lastSubmissionId)) continue;
    const t = target.get(`${f.name}|${s.RecordID}`);
    if ((!t || t.version < s.lastSubmissionId) && !q.has(`${f.name}|${s.RecordID}|${s.lastSubmissionId}`))
      run.violations.push(
        `${f.name}: cursor ${from ?? '∅'} → ${to} passed ${s.RecordID} v${s.lastSubmissionId} (target has ${t?.version ?? 'nothing'})`,
      );
  }
}

/** Per flow: at most one batch in flight, and it is the flow's current batch. */
export async function checkSingleFlight(run: ScheduleRun, when: string): Promise<void> {
  const current = new Map<string, string | undefined>();
  for (const f of run.flows) current.set(f.name, (await run.engine.ledger(f.name).getState()).currentBatchId);
  const inFlight = new Map<string, string[]>();
  for await (const e of run.stateTable.listEntities<{ batchId: string; state: string }>({
    queryOptions: { filter: `RowKey eq 'manifest'`, select: ['PartitionKey', 'batchId', 'state'] },
  })) {
    const stream = String(e.partitionKey).split('|')[1]!;
    // A business-event export's stream (`erp:ev-…`, `erp:ri-…`): its own single flight.
    if (!current.has(stream) && flowOfStream(stream) === BE_FLOW)
      current.set(stream, (await run.engine.ledger(stream).getState()).currentBatchId);
    const cur = current.get(stream);
    if (cur === undefined && !current.has(stream)) {
      run.violations.push(`${when}: a batch of unknown stream ${stream}`);
      continue;
    }
    const live =
      e.state === 'dispatched' ||
      e.state === 'completing' ||
      (e.state === 'dispatching' && (e.batchId === cur || run.sentBatches.has(e.batchId)));
    if (!live) continue;
    const list = inFlight.get(stream) ?? [];
    list.push(`${e.batchId}:${e.state}${e.batchId === cur ? '(current)' : ''}`);
    inFlight.set(stream, list);
  }
  for (const [stream, list] of inFlight) {
    const stray = list.some((b) => !b.endsWith('(current)'));
    if (list.length > 1 || stray) {
      const v = `${when}: ${stream} has ${list.length} batches in flight [${list.join(', ')}]`;
      if (!run.violations.some((x) => x.includes('batches in flight'))) run.violations.push(v);
    }
  }
}

export async function checkFinal(run: ScheduleRun): Promise<void> {
  const dup = run.recording.duplicates();
  if (dup.length) run.violations.push(`applied more than once: ${dup.join(', ')}`);
  const target = await targetRecords(run);
  const blocking = run.o.poisonPolicy === 'block';

  // A records message that even the poison queue gave up on is lost unless it was counted
  // (a duplicate of a message already done) or its batch was abandoned and re-planned.
  for (const m of run.dead.filter((d) => d.queue === 'records-poison')) {
    const { stream, batchId, chunk } = JSON.parse(m.text) as {
      stream: string;
      batchId: string;
      chunk: number;
    };
    const ledger = run.engine.ledger(stream);
    if (await ledger.isMarked(batchId, chunk)) continue;
    const manifest = await ledger.getManifest(batchId);
    if (manifest?.state !== 'abandoned')
      run.violations.push(`records message ${m.messageId} was dead-lettered from the poison queue uncounted`);
  }

  // Nothing crosses between flows: every target key belongs to a flow of the run and names a
  // record of THAT flow's source.
  const sourceKeys = new Set(
    run.flows.flatMap((f) => f.sim.snapshot().map((s) => `${f.name}|${s.RecordID}`)),
  );
  for (const k of target.keys()) {
    const { flow } = splitRecordKey(k);
    if (!run.flows.some((f) => f.name === flow)) run.violations.push(`${k}: a key of no flow in the target`);
    else if (!sourceKeys.has(k)) run.violations.push(`${k}: in target only`);
  }

  for (const f of run.flows) await checkFlowFinal(run, f, target, blocking);
  if (run.store.rows) await checkRowsExactly(run, await run.store.rows());
}

/** JSON with object keys sorted (jsonb keeps its own key order). */
const canonical = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : x,
  );

/**
 * The rows as the target's users read them (a raw SELECT): a row holding the source's latest
 * version holds its data exactly, the view's record as sent (RecordID, lastSubmissionId, fields).
 */
async function checkRowsExactly(run: ScheduleRun, rows: StoredTargetRecord[]): Promise<void> {
  const byKey = new Map(rows.map((r) => [r.key, r]));
  for (const f of run.flows)
    for (const s of f.sim.snapshot()) {
      const key = `${f.name}|${s.RecordID}`;
      const row = byKey.get(key);
      if (!row || row.version !== s.lastSubmissionId) continue; // judged by the other checks
      const { lastSubmissionId, ...data } = row.data;
      if (canonical(data) !== canonical({ RecordID: s.RecordID, ...s.fields }))
        run.violations.push(
          `${key}: row data ${canonical(data)} differs from the source's ${canonical(s.fields)}`,
        );
      if (String(lastSubmissionId) !== s.lastSubmissionId.toString())
        run.violations.push(
          `${key}: row data.lastSubmissionId ${String(lastSubmissionId)} ≠ ${s.lastSubmissionId}`,
        );
    }
}

async function checkFlowFinal(
  run: ScheduleRun,
  f: FlowWorld,
  target: Map<string, { version: bigint; deleted: boolean }>,
  blocking: boolean,
): Promise<void> {
  const q = await quarantined(run, f);
  run.stats.quarantined += q.size;
  const cursor = await f.cursor.read();
  const state = await run.engine.ledger(f.name).getState();

  for (const s of f.sim.snapshot()) {
    const key = `${f.name}|${s.RecordID}`;
    const t = target.get(key);
    const rv = `${key}|${s.lastSubmissionId}`;
    if (t && t.version > s.lastSubmissionId)
      run.violations.push(`${key}: target v${t.version} newer than source v${s.lastSubmissionId}`);
    if (t && t.version === s.lastSubmissionId) {
      const deleted = s.fields.State === 'Deleted';
      if (t.deleted !== deleted)
        run.violations.push(`${key}: deleted=${t.deleted}, source State=${String(s.fields.State)}`);
      continue;
    }
    if (q.has(rv)) continue; // the latest version is quarantined (or blocks the flow)
    // Behind the block: not synced yet (a blocked flow does not re-read its lookback window either).
    if (
      blocking &&
      state.blocked &&
      (cursor === undefined || s.lastSubmissionId > cursor || f.lateIds.has(s.lastSubmissionId))
    )
      continue;
    run.violations.push(
      `${key}: target v${t?.version ?? 'nothing'}, source v${s.lastSubmissionId} (not quarantined)`,
    );
  }

  // The quarantine holds exactly the poisoned versions that reached the target, plus versions
  // whose transient target failure happened on the final (isolating) delivery.
  for (const rv of q)
    if (!run.poisonAttempted.has(rv) && !run.justified.has(rv))
      run.violations.push(`quarantined ${rv}, which is neither poisoned nor failed on its last delivery`);
  const attempted = [...run.poisonAttempted].filter((rv) => rv.startsWith(`${f.name}|`));
  if (!blocking) {
    for (const rv of attempted) if (!q.has(rv)) run.violations.push(`poisoned ${rv} was not quarantined`);
    if (state.blocked)
      run.violations.push(`${f.name} blocked under POISON_POLICY=quarantine: ${state.blocked}`);
    return;
  }
  const entries = await run.engine.quarantine(f.name).list();
  if (entries.some((e) => e.policy !== 'block'))
    run.violations.push('a block-policy entry is not marked block');
  if (q.size > 0) {
    const h = await flowHealth(run.engine, f.flow);
    if (h.status !== 'blocked')
      run.violations.push(`${f.name}: ${q.size} poison records but health says ${h.status}`);
    const again = await plan(run.engineFor(run.newOp(0, 'final tick')), f.flow, quietLog).catch(
      (e: unknown) => e,
    );
    if ((again as PlanOutcome).kind !== 'blocked')
      run.violations.push(`a tick of the blocked flow ${f.name} answered ${summarize(again)}`);
  } else if (state.blocked)
    run.violations.push(`${f.name} blocked without a poison record: ${state.blocked}`);
}
