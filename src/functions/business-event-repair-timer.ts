/**
 * One repair timer per business-event flow (`businessEventRepair-<flow>`, every 5 minutes): an
 * export's stream is planned once, by its job or poll, so a batch whose drain signal was lost
 * (or that stalled) would otherwise stay in flight for ever. See repairBusinessEventStreams in
 * src/lib/flows/business-event/runtime.ts.
 */
import { app } from '@azure/functions';
import { registrationSettings } from '../lib/config';
import { getApp } from '../lib/compose';
import { errorText } from '../lib/errors';
import {
  BUSINESS_EVENT_REPAIR_SCHEDULE,
  repairBusinessEventStreams,
} from '../lib/flows/business-event/runtime';
import { contextLog } from './shared/invocation';
import { businessEventRepairTimerName } from './shared/names';

for (const { name } of registrationSettings().businessEventFlows) {
  app.timer(businessEventRepairTimerName(name), {
    schedule: BUSINESS_EVENT_REPAIR_SCHEDULE,
    handler: async (_timer, context) => {
      const services = getApp();
      const log = contextLog(context);
      const flow = services.businessEventFlows.find((f) => f.name === name);
      if (!flow) throw new Error(`no business-event flow named ${name}`);
      try {
        const streams = await repairBusinessEventStreams(services.engine, flow, log);
        if (streams.length) log.info('business-event repair', { flow: name, inFlight: streams.length });
      } catch (e) {
        log.error('business-event repair failed', { flow: name, error: errorText(e) });
        throw e;
      }
    },
  });
}
