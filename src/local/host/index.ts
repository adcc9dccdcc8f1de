/** The local Functions host: runs the app's real `app.*` registrations without Core Tools. */
export { FunctionTimeoutError, LocalHost, WorkerRestartedError } from './local-host';
export type { HostLogLevel, HostedFunctionInfo, LocalHostOptions, WaitForIdleOptions } from './local-host';
export { installFunctionsCoreShim } from './functions-core-shim';
export type { InvokeFn, QueueDriverOptions, TriggerDriver } from './driver';
export {
  createStorageQueueDriver,
  decodeQueueMessageText,
  poisonQueueName,
  StorageQueueDriver,
} from './storage-queue-driver';
export type { StorageQueueDriverOptions } from './storage-queue-driver';
export { parseTimerSchedule, TimerDriver } from './timer-driver';
export type { TimerInput, TimerSchedule } from './timer-driver';
export { parseHostJson, parseTimeSpanMs, readHostJson } from './host-json';
export type { HostSettings, QueuesHostSettings } from './host-json';
