/**
 * Poison / dead-letter queue of the records queue: a message the transport gave up on (delivery
 * limit, lock lost, TTL) gets one isolated try per record; failing records are quarantined
 * (POISON_POLICY=quarantine: the message then counts as terminal for the drain) or block the
 * flow (POISON_POLICY=block). Nothing is lost either way.
 */
import { applyRecordsMessage } from '../lib/batch/applier';
import { getApp } from '../lib/compose';
import { inSpan, recordApply, traceparentOf } from '../lib/telemetry';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('recordsPoison', 'records', 'poison', async (body, delivery, context) => {
  const log = contextLog(context, { deliveryCount: delivery.deliveryCount, poison: true });
  const report = await inSpan(
    'apply',
    { poison: true },
    () =>
      applyRecordsMessage(
        getApp().engine,
        body,
        { ...delivery, poison: true, poisonReason: delivery.deadLetterReason ?? 'delivery limit exceeded' },
        log,
      ),
    traceparentOf(body),
  );
  recordApply(report);
  log.warn('poison records message handled', { ...report });
});
