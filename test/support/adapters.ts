/**
 * The two adapter sets every pipeline suite runs over: Azurite's (storage queues, blob cursor)
 * and Azure's (Service Bus, Azure Files cursor) over the protocol-level test servers.
 */
import { startAzureFilesServer } from './azure-files-server';
import type { AzureTestServers } from './pipeline';
import { startServiceBusServer } from './servicebus-server';

export interface AdapterSet {
  name: string;
  start(): Promise<AzureTestServers | undefined>;
  stop(servers: AzureTestServers | undefined): Promise<void>;
}

export const adapterSets: AdapterSet[] = [
  { name: 'storagequeue + blob (Azurite)', start: async () => undefined, stop: async () => {} },
  {
    name: 'servicebus + fileshare (AMQP and Files test servers)',
    start: async () => ({ serviceBus: await startServiceBusServer(), files: await startAzureFilesServer() }),
    stop: async (s) => {
      await s?.serviceBus.stop();
      await s?.files.stop();
    },
  },
];
