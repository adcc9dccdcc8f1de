/** Function names that other code (the local runner, tests) needs without loading the registrations. */

/** The timer function of a view-sync flow. */
export const timerName = (flow: string) => `syncTimer-${flow}`;

/** The dequeue timer of a business-event flow in polling mode. */
export const finopsPollTimerName = (flow: string) => `finopsPoll-${flow}`;

/** The repair timer of a business-event flow (exports whose batch is still in flight). */
export const businessEventRepairTimerName = (flow: string) => `businessEventRepair-${flow}`;
