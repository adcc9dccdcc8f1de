// The syncbridge function app on the Flex Consumption plan (FC1, Linux), Node.js runtime, with a
// user-assigned managed identity for host storage, the cursor file share, Service Bus, Key Vault,
// Application Insights and the app's own SDK clients (DefaultAzureCredential picks the identity
// from AZURE_CLIENT_ID).
//
// The app settings are the app's configuration by the exact names of src/lib/config.ts, plus the
// platform settings listed in test/settings-consistency.test.ts, which checks both directions.
// Keep the `appsettings` block a flat object literal, one `NAME: value` per line. Flex Consumption
// rejects FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION and WEBSITE_* deployment
// settings: the runtime is set in functionAppConfig instead.

param name string
param location string
param tags object = {}

param planName string
param storageAccountName string
@description('Blob container (in the storage account) that the deployment package is uploaded to.')
param deploymentContainerName string

@description('Resource id of the user-assigned identity.')
param identityId string
@description('Client id of the user-assigned identity.')
param identityClientId string

param applicationInsightsName string
@description('Service Bus namespace host, e.g. sb-xyz.servicebus.windows.net.')
param serviceBusFullyQualifiedNamespace string
param recordsQueueName string
param controlQueueName string
@description('SYNC_JOBS_QUEUE: webhook jobs.')
param jobsQueueName string
param cursorShareName string
@description('Must equal the Service Bus queues maxDeliveryCount.')
param maxAttempts int

param flowfinityViewUrl string
param flowfinityOnBehalfOf string
param flowfinityUsername string
@description('https://<vault>.vault.azure.net/')
param keyVaultUri string
param flowfinityPasswordSecretName string

@description('WISEFLOW_BASE_URL; empty = no external-source flow. Its secrets are Key Vault secrets `wiseflow-client-secret` and `wiseflow-webhook-secret`.')
param wiseflowBaseUrl string = ''
param wiseflowClientId string = ''
param wiseflowRosterViewUrl string = ''
param wiseflowClientSecretName string = 'wiseflow-client-secret'
param wiseflowWebhookSecretName string = 'wiseflow-webhook-secret'

@description('PostgreSQL server host when the optional server was created (the postgres target); empty = the table target.')
param postgresHost string = ''
param postgresDatabase string = ''
@description('The PostgreSQL user the app logs in as with its Entra token: the identity name.')
param postgresUser string = ''

@allowed(['20', '22'])
param nodeVersion string = '22'
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with the user-assigned identity (there is no system identity).
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'node'
        version: nodeVersion
      }
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      // Platform: host storage and Service Bus trigger connections through the identity.
      AzureWebJobsStorage__accountName: storage.name
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      ServiceBusConnection__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace
      ServiceBusConnection__credential: 'managedidentity'
      ServiceBusConnection__clientId: identityClientId
      AZURE_CLIENT_ID: identityClientId
      // Application Insights with Entra auth only (local auth is off on the resource).
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      // Flowfinity view (source); the password is a Key Vault reference.
      FLOWFINITY_VIEW_URL: flowfinityViewUrl
      FLOWFINITY_ON_BEHALF_OF: flowfinityOnBehalfOf
      FLOWFINITY_USERNAME: flowfinityUsername
      FLOWFINITY_PASSWORD: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${flowfinityPasswordSecretName})'
      // Adapters and resources created by this template (the defaults, stated explicitly).
      TRANSPORT: 'servicebus'
      CURSOR_STORE: 'fileshare'
      CURSOR_SHARE_NAME: cursorShareName
      SYNC_RECORDS_QUEUE: recordsQueueName
      SYNC_CONTROL_QUEUE: controlQueueName
      SYNC_JOBS_QUEUE: jobsQueueName
      SYNC_MAX_ATTEMPTS: string(maxAttempts)
      // WISEflow external-source flow `wiseflow`, when WISEFLOW_BASE_URL is given (empty values are unset).
      Flows__wiseflow__Type: empty(wiseflowBaseUrl) ? '' : 'external-source'
      WISEFLOW_BASE_URL: wiseflowBaseUrl
      WISEFLOW_CLIENT_ID: wiseflowClientId
      WISEFLOW_CLIENT_SECRET: empty(wiseflowBaseUrl) ? '' : '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${wiseflowClientSecretName})'
      WISEFLOW_WEBHOOK_SECRET: empty(wiseflowBaseUrl) ? '' : '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${wiseflowWebhookSecretName})'
      WISEFLOW_ROSTER_VIEW_URL: wiseflowRosterViewUrl
      // Target: the optional PostgreSQL server (Entra ID, no password) when created, else Table storage.
      TARGET: empty(postgresHost) ? 'table' : 'postgres'
      TARGET_PG_HOST: postgresHost
      TARGET_PG_DATABASE: postgresDatabase
      TARGET_PG_USER: postgresUser
    }
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
output uri string = 'https://${functionApp.properties.defaultHostName}'
