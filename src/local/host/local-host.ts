/**
 * A small stand-in for the Azure Functions host (Core Tools cannot be installed here). It loads
 * the app's own function modules, collects their `app.*` registrations through the
 * `@azure/functions-core` shim, and drives them with the host's semantics: timers (NCRONTAB),
 * storage-queue triggers (retry, dequeue count, poison queue), Service Bus queue triggers
 * (through `./servicebus-driver`) and HTTP routes on 127.0.0.1. Each invocation goes through
 * the programming model that `@azure/functions` registered with the shim, as in the worker: the
 * host-shaped RPC data (`./rpc`) becomes the handler's arguments with the package's own
 * conversion (`getInvocationModel(...).getArguments()`), and its result the RPC response.
 *
 * Limits worth knowing:
 * - One LocalHost per process at a time (the shim and process.env are process-global).
 * - A module is executed once per process (Node's and vitest's module caches): a second
 *   LocalHost in the same process reuses the registrations the first load recorded, so app
 *   code should read settings when it runs, not when its module loads.
 * - Function keys are not enforced (as with `func start`).
 *
 * FUNCTION TIMEOUT. As the real host does with host.json `functionTimeout` (or the
 * `functionTimeoutMs` option): an invocation still running at the timeout fails with
 * FunctionTimeoutError, and, because for an out-of-process language the host then restarts the
 * worker process ("A function timeout has occurred. Restarting worker process executing
 * invocationId ..."), every other invocation in flight at that moment fails too, with
 * WorkerRestartedError. Their triggers react as to any failure: a Service Bus message is
 * abandoned (redelivered with deliveryCount + 1), a storage-queue message is retried, a timer or
 * HTTP invocation fails. What is NOT modelled: there is no second process to kill, so the
 * abandoned handlers keep running in the background and their effects may still land (as the
 * writes a killed worker had already sent may land), and module state is not reset.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { HttpResponseInit, LogLevel } from '@azure/functions';
import { resolveBinding, resolveConnection, type SettingsLookup } from './binding-settings';
import type { QueueDriverOptions, TriggerDriver } from './driver';
import {
  captureRegistrations,
  hasProgrammingModel,
  programmingModel,
  type RpcInvocationResponse,
  installFunctionsCoreShim,
  setSystemLog,
  takeUncaptured,
  type FunctionCallback,
  type RegisteredHook,
  type Registrations,
} from './functions-core-shim';
import { readHostJson, type HostSettings } from './host-json';
import { compileRoute, sortRoutes, type CompiledRoute } from './http-routes';
import { startHttpServer, type HttpTarget, type LocalHttpServer } from './http-server';
import { createStorageQueueDriver } from './storage-queue-driver';
import {
  fromRpcHttpResponse,
  toRpcTriggerMetadata,
  toRpcTypedData,
  type RpcHttpRequest,
  type RpcHttpResponse,
  type RpcInvocation,
} from './rpc';
import { parseTimerSchedule, TimerDriver } from './timer-driver';

// Installed on import, so that `@azure/functions` finds the shim whenever it first looks.
installFunctionsCoreShim();

export type HostLogLevel = 'info' | 'warn' | 'error';

export interface LocalHostOptions {
  /** Function modules to load (absolute paths of .js or .ts files; in vitest .ts works). */
  modules: string[];
  /**
   * App settings: copied into process.env before loading modules (like local.settings.json
   * Values; restored on stop) and used to resolve %NAME% and `connection` names.
   */
  settings: Record<string, string>;
  /** Default: <repo>/host.json. */
  hostJsonPath?: string;
  /** Default 7071; 0 = a free port. */
  httpPort?: number;
  /** Default true; tests set false and call runTimer. */
  enableTimers?: boolean;
  /** Pause between empty queue polls. Default: host.json maxPollingInterval, at most 2000. */
  queuePollIntervalMs?: number;
  /** Override of host.json queues.visibilityTimeout (delay before a failed message's retry). */
  visibilityTimeoutMs?: number;
  /** Lease on a received storage-queue message while it runs (renewed). Default 5 minutes. */
  receiveVisibilityTimeoutMs?: number;
  /**
   * Override of host.json `functionTimeout` in ms (null = unbounded). An invocation running longer
   * fails and the "worker" restarts: see FUNCTION TIMEOUT above.
   */
  functionTimeoutMs?: number | null;
  log?: (level: HostLogLevel, line: string) => void;
}

