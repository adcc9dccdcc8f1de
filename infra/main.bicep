// syncbridge infrastructure for the Azure Developer CLI (`azd up` / `azd provision`).
//
// Layout of the azd Functions quickstarts (functions-quickstart-typescript-azd and its Service Bus
// and OpenTelemetry variants): subscription scope, one resource group, resourceToken-based names,
// the `azd-service-name: api` tag on the function app, one module per concern under app/, and
// every role assignment in one place (app/rbac.bicep). The modules declare plain resources instead
// of registry (AVM) modules so that the offline check in test/infra.test.ts can read every
// property this deployment sets.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to derive a short unique hash for resource names.')
param environmentName string

@minLength(1)
@description('Primary location for all resources (must offer the Flex Consumption plan).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('FLOWFINITY_VIEW_URL: the sync view REST URL from the view Details page.')
param flowfinityViewUrl string

@description('FLOWFINITY_ON_BEHALF_OF: account name passed as `onbehalfof`.')
param flowfinityOnBehalfOf string

@description('FLOWFINITY_USERNAME: the Integration user for HTTP Basic auth.')
param flowfinityUsername string

@secure()
@description('FLOWFINITY_PASSWORD: the Integration user password (`azd env set-secret FLOWFINITY_PASSWORD`); stored in Key Vault, referenced by the app.')
param flowfinityPassword string

@allowed(['20', '22'])
@description('Node.js major version of the Flex Consumption runtime.')
param nodeVersion string = '22'

@description('Object id of the person (or pipeline) running azd. Gets the data roles the operator CLI needs.')
param principalId string = deployer().objectId

@allowed(['User', 'ServicePrincipal'])
@description('Kind of principalId: User for a person, ServicePrincipal for a CI pipeline.')
param principalType string = 'User'

@description('Give principalId the data roles an operator needs (tables, queues, blobs, the cursor share, Service Bus send/receive, the Key Vault secrets). Set false for a production environment deployed by a pipeline.')
param grantDeployerDataAccess bool = true

@description('E-mail address that receives the alerts; empty = alerts show in the portal only.')
param alertEmail string = ''

@description('Create the availability test on /api/health. It needs a function key, which the function host can only mint once it runs: enable it after the first `azd up`.')
param enableAvailabilityTest bool = false

@description('Create an Azure Database for PostgreSQL Flexible Server (Entra authentication only) for the postgres target.')
param enablePostgres bool = false

@description('Minutes without a completed batch (while the source has newer records) before the stalled-flow alert fires: N schedule periods of SYNC_SCHEDULE.')
@allowed([15, 30, 45, 60, 120, 180, 240, 300, 360, 1440])
param stallWindowMinutes int = 30

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

// Same names as the defaults of SYNC_RECORDS_QUEUE, SYNC_CONTROL_QUEUE and CURSOR_SHARE_NAME; the
// jobs queue carries the webhook flows' work.
var recordsQueueName = 'sync-records'
var controlQueueName = 'sync-control'
var jobsQueueName = 'jobs'
@description('WISEFLOW_BASE_URL: the WISEflow API (e.g. https://europe-api.wiseflow.net). Set it to enable the external-source flow `wiseflow`; empty = off.')
param wiseflowBaseUrl string = ''

@description('WISEFLOW_CLIENT_ID: the OAuth client of the WISEflow API.')
param wiseflowClientId string = ''

@secure()
@description('WISEFLOW_CLIENT_SECRET (`azd env set-secret WISEFLOW_CLIENT_SECRET`); stored in Key Vault.')
param wiseflowClientSecret string = ''

@secure()
@description('WISEFLOW_WEBHOOK_SECRET, at least 16 characters (`azd env set-secret WISEFLOW_WEBHOOK_SECRET`); stored in Key Vault.')
param wiseflowWebhookSecret string = ''

@description('WISEFLOW_ROSTER_VIEW_URL: the Flowfinity view holding each reference\'s participants.')
param wiseflowRosterViewUrl string = ''

var cursorShareName = 'syncbridge'
var wiseflowEnabled = !empty(wiseflowBaseUrl)

// Key Vault secret name of each secret app setting. Every secret the app reads is a Key Vault
// reference (app/api.bicep); its value comes from a secure parameter.
var secretNames = union(
  {
    FLOWFINITY_PASSWORD: 'flowfinity-password'
  },
  wiseflowEnabled
    ? {
        WISEFLOW_CLIENT_SECRET: 'wiseflow-client-secret'
        WISEFLOW_WEBHOOK_SECRET: 'wiseflow-webhook-secret'
      }
    : {}
)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    cursorShareName: cursorShareName
  }
}

