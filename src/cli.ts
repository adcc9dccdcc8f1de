#!/usr/bin/env node
/**
 * syncbridge operator CLI. Reads the same settings as the app, from the environment or from a
 * local.settings.json-style file (`--settings FILE` or SYNCBRIDGE_SETTINGS, its "Values"); each
 * command needs only the settings it uses (src/cli/settings.ts). Against Azure it uses
 * DefaultAzureCredential when the settings name accounts instead of connection strings.
 */
import { parseArgs } from 'node:util';
import * as commands from './cli/commands';
import type { Io } from './cli/render';
import { cliEnv, loadCommandConfig } from './cli/settings';
import { createApp } from './lib/compose';
import { loadExternalSourceFlows } from './lib/config';
import { externalSourceCommand, jobsCommand } from './lib/flows/external-source/cli-commands';
import { registerWebhooksCommand } from './lib/flows/external-source/register-command';
import { AppError, errorText, httpErrorOf } from './lib/errors';
import type { Log } from './lib/ports';

const USAGE = `usage: syncbridge [--settings FILE] [--json] <command> [options]

  status [flow] [--watch [--interval S]]         health per flow: cursor, batch in flight (progress),
                                                 lag, quarantine, last success and error; exit 3 when
                                                 a flow is blocked or lagging; --watch: live progress
                                                 bars on a terminal until Ctrl-C (or --timeout S)
  cursor get [--flow NAME]                       the flow's cursor (lastSubmissionId) and where it is
  cursor set <value> --yes [--flow NAME]         compare-and-set the cursor between batches (holds the
        [--expect CURRENT] [--wait S] [--force]  planner lease; waits up to --wait, default 30 s, for no
                                                 batch in flight; --force skips it); prints the change
  quarantine list [--flow NAME]                  quarantined records with error and attempts
  quarantine show <id> [--flow NAME]             one entry, with its payload
  quarantine replay <id...>|--all [--flow NAME]  apply again through the idempotent path (a version
                                                 the target has is skipped), with progress and summary
  quarantine discard <id...>|--all [--flow NAME] drop entries (e.g. fixed at the source)
  backfill <flow> --from <lastSubmissionId> --yes  re-sync from an earlier point: cursor back, the
        [--wait S] [--force] [--no-wait]         app plans at once, progress until caught up;
        [--timeout SECONDS]
                                                 versions the target already has are skipped
  cursor break-lease [--flow NAME] [--force]     end a crashed holder's lease on the cursor file
                                                 (Azure Files); refuses a healthy holder's unless --force
  jobs list [--failed]                           webhook jobs (WISEflow sync requests, F&O events), outcome
  sources list <wiseflowFlowId>                  a WISEflow flow's external sources and their states
  sources add <wiseflowFlowId> <reference>       create an external source (letters, digits, - and _)
  sources sync <wiseflowFlowId> [--reference R]  run the WISEflow update routine now (all sources, or one)
  register-webhooks [--base-url URL] [--function-key KEY]
                                                 register the WISEflow webhook (idempotent); F&O steps

Options: --json prints the result as JSON (errors as {"error":{code,message}} on stderr);
--flow may be left out when the app has one flow; --help explains a command.
Settings: the environment, or --settings FILE / SYNCBRIDGE_SETTINGS=FILE (local.settings.json
layout). \`npm start\` prints the command that points the CLI at its Azurite.
Exit codes: 0 done, 1 failed, 2 usage, 3 status found a blocked or lagging flow.`;

