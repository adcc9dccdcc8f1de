/**
 * App start: the queues the triggers listen on must exist. Storage queues are created (nothing
 * else creates them, in Azure with TRANSPORT=storagequeue or on a fresh Azurite); Service Bus
 * queues come from infra and are only checked, so a missing one is reported at start with the
 * setting that names it instead of as a trigger error later. A failure is logged, not thrown:
 * the host keeps running and health reports the configuration problem.
 */
import { app } from '@azure/functions';
import { ensureAppQueues } from '../lib/compose';
import { loadConfig } from '../lib/config';
import { errorText } from '../lib/errors';

app.hook.appStart(async () => {
  try {
    await ensureAppQueues(loadConfig());
  } catch (e) {
    console.error(`syncbridge: the app's queues are not ready: ${errorText(e)}`);
  }
});
