/** POST /api/webhooks/external-source fuzzed through the local host: 50,000 requests (`npm run test:long`). */
import { externalSourceFuzz } from '../support/external-source-fuzz';

externalSourceFuzz(50_000, 1_800_000);
