// syncbridge infrastructure for the Azure Developer CLI (azd up / azd provision).
// Structure follows the azd Flex Consumption function templates (subscription scope, one
// resource group, resourceToken-based names, `azd-service-name` tag), with plain resources in
// local modules instead of registry modules.
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
@description('FLOWFINITY_PASSWORD: the Integration user password (stored in Key Vault).')
param flowfinityPassword string

@allowed(['20', '22'])
@description('Node.js major version of the Flex Consumption runtime.')
param nodeVersion string = '22'

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

// Same names as the defaults of SYNC_RECORDS_QUEUE, SYNC_CONTROL_QUEUE and CURSOR_SHARE_NAME.
var recordsQueueName = 'sync-records'
var controlQueueName = 'sync-control'
var cursorShareName = 'syncbridge'

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    cursorShareName: cursorShareName
    principalId: identity.outputs.principalId
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: '${abbrs.serviceBusNamespaces}${resourceToken}'
    location: location
    tags: tags
    queueNames: [recordsQueueName, controlQueueName]
    principalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    secretName: 'flowfinity-password'
    secretValue: flowfinityPassword
    principalId: identity.outputs.principalId
  }
}

// Uses outputs of storage, serviceBus and keyVault, so it deploys after their role assignments:
// the identity can reach everything on the app's first start.
module api 'modules/function-app.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: tags
    planName: '${abbrs.webServerFarms}${resourceToken}'
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    recordsQueueName: recordsQueueName
    controlQueueName: controlQueueName
    cursorShareName: storage.outputs.cursorShareName
    maxAttempts: serviceBus.outputs.maxDeliveryCount
    flowfinityViewUrl: flowfinityViewUrl
    flowfinityOnBehalfOf: flowfinityOnBehalfOf
    flowfinityUsername: flowfinityUsername
    flowfinityPasswordSecretUri: keyVault.outputs.secretUri
    nodeVersion: nodeVersion
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_SERVICE_BUS_NAMESPACE string = serviceBus.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.applicationInsightsConnectionString
