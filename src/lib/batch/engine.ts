/**
 * The batch engine's context: the shared services every step works with, and the flows it
 * routes messages to. Built by the composition root (src/lib/compose.ts); the steps live in
 * planner.ts, dispatch.ts, applier.ts, completer.ts, control.ts, health.ts, operations.ts.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { TableClient } from '@azure/data-tables';
import { ConfigError } from '../errors';
import type { Faults } from '../faults';
import type { Transport } from '../ports';
import { flowOfStream, type BatchFlow } from './flow';
import { Ledger } from './ledger';
import { Quarantine } from './quarantine';

export interface EngineDeps {
  transport: Transport;
  /** `<prefix>state`: stream state, manifests, message markers. */
  stateTable: TableClient;
  /** `<prefix>quarantine`. */
  quarantineTable: TableClient;
  faults: Faults;
  now: () => number;
  /** Identifies this process as a lease holder. */
  instanceId: string;
  /** Waits (the applier's back-off); tests inject one that records instead of sleeping. */
  sleep?: (ms: number) => Promise<void>;
  /**
   * The trace context to put in the messages a step sends (`traceparent`), so that the steps
   * that handle them join the same trace. The composition root gives it; the engine knows no
   * telemetry.
   */
  traceparent?: () => string | undefined;
}

/** Quarantine partition for messages that name no flow this app has. */
export const UNROUTED = '_unrouted';

export class Engine {
  private readonly byName: ReadonlyMap<string, BatchFlow>;

  constructor(
    readonly deps: EngineDeps,
    flows: readonly BatchFlow[],
  ) {
    const byName = new Map<string, BatchFlow>();
    for (const f of flows) {
      if (byName.has(f.name)) throw new ConfigError(`two flows are named ${JSON.stringify(f.name)}`);
      byName.set(f.name, f);
    }
    this.byName = byName;
  }

  get flows(): BatchFlow[] {
    return [...this.byName.values()];
  }

  get transport(): Transport {
    return this.deps.transport;
  }

  get faults(): Faults {
    return this.deps.faults;
  }

  now(): number {
    return this.deps.now();
  }

  /** Waits `ms` (or what the injected sleep does instead). */
  sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return (this.deps.sleep ?? ((t: number) => delay(t)))(ms);
  }

  get instanceId(): string {
    return this.deps.instanceId;
  }

  /** The flow a stream belongs to, or undefined when this app has no such flow. */
  flowOf(stream: string): BatchFlow | undefined {
    return this.byName.get(flowOfStream(stream));
  }

  flow(name: string): BatchFlow {
    const f = this.byName.get(name);
    if (!f)
      throw new ConfigError(
        `no flow named ${JSON.stringify(name)}; this app has: ${[...this.byName.keys()].join(', ') || '(none)'}`,
      );
    return f;
  }

  ledger(stream: string): Ledger {
    return new Ledger(this.deps.stateTable, stream);
  }

  quarantine(flow: string): Quarantine {
    return new Quarantine(this.deps.quarantineTable, flow, this.deps.now);
  }

  /** The same engine as another process (tests of concurrent instances). */
  withDeps(o: Partial<EngineDeps>): Engine {
    return new Engine({ ...this.deps, ...o }, this.flows);
  }

  async ensureReady(): Promise<void> {
    await this.ledger('').ensureReady();
    await this.quarantine(UNROUTED).count();
    for (const f of this.byName.values()) await f.target.ensureReady?.();
    await this.deps.transport.ensureQueues?.();
  }
}
