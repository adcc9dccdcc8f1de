/**
 * Poison / dead-letter queue of the records queue: a message the transport gave up on (delivery
 * limit, lock lost, TTL) gets one isolated try per record; failing records are quarantined
 * (POISON_POLICY=quarantine: the message then counts as terminal for the drain) or block the
 * flow (POISON_POLICY=block). Nothing is lost either way.
 */
import { applyRecordsMessage } from '../lib/batch/applier';
import { getApp } from '../lib/compose';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('recordsPoison', 'records', 'poison', async (body, delivery, context) => {
  const report = await applyRecordsMessage(
    getApp().engine,
    body,
    { ...delivery, poison: true, poisonReason: delivery.deadLetterReason ?? 'delivery limit exceeded' },
    contextLog(context),
  );
  contextLog(context).warn('poison records message handled', report);
});
