/**
 * One timer per view-sync flow, on the flow's own schedule: plans the flow's next batch (or
 * reports / repairs the batch in flight). Named `syncTimer-<flow>`.
 */
import { app } from '@azure/functions';
import { plan } from '../lib/batch/planner';
import { registrationSettings } from '../lib/config';
import { AppError, errorText } from '../lib/errors';
import { getApp } from '../lib/compose';
import { flowReport } from '../lib/health';
import { inSpan, recordHealth, recordPlan, recordPlanFailure } from '../lib/telemetry';
import { contextLog } from './shared/invocation';

import { timerName } from './shared/names';

const errorKindOf = (e: unknown) => (e instanceof AppError ? e.kind : '');

for (const { name, schedule } of registrationSettings().flows) {
  app.timer(timerName(name), {
    schedule,
    handler: async (_timer, context) => {
      const app = getApp();
      const { engine, flow } = app;
      const log = contextLog(context, { flow: name });
      try {
        const outcome = await inSpan('plan', { flow: name }, () => plan(engine, flow(name), log));
        recordPlan(name, outcome);
        log.info('sync tick', { ...outcome });
      } catch (e) {
        recordPlanFailure(name, e);
        // The kind tells health whether retrying can heal it (a 401/403 from the view cannot).
        await engine
          .ledger(name)
          .recordError(`plan failed: ${errorText(e)}`, new Date(engine.now()), { kind: errorKindOf(e) })
          .catch(() => {});
        // Thrown, not logged here: the host logs the failed invocation once (with its exception).
        throw e;
      } finally {
        // The flow's gauges (lag, blocked, quarantine) once per tick; never fails the tick.
        await flowReport(app, name).then(recordHealth, () => {});
      }
    },
  });
}
