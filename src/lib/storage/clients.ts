/**
 * Builds Azure Storage clients from the configured access: a connection string (Azurite,
 * keys) or managed identity through DefaultAzureCredential.
 */
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import type { StorageAccess } from '../config';

let credential: TokenCredential | undefined;
export function azureCredential(): TokenCredential {
  credential ??= new DefaultAzureCredential();
  return credential;
}

const isHttp = (cs: string) =>
  /DefaultEndpointsProtocol=http(;|$)/i.test(cs) || /Endpoint=http:\/\//i.test(cs);

export function tableClient(access: StorageAccess, tableName: string): TableClient {
  if (access.kind === 'connectionString')
    return TableClient.fromConnectionString(access.connectionString, tableName, {
      allowInsecureConnection: isHttp(access.connectionString),
    });
  return new TableClient(
    `https://${access.accountName}.table.core.windows.net`,
    tableName,
    azureCredential(),
  );
}

export function blobServiceClient(access: StorageAccess): BlobServiceClient {
  if (access.kind === 'connectionString')
    return BlobServiceClient.fromConnectionString(access.connectionString);
  return new BlobServiceClient(`https://${access.accountName}.blob.core.windows.net`, azureCredential());
}

export function queueServiceClient(access: StorageAccess): QueueServiceClient {
  if (access.kind === 'connectionString')
    return QueueServiceClient.fromConnectionString(access.connectionString);
  return new QueueServiceClient(`https://${access.accountName}.queue.core.windows.net`, azureCredential());
}
