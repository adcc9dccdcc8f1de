/**
 * The operator CLI end to end on Azurite: a view-sync pipeline (Flowfinity simulator over HTTP,
 * the local host's storage-queue trigger drivers, the real engine) runs the app's side; the CLI
 * runs its commands with the same settings, as `npm run cli -- --settings FILE` does against
 * `npm start`, through its own clients. Output is captured; --json output must parse.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { Writable } from 'node:stream';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { main } from '../../src/cli';
import { PermanentError } from '../../src/lib/errors';
import type { TargetSystem } from '../../src/lib/ports';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { sharedAzurite } from '../support/azurite';
import { Pipeline } from '../support/pipeline';

const open: { stop(): Promise<void> }[] = [];
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'syncbridge-cli-'));
});
afterEach(async () => {
  while (open.length) await open.pop()!.stop();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the CLI in this process with the pipeline's settings in a file; captures its output. */
async function settingsFile(p: Pipeline) {
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}.json`);
  // No view credentials in the file: no command of the CLI may need them.
  const { FLOWFINITY_PASSWORD: _p, FLOWFINITY_USERNAME: _u, ...values } = p.env;
  writeFileSync(file, JSON.stringify({ Values: values }));
  return file;
}

async function cli(p: Pipeline, ...args: string[]) {
  const file = await settingsFile(p);
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['--settings', file, ...args], {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    isTTY: false,
    env: {},
  });
  const stdout = out.join('\n');
  return {
    code,
    stdout,
    stderr: err.join('\n'),
    json: <T = Record<string, unknown>>() => JSON.parse(stdout) as T,
  };
}

async function setup(
  records: number,
  o: { wrapTarget?: (t: TargetSystem) => TargetSystem; start?: boolean } = {},
) {
  const sim = await FlowfinitySimulator.start({ initialRecords: records, seed: 11 });
  open.push(sim);
  const p = new Pipeline({
    azuriteConnectionString: sharedAzurite().connectionString,
    sim,
    env: { SYNC_RECORDS_PER_MESSAGE: '10' },
    wrapTarget: o.wrapTarget,
  });
  open.push(p);
  if (o.start === false) await p.engine.ensureReady();
  else await p.start();
  return { sim, p };
}

it('status shows a batch in flight; cursor set is refused during it, then compare-and-sets and prints the change', async () => {
  const { p } = await setup(40, { start: false });
  const planned = await p.tick(); // nothing consumes the queue yet: the batch stays in flight
  expect(planned.kind).toBe('planned');

  const status = await cli(p, 'status', 'leads', '--json');
  expect(status.code).toBe(0);
  const h = status.json() as unknown as { batch: { state: string; messages: number; done: number } | null };
  expect(h.batch).toMatchObject({ state: 'dispatched', messages: 4, done: 0 });
  const watched = await cli(p, 'status', 'leads', '--watch', '--interval', '0.1', '--timeout', '0.35');
  expect(watched.code).toBe(0);
  expect(watched.stdout).toMatch(
    /leads OK cursor - \| dispatched 0\/4 msgs, applied 0 skipped 0 \| lag \S+ \| quarantine 0/,
  );
  // On a terminal: cli-progress bars (drawn on stderr), one per flow.
  const drawn: string[] = [];
  const tty = Object.assign(
    new Writable({
      write(chunk: Buffer, _enc, done) {
        drawn.push(chunk.toString());
        done();
      },
    }),
    { isTTY: true, columns: 160 },
  );
  const code = await main(
    ['--settings', await settingsFile(p), 'status', '--watch', '--interval', '0.1', '--timeout', '0.35'],
    { out: () => {}, err: () => {}, isTTY: true, barStream: tty, env: {} },
  );
  expect(code).toBe(0);
  expect(drawn.join('')).toMatch(/leads +\S*[░█]+\S* 0\/4 OK cursor -/);
  const text = await cli(p, 'status');
  expect(text.stdout).toMatch(/leads {2}OK/);
  expect(text.stdout).toMatch(/batch +\S+ dispatched, 0\/4 messages, 40 records/);

  const refused = await cli(p, 'cursor', 'set', '5', '--yes', '--json', '--wait', '0');
  expect(refused.code).toBe(1);
  expect(JSON.parse(refused.stderr)).toMatchObject({ error: { code: 'batch_in_flight' } });
  expect(await p.cursor.read()).toBeUndefined();

  // Without --wait 0 it waits for the gap between batches, then sets between them.
  const waiting = cli(p, 'cursor', 'set', '7', '--yes', '--wait', '30');
  await p.start();
  const waited = await waiting;
  expect(waited.code).toBe(0);
  await p.settle();
  expect(waited.stdout).toMatch(/^leads: cursor \d+ → 7/);
  expect(await p.cursor.read()).toBe(7n);
  expect(p.violations).toEqual([]);
  expect((await p.health()).batch).toBeNull();
  const before = await cli(p, 'cursor', 'get', '--json');
  const cursor = before.json<{ cursor: string }>().cursor;
  expect(cursor).toBe('7');

  const unconfirmed = await cli(p, 'cursor', 'set', '5');
  expect(unconfirmed.code).toBe(1);
  expect(unconfirmed.stderr).toMatch(/add --yes/);
  const stale = await cli(p, 'cursor', 'set', '5', '--yes', '--expect', '1');
  expect(stale.code).toBe(1);
  expect(stale.stderr).toMatch(/nothing changed/);

  const set = await cli(p, 'cursor', 'set', '5', '--yes');
  expect(set.code).toBe(0);
  expect(set.stdout).toContain(`cursor ${cursor} → 5`);
  expect(await p.cursor.read()).toBe(5n);
});

it('a replayed quarantined record lands in the target exactly once; list and show work without the view password', async () => {
  let refuse = true;
  const { sim, p } = await setup(30, {
    wrapTarget: (t) => ({
      ensureReady: () => t.ensureReady?.() ?? Promise.resolve(),
      apply: async (r) => {
        if (refuse && r.key === `leads|${sim.snapshot()[3]!.RecordID}`)
          throw new PermanentError('target refuses this record (test)');
        return t.apply(r);
      },
    }),
  });
  await p.syncUntilQuiet();
  const list = await cli(p, 'quarantine', 'list', '--json');
  expect(list.code).toBe(0);
  const entries = (list.json() as unknown as { entries: { id: string; recordId: string }[] }).entries;
  expect(entries).toHaveLength(1);
  const id = entries[0]!.id;
  const shown = await cli(p, 'quarantine', 'show', id);
  expect(shown.stdout).toContain('target refuses this record');
  expect(shown.stdout).toContain('payload:');

  refuse = false;
  const replay = await cli(p, 'quarantine', 'replay', '--all');
  expect(replay.code).toBe(0);
  expect(replay.stdout).toMatch(/replay: 1 done, 0 skipped, 0 failed/);
  expect(replay.stderr).toMatch(/replaying leads 1\/1/);
  const key = `leads|${entries[0]!.recordId}`;
  expect((await p.targetRecords()).get(key)?.version).toBe(sim.snapshot()[3]!.lastSubmissionId);
  expect(await p.diffWithSource()).toEqual([]);
  // Once: the pipeline's own writes never applied it, and the entry is gone.
  expect([...p.target.applied.keys()].some((k) => k.startsWith(`${key}|`))).toBe(false);
  expect((await cli(p, 'quarantine', 'list', '--json')).json()).toMatchObject({ entries: [] });
  const again = await cli(p, 'quarantine', 'replay', id);
  expect(again.code).toBe(1);
  expect(again.stderr).toMatch(/no quarantine entry/);
});

it('backfill re-syncs from an earlier point with progress and re-applies nothing that is already current', async () => {
  const { p } = await setup(50);
  await p.syncUntilQuiet();
  const writes = p.target.writes;
  const cursor = await p.cursor.read();

  const refused = await cli(p, 'backfill', 'leads', '--from', '0');
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/add --yes/);

  const run = await cli(p, 'backfill', 'leads', '--from', '0', '--yes', '--json', '--timeout', '60');
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  const summary = run.json() as unknown as {
    applied: number;
    skipped: number;
    batches: number;
    cursor: string;
  };
  expect(summary).toMatchObject({ applied: 0, skipped: 50, cursor: String(cursor) });
  expect(summary.batches).toBeGreaterThan(0);
  expect(p.target.writes).toBe(writes);
  expect(p.target.duplicates()).toEqual([]);
  expect(await p.cursor.read()).toBe(cursor);
});

it('every command gives clear errors and exits non-zero; --help explains', async () => {
  const { p } = await setup(3, { start: false });
  expect((await cli(p, 'bogus')).code).toBe(2);
  expect((await cli(p, 'quarantine')).code).toBe(2);
  const help = await cli(p, 'cursor', '--help');
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/compare-and-set/);
  const noFlow = await cli(p, 'status', 'nope', '--json');
  expect(noFlow.code).toBe(1);
  expect(JSON.parse(noFlow.stderr).error.message).toMatch(/no flow named "nope"; this app has: leads/);
  const bad = await cli(p, 'cursor', 'set', 'abc', '--yes');
  expect(bad.stderr).toMatch(/must be a lastSubmissionId/);
  const missing = await main(['--settings', path.join(dir, 'none.json'), 'status'], {
    out: () => {},
    err: () => {},
    isTTY: false,
    env: {},
  });
  expect(missing).toBe(1);
});
