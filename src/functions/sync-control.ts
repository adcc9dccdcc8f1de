/** Control queue: `batch-drained` completes a batch (the flow's completion step), `poll` plans the next one. */
import { handleControlMessage } from '../lib/batch/control';
import { getApp } from '../lib/compose';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('syncControl', 'control', 'main', async (body, _delivery, context) => {
  const outcome = await handleControlMessage(getApp().engine, body, contextLog(context));
  contextLog(context).info('control message', outcome);
});
