/**
 * Issue 15 item 10: a crashed holder's infinite lease on the cursor file blocks every other
 * writer (412 LeaseIdMissing for the portal, `az storage file upload`, the tutorial's flow).
 * `status` and health show the stale lease (the flow is degraded, with the command to run), and
 * `syncbridge cursor break-lease` ends it: refusing a healthy holder's unless --force. Through the
 * Azure Files test server, whose service clock the test moves instead of waiting.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ShareServiceClient } from '@azure/storage-file-share';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli';
import { sharedAzurite } from '../support/azurite';
import { startAzureFilesServer, type AzureFilesServer } from '../support/azure-files-server';

let files: AzureFilesServer;
beforeAll(async () => {
  files = await startAzureFilesServer();
});
afterAll(async () => {
  await files?.stop();
});

/** Runs the CLI in-process with a settings file and --json; returns its exit code and what it printed. */
async function cli(settingsFile: string, ...args: string[]) {
  const out: string[] = [];
  const io = { out: (l: string) => void out.push(l), err: (l: string) => void out.push(l), isTTY: false };
  const code = await main(['--settings', settingsFile, '--json', ...args], io);
  return { code, text: out.join('\n') };
}

describe('cursor break-lease', () => {
  it('status shows a stale lease; break-lease refuses a healthy holder, breaks a stale one, and --force breaks any', async () => {
    const id = randomBytes(4).toString('hex');
    const share = `cur-${id}`;
    files.createShare(share);
    const dir = mkdtempSync(path.join(tmpdir(), 'sb-cli-'));
    const settings = path.join(dir, 'local.settings.json');
    writeFileSync(
      settings,
      JSON.stringify({
        Values: {
          FLOWFINITY_VIEW_URL: 'http://127.0.0.1:9/api/views/LeadSync',
          FLOWFINITY_ON_BEHALF_OF: 'admin',
          FLOWFINITY_USERNAME: 'u',
          FLOWFINITY_PASSWORD: 'p',
          AzureWebJobsStorage: sharedAzurite().connectionString,
          TRANSPORT: 'storagequeue',
          SYNC_TABLE_PREFIX: `bl${id}`,
          CURSOR_STORE: 'fileshare',
          CURSOR_STORAGE_CONNECTION: files.connectionString,
          CURSOR_SHARE_NAME: share,
          SYNC_VIEW_NAME: 'leads',
        },
      }),
    );
    const file = ShareServiceClient.fromConnectionString(files.connectionString)
      .getShareClient(share)
      .rootDirectoryClient.getFileClient('lastSubmissionId.txt');
    await file.uploadData(Buffer.from('1200'));

    // Not leased: nothing to do.
    expect(await cli(settings, 'cursor', 'break-lease')).toMatchObject({ code: 0, text: /is not leased/ });

    // A holder takes an infinite lease and crashes.
    await file.getShareLeaseClient().acquireLease();
    const fresh = await cli(settings, 'status', 'leads');
    expect(JSON.parse(fresh.text)).toMatchObject({
      status: 'ok',
      cursor: '1200',
      cursorLease: { leased: true, stale: false },
    });
    // Fresh: a healthy holder as far as anyone can tell, so refused without --force.
    const refused = await cli(settings, 'cursor', 'break-lease', '--flow', 'leads');
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.text)).toMatchObject({
      broken: false,
      reason: expect.stringMatching(/healthy/),
    });

    // Two minutes pass for the service: the lease is stale, health says so and what to run.
    files.advanceClock(120_000);
    const stale = JSON.parse((await cli(settings, 'status')).text) as {
      status: string;
      flows: Record<string, unknown>[];
    };
    expect(stale.status).toBe('degraded');
    expect(stale.flows[0]).toMatchObject({
      status: 'degraded',
      // 120 s advanced on the service clock, plus the real seconds the test took (1 s resolution).
      cursorLease: {
        leased: true,
        stale: true,
        ageSeconds: expect.toSatisfy((s: number) => s >= 120 && s < 130),
      },
      warnings: [
        expect.stringMatching(/stale lease.*412 LeaseIdMissing.*syncbridge cursor break-lease --flow leads/),
      ],
    });
    // Without --force it watches the file over the settle period (service clock) before breaking.
    const settling = setInterval(() => files.advanceClock(5_000), 100);
    try {
      const broken = await cli(settings, 'cursor', 'break-lease');
      expect(broken.code).toBe(0);
      expect(JSON.parse(broken.text)).toMatchObject({
        broken: true,
        reason: expect.stringMatching(/^stale/),
      });
    } finally {
      clearInterval(settling);
    }
    expect(JSON.parse((await cli(settings, 'status', 'leads')).text)).toMatchObject({
      status: 'ok',
      cursorLease: { leased: false, stale: false },
    });
    // Anyone can write the file again (the tutorial's flow, the portal).
    await file.uploadData(Buffer.from('1300'));

    // --force breaks even a fresh holder's lease.
    await file.getShareLeaseClient().acquireLease();
    const forced = await cli(settings, 'cursor', 'break-lease', '--force');
    expect(forced.code).toBe(0);
    expect(JSON.parse(forced.text)).toMatchObject({ broken: true, reason: expect.stringMatching(/^forced/) });
    await file.uploadData(Buffer.from('1400'));
  });

  it('a cursor outside Azure Files has no lease to break', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sb-cli-'));
    const settings = path.join(dir, 'local.settings.json');
    writeFileSync(
      settings,
      JSON.stringify({
        Values: {
          FLOWFINITY_VIEW_URL: 'http://127.0.0.1:9/api/views/LeadSync',
          FLOWFINITY_ON_BEHALF_OF: 'admin',
          FLOWFINITY_USERNAME: 'u',
          FLOWFINITY_PASSWORD: 'p',
          AzureWebJobsStorage: sharedAzurite().connectionString,
          TRANSPORT: 'storagequeue',
          CURSOR_STORE: 'blob',
        },
      }),
    );
    expect(await cli(settings, 'cursor', 'break-lease')).toMatchObject({
      code: 1,
      text: /no lease to break/,
    });
  });
});