const HELP: Record<string, string> = {
  status: `usage: syncbridge status [flow] [--json] [--watch [--interval SECONDS] [--timeout SECONDS]]
Everything /api/health shows, per flow, readable: cursor, the batch in flight with a progress bar,
a plan running and its age, lag (time since last caught up; cursor age), quarantine count, last
success, last error, and the problems found. Exit 3 when a flow is blocked or lagging.
--watch refreshes every --interval seconds (default 2): a live progress bar per flow on a terminal
(cli-progress), a line per flow elsewhere; until Ctrl-C or --timeout.`,
  cursor: `usage: syncbridge cursor get [--flow NAME] [--json]
       syncbridge cursor break-lease [--flow NAME] [--force]
       syncbridge cursor set <lastSubmissionId> --yes [--flow NAME] [--expect CURRENT] [--force]
set is a compare-and-set against the value read (or --expect): it changes nothing when the cursor
moved meanwhile. It runs between batches, holding the planner lease so that no plan starts from the
old cursor; it waits up to --wait seconds (default 30) for no batch in flight, and is refused after
that (--force skips the wait and the lease: the batch in flight then fails its own compare-and-set). Moving it back re-syncs (versions the target has are skipped); moving
it forward skips changes. It prints the change.
break-lease ends the lease on a file-share cursor that a crashed holder left (other writers then get
412 LeaseIdMissing); it refuses while a healthy holder is active unless --force. Always safe for the
cursor: a holder whose lease was broken cannot write any more, re-reads and starts over.`,
  jobs: `usage: syncbridge jobs list [--failed] [--json]
Accepted webhook events (WISEflow sync requests, F&O business events) and their outcome; --failed:
only the quarantined ones, with their reason.`,
  sources: `usage: syncbridge sources list <wiseflowFlowId>
       syncbridge sources add <wiseflowFlowId> <reference> [--description TEXT]
       syncbridge sources sync <wiseflowFlowId> [--reference REF]
A WISEflow flow's external sources; add validates the reference; sync runs the update routine by
hand (as a webhook would). Text output only.`,
  'register-webhooks': `usage: syncbridge register-webhooks [--base-url URL] [--function-key KEY]
Registers the external-source webhook in WISEflow (event FLOW_EXTERNAL_SOURCE): looks before it
creates, updates a registration whose URL or secret changed, changes nothing on a rerun. Prints
the F&O business-event endpoint and the steps to activate it. Needs only the WISEFLOW_* settings.`,
  quarantine: `usage: syncbridge quarantine list|show <id>|replay <id...>|--all|discard <id...>|--all [--flow NAME] [--json]
replay applies each entry again through the target's conditional write (a version it already has
is skipped), with progress and a summary; exit 1 when one failed. discard drops entries.`,
  backfill: `usage: syncbridge backfill <flow> --from <lastSubmissionId> --yes [--force] [--no-wait] [--timeout SECONDS]
Moves the cursor back to --from (compare-and-set between batches, as cursor set: --wait, --force), asks the running app to plan at once (a poll on the control queue) and follows until
the cursor is back where it was (default timeout 600 s). Safe: the target skips every version it
already has, so only missing or older records are written; the summary says how many.`,
};

/** What each command needs beyond storage (see cli/settings.ts). */
const NEEDS_TRANSPORT = new Set(['backfill', 'quarantine replay']);

export interface MainIo extends Io {
  env?: Record<string, string | undefined>;
}

const defaultIo: MainIo = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
  isTTY: Boolean(process.stderr.isTTY),
};

function stderrLog(io: Io): Log {
  const w = (level: string) => (m: string, p?: Record<string, unknown>) =>
    io.err(`${level} ${m}${p ? ` ${JSON.stringify(p)}` : ''}`);
  return { info: w('info'), warn: w('warn'), error: w('error') };
}

