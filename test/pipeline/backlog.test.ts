/** Chained re-polls over a 5,000-record backlog (25,000 in backlog.long.test.ts). Its own file so vitest runs it beside the other suites. */
import { backlogSuite } from '../support/backlog';

backlogSuite(5_000);
