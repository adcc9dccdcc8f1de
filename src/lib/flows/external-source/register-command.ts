/**
 * `syncbridge register-webhooks`: the deploy-time step (azd `postdeploy` hook) and the same
 * locally against the simulators.
 *
 * - The webhook URL: `<base>/api/webhooks/external-source?code=<function key>`. The base is
 *   `--base-url`, else azd's `SERVICE_API_URI` output. A loopback base (the local host, which
 *   checks no keys) needs no key; otherwise the key is `--function-key`, else the app's default
 *   function key read through Azure Resource Manager with the caller's identity
 *   (DefaultAzureCredential; azd's AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and
 *   AZURE_FUNCTION_APP_NAME name the app). The key is never printed.
 * - WISEflow: registers FLOW_EXTERNAL_SOURCE idempotently (register-webhooks.ts).
 * - F&O: its business-event endpoints are configured inside F&O, so the command prints the URL
 *   and the steps instead.
 */
import { azureCredential } from '../../storage/clients';
import { ConfigError } from '../../errors';
import type { ExternalSourceFlowConfig } from '../../config/external-source-flows';
import { WiseflowClient } from '../../wiseflow/client';
import {
  redactedUrl,
  registerExternalSourceWebhook,
  webhookUrl,
  type RegisterWebhookResult,
} from '../../wiseflow/register-webhooks';

export interface RegisterCommandInput {
  flows: ExternalSourceFlowConfig[];
  baseUrl?: string;
  functionKey?: string;
  env: NodeJS.ProcessEnv;
  print: (line: string) => void;
  fetchImpl?: typeof fetch;
}

const isLoopback = (base: string) => ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(base).hostname);

export async function registerWebhooksCommand(
  i: RegisterCommandInput,
): Promise<RegisterWebhookResult | undefined> {
  const base = i.baseUrl ?? i.env.SERVICE_API_URI;
  if (!base)
    throw new ConfigError([
      'register-webhooks needs the app URL: pass --base-url https://<app>.azurewebsites.net (azd sets SERVICE_API_URI)',
    ]);
  let parsedBase: URL;
  try {
    parsedBase = new URL(base);
  } catch {
    throw new ConfigError([`--base-url ${JSON.stringify(base.slice(0, 100))} is not a URL`]);
  }
  const local = isLoopback(base);
  let result: RegisterWebhookResult | undefined;
  const flow = i.flows[0];
  if (!flow) {
    i.print(
      'WISEflow: no external-source flow is configured (Flows__<name>__Type=external-source): nothing to register.',
    );
  } else {
    // Read only when there is something to register: the F&O part needs no key.
    const key = local ? undefined : (i.functionKey ?? (await defaultFunctionKey(i.env, i.fetchImpl)));
    const url = webhookUrl(parsedBase.toString(), flow.webhook.route, key);
    const client = new WiseflowClient({
      baseUrl: flow.wiseflow.baseUrl,
      auth: flow.wiseflow.auth,
      fetchImpl: i.fetchImpl,
    });
    result = await registerExternalSourceWebhook({
      client,
      url,
      secret: flow.webhook.secrets[0]!,
      title: flow.webhook.title,
    });
    i.print(
      `WISEflow: FLOW_EXTERNAL_SOURCE webhook ${result.action} (id ${result.webhookId}) → ${redactedUrl(url)}` +
        (result.deleted.length ? `; removed old registration(s) ${result.deleted.join(', ')}` : ''),
    );
  }

  const fo = webhookUrl(parsedBase.toString(), 'business-event', local ? undefined : 'KEY');
  i.print('');
  i.print('F&O business events (configured inside F&O, not by this command):');
  i.print(`  endpoint URL: ${redactedUrl(fo)}`);
  if (!local)
    i.print(
      '  function key: az functionapp keys list -g <resource group> -n <app> --query functionKeys.default -o tsv',
    );
  i.print(
    '  1. System administration > Setup > Business events > Endpoints: New, type HTTPS, paste the URL.',
  );
  i.print(
    '  2. Business event catalog: select the events, Activate, choose the endpoint and the legal entity.',
  );
  i.print('  3. F&O sends a test event on activation; syncbridge answers it 202 and ignores it.');
  return result;
}

/** The app's default function key, through ARM with the caller's identity. */
async function defaultFunctionKey(env: NodeJS.ProcessEnv, fetchImpl: typeof fetch = fetch): Promise<string> {
  const sub = env.AZURE_SUBSCRIPTION_ID;
  const rg = env.AZURE_RESOURCE_GROUP;
  const app = env.AZURE_FUNCTION_APP_NAME;
  if (!sub || !rg || !app)
    throw new ConfigError([
      'register-webhooks needs the function key of a deployed app: pass --function-key, or run it where AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZURE_FUNCTION_APP_NAME are set (azd sets them) so the key is read with your identity',
    ]);
  const token = await azureCredential().getToken('https://management.azure.com/.default');
  if (!token)
    throw new ConfigError(['could not get an Azure Resource Manager token: run az login / azd auth login']);
  const url = `https://management.azure.com/subscriptions/${encodeURIComponent(sub)}/resourceGroups/${encodeURIComponent(rg)}/providers/Microsoft.Web/sites/${encodeURIComponent(app)}/host/default/listkeys?api-version=2024-04-01`;
  const res = await fetchImpl(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token.token}` },
    signal: AbortSignal.timeout(30_000),
  });
  if (!res.ok)
    throw new ConfigError([
      `reading the function keys of ${app} failed with HTTP ${res.status}: your identity needs a role that allows Microsoft.Web/sites/host/listkeys (e.g. Website Contributor), or pass --function-key`,
    ]);
  const body = (await res.json()) as { functionKeys?: Record<string, string> };
  const key = body.functionKeys?.default;
  if (!key) throw new ConfigError([`the function app ${app} has no default function key`]);
  return key;
}
