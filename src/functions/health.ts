/** GET /api/health: cursor, batch in flight with progress, quarantine count, last error. */
import { app } from '@azure/functions';
import { ConfigError } from '../lib/config';
import { errorText } from '../lib/errors';
import { getServices } from '../lib/services';
import { healthReport } from '../lib/sync/health';
import { contextLog } from './shared/invocation';

app.http('health', {
  methods: ['GET'],
  authLevel: 'function',
  route: 'health',
  handler: async (_request, context) => {
    try {
      const report = await healthReport(getServices().ctx);
      return { status: report.status === 'blocked' ? 503 : 200, jsonBody: report };
    } catch (e) {
      const config = e instanceof ConfigError;
      contextLog(context).error('health check failed', { error: errorText(e) });
      return {
        status: 503,
        jsonBody: {
          error: {
            code: config ? 'configuration' : 'unavailable',
            // A ConfigError lists setting names and problems, never secret values.
            message: config ? e.message : 'state storage is not reachable; see the function logs',
          },
        },
      };
    }
  },
});
