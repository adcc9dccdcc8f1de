/** Log implementations for the logging port (ports.ts): silent, and the console. */
import type { Log } from './ports';

export type { Log };

export const silentLog: Log = { info() {}, warn() {}, error() {} };

export const consoleLog: Log = {
  info: (m, p) => console.log(m, p ?? ''),
  warn: (m, p) => console.warn(m, p ?? ''),
  error: (m, p) => console.error(m, p ?? ''),
};
