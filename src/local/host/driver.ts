import type { RpcInvocation } from './rpc';

/**
 * How the local host drives one trigger source (a storage queue, a Service Bus queue, a timer).
 * A driver receives work and calls `invoke` with what the host would send the worker (see rpc.ts); a resolved promise means the function succeeded
 * (complete / delete the message), a rejection means it threw (retry per the source's rules).
 */
export type InvokeFn = (invocation: RpcInvocation) => Promise<unknown>;

export interface TriggerDriver {
  readonly description: string;
  start(): Promise<void>;
  /** Stops receiving and waits for invocations in flight to settle. */
  stop(): Promise<void>;
  /**
   * True when nothing is in flight and the source looked empty on the last look, a look that
   * began at or after `since` (ms since the epoch) when given: a message sent before `since`
   * (by an invocation that has ended) is then surely seen, even on a machine too busy to poll
   * on time.
   */
  isIdle(since?: number): boolean;
}

export interface QueueDriverOptions {
  queueName: string;
  invoke: InvokeFn;
  /** Most invocations at once (host.json queues.batchSize / serviceBus.maxConcurrentCalls). */
  maxConcurrency: number;
  /** Pause between empty polls, in ms. */
  pollIntervalMs: number;
  log?: (line: string) => void;
}
