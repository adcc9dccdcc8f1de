/** Records queue: applies each record idempotently and counts the message in the batch ledger. */
import { getServices } from '../lib/services';
import { applyRecordsMessage } from '../lib/sync/applier';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('applyRecords', 'records', 'main', async (body, delivery, context) => {
  const report = await applyRecordsMessage(getServices().ctx, body, delivery, contextLog(context));
  if (report.kind !== 'applied' || report.quarantined > 0)
    contextLog(context).warn('records message', report);
});
