/**
 * The baseline: a faithful implementation of the published Power Automate tutorial flow
 * (Flowfinity REST view → target), one run of its Recurrence trigger:
 *
 *   1. Get file content: read the cursor file `lastSubmissionId.txt` (here a blob on Azurite).
 *   2. HTTP GET the view with `onbehalfof` and `previouslastsubmissionid=<file content>`
 *      (Basic auth), then Parse JSON: the whole body is buffered and parsed.
 *   3. Compose: the new cursor is `last(body('Parse_JSON'))?['lastSubmissionId']`, computed from
 *      the response BEFORE anything is applied.
 *   4. Apply to each: records one by one, sequentially (the action's default, concurrency 1), to
 *      the target (the same target adapter and latency as syncbridge uses).
 *   5. Update file: write the composed cursor.
 *
 * Its known bug is kept (`emptyResultBug`, on by default): on an empty result `last()` of an empty
 * array is null and the flow writes an EMPTY cursor file, so the next run has no
 * `previouslastsubmissionid` and re-reads the whole view. There is no batch limit, no
 * idempotency and no per-record version check beyond what the target adapter itself does.
 *
 * Not modelled (all in the tutorial's favour): the Recurrence interval (min 60 s, 5 min in the
 * tutorial) before the run starts, Power Automate's per-action overhead in the loop, and its
 * action budget per 24 h.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { stateOf } from '../src/lib/flowfinity/record';
import { targetRecordOf } from '../src/lib/records';
import type { TargetSystem } from '../src/lib/ports';

export interface TutorialFlowOptions {
  viewUrl: string;
  onBehalfOf: string;
  username: string;
  password: string;
  /** Container holding the cursor file. */
  container: ContainerClient;
  fileName?: string;
  target: TargetSystem;
  /** The view name used in target keys (same keys as syncbridge). */
  viewName: string;
  /** Keep the tutorial's empty-result bug (write an empty cursor). Default true. */
  emptyResultBug?: boolean;
}

export interface TutorialRunResult {
  records: number;
  /** What the run wrote to the cursor file ('' = the empty-result bug). */
  cursorWritten: string;
  startedAt: number;
  /** When the cursor file was written (the run's end). */
  finishedAt: number;
}

export async function runTutorialFlow(o: TutorialFlowOptions): Promise<TutorialRunResult> {
  const startedAt = Date.now();
  const blob = o.container.getBlockBlobClient(o.fileName ?? 'lastSubmissionId.txt');

  // 1. Get file content.
  let previous = '';
  try {
    previous = (await blob.downloadToBuffer()).toString('utf8').trim();
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode !== 404) throw e;
  }

  // 2. HTTP GET + Parse JSON.
  const url = new URL(o.viewUrl);
  url.searchParams.set('onbehalfof', o.onBehalfOf);
  url.searchParams.set('previouslastsubmissionid', previous);
  const res = await fetch(url, {
    headers: {
      Authorization: 'Basic ' + Buffer.from(`${o.username}:${o.password}`).toString('base64'),
      Accept: 'application/json',
    },
  });
  if (!res.ok) throw new Error(`HTTP action failed: ${res.status}`);
  const records = (await res.json()) as Record<string, unknown>[];

  // 3. Compose: last(records).lastSubmissionId, before applying (null on an empty array).
  const last = records[records.length - 1];
  const next = last === undefined ? null : String(last.lastSubmissionId);

  // 4. Apply to each, sequentially.
  for (const r of records) {
    const { RecordID, lastSubmissionId, ...data } = r;
    await o.target.apply(
      targetRecordOf(o.viewName, {
        id: String(RecordID),
        v: String(lastSubmissionId),
        del: stateOf(data, 'State') === 'Deleted',
        data,
      }),
    );
  }

  // 5. Update file.
  let written = next ?? '';
  if (next === null && o.emptyResultBug === false) written = previous;
  await o.container.createIfNotExists();
  await blob.upload(written, Buffer.byteLength(written), {
    blobHTTPHeaders: { blobContentType: 'text/plain' },
  });
  return { records: records.length, cursorWritten: written, startedAt, finishedAt: Date.now() };
}
