/** POST /api/webhooks/business-event fuzzed through the local host: 10,000 requests (see the support file). */
import { businessEventFuzz } from '../support/business-event-fuzz';

businessEventFuzz(10_000, 300_000);
