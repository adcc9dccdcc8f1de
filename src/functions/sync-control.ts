/** Control queue: `batch-drained` completes a batch (cursor CAS), `poll` plans the next one. */
import { getServices } from '../lib/services';
import { handleControlMessage } from '../lib/sync/completer';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('syncControl', 'control', 'main', async (body, _delivery, context) => {
  const outcome = await handleControlMessage(getServices().ctx, body, contextLog(context));
  contextLog(context).info('control message', outcome);
});
