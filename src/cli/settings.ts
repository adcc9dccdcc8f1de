/**
 * The operator CLI's configuration: the app's own settings (environment, or a
 * local.settings.json-style file's "Values" via --settings / SYNCBRIDGE_SETTINGS), validated by
 * the same loadConfig, but each command asks only for what it uses. No CLI command talks to a
 * Flowfinity view (backfill asks the running app to plan), so view credentials are never
 * required; a command that sends no message does not need the Service Bus connection either.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfig, type Config } from '../lib/config';

type Env = Record<string, string | undefined>;

/** Values that stand in for settings a command never uses; never sent anywhere. */
const UNUSED = 'unused-by-this-cli-command';

export function readSettingsFile(file: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `cannot read the settings file ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)}); npm start prints the path of its own`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError(
      `the settings file ${file} is not JSON; expected {"Values": {"NAME": "value", ...}}`,
    );
  }
  const values = (parsed as { Values?: unknown } | null)?.Values;
  if (!values || typeof values !== 'object')
    throw new ConfigError(`the settings file ${file} has no "Values" object (local.settings.json layout)`);
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, String(v)]));
}

/** The environment the CLI reads: the process's, overridden by the settings file's values. */
export function cliEnv(file: string | undefined, env: Env = process.env): Env {
  const path = file ?? env.SYNCBRIDGE_SETTINGS;
  return path ? { ...env, ...readSettingsFile(path) } : env;
}

export interface CommandNeeds {
  /** The command sends messages (a poll, a drain signal): the transport's settings are required. */
  transport: boolean;
}

/**
 * loadConfig for one command: settings the command never uses get stand-ins when missing, so
 * `quarantine list` does not ask for FLOWFINITY_PASSWORD. A problem with a setting it does use
 * is reported as loadConfig words it.
 */
export function loadCommandConfig(env: Env, needs: CommandNeeds): Config {
  const present = (n: string) => env[n] !== undefined && env[n] !== '';
  const fill: Env = {};
  for (const n of ['FLOWFINITY_ON_BEHALF_OF', 'FLOWFINITY_USERNAME', 'FLOWFINITY_PASSWORD'])
    if (!present(n)) fill[n] = UNUSED;
  const hasFlows = Object.keys(env).some((k) => /^Flows__/i.test(k));
  // The flow named by SYNC_VIEW_NAME exists when its URL is set or no Flows__ settings exist.
  if (!present('FLOWFINITY_VIEW_URL') && !hasFlows) fill.FLOWFINITY_VIEW_URL = 'https://unused.invalid/view';
  // A command that sends nothing never opens the transport: any valid one will do.
  if (!needs.transport) fill.TRANSPORT = 'storagequeue';
  return loadConfig({ ...env, ...fill });
}