export async function main(argv: string[], io: MainIo = defaultIo): Promise<number> {
  let json = argv.includes('--json');
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        settings: { type: 'string' },
        flow: { type: 'string' },
        all: { type: 'boolean' },
        json: { type: 'boolean' },
        yes: { type: 'boolean' },
        force: { type: 'boolean' },
        expect: { type: 'string' },
        from: { type: 'string' },
        'no-wait': { type: 'boolean' },
        timeout: { type: 'string' },
        wait: { type: 'string' },
        watch: { type: 'boolean' },
        interval: { type: 'string' },
        failed: { type: 'boolean' },
        reference: { type: 'string' },
        description: { type: 'string' },
        'base-url': { type: 'string' },
        'function-key': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    json = values.json === true;
    const [command, sub, ...rest] = positionals;
    if (values.help || !command) {
      io.out(command && HELP[command] ? HELP[command] : USAGE);
      return values.help ? 0 : 2;
    }
    if (!HELP[command]) {
      io.err(`syncbridge: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 2;
    }
    if (command === 'register-webhooks') {
      // Runs from a deployer's machine: only the WISEflow settings are needed, not storage.
      await registerWebhooksCommand({
        flows: loadExternalSourceFlows(cliEnv(values.settings, io.env ?? process.env)),
        baseUrl: values['base-url'],
        functionKey: values['function-key'],
        env: cliEnv(values.settings, io.env ?? process.env),
        print: (line) => io.out(line),
      });
      return 0;
    }
    const key = ['quarantine', 'cursor', 'jobs', 'sources'].includes(command)
      ? `${command} ${sub ?? ''}`
      : command;
    const valid = [
      'status',
      'backfill',
      'cursor get',
      'cursor set',
      'quarantine list',
      'quarantine show',
      'quarantine replay',
      'quarantine discard',
      'cursor break-lease',
      'jobs list',
      'sources list',
      'sources add',
      'sources sync',
    ];
    if (!valid.includes(key)) {
      io.err(
        `syncbridge: ${command} needs one of: ${valid
          .filter((v) => v.startsWith(`${command} `))
          .map((v) => v.split(' ')[1])
          .join(', ')}\n\n${HELP[command]}`,
      );
      return 2;
    }
    const env = cliEnv(values.settings, io.env ?? process.env);
    const app = createApp(loadCommandConfig(env, { transport: NEEDS_TRANSPORT.has(key) }));
    const c: commands.Ctx = { app, io, json, log: stderrLog(io) };
    try {
      const seconds = (name: 'timeout' | 'wait' | 'interval', fallback: number) => {
        const v = values[name] === undefined ? fallback : Number(values[name]);
        if (!Number.isFinite(v) || v < 0)
          throw new AppError(
            'validation',
            `--${name} must be a number of seconds, got ${JSON.stringify(values[name])}`,
          );
        return v;
      };
      const timeout = seconds('timeout', 600);
      const wait = seconds('wait', 30);
      if (key === 'jobs list' && !json) return await jobsCommand(app, sub, { failed: values.failed });
      if (command === 'sources')
        return await externalSourceCommand(app, sub, rest, {
          reference: values.reference,
          description: values.description,
        });
      const result =
        key === 'jobs list'
          ? { data: await app.webhookStore.list({ state: values.failed ? 'failed' : undefined }), lines: [] }
          : key === 'cursor break-lease'
            ? await commands.breakCursorLease(c, values.flow, values.force === true)
            : key === 'status' && values.watch
              ? await commands.statusWatch(c, sub, {
                  intervalMs: seconds('interval', 2) * 1000,
                  untilSeconds: values.timeout === undefined ? 24 * 3600 : timeout,
                })
              : key === 'status'
                ? await commands.status(c, sub)
                : key === 'cursor get'
                  ? await commands.cursorGet(c, rest[0] ?? values.flow)
                  : key === 'cursor set'
                    ? await commands.cursorSet(c, {
                        flow: values.flow,
                        value: rest[0],
                        expect: values.expect,
                        yes: values.yes === true,
                        force: values.force === true,
                        waitSeconds: wait,
                      })
                    : key === 'quarantine list'
                      ? await commands.quarantineList(c, values.flow)
                      : key === 'quarantine show'
                        ? await commands.quarantineShow(c, values.flow, rest[0])
                        : key === 'backfill'
                          ? await commands.backfill(c, {
                              flow: sub,
                              from: values.from,
                              yes: values.yes === true,
                              force: values.force === true,
                              wait: values['no-wait'] !== true,
                              waitSeconds: wait,
                              timeoutSeconds: timeout,
                            })
                          : await commands.quarantineAct(
                              c,
                              sub as 'replay' | 'discard',
                              values.flow,
                              rest,
                              values.all === true,
                            );
      if (json) io.out(JSON.stringify(result.data, null, 2));
      else for (const l of result.lines) io.out(l);
      return result.code ?? 0;
    } finally {
      await app.close();
    }
  } catch (e) {
    const known =
      e instanceof AppError ||
      (e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS'));
    if (json) {
      const { body } = httpErrorOf(e instanceof AppError ? e : new AppError('validation', errorText(e)));
      io.err(JSON.stringify(body));
    } else io.err(`syncbridge: ${known ? (e as Error).message : errorText(e)}`);
    const usage = e instanceof TypeError && known;
    return usage ? 2 : 1;
  }
}

if (require.main === module) void main(process.argv.slice(2)).then((code) => process.exit(code));
