/** GET /api/health: per flow, the cursor, the batch in flight with progress, quarantine, last error. */
import { app } from '@azure/functions';
import { getApp } from '../lib/compose';
import { AppError, errorText, httpErrorOf, TransientError } from '../lib/errors';
import { healthHttpStatus, healthReport } from '../lib/health';
import { recordHealth } from '../lib/telemetry';
import { contextLog } from './shared/invocation';

app.http('health', {
  methods: ['GET'],
  authLevel: 'function',
  route: 'health',
  handler: async (_request, context) => {
    try {
      const report = await healthReport(getApp());
      // An availability test calls this every few minutes: the flows' gauges ride along.
      for (const f of report.flows) recordHealth(f);
      return { status: healthHttpStatus(report.status), jsonBody: report };
    } catch (e) {
      contextLog(context).error('health check failed', { error: errorText(e) });
      // A ConfigError lists setting names and problems, never secret values; anything else is
      // storage that cannot be reached, whose message is not for the caller.
      const shown =
        e instanceof AppError && e.kind === 'configuration'
          ? e
          : new TransientError('state storage is not reachable; see the function logs', {
              code: 'unavailable',
            });
      const { body } = httpErrorOf(shown);
      return { status: 503, jsonBody: body };
    }
  },
});