export interface HostedFunctionInfo {
  name: string;
  triggerType: string;
  /** The trigger binding with %NAME% placeholders resolved. */
  binding: Record<string, unknown>;
}

interface HostedFunction extends HostedFunctionInfo {
  triggerBindingName: string;
  bindings: Record<string, Record<string, unknown>>;
  handler: FunctionCallback;
}

export interface WaitForIdleOptions {
  timeoutMs?: number;
  quietMs?: number;
}

/** An invocation ran longer than the function timeout (host.json `functionTimeout`). */
export class FunctionTimeoutError extends Error {
  constructor(functionName: string, invocationId: string, timeoutMs: number) {
    super(
      `Timeout value of ${formatTimeSpan(timeoutMs)} exceeded by function '${functionName}' (Id: '${invocationId}'). ` +
        'The worker process is restarted.',
    );
    this.name = 'FunctionTimeoutError';
  }
}

/** An invocation was in flight when another one timed out and the worker process was restarted. */
export class WorkerRestartedError extends Error {
  constructor(functionName: string, invocationId: string) {
    super(
      `The worker process running function '${functionName}' (Id: '${invocationId}') was restarted ` +
        'after another invocation timed out; this invocation failed with it.',
    );
    this.name = 'WorkerRestartedError';
  }
}

