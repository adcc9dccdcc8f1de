#!/usr/bin/env node
/**
 * syncbridge operator CLI. Reads the same settings as the app, from the environment or from a
 * local.settings.json-style file (`--settings FILE`, its "Values").
 *
 *   npm run cli -- status [flow]
 *   npm run cli -- quarantine list [--flow NAME]
 *   npm run cli -- quarantine replay <id...> | --all [--flow NAME]
 *   npm run cli -- quarantine discard <id...> | --all [--flow NAME]
 *   npm run cli -- cursor break-lease [--flow NAME] [--force]
 *   npm run cli -- jobs list [--failed]
 *   npm run cli -- sources list|add|sync <wiseflowFlowId> ...
 *   npm run cli -- register-webhooks [--base-url URL] [--function-key KEY]
 *
 * `--flow` may be left out when the app has one flow.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { discardQuarantined, replayQuarantined } from './lib/batch/operations';
import { createApp, type AppServices } from './lib/compose';
import { loadConfig, loadExternalSourceFlows } from './lib/config';
import { externalSourceCommand, jobsCommand } from './lib/flows/external-source/cli-commands';
import { registerWebhooksCommand } from './lib/flows/external-source/register-command';
import { AppError, errorText } from './lib/errors';
import { flowHealth } from './lib/batch/health';
import { businessEventHealth } from './lib/flows/business-event/health';
import { healthReport } from './lib/health';
import { consoleLog } from './lib/log';

const USAGE = `usage: syncbridge [--settings FILE] <command>
  status [flow]                                     per flow: cursor, batch in flight, quarantine, last error
  quarantine list [--flow NAME]                     every quarantined record with its error and attempts
  quarantine replay <id...> | --all [--flow NAME]   apply again (skips versions the target already has)
  quarantine discard <id...> | --all [--flow NAME]  drop entries (e.g. malformed data fixed at the source)
  cursor break-lease [--flow NAME] [--force]        end a crashed holder's lease on the cursor file (Azure Files);
                                                    refuses a healthy holder's unless --force
  jobs list [--failed]                              webhook jobs (WISEflow sync requests, F&O events) and their outcome
  sources list <wiseflowFlowId>                     a WISEflow flow's external sources and their states
  sources add <wiseflowFlowId> <reference>          create an external source (letters, digits, - and _)
  sources sync <wiseflowFlowId> [--reference REF]   run the update routine now (all sources, or one)
  register-webhooks [--base-url URL] [--function-key KEY]
                                                    register the WISEflow webhook (idempotent); F&O steps
--flow may be left out when the app has one flow.`;

function pickFlow(app: AppServices, name: string | undefined): string {
  // engine.flow knows every flow (view-sync and business-event) and names them when it fails.
  if (name) return app.engine.flow(name).name;
  if (app.engine.flows.length === 1) return app.engine.flows[0]!.name;
  throw new AppError(
    'validation',
    `this app has several flows (${app.flows.map((f) => f.name).join(', ')}); name one with --flow`,
  );
}

/** `cursor break-lease`: 0 when the lease was broken or there was none, 1 when refused. */
async function breakCursorLease(app: AppServices, o: { flow?: string; force?: boolean }): Promise<number> {
  const flow = app.flow(pickFlow(app, o.flow));
  if (!flow.cursor.breakLease) {
    console.error(
      `flow ${flow.name}'s cursor (${flow.cursor.describe()}) is not in an Azure file share: it has no lease to break`,
    );
    return 2;
  }
  const result = await flow.cursor.breakLease({ force: o.force === true });
  console.log(JSON.stringify({ flow: flow.name, cursor: flow.cursor.describe(), ...result }, null, 2));
  // Refused: a holder was seen (its stamp age is known) and its lease left alone.
  return !result.broken && result.holderStampAgeMs !== undefined ? 1 : 0;
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      settings: { type: 'string' },
      flow: { type: 'string' },
      all: { type: 'boolean' },
      force: { type: 'boolean' },
      failed: { type: 'boolean' },
      reference: { type: 'string' },
      description: { type: 'string' },
      'base-url': { type: 'string' },
      'function-key': { type: 'string' },
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
  if (positionals[0] === 'register-webhooks') {
    // Runs from a deployer's machine: only the WISEflow settings are needed, not storage.
    await registerWebhooksCommand({
      flows: loadExternalSourceFlows(env),
      baseUrl: values['base-url'],
      functionKey: values['function-key'],
      env,
      print: (line) => console.log(line),
    });
    return 0;
  }
  const app = createApp(loadConfig(env));
  try {
    const [command, sub, ...ids] = positionals;
    if (command === 'jobs') return await jobsCommand(app, sub, { failed: values.failed });
    if (command === 'sources')
      return await externalSourceCommand(app, sub, ids, {
        reference: values.reference,
        description: values.description,
      });
    if (command === 'status') {
      const be = sub ? app.businessEventFlows.find((f) => f.name === sub) : undefined;
      const report = be
        ? await businessEventHealth(app.engine, be)
        : sub
          ? await flowHealth(app.engine, app.flow(sub))
          : await healthReport(app);
      console.log(JSON.stringify(report, null, 2));
      return 0;
    }
    if (command === 'quarantine' && sub === 'list') {
      const flow = pickFlow(app, values.flow);
      for (const e of await app.engine.quarantine(flow).list())
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
      const flow = app.engine.flow(pickFlow(app, values.flow));
      const report =
        sub === 'replay'
          ? await replayQuarantined(app.engine, flow, selection, consoleLog)
          : await discardQuarantined(app.engine, flow, selection, consoleLog);
      console.log(JSON.stringify(report, null, 2));
      return report.failed.length ? 1 : 0;
    }
    if (command === 'cursor' && sub === 'break-lease') return await breakCursorLease(app, values);
    console.error(USAGE);
    return 2;
  } finally {
    await app.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof AppError ? e.message : `syncbridge: ${errorText(e)}`);
      process.exit(1);
    },
  );
}
