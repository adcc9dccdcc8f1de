/** Records queue: applies each record idempotently and counts the message in its stream's ledger. */
import { applyRecordsMessage } from '../lib/batch/applier';
import { getApp } from '../lib/compose';
import { inSpan, recordApply, traceparentOf } from '../lib/telemetry';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('applyRecords', 'records', 'main', async (body, delivery, context) => {
  const log = contextLog(context, { deliveryCount: delivery.deliveryCount });
  const report = await inSpan(
    'apply',
    { deliveryCount: delivery.deliveryCount },
    () => applyRecordsMessage(getApp().engine, body, delivery, log),
    traceparentOf(body),
  );
  recordApply(report);
  if (report.kind !== 'applied' || report.quarantined > 0) log.warn('records message', { ...report });
});
