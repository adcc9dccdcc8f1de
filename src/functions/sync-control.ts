/** Control queue: `batch-drained` completes a batch (the flow's completion step), `poll` plans the next one. */
import { handleControlMessage } from '../lib/batch/control';
import { getApp } from '../lib/compose';
import { inSpan, recordControl, traceparentOf } from '../lib/telemetry';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('syncControl', 'control', 'main', async (body, _delivery, context) => {
  const log = contextLog(context);
  const outcome = await inSpan(
    'control',
    {},
    () => handleControlMessage(getApp().engine, body, log),
    traceparentOf(body),
  );
  recordControl(outcome);
  log.info('control message', { ...outcome });
});
