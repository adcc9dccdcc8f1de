/**
 * Dead-letter queue of the control queue (`<control>/$deadletterqueue`, `<control>-poison`):
 * a control message that failed every delivery is logged and, when its batch still waits for
 * completion, recorded on the stream (health shows it); a tick repairs the batch.
 */
import { handleDeadControlMessage } from '../lib/batch/control';
import { getApp } from '../lib/compose';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('controlPoison', 'control', 'poison', async (body, delivery, context) => {
  const outcome = await handleDeadControlMessage(getApp().engine, body, delivery, contextLog(context));
  contextLog(context).warn('dead-lettered control message handled', outcome);
});
