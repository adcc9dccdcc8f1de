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
import { startAzurite, type AzuriteInstance } from '../../src/local/azurite';
import { FlowfinitySimulator } from '../../src/local/flowfinity-simulator';
import { LocalHost } from '../../src/local/host';
import { localSettings } from '../../src/local/local-settings';

export interface E2eVariant {
  /** Starts whatever the variant needs and returns the settings that select its adapters. */
  setup(): Promise<Record<string, string>>;
  teardown(): Promise<void>;
  expectedBindings: Record<string, { triggerType: string; queueName: string }>;
  /** Extra checks after the second sync (e.g. where the cursor file lives). */
  afterSync?(health: Record<string, unknown>): void;
}

export function e2eSuite(v: E2eVariant): void {
  let azurite: AzuriteInstance;
  let sim: FlowfinitySimulator;
  let host: LocalHost;
  const functionsDir = path.join(__dirname, '..', '..', 'src', 'functions');

  beforeAll(async () => {
    azurite = await startAzurite();
    sim = await FlowfinitySimulator.start({ initialRecords: 60, seed: 5 });
    const base = localSettings(
      {
        storageConnectionString: azurite.connectionString,
        viewUrl: sim.viewUrl,
        username: sim.username,
        password: sim.password,
      },
      {},
    );
    host = await LocalHost.start({
      modules: readdirSync(functionsDir)
        .filter((f) => f.endsWith('.ts'))
        .map((f) => path.join(functionsDir, f)),
      settings: { ...base, SYNC_RECORDS_PER_MESSAGE: '8', ...(await v.setup()) },
      httpPort: 0,
      enableTimers: false,
      queuePollIntervalMs: 50,
      visibilityTimeoutMs: 100,
    });
  });
  afterAll(async () => {
    await host?.stop();
    await sim?.stop();
    await v.teardown();
    await azurite?.stop();
  });

  async function health() {
    const res = await fetch(`${host.httpUrl}/api/health`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  async function expectTargetEqualsSource() {
    const access = { kind: 'connectionString' as const, connectionString: azurite.connectionString };
    const target = new Map<string, { version: bigint; deleted: boolean }>();
    for await (const r of new TableTarget(tableClient(access, 'syncbridgerecords')).list())
      target.set(r.key, r);
    const source = sim.snapshot();
    expect(target.size).toBe(source.length);
    for (const s of source) {
      expect(target.get(`default|${s.RecordID}`)).toMatchObject({
        version: s.lastSubmissionId,
        deleted: s.fields.State === 'Deleted',
      });
    }
  }

  it('registers the app functions with resolved settings', () => {
    const byName = Object.fromEntries(host.functions.map((f) => [f.name, f]));
    expect(Object.keys(byName).sort()).toEqual([
      'applyRecords',
      'health',
      'recordsPoison',
      'syncControl',
      'syncTimer',
    ]);
    expect(byName.syncTimer!.binding.schedule).toBe('*/10 * * * * *');
    for (const [name, b] of Object.entries(v.expectedBindings))
      expect(byName[name]).toMatchObject({ triggerType: b.triggerType, binding: { queueName: b.queueName } });
  });

  it('syncs the view through timer → queue → apply → complete and reports it in /api/health', async () => {
    expect(await health()).toMatchObject({
      status: 200,
      body: { status: 'ok', cursor: null, batch: null, recordsSynced: 0 },
    });

    await host.runTimer('syncTimer');
    await host.waitForIdle({ timeoutMs: 60_000, quietMs: 300 });
    await expectTargetEqualsSource();
    const max = sim.snapshot().reduce((m, r) => (r.lastSubmissionId > m ? r.lastSubmissionId : m), 0n);
    expect((await health()).body).toMatchObject({
      status: 'ok',
      cursor: max.toString(),
      batch: null,
      recordsSynced: 60,
    });

    sim.update(sim.snapshot()[2]!.RecordID, { Company: 'Renamed Ltd' });
    sim.remove(sim.snapshot()[9]!.RecordID);
    await host.runTimer('syncTimer');
    await host.waitForIdle({ timeoutMs: 60_000, quietMs: 300 });
    await expectTargetEqualsSource();
    const after = await health();
    expect(after.body).toMatchObject({ recordsSynced: 62, batchesCompleted: 2 });
    v.afterSync?.(after.body);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const res = await fetch(`${host.httpUrl}/api/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toHaveProperty('error');
  });
}
