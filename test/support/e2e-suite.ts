/**
 * The end-to-end suite through the app's REAL function registrations (src/functions/*.ts) in
 * the local host: timer → records queue → apply → control queue → complete, against the
 * Flowfinity simulator, observed through GET /api/health like an operator would. Each adapter
 * set runs it from its own test file, because registrations are made once per process.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { tableClient } from '../../src/lib/storage/clients';
import { TableTarget } from '../../src/lib/targets/table-target';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { LocalHost } from '../../src/local/host';
import { localSettings } from '../../src/local/local-settings';

export interface E2eVariant {
  /** Starts whatever the variant needs and returns the settings that select its adapters. */
  setup(): Promise<Record<string, string>>;
  teardown(): Promise<void>;
  expectedBindings: Record<string, { triggerType: string; queueName: string }>;
  /** Extra checks after the second sync (e.g. where the cursor files live); health per flow. */
  afterSync?(flows: Record<string, Record<string, unknown>>): void;
}

export function e2eSuite(v: E2eVariant): void {
  let azurite: SharedAzurite;
  let sim: FlowfinitySimulator;
  let sim2: FlowfinitySimulator;
  let host: LocalHost;
  /** Every host log line (warn and error), to count how often a failure is reported. */
  const hostLogs: string[] = [];
  const id = Math.random().toString(36).slice(2, 8);
  const functionsDir = path.join(__dirname, '..', '..', 'src', 'functions');

  beforeAll(async () => {
    azurite = sharedAzurite();
    // Two views side by side, as `npm start` runs them: `leads` (the flat FLOWFINITY_* settings)
    // and `inspections` (Flows__inspections__ViewUrl), sharing credentials, queues and target table.
    sim = await FlowfinitySimulator.start({ initialRecords: 60, seed: 5 });
    sim2 = await FlowfinitySimulator.start({ initialRecords: 25, seed: 6, viewName: 'InspectionSync' });
    const base = localSettings(
      {
        storageConnectionString: azurite.connectionString,
        viewUrl: sim.viewUrl,
        username: sim.username,
        password: sim.password,
        extraViews: [{ flow: 'inspections', viewUrl: sim2.viewUrl }],
      },
      {},
    );
    host = await LocalHost.start({
      modules: readdirSync(functionsDir)
        .filter((f) => f.endsWith('.ts'))
        .map((f) => path.join(functionsDir, f)),
      settings: {
        ...base,
        SYNC_RECORDS_PER_MESSAGE: '8',
        // Its own tables and cursor container: the run's Azurite is shared with other files.
        SYNC_TABLE_PREFIX: `e2e${id}`,
        TARGET_TABLE_NAME: `e2e${id}records`,
        CURSOR_SHARE_NAME: `e2e-${id}`,
        ...(await v.setup()),
      },
      httpPort: 0,
      log: (level, line) => {
        if (level !== 'info') hostLogs.push(line);
      },
      enableTimers: false,
      queuePollIntervalMs: 50,
      visibilityTimeoutMs: 100,
    });
  });
  afterAll(async () => {
    await host?.stop();
    await sim?.stop();
    await sim2?.stop();
    await v.teardown();
  });

  async function health() {
    const res = await fetch(`${host.httpUrl}/api/health`);
    const body = (await res.json()) as { status: string; flows: Record<string, unknown>[] };
    return {
      status: res.status,
      body,
      flows: Object.fromEntries(body.flows.map((f) => [String(f.flow), f])),
    };
  }

  /** Both flows' records, and only theirs, are in the shared target table, each under its flow. */
  async function expectTargetEqualsSources() {
    const access = { kind: 'connectionString' as const, connectionString: azurite.connectionString };
    const target = new Map<string, { version: bigint; deleted: boolean }>();
    for await (const r of new TableTarget(tableClient(access, `e2e${id}records`)).list())
      target.set(r.key, r);
    const sources = [
      ['leads', sim.snapshot()],
      ['inspections', sim2.snapshot()],
    ] as const;
    expect(target.size).toBe(sources.reduce((n, [, s]) => n + s.length, 0));
    for (const [flow, source] of sources)
      for (const s of source)
        expect(target.get(`${flow}|${s.RecordID}`)).toMatchObject({
          version: s.lastSubmissionId,
          deleted: s.fields.State === 'Deleted',
        });
  }

  const maxId = (s: FlowfinitySimulator) =>
    s
      .snapshot()
      .reduce((m, r) => (r.lastSubmissionId > m ? r.lastSubmissionId : m), 0n)
      .toString();

  async function syncBoth() {
    await Promise.all([host.runTimer('syncTimer-leads'), host.runTimer('syncTimer-inspections')]);
    await host.waitForIdle({ timeoutMs: 60_000, quietMs: 300 });
  }

  it('registers the app functions with resolved settings', () => {
    const byName = Object.fromEntries(host.functions.map((f) => [f.name, f]));
    expect(Object.keys(byName).sort()).toEqual([
      'applyRecords',
      'controlPoison',
      'externalSourceWebhook',
      'health',
      'recordsPoison',
      'syncControl',
      'syncTimer-inspections',
      'syncTimer-leads',
      'webhookJobs',
      'webhookRedispatch',
    ]);
    expect(byName['syncTimer-leads']!.binding.schedule).toBe('*/10 * * * * *');
    expect(byName['syncTimer-inspections']!.binding.schedule).toBe('*/10 * * * * *');
    for (const [name, b] of Object.entries(v.expectedBindings))
      expect(byName[name]).toMatchObject({ triggerType: b.triggerType, binding: { queueName: b.queueName } });
  });

  it('syncs two views side by side through timer → queue → apply → complete, each reported in /api/health', async () => {
    const before = await health();
    expect(before.status).toBe(200);
    expect(before.flows.leads).toMatchObject({
      status: 'ok',
      cursor: null,
      batch: null,
      totals: { applied: 0 },
    });
    expect(before.flows.inspections).toMatchObject({ status: 'ok', cursor: null, batch: null });

    await syncBoth();
    await expectTargetEqualsSources();
    const first = await health();
    expect(first.body.status).toBe('ok');
    expect(first.flows.leads).toMatchObject({
      cursor: maxId(sim),
      batch: null,
      totals: { applied: 60, batches: 1 },
    });
    expect(first.flows.inspections).toMatchObject({
      cursor: maxId(sim2),
      batch: null,
      totals: { applied: 25, batches: 1 },
    });

    sim.update(sim.snapshot()[2]!.RecordID, { Company: 'Renamed Ltd' });
    sim.remove(sim.snapshot()[9]!.RecordID);
    sim2.update(sim2.snapshot()[0]!.RecordID);
    await syncBoth();
    await expectTargetEqualsSources();
    const after = await health();
    expect(after.flows.leads).toMatchObject({
      totals: { applied: 62, skipped: 0, batches: 2 },
      lateCommits: { caught: 0 },
    });
    expect(after.flows.inspections).toMatchObject({ totals: { applied: 26, batches: 2 } });
    v.afterSync?.(after.flows);
  });

  it('a view refusing the credentials (401) blocks the flow: health answers 503 and the failing tick is logged once', async () => {
    hostLogs.length = 0;
    sim.faults.failNext(1, 401);
    await host.runTimer('syncTimer-leads').catch(() => {});
    const failed = await health();
    expect(failed.status).toBe(503);
    expect(failed.body.status).toBe('blocked');
    expect(failed.flows.leads).toMatchObject({
      status: 'blocked',
      lastError: { kind: 'configuration' },
      problems: [expect.stringMatching(/failing until fixed: plan failed: .*401/)],
    });
    expect(failed.flows.inspections).toMatchObject({ status: 'ok' });
    expect(hostLogs.filter((l) => l.includes('answered 401'))).toHaveLength(1);

    // Fixed at the source: the next tick clears it.
    await host.runTimer('syncTimer-leads');
    const healed = await health();
    expect(healed.status).toBe(200);
    expect(healed.flows.leads).toMatchObject({ status: 'ok', lastError: null });
    expect(healed.flows.leads!.lag).toMatchObject({ maxSeconds: 3600 });
    expect((healed.flows.leads!.lag as { seconds: number }).seconds).toBeLessThan(60);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const res = await fetch(`${host.httpUrl}/api/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toHaveProperty('error');
  });
}
