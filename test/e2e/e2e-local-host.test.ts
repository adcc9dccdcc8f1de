/** End to end through the real registrations with the local adapters (storage queues, blob cursor). */
import { e2eSuite } from '../support/e2e-suite';

e2eSuite({
  setup: async () => ({}),
  teardown: async () => {},
  expectedBindings: {
    applyRecords: { triggerType: 'queueTrigger', queueName: 'sync-records' },
    recordsPoison: { triggerType: 'queueTrigger', queueName: 'sync-records-poison' },
    syncControl: { triggerType: 'queueTrigger', queueName: 'sync-control' },
    controlPoison: { triggerType: 'queueTrigger', queueName: 'sync-control-poison' },
    webhookJobs: { triggerType: 'queueTrigger', queueName: 'jobs' },
  },
});
