/** Timer: plans the next batch of the view (or reports / repairs the batch in flight). */
import { app } from '@azure/functions';
import { registrationSettings } from '../lib/config';
import { errorText } from '../lib/errors';
import { getServices } from '../lib/services';
import { plan } from '../lib/sync/planner';
import { contextLog } from './shared/invocation';

app.timer('syncTimer', {
  schedule: registrationSettings().schedule,
  handler: async (_timer, context) => {
    const { ctx } = getServices();
    const log = contextLog(context);
    try {
      const outcome = await plan(ctx, log);
      log.info('sync tick', outcome);
    } catch (e) {
      await ctx.ledger.recordError(`plan failed: ${errorText(e)}`, new Date(ctx.now())).catch(() => {});
      throw e;
    }
  },
});
