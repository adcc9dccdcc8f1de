/** POST /api/webhooks/business-event fuzzed through the local host: 50,000 requests (`npm run test:long`). */
import { businessEventFuzz } from '../support/business-event-fuzz';

businessEventFuzz(50_000, 1_800_000);
