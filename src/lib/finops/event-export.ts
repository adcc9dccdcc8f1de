/**
 * An event's export as rows: download its DownloadURL (asking the package API for a fresh URL
 * when it has expired, if the package API is configured) and parse the body as a stream.
 *
 * - The URL expired or is refused and the package API is configured: GetExportedPackageUrl for
 *   the event's ExecutionId, then one more download. Expired again → DownloadUrlExpiredError.
 * - No package API (FNO_BASE_URL unset) or no ExecutionId in the event: DownloadUrlExpiredError
 *   whose message says why: the flow quarantines the event with that reason.
 * Other errors pass through (TransientError: retry; PermanentError: quarantine).
 */
import { DownloadUrlExpiredError, type Download, type SafeDownloader } from './download';
import type { BusinessEventFacts } from './business-event';
import type { PackageApiClient } from './package-api';
import { parseExport, type ParsedItem, type ParseExportOptions } from './parse';

export interface EventExportDeps {
  downloader: SafeDownloader;
  /** When FNO_BASE_URL is set: the source of fresh URLs. */
  packageApi?: PackageApiClient;
  signal?: AbortSignal;
}

export async function downloadEventExport(
  facts: Pick<BusinessEventFacts, 'downloadUrl' | 'executionId'>,
  deps: EventExportDeps,
): Promise<Download & { refreshedUrl: boolean }> {
  if (facts.downloadUrl === undefined)
    throw new DownloadUrlExpiredError('the event has no DownloadURL', {
      details: { reason: 'no_download_url' },
    });
  try {
    return {
      ...(await deps.downloader.download(facts.downloadUrl, { signal: deps.signal })),
      refreshedUrl: false,
    };
  } catch (e) {
    if (!(e instanceof DownloadUrlExpiredError)) throw e;
    if (!deps.packageApi)
      throw new DownloadUrlExpiredError(
        `${e.message}; no fresh URL can be asked for (FNO_BASE_URL is not set)`,
        {
          upstreamStatus: e.upstreamStatus,
          details: e.details,
        },
      );
    if (!facts.executionId)
      throw new DownloadUrlExpiredError(
        `${e.message}; the event carries no ExecutionId to ask a fresh URL for`,
        {
          upstreamStatus: e.upstreamStatus,
          details: e.details,
        },
      );
    const fresh = await deps.packageApi.getExportedPackageUrl(facts.executionId, deps.signal);
    return { ...(await deps.downloader.download(fresh, { signal: deps.signal })), refreshedUrl: true };
  }
}

/** The rows of an event's export (entity = the event's EntityName for a plain file). */
export async function* eventExportRows(
  facts: Pick<BusinessEventFacts, 'downloadUrl' | 'executionId' | 'entityName'>,
  deps: EventExportDeps,
  options: Omit<ParseExportOptions, 'entity' | 'fileName'> = {},
): AsyncGenerator<ParsedItem, void, undefined> {
  const download = await downloadEventExport(facts, deps);
  yield* parseExport(download.body, {
    ...options,
    entity: facts.entityName ?? '',
    fileName: download.fileName,
  });
}
