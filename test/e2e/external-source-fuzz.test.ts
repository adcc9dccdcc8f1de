/** POST /api/webhooks/external-source fuzzed through the local host: 2,000 requests (see the support file). */
import { externalSourceFuzz } from '../support/external-source-fuzz';

externalSourceFuzz(2_000, 150_000);
