/** POST /api/webhooks/external-source fuzzed through the local host: 10,000 requests (see the support file). */
import { externalSourceFuzz } from '../support/external-source-fuzz';

externalSourceFuzz(10_000, 300_000);
