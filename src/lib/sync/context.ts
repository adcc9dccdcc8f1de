/** What the plan / apply / complete steps work with. Built by src/lib/services.ts. */
import type { Faults } from '../faults';
import type { ViewSource } from '../flowfinity/view-source';
import type { Log } from '../log';
import type { Ledger } from './ledger';
import type { CursorStore, TargetSystem, Transport } from './ports';
import type { Quarantine } from './quarantine';

export interface SyncSettings {
  viewName: string;
  maxBatch: number;
  recordsPerMessage: number;
  lookback: number;
  stateField: string;
  deletedStates: string[];
  maxAttempts: number;
  planLeaseSeconds: number;
  poisonPolicy: 'quarantine' | 'block';
  /** Largest JSON body of one queue message (the transport's limit, with headroom). */
  maxMessageBytes: number;
}

export interface SyncContext {
  settings: SyncSettings;
  view: ViewSource;
  cursor: CursorStore;
  transport: Transport;
  target: TargetSystem;
  ledger: Ledger;
  quarantine: Quarantine;
  faults: Faults;
  now: () => number;
  /** Identifies this process as a lease holder. */
  instanceId: string;
}

export type { Log };