function formatTimeSpan(ms: number): string {
  const total = Math.floor(ms / 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  const frac = ms % 1000 ? `.${String(ms % 1000).padStart(3, '0')}` : '';
  return `${pad(Math.floor(total / 3600))}:${pad(Math.floor(total / 60) % 60)}:${pad(total % 60)}${frac}`;
}

const DEFAULT_HTTP_PORT = 7071;
const MAX_DEFAULT_POLL_MS = 2000;
const SUPPORTED_TRIGGERS = new Set(['timerTrigger', 'queueTrigger', 'serviceBusTrigger', 'httpTrigger']);

/** Registrations recorded per module file, for modules already in the module cache. */
const registrationsByModule = new Map<string, Registrations>();
let activeHost: LocalHost | undefined;

const defaultLog = (level: HostLogLevel, line: string) =>
  (level === 'error' ? console.error : level === 'warn' ? console.warn : console.log)(line);

function repoRoot(): string {
  // src/local/host (ts) or dist/src/local/host (js): walk up to the directory with package.json.
  let dir = __dirname;
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

const nodeRequire = createRequire(__filename);

/** Loads a module file: `import()` for TypeScript (vitest transforms it), `require` for JS. */
async function loadModuleFile(file: string): Promise<Record<string, unknown>> {
  if (/\.[cm]?tsx?$/.test(file)) return (await import(file)) as Record<string, unknown>;
  return nodeRequire(file) as Record<string, unknown>;
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function toHostLevel(level: LogLevel | string): HostLogLevel | undefined {
  switch (level) {
    case 'information':
      return 'info';
    case 'warning':
      return 'warn';
    case 'error':
    case 'critical':
      return 'error';
    default:
      return undefined; // trace, debug, none
  }
}

type ServiceBusDriverFactory = (
  o: QueueDriverOptions & {
    connectionString?: string;
    fullyQualifiedNamespace?: string;
    maxDeliveryCount?: number;
    maxAutoLockRenewalDurationMs?: number;
  },
) => TriggerDriver;

async function loadServiceBusDriverFactory(): Promise<ServiceBusDriverFactory> {
  const file = ['.js', '.ts']
    .map((ext) => path.join(__dirname, `servicebus-driver${ext}`))
    .find((f) => existsSync(f));
  if (!file)
    throw new Error(
      'a serviceBusTrigger is registered but src/local/host/servicebus-driver is missing; the local host cannot drive it',
    );
  const mod = await loadModuleFile(file);
  const factory = mod.createServiceBusDriver;
  if (typeof factory !== 'function') throw new Error(`${file} does not export createServiceBusDriver`);
  return factory as ServiceBusDriverFactory;
}

export class LocalHost {
  private readonly log: (level: HostLogLevel, line: string) => void;
  private readonly byName = new Map<string, HostedFunction>();
  private readonly timers = new Map<string, TimerDriver>();
  private readonly queueDrivers: TriggerDriver[] = [];
  private readonly startedDrivers: TriggerDriver[] = [];
  private readonly hooks: RegisteredHook[] = [];
  private readonly appHookData: Record<string, unknown> = {};
  private readonly previousEnv = new Map<string, string | undefined>();
  private server: LocalHttpServer | undefined;
  private inFlight = 0;
  /** Invocations in flight, by id: failing one settles it at once (timeout, worker restart). */
  private readonly running = new Map<string, (e: Error) => void>();
  private readonly invocationNames = new Map<string, string>();
  private restarts = 0;
  private stopped = false;
  private stopping: Promise<void> | undefined;
  private host!: HostSettings;
  private pollIntervalMs = MAX_DEFAULT_POLL_MS;
  private functionList: ReadonlyArray<HostedFunctionInfo> = [];
  private httpBaseUrl = '';

  /** The registered functions, with their trigger bindings' %NAME% placeholders resolved. */
  get functions(): ReadonlyArray<HostedFunctionInfo> {
    return this.functionList;
  }

  /** How many times an invocation timed out and the "worker process" was restarted. */
  get workerRestarts(): number {
    return this.restarts;
  }

  /** The function timeout in force (ms; undefined = unbounded). */
  get functionTimeoutMs(): number | undefined {
    if (this.o.functionTimeoutMs !== undefined) return this.o.functionTimeoutMs ?? undefined;
    return this.host.functionTimeoutMs;
  }

  /** e.g. http://127.0.0.1:7071 (empty when the app has no HTTP functions). */
  get httpUrl(): string {
    return this.httpBaseUrl;
  }

  private constructor(private readonly o: LocalHostOptions) {
    this.log = o.log ?? defaultLog;
  }

  static async start(o: LocalHostOptions): Promise<LocalHost> {
    if (activeHost) throw new Error('a LocalHost is already running in this process; stop it first');
    const host = new LocalHost(o);
    activeHost = host;
    try {
      await host.boot();
      return host;
    } catch (e) {
      await host.stop().catch(() => undefined);
      throw e;
    }
  }

  private readonly lookup: SettingsLookup = (name) => this.o.settings[name] ?? process.env[name];

  private async boot(): Promise<void> {
    installFunctionsCoreShim();
    setSystemLog((level, _category, message) => {
      const l = toHostLevel(level);
      if (l && l !== 'info') this.log(l, `[@azure/functions] ${message}`);
    });
    for (const [name, value] of Object.entries(this.o.settings)) {
      this.previousEnv.set(name, process.env[name]);
      process.env[name] = value;
    }
    this.host = readHostJson(this.o.hostJsonPath ?? path.join(repoRoot(), 'host.json'));
    this.pollIntervalMs =
      this.o.queuePollIntervalMs ?? Math.min(this.host.queues.maxPollingIntervalMs, MAX_DEFAULT_POLL_MS);

    const registrations = await this.loadModules();
    this.hooks.push(...registrations.hooks);
    for (const r of registrations.functions)
      this.addFunction(r.metadata.name, r.metadata.bindings, r.handler);
    this.functionList = [...this.byName.values()].map(({ name, triggerType, binding }) => ({
      name,
      triggerType,
      binding,
    }));

    await this.createDrivers();
    await this.runHooks('appStart', { hookData: this.appHookData, functionAppDirectory: repoRoot() });
    await this.startHttp();
    for (const d of this.queueDrivers) {
      await d.start();
      this.startedDrivers.push(d);
    }
    if (this.o.enableTimers ?? true) {
      for (const t of this.timers.values()) {
        await t.start();
        this.startedDrivers.push(t);
      }
    }
    this.log(
      'info',
      `local host started: ${this.functions.map((f) => `${f.name} (${f.triggerType})`).join(', ') || 'no functions'}` +
        (this.httpUrl ? `; HTTP on ${this.httpUrl}` : ''),
    );
  }

  private async loadModules(): Promise<Registrations> {
    const all: Registrations = { functions: [], hooks: [] };
    const before = takeUncaptured();
    if (before.functions.length > 0)
      this.log(
        'warn',
        `ignoring ${before.functions.length} function(s) registered outside the local host ` +
          `(${before.functions.map((f) => f.metadata.name).join(', ')}); list their modules in "modules"`,
      );
    for (const spec of this.o.modules) {
      const file = path.resolve(spec);
      let captured: Registrations;
      try {
        captured = await captureRegistrations(() => loadModuleFile(file).then(() => undefined));
      } catch (e) {
        throw new Error(`loading function module ${file} failed: ${errorText(e)}`, { cause: e });
      }
      if (captured.functions.length > 0 || captured.hooks.length > 0)
        registrationsByModule.set(file, captured);
      else captured = registrationsByModule.get(file) ?? captured;
      if (captured.functions.length === 0 && captured.hooks.length === 0)
        this.log('warn', `module ${file} registered no functions`);
      all.functions.push(...captured.functions);
      all.hooks.push(...captured.hooks);
    }
    if (this.o.modules.length > 0 && all.functions.length === 0 && !hasProgrammingModel())
      throw new Error(
        '@azure/functions did not register through the local host: it probably looked for ' +
          '@azure/functions-core before the shim was installed (import src/local/host before the app modules)',
      );
    return all;
  }

  private addFunction(
    name: string,
    rawBindings: Record<string, Record<string, unknown>>,
    handler: FunctionCallback,
  ) {
    if (this.byName.has(name)) throw new Error(`function "${name}" is registered twice`);
    const bindings: Record<string, Record<string, unknown>> = {};
    for (const [key, b] of Object.entries(rawBindings))
      bindings[key] = resolveBinding(b, this.lookup, `function ${name}, binding ${key}`);
    const trigger = Object.entries(bindings).find(
      ([, b]) => b.direction === 'in' && typeof b.type === 'string' && b.type.endsWith('Trigger'),
    );
    if (!trigger) throw new Error(`function "${name}" has no trigger binding`);
    const [triggerBindingName, binding] = trigger;
    const triggerType = String(binding.type);
    if (!SUPPORTED_TRIGGERS.has(triggerType))
      this.log(
        'warn',
        `function ${name}: ${triggerType} is not driven by the local host (invoke() still works)`,
      );
    this.byName.set(name, { name, triggerType, binding, triggerBindingName, bindings, handler });
  }

  private settingNames = () => [...new Set([...Object.keys(this.o.settings), ...Object.keys(process.env)])];

  private async createDrivers(): Promise<void> {
    let serviceBusFactory: ServiceBusDriverFactory | undefined;
    for (const fn of this.byName.values()) {
      const invoke = (rpc: RpcInvocation) => this.invokeTracked(fn, rpc);
      const driverLog = (line: string) => this.log('warn', `[${fn.name}] ${line}`);
      if (fn.triggerType === 'timerTrigger') {
        const schedule = fn.binding.schedule;
        if (typeof schedule !== 'string')
          throw new Error(`function ${fn.name}: timer trigger has no schedule`);
        const parsed = (() => {
          try {
            return parseTimerSchedule(schedule, this.lookup('WEBSITE_TIME_ZONE') || 'UTC');
          } catch (e) {
            throw new Error(`function ${fn.name}: ${errorText(e)}`);
          }
        })();
        this.timers.set(
          fn.name,
          new TimerDriver({
            functionName: fn.name,
            schedule: parsed,
            runOnStartup: fn.binding.runOnStartup === true,
            invoke,
            log: this.log,
          }),
        );
      } else if (fn.triggerType === 'queueTrigger') {
        const conn = resolveConnection(
          fn.binding.connection,
          'AzureWebJobsStorage',
          this.lookup,
          this.settingNames,
        );
        if (!conn.connectionString)
          throw new Error(
            `function ${fn.name}: setting "${conn.settingName}" (the queue trigger's connection) must hold a ` +
              'storage connection string in the local host',
          );
        const q = this.host.queues;
        this.queueDrivers.push(
          createStorageQueueDriver({
            queueName: this.queueName(fn),
            invoke,
            maxConcurrency: q.batchSize,
            newBatchThreshold: q.newBatchThreshold,
            pollIntervalMs: this.pollIntervalMs,
            connectionString: conn.connectionString,
            maxDequeueCount: q.maxDequeueCount,
            visibilityTimeoutMs: this.o.visibilityTimeoutMs ?? q.visibilityTimeoutMs,
            receiveVisibilityTimeoutMs: this.o.receiveVisibilityTimeoutMs,
            messageEncoding: q.messageEncoding,
            log: driverLog,
          }),
        );
      } else if (fn.triggerType === 'serviceBusTrigger') {
        const conn = resolveConnection(
          fn.binding.connection,
          'AzureWebJobsServiceBus',
          this.lookup,
          this.settingNames,
        );
        const fullyQualifiedNamespace = conn.identityProperties.fullyQualifiedNamespace;
        if (!conn.connectionString && !fullyQualifiedNamespace)
          throw new Error(
            `function ${fn.name}: set "${conn.settingName}" (a Service Bus connection string) or ` +
              `"${conn.settingName}__fullyQualifiedNamespace"`,
          );
        serviceBusFactory ??= await loadServiceBusDriverFactory();
        this.queueDrivers.push(
          serviceBusFactory({
            queueName: this.queueName(fn),
            invoke,
            maxConcurrency: this.host.serviceBus.maxConcurrentCalls,
            pollIntervalMs: this.pollIntervalMs,
            connectionString: conn.connectionString,
            fullyQualifiedNamespace: conn.connectionString ? undefined : fullyQualifiedNamespace,
            maxAutoLockRenewalDurationMs: this.host.serviceBus.maxAutoLockRenewalDurationMs,
            log: driverLog,
          }),
        );
      }
    }
  }

  private queueName(fn: HostedFunction): string {
    const name = fn.binding.queueName;
    if (typeof name !== 'string' || name === '')
      throw new Error(`function ${fn.name}: the trigger has no queueName`);
    return name;
  }

  private async startHttp(): Promise<void> {
    const routes: CompiledRoute<HttpTarget>[] = [];
    for (const fn of this.byName.values()) {
      if (fn.triggerType !== 'httpTrigger') continue;
      const template =
        typeof fn.binding.route === 'string' && fn.binding.route !== '' ? fn.binding.route : fn.name;
      const methods = Array.isArray(fn.binding.methods) ? fn.binding.methods.map(String) : null;
      routes.push(compileRoute(template, methods, { functionName: fn.name }));
    }
    if (routes.length === 0) return;
    this.server = await startHttpServer({
      port: this.o.httpPort ?? DEFAULT_HTTP_PORT,
      routePrefix: this.host.http.routePrefix,
      routes: sortRoutes(routes),
      invoke: (name, request) => this.invokeHttp(name, request),
      log: this.log,
    });
    this.httpBaseUrl = this.server.url;
  }

  private async invokeHttp(name: string, request: RpcHttpRequest): Promise<HttpResponseInit> {
    const fn = this.get(name);
    const { response } = await this.runInvocation(fn, { input: { http: request }, triggerMetadata: {} });
    // The worker answers an HTTP trigger with `RpcHttp` in its http output binding ($return or named).
    const out = Object.entries(fn.bindings).find(([, b]) => b.direction === 'out' && b.type === 'http');
    const data =
      !out || out[0] === '$return'
        ? response.returnValue
        : response.outputData?.find((o) => o.name === out[0])?.data;
    return fromRpcHttpResponse((data as { http?: RpcHttpResponse } | undefined)?.http);
  }

  private get(name: string): HostedFunction {
    const fn = this.byName.get(name);
    if (!fn) throw new Error(`no function named "${name}" (known: ${[...this.byName.keys()].join(', ')})`);
    return fn;
  }

  private activeHooks(name: string): RegisteredHook[] {
    return this.hooks.filter((h) => h.hookName === name && !h.disposed);
  }

  private async runHooks(name: string, coreContext: Record<string, unknown>): Promise<void> {
    for (const h of this.activeHooks(name)) await h.callback(coreContext);
  }

  private async invokeTracked(fn: HostedFunction, rpc: RpcInvocation): Promise<unknown> {
    return (await this.runInvocation(fn, rpc)).result;
  }

  /**
   * One invocation as the worker runs it: the app's own programming model (captured by the
   * shim) turns the host's RPC data into the handler's arguments and its result into the RPC
   * response; pre/post invocation hooks run around the call; host-style logs.
   */
  private async runInvocation(
    fn: HostedFunction,
    rpc: RpcInvocation,
  ): Promise<{ result: unknown; response: RpcInvocationResponse }> {
    const invocationId = randomUUID();
    const prefix = `[${fn.name}]`;
    const model = programmingModel();
    const coreContext = {
      invocationId,
      state: undefined as string | undefined,
      metadata: { name: fn.name, bindings: fn.bindings },
      request: {
        invocationId,
        inputData: [{ name: fn.triggerBindingName, data: rpc.input }],
        triggerMetadata: rpc.triggerMetadata,
      },
      log: (level: string, category: string, message: string) => {
        const l = toHostLevel(level);
        if (l)
          this.log(
            l,
            category === 'system' ? `${prefix} [@azure/functions] ${message}` : `${prefix} ${message}`,
          );
      },
    };
    const invocation = model.getInvocationModel(coreContext);
    this.inFlight++;
    const started = Date.now();
    this.log('info', `${prefix} executing (id ${invocationId})`);
    // Settled by the invocation itself, or first by a timeout / worker restart.
    let fail!: (e: Error) => void;
    const aborted = new Promise<never>((_, reject) => (fail = reject));
    aborted.catch(() => undefined); // only ever awaited through the race below
    this.running.set(invocationId, fail);
    this.invocationNames.set(invocationId, fn.name);
    const timeoutMs = this.functionTimeoutMs;
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => this.onTimeout(fn.name, invocationId, timeoutMs), timeoutMs);
    const run = async () => {
      const { context, inputs } = await invocation.getArguments();
      const hookData: Record<string, unknown> = {};
      const pre = {
        invocationContext: context,
        inputs,
        functionCallback: fn.handler, // a preInvocation hook may replace it (PreInvocationContext.functionHandler)
        hookData,
        appHookData: this.appHookData,
      };
      coreContext.state = 'preInvocationHooks';
      await this.runHooks('preInvocation', pre);
      coreContext.state = 'invocation';
      let result: unknown;
      let error: unknown;
      try {
        result = await invocation.invokeFunction(context, pre.inputs, pre.functionCallback);
      } catch (e) {
        error = e ?? new Error('the function threw a nullish value');
      }
      const post = {
        invocationContext: context,
        inputs: pre.inputs,
        result,
        error,
        hookData,
        appHookData: this.appHookData,
      };
      coreContext.state = 'postInvocationHooks';
      await this.runHooks('postInvocation', post);
      if (post.error !== undefined && post.error !== null) throw post.error;
      return { result: post.result, response: await invocation.getResponse(context, post.result) };
    };
    const work = run();
    work.catch(() => undefined); // after a timeout nobody awaits it any more
    try {
      const outcome = await Promise.race([work, aborted]);
      this.log('info', `${prefix} succeeded (id ${invocationId}, ${Date.now() - started} ms)`);
      return outcome;
    } catch (e) {
      this.log('error', `${prefix} failed (id ${invocationId}, ${Date.now() - started} ms): ${errorText(e)}`);
      throw e;
    } finally {
      if (timer) clearTimeout(timer);
      this.running.delete(invocationId);
      this.invocationNames.delete(invocationId);
      this.inFlight--;
    }
  }

  /**
   * An invocation exceeded the function timeout: it fails, and the worker process is restarted,
   * which fails every other invocation in flight on it (one worker process per host here).
   */
  private onTimeout(functionName: string, invocationId: string, timeoutMs: number): void {
    const fail = this.running.get(invocationId);
    if (!fail) return;
    this.restarts++;
    const timeout = new FunctionTimeoutError(functionName, invocationId, timeoutMs);
    this.log('error', `[${functionName}] ${timeout.message}`);
    this.log(
      'error',
      `A function timeout has occurred. Restarting worker process executing invocationId '${invocationId}'` +
        (this.running.size > 1
          ? `; ${this.running.size - 1} other invocation(s) in flight fail with it.`
          : '.'),
    );
    const others = [...this.running.entries()].filter(([id]) => id !== invocationId);
    fail(timeout);
    for (const [id, failOther] of others) {
      const name = this.invocationNames.get(id) ?? 'unknown';
      failOther(new WorkerRestartedError(name, id));
    }
  }

  /** Fires a timer now (isPastDue false), after any run in progress; rejects if the handler throws. */
  async runTimer(functionName: string): Promise<void> {
    const timer = this.timers.get(functionName);
    if (!timer) throw new Error(`"${functionName}" is not a timer-triggered function`);
    await timer.runNow();
  }

  /** Calls a function directly with a real InvocationContext; resolves to what it returned. */
  async invoke(
    functionName: string,
    input: unknown,
    triggerMetadata: Record<string, unknown> = {},
  ): Promise<unknown> {
    // As the host would send them: the value serialized, the metadata keys as given (the worker
    // camel-cases them and parses string values that are JSON).
    return this.invokeTracked(this.get(functionName), {
      input: toRpcTypedData(input),
      triggerMetadata: toRpcTriggerMetadata(triggerMetadata),
    });
  }

  /**
   * Resolves when every queue driver has been idle (nothing in flight, queue empty) and no
   * invocation has been running for `quietMs` consecutively; rejects after `timeoutMs`.
   */
  async waitForIdle(o: WaitForIdleOptions = {}): Promise<void> {
    const timeoutMs = o.timeoutMs ?? 30_000;
    const quietMs = o.quietMs ?? Math.max(200, this.pollIntervalMs * 2 + 100);
    const deadline = Date.now() + timeoutMs;
    let quietSince: number | undefined;
    for (;;) {
      const now = Date.now();
      // Quiet = nothing running and every queue empty since quietSince; each queue must also have
      // been looked at (and found empty) after that, or a message sent by the last invocation
      // could be missed when the machine is too busy to poll within quietMs.
      const busy = this.queueDrivers.filter((d) => !d.isIdle()).map((d) => d.description);
      if (this.inFlight > 0) busy.push(`${this.inFlight} invocation(s) running`);
      if (busy.length > 0) quietSince = undefined;
      else {
        quietSince ??= now;
        if (now - quietSince >= quietMs && this.queueDrivers.every((d) => d.isIdle(quietSince))) return;
      }
      if (now >= deadline)
        throw new Error(`the local host was not idle within ${timeoutMs} ms: ${busy.join('; ')}`);
      await new Promise((r) => setTimeout(r, Math.min(25, quietMs)));
    }
  }

  /** Stops timers and drivers (waiting for invocations in flight), the HTTP server, then appTerminate hooks. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    if (this.stopped) return;
    const errors: unknown[] = [];
    const attempt = async (what: string, f: () => Promise<void>) => {
      try {
        await f();
      } catch (e) {
        errors.push(e);
        this.log('error', `stopping ${what} failed: ${errorText(e)}`);
      }
    };
    await Promise.all(this.startedDrivers.map((d) => attempt(d.description, () => d.stop())));
    await Promise.all([...this.timers.values()].map((t) => attempt(t.description, () => t.stop())));
    if (this.server) await attempt('the HTTP server', () => this.server!.close());
    await attempt('appTerminate hooks', () => this.runHooks('appTerminate', { hookData: this.appHookData }));
    for (const [name, value] of this.previousEnv) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    setSystemLog(null);
    this.stopped = true;
    if (activeHost === this) activeHost = undefined;
    if (errors.length > 0) this.log('warn', `local host stopped with ${errors.length} error(s)`);
    else this.log('info', 'local host stopped');
  }
}
