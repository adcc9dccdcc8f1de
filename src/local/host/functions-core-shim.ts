/**
 * Stands in for `@azure/functions-core`, the module the real Functions worker injects. The
 * `@azure/functions` package requires it lazily (and caches the answer for the life of the
 * process); when it is found, every `app.*` call ends in `registerFunction(metadata, handler)`
 * and every `app.hook.*` call in `registerHook(name, callback)`. This file makes that `require`
 * resolve to an object that records those calls, so the local host can run the app's own
 * registrations.
 *
 * The shim is process-global (Node's module loader is). It must be installed before anything
 * calls `app.*` or `app.hook.*`; `local-host.ts` installs it as soon as it is imported.
 */
import Module from 'node:module';

export const FUNCTIONS_CORE_MODULE = '@azure/functions-core';

export interface FunctionMetadata {
  name: string;
  bindings: Record<string, Record<string, unknown>>;
  retryOptions?: unknown;
}

export type FunctionCallback = (...args: unknown[]) => unknown;

export interface RegisteredFunction {
  metadata: FunctionMetadata;
  handler: FunctionCallback;
}

export interface RegisteredHook {
  hookName: string;
  callback: (coreContext: Record<string, unknown>) => unknown;
  disposed: boolean;
}

export interface Registrations {
  functions: RegisteredFunction[];
  hooks: RegisteredHook[];
}

type SystemLog = (level: string, category: string, message: string) => void;

interface ShimState {
  /** Where registrations go right now (set while the host loads a module). */
  capture: Registrations | null;
  /** Registrations made while nothing was capturing (e.g. a module loaded before the host). */
  uncaptured: Registrations;
  programmingModel: unknown;
  systemLog: SystemLog | null;
  installed: boolean;
}

const STATE_KEY = Symbol.for('syncbridge.local-host.functions-core-shim');

function state(): ShimState {
  const g = globalThis as unknown as Record<symbol, ShimState | undefined>;
  let s = g[STATE_KEY];
  if (!s) {
    s = {
      capture: null,
      uncaptured: { functions: [], hooks: [] },
      programmingModel: undefined,
      systemLog: null,
      installed: false,
    };
    g[STATE_KEY] = s;
  }
  return s;
}

/** The object `require('@azure/functions-core')` returns. Stable for the life of the process. */
const coreApi = {
  get version(): string {
    return '3.10.1-syncbridge-local';
  },
  setProgrammingModel(model: unknown): void {
    state().programmingModel = model;
  },
  getProgrammingModel(): unknown {
    return state().programmingModel;
  },
  registerFunction(metadata: FunctionMetadata, handler: FunctionCallback): { dispose(): void } {
    const s = state();
    const target = s.capture ?? s.uncaptured;
    const entry: RegisteredFunction = { metadata, handler };
    target.functions.push(entry);
    return {
      dispose() {
        const i = target.functions.indexOf(entry);
        if (i >= 0) target.functions.splice(i, 1);
      },
    };
  },
  registerHook(hookName: string, callback: RegisteredHook['callback']): { dispose(): void } {
    const s = state();
    const entry: RegisteredHook = { hookName, callback, disposed: false };
    (s.capture ?? s.uncaptured).hooks.push(entry);
    return {
      dispose() {
        entry.disposed = true;
      },
    };
  },
  /** System log of the `@azure/functions` package (its presence also tells it the "host" is recent). */
  log(level: string, category: string, message: string): void {
    state().systemLog?.(level, category, message);
  },
};

/** Makes `require('@azure/functions-core')` return the shim in this process. Idempotent. */
export function installFunctionsCoreShim(): void {
  const s = state();
  if (s.installed) return;
  const loader = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
  const originalLoad = loader._load;
  loader._load = function (this: unknown, request: string, ...rest: unknown[]) {
    if (request === FUNCTIONS_CORE_MODULE) return coreApi;
    return originalLoad.call(this, request, ...rest);
  };
  s.installed = true;
}

/** The part of the `@azure/functions` programming model the worker (and the local host) calls. */
export interface ProgrammingModel {
  getInvocationModel(coreContext: unknown): {
    getArguments(): Promise<{ context: unknown; inputs: unknown[] }>;
    invokeFunction(context: unknown, inputs: unknown[], callback: FunctionCallback): Promise<unknown>;
    getResponse(context: unknown, result: unknown): Promise<RpcInvocationResponse>;
  };
}

/** The worker's answer to one invocation (`RpcInvocationResponse`, data parts only). */
export interface RpcInvocationResponse {
  outputData?: { name: string; data: unknown }[];
  returnValue?: unknown;
}

/** The programming model `@azure/functions` registered; throws if it never did. */
export function programmingModel(): ProgrammingModel {
  const model = state().programmingModel as ProgrammingModel | undefined;
  if (!model)
    throw new Error(
      '@azure/functions has not registered its programming model: the app must import @azure/functions before the host invokes it',
    );
  return model;
}

/** True once `@azure/functions` has handed the shim its programming model. */
export function hasProgrammingModel(): boolean {
  return state().programmingModel !== undefined;
}

/** Routes the `@azure/functions` package's own system log lines (null to stop). */
export function setSystemLog(log: SystemLog | null): void {
  state().systemLog = log;
}

/**
 * Runs `load` and returns what it registered. Registrations made outside any capture are
 * returned by `takeUncaptured()`.
 */
export async function captureRegistrations(load: () => Promise<void>): Promise<Registrations> {
  const s = state();
  if (s.capture) throw new Error('captureRegistrations is not re-entrant (is another LocalHost starting?)');
  const captured: Registrations = { functions: [], hooks: [] };
  s.capture = captured;
  try {
    await load();
  } finally {
    s.capture = null;
  }
  return captured;
}

/** Registrations made while nothing was capturing; clears them. */
export function takeUncaptured(): Registrations {
  const s = state();
  const taken = s.uncaptured;
  s.uncaptured = { functions: [], hooks: [] };
  return taken;
}
