/** The logging port: the Functions context in production, a console or a collector elsewhere. */
export interface Log {
  info(message: string, props?: Record<string, unknown>): void;
  warn(message: string, props?: Record<string, unknown>): void;
  error(message: string, props?: Record<string, unknown>): void;
}

export const silentLog: Log = { info() {}, warn() {}, error() {} };

export const consoleLog: Log = {
  info: (m, p) => console.log(m, p ?? ''),
  warn: (m, p) => console.warn(m, p ?? ''),
  error: (m, p) => console.error(m, p ?? ''),
};

/** An error's message without its stack, for logs and stored state. */
export const errorText = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));
