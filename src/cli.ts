#!/usr/bin/env node
/**
 * syncbridge operator CLI. Reads the same settings as the app, from the environment or from a
 * local.settings.json-style file (`--settings FILE`, its "Values").
 *
 *   npm run cli -- status
 *   npm run cli -- quarantine list
 *   npm run cli -- quarantine replay <id...> | --all
 *   npm run cli -- quarantine discard <id...> | --all
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './lib/config';
import { errorText } from './lib/errors';
import { consoleLog } from './lib/log';
import { createServices } from './lib/services';
import { healthReport } from './lib/sync/health';
import { discardQuarantined, replayQuarantined } from './lib/sync/operations';

const USAGE = `usage: syncbridge [--settings FILE] <command>
  status                               cursor, batch in flight, quarantine count, last error
  quarantine list                      every quarantined record with its error and attempts
  quarantine replay <id...> | --all    apply again (skips versions the target already has)
  quarantine discard <id...> | --all   drop entries (e.g. malformed data fixed at the source)`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      settings: { type: 'string' },
      all: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  let env: NodeJS.ProcessEnv = process.env;
  if (values.settings) {
    const file = JSON.parse(readFileSync(values.settings, 'utf8')) as { Values?: Record<string, string> };
    env = { ...process.env, ...file.Values };
  }
  const services = createServices(loadConfig(env));
  const ctx = services.ctx;
  try {
    const [command, sub, ...ids] = positionals;
    if (command === 'status') {
      console.log(JSON.stringify(await healthReport(ctx), null, 2));
      return 0;
    }
    if (command === 'quarantine' && sub === 'list') {
      for (const e of await ctx.quarantine.list())
        console.log(
          `${e.id}\n  ${e.kind} record=${e.recordId ?? '?'} version=${e.version ?? '?'} attempts=${e.attempts} policy=${e.policy} at=${e.quarantinedAt}\n  error: ${e.error}`,
        );
      return 0;
    }
    if (command === 'quarantine' && (sub === 'replay' || sub === 'discard')) {
      const selection = values.all ? 'all' : ids;
      if (selection !== 'all' && selection.length === 0) {
        console.error(`quarantine ${sub} needs entry ids (see: quarantine list) or --all`);
        return 2;
      }
      const op = sub === 'replay' ? replayQuarantined : discardQuarantined;
      const report = await op(ctx, selection, consoleLog);
      console.log(JSON.stringify(report, null, 2));
      return report.failed.length ? 1 : 0;
    }
    console.error(USAGE);
    return 2;
  } finally {
    await services.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof ConfigError ? e.message : `syncbridge: ${errorText(e)}`);
      process.exit(1);
    },
  );
}
