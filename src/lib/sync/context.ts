/** What the plan / apply / complete steps work with. Built by src/lib/services.ts. */
import type { Config } from '../config';
import type { Faults } from '../faults';
import type { Log } from '../log';
import type { Ledger } from './ledger';
import type { CursorStore, TargetSystem, Transport, ViewSource } from '../ports';
import type { Quarantine } from './quarantine';

/** The view-sync settings, plus the transport's message size budget. */
export type SyncSettings = Omit<Config['sync'], 'schedule'> & {
  /** Largest JSON body of one queue message (the transport's limit, with headroom). */
  maxMessageBytes: number;
};

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
