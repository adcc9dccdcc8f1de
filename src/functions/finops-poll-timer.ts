/**
 * One timer per business-event flow in polling mode (`finopsPoll-<flow>`, on its PollSchedule):
 * dequeues the recurring-integration activity's next message, downloads it (http:// rewritten to
 * https://, only from the F&O host) and plans its batch. The message is acknowledged by the flow
 * once its batch drained. See pollOnce in src/lib/flows/business-event/runtime.ts.
 */
import { app } from '@azure/functions';
import { registrationSettings } from '../lib/config';
import { getApp } from '../lib/compose';
import { errorText } from '../lib/errors';
import { pollOnce } from '../lib/flows/business-event/runtime';
import { contextLog } from './shared/invocation';
import { finopsPollTimerName } from './shared/names';

for (const { name, pollSchedule } of registrationSettings().businessEventFlows) {
  if (!pollSchedule) continue;
  app.timer(finopsPollTimerName(name), {
    schedule: pollSchedule,
    handler: async (_timer, context) => {
      const services = getApp();
      const log = contextLog(context);
      const flow = services.businessEventFlows.find((f) => f.name === name);
      if (!flow) throw new Error(`no business-event flow named ${name}`);
      try {
        log.info('finops poll', { flow: name, ...(await pollOnce(services.engine, flow, log)) });
      } catch (e) {
        log.error('finops poll failed', { flow: name, error: errorText(e) });
        throw e;
      }
    },
  });
}
