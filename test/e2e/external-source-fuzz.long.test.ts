/** POST /api/webhooks/external-source fuzzed through the local host: 10,000 requests (`npm run test:long`). */
import { externalSourceFuzz } from '../support/external-source-fuzz';

externalSourceFuzz(10_000, 900_000);
