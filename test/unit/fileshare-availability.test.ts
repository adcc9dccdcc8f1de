import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/lib/errors';
import {
  assertFileShareCursorAvailable,
  fileShareConnectionProblem,
} from '../../src/lib/cursor/fileshare-availability';
import { azuriteConnectionString } from '../../src/local/azurite';

describe('CURSOR_STORE=fileshare against storage without Azure Files', () => {
  it('recognises every way an Azurite connection string is written', () => {
    expect(fileShareConnectionProblem('UseDevelopmentStorage=true')).toMatch(/Azurite has no Azure Files/);
    expect(
      fileShareConnectionProblem(
        azuriteConnectionString({ blobPort: 10000, queuePort: 10001, tablePort: 10002 }),
      ),
    ).toMatch(/devstoreaccount1/);
    expect(
      fileShareConnectionProblem(
        'DefaultEndpointsProtocol=https;AccountName=other;BlobEndpoint=https://x.example/;QueueEndpoint=https://y.example/',
      ),
    ).toMatch(/no FileEndpoint/);
  });

  it('accepts real storage accounts', () => {
    expect(
      fileShareConnectionProblem(
        'DefaultEndpointsProtocol=https;AccountName=stprod;AccountKey=a2V5;EndpointSuffix=core.windows.net',
      ),
    ).toBeUndefined();
    expect(
      fileShareConnectionProblem(
        'AccountName=stprod;FileEndpoint=https://stprod.file.core.windows.net/;SharedAccessSignature=sv=x',
      ),
    ).toBeUndefined();
  });

  it('throws a ConfigError naming the setting, the reason and the fix, never a key', () => {
    const cs = 'UseDevelopmentStorage=true';
    let err: unknown;
    try {
      assertFileShareCursorAvailable({
        store: 'fileshare',
        connectionString: cs,
        connectionSetting: 'AzureWebJobsStorage',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as ConfigError).problems[0]!;
    expect(msg).toMatch(/^CURSOR_STORE=fileshare cannot use the connection string in AzureWebJobsStorage: /);
    expect(msg).toMatch(/set CURSOR_STORE=blob/);
    expect(msg).not.toMatch(/AccountKey=|Eby8/);
    const withKey = azuriteConnectionString({ blobPort: 1, queuePort: 2, tablePort: 3 });
    expect(() =>
      assertFileShareCursorAvailable({
        store: 'fileshare',
        connectionString: withKey,
        connectionSetting: 'X',
      }),
    ).toThrow(expect.objectContaining({ message: expect.not.stringContaining('AccountKey') }));
  });

  it('lets the blob store and identity-based access through', () => {
    expect(() =>
      assertFileShareCursorAvailable({
        store: 'blob',
        connectionString: 'UseDevelopmentStorage=true',
        connectionSetting: 'AzureWebJobsStorage',
      }),
    ).not.toThrow();
    expect(() =>
      assertFileShareCursorAvailable({
        store: 'fileshare',
        connectionSetting: 'AzureWebJobsStorage__accountName',
      }),
    ).not.toThrow();
  });
});
