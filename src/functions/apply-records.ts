/** Records queue: applies each record idempotently and counts the message in its stream's ledger. */
import { applyRecordsMessage } from '../lib/batch/applier';
import { getApp } from '../lib/compose';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('applyRecords', 'records', 'main', async (body, delivery, context) => {
  const report = await applyRecordsMessage(getApp().engine, body, delivery, contextLog(context));
  if (report.kind !== 'applied' || report.quarantined > 0)
    contextLog(context).warn('records message', report);
});
