/**
 * The F&O data-management package API (OData actions on DataManagementDefinitionGroups):
 *
 *   POST {base}/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.<Action>
 *   ExportToPackage            {definitionGroupId, packageName, executionId, reExecute, legalEntityId} → execution id
 *   GetExecutionSummaryStatus  {executionId} → Unknown | NotRun | Executing | Succeeded | PartiallySucceeded | Failed | Canceled
 *   GetExportedPackageUrl      {executionId} → a blob SAS URL (secret: never log it)
 *
 * Answers are `{"value": ...}`; `value` may also be `{"value": string}`, both are read.
 * The business-event flow calls `getExportedPackageUrl` for a fresh URL when an event's
 * DownloadURL has expired (DownloadUrlExpiredError).
 */
import { z } from 'zod';
import { PermanentError, ValidationError } from '../errors';
import type { FinOpsApiClient } from './api-client';

export const EXECUTION_STATUSES = [
  'Unknown',
  'NotRun',
  'Executing',
  'Succeeded',
  'PartiallySucceeded',
  'Failed',
  'Canceled',
] as const;
export type ExecutionStatus = (typeof EXECUTION_STATUSES)[number];

const valueSchema = z.object({
  value: z.union([z.string(), z.object({ value: z.string() }).transform((v) => v.value)]),
});

const ACTIONS = '/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.';

export interface ExportToPackageRequest {
  definitionGroupId: string;
  packageName: string;
  /** Give one to make a retry safe (the same execution); without it the call is made once. */
  executionId?: string;
  reExecute?: boolean;
  legalEntityId: string;
}

export class PackageApiClient {
  constructor(private readonly api: FinOpsApiClient) {}

  async exportToPackage(r: ExportToPackageRequest, signal?: AbortSignal): Promise<string> {
    const body = JSON.stringify({
      definitionGroupId: r.definitionGroupId,
      packageName: r.packageName,
      executionId: r.executionId ?? '',
      reExecute: r.reExecute ?? false,
      legalEntityId: r.legalEntityId,
    });
    const id = await this.action('ExportToPackage', body, { retry: r.executionId !== undefined, signal });
    if (id === '')
      throw new PermanentError('ExportToPackage answered no execution id', { code: 'api_protocol' });
    return id;
  }

  async getExecutionSummaryStatus(executionId: string, signal?: AbortSignal): Promise<ExecutionStatus> {
    const v = await this.action('GetExecutionSummaryStatus', JSON.stringify({ executionId }), { signal });
    const status = EXECUTION_STATUSES.find((s) => s.toLowerCase() === v.trim().toLowerCase());
    if (!status)
      throw new ValidationError(
        `GetExecutionSummaryStatus answered an unknown status ${JSON.stringify(v.slice(0, 40))}`,
        {
          code: 'api_protocol',
        },
      );
    return status;
  }

  /** A fresh download URL of an execution's package. Secret: never log it. */
  async getExportedPackageUrl(executionId: string, signal?: AbortSignal): Promise<string> {
    const url = await this.action('GetExportedPackageUrl', JSON.stringify({ executionId }), { signal });
    if (url.trim() === '')
      throw new PermanentError(
        `GetExportedPackageUrl has no URL for execution ${executionId} (not finished, failed or unknown)`,
        {
          code: 'package_url_unavailable',
        },
      );
    return url.trim();
  }

  private async action(
    name: string,
    body: string,
    o: { retry?: boolean; signal?: AbortSignal },
  ): Promise<string> {
    const res = await this.api.call('POST', `${ACTIONS}${name}`, body, name, o);
    let parsed: unknown;
    try {
      parsed = JSON.parse(res.text);
    } catch {
      throw new ValidationError(`${name} answered a body that is not JSON`, { code: 'api_protocol' });
    }
    const v = valueSchema.safeParse(parsed);
    if (!v.success)
      throw new ValidationError(`${name} answered without a string "value"`, { code: 'api_protocol' });
    return v.data.value;
  }
}
