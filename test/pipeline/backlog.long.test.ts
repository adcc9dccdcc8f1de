/** Chained re-polls over a 25,000-record backlog (`npm run test:long`). */
import { backlogSuite } from '../support/backlog';

backlogSuite(25_000, 1_000);
