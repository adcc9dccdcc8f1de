/** Chained re-polls over a 2,000-record backlog, five batches (25,000 in backlog.long.test.ts). Its own file so vitest runs it beside the other suites. */
import { backlogSuite } from '../support/backlog';

backlogSuite(2_000, 400);
