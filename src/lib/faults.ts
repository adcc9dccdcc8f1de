/**
 * Named points in the pipeline where tests inject failures. Production uses `noFaults`.
 * A test's hook may throw an ordinary error (the step fails and the pipeline's own error
 * handling runs) or a SimulatedCrash (the process "dies" there: no handler, catch block or
 * cleanup of ours may act on it, exactly as if the worker had been killed).
 */
export type FaultPoint =
  | 'plan.collect'
  | 'plan.manifestWrite'
  | 'plan.send'
  | 'plan.dispatched'
  | 'apply.record'
  | 'apply.ledger'
  | 'apply.drainSignal'
  | 'complete.flow'
  | 'complete.close'
  | 'complete.poll';

export interface Faults {
  at(point: FaultPoint, detail?: string): Promise<void>;
}

export const noFaults: Faults = { at: async () => {} };

export class SimulatedCrash extends Error {
  constructor(point: string) {
    super(`simulated crash at ${point}`);
    this.name = 'SimulatedCrash';
  }
}

export const isSimulatedCrash = (e: unknown): e is SimulatedCrash => e instanceof SimulatedCrash;