module serviceBus 'app/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: '${abbrs.serviceBusNamespaces}${resourceToken}'
    location: location
    tags: tags
    queueNames: [recordsQueueName, controlQueueName, jobsQueueName]
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    secrets: union(
      {
        'flowfinity-password': flowfinityPassword
      },
      wiseflowEnabled
        ? {
            'wiseflow-client-secret': wiseflowClientSecret
            'wiseflow-webhook-secret': wiseflowWebhookSecret
          }
        : {}
    )
  }
}

module postgres 'app/postgres.bicep' = if (enablePostgres) {
  name: 'postgres'
  scope: rg
  params: {
    name: '${abbrs.dBforPostgreSQLServers}${resourceToken}'
    location: location
    tags: tags
    identityName: identity.outputs.name
    identityPrincipalId: identity.outputs.principalId
  }
}

// Every role assignment, for the app's identity and for the deploying user.
module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.name
    keyVaultName: keyVault.outputs.name
    secretNames: [for s in items(secretNames): s.value]
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    managedIdentityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    grantUserDataAccess: grantDeployerDataAccess && !empty(principalId)
  }
}

// Deploys after rbac, so the identity holds its roles when the app first starts.
module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  dependsOn: [rbac]
  params: {
    name: functionAppName
    location: location
    tags: tags
    planName: '${abbrs.webServerFarms}${resourceToken}'
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    recordsQueueName: recordsQueueName
    controlQueueName: controlQueueName
    jobsQueueName: jobsQueueName
    cursorShareName: storage.outputs.cursorShareName
    maxAttempts: serviceBus.outputs.maxDeliveryCount
    flowfinityViewUrl: flowfinityViewUrl
    flowfinityOnBehalfOf: flowfinityOnBehalfOf
    flowfinityUsername: flowfinityUsername
    keyVaultUri: keyVault.outputs.uri
    flowfinityPasswordSecretName: secretNames.FLOWFINITY_PASSWORD
    wiseflowBaseUrl: wiseflowBaseUrl
    wiseflowClientId: wiseflowClientId
    wiseflowRosterViewUrl: wiseflowRosterViewUrl
    postgresHost: enablePostgres ? postgres.outputs.fullyQualifiedDomainName : ''
    postgresDatabase: enablePostgres ? postgres.outputs.databaseName : ''
    postgresUser: enablePostgres ? identity.outputs.name : ''
    nodeVersion: nodeVersion
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusNamespaceName: serviceBus.outputs.name
    functionAppName: api.outputs.name
    functionAppHostName: api.outputs.defaultHostName
    alertEmail: alertEmail
    enableAvailabilityTest: enableAvailabilityTest
    stallWindowMinutes: stallWindowMinutes
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusNamespaceName: serviceBus.outputs.name
  }
}

// azd writes these to .azure/<env>/.env. Those named after app settings are what the operator CLI
// reads (`azd env get-values` + DefaultAzureCredential, see README.md (Deploy, Operate)).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri
output AZURE_SERVICE_BUS_NAMESPACE string = serviceBus.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.applicationInsightsConnectionString
output AzureWebJobsStorage__accountName string = storage.outputs.name
output ServiceBusConnection__fullyQualifiedNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output TRANSPORT string = 'servicebus'
output CURSOR_STORE string = 'fileshare'
output CURSOR_SHARE_NAME string = storage.outputs.cursorShareName
output SYNC_RECORDS_QUEUE string = recordsQueueName
output SYNC_CONTROL_QUEUE string = controlQueueName
output SYNC_JOBS_QUEUE string = jobsQueueName
output TARGET_PG_HOST string = enablePostgres ? postgres.outputs.fullyQualifiedDomainName : ''
output TARGET_PG_DATABASE string = enablePostgres ? postgres.outputs.databaseName : ''
