// Every role assignment of the deployment, in one place (as in the azd Functions quickstarts).
//
// Two principals:
// - the function app's user-assigned identity: the data roles the app needs, no more;
// - the deploying user (deployer().objectId, opt-out with grantDeployerDataAccess=false): the data
//   roles the operator CLI needs from a laptop with DefaultAzureCredential. Shared keys and Service
//   Bus SAS are off, so without these the CLI gets 403 against a fresh deployment.
// Each role is scoped as narrowly as the service allows; where that is the whole account or
// namespace, the comment says why.

param storageAccountName string
param serviceBusNamespaceName string
param keyVaultName string
@description('Names of the Key Vault secrets the app reads.')
param secretNames array
param applicationInsightsName string
param managedIdentityPrincipalId string

@description('Object id of the deploying user or pipeline.')
param userPrincipalId string = ''
@allowed(['User', 'ServicePrincipal'])
param userPrincipalType string = 'User'
param grantUserDataAccess bool = true

// Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageFileDataPrivilegedContributor: '69566ab7-960f-475b-8e7c-b3118f30c6bd'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2021-11-01' existing = {
  name: serviceBusNamespaceName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [
  for secretName in secretNames: {
    parent: vault
    name: secretName
  }
]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// ---- the function app's identity -------------------------------------------------------------

// Storage Blob Data Owner, account scope: the Functions host keeps its keys, locks and timer
// state in containers it creates itself (azure-webjobs-hosts, azure-webjobs-secrets), and Flex
// Consumption reads the deployment package; the Functions docs require Owner on the account
// for AzureWebJobsStorage.
resource appBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, managedIdentityPrincipalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Table Data Contributor, account scope: the app creates its state tables on first use
// (`<SYNC_TABLE_PREFIX>state`, `<SYNC_TABLE_PREFIX>quarantine`, the table target, one set per
// flow), and creating a table is an account-level operation.
resource appTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, managedIdentityPrincipalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Queue Data Contributor, account scope: with TRANSPORT=storagequeue the app creates its
// queues at start and the host creates `<queue>-poison` queues; neither exists at deploy time.
resource appQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, managedIdentityPrincipalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Storage File Data Privileged Contributor, account scope: the cursor store uses Azure Files over
// REST with OAuth, which needs the `backup` file request intent and one of the two "privileged"
// Files roles; those are documented at account scope (share scope is for the SMB share roles).
resource appFile 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, managedIdentityPrincipalId, roles.storageFileDataPrivilegedContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageFileDataPrivilegedContributor)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Azure Service Bus Data Owner, namespace scope. Send and Receive would be enough for the app's
// own code, but the Functions Service Bus trigger with target-based scaling reads the queues'
// runtime properties (message counts), which needs the Manage claim, and Data Owner is the only
// built-in data role that has it (the Functions docs list it for the trigger). Namespace scope
// because the scale controller reads every triggered queue, including the dead-letter sub-queues.
resource appServiceBus 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(serviceBus.id, managedIdentityPrincipalId, roles.serviceBusDataOwner)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault Secrets User, scoped to each secret the app reads (not the vault): the identity
// resolves the Key Vault references of the app settings and can read nothing else.
resource appSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (secretName, i) in secretNames: {
    name: guid(vault.id, secretName, managedIdentityPrincipalId, roles.keyVaultSecretsUser)
    scope: secrets[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
      principalId: managedIdentityPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Monitoring Metrics Publisher, scoped to the Application Insights resource: with local auth off,
// telemetry is accepted only with an Entra token of a principal holding this role.
resource appMonitoring 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, managedIdentityPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- the deploying user (operator CLI) ---------------------------------------------------------

var grantUser = grantUserDataAccess && !empty(userPrincipalId)

// Storage: tables (status, quarantine list/replay/discard), queues (TRANSPORT=storagequeue),
// blobs (a blob cursor), all at account scope for the same reasons as the app's roles.
var userStorageRoles = [
  roles.storageTableDataContributor
  roles.storageQueueDataContributor
  roles.storageBlobDataContributor
  // Reads and repairs the cursor file over REST with the backup intent, as the app does.
  roles.storageFileDataPrivilegedContributor
]

resource userStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in userStorageRoles: if (grantUser) {
    name: guid(storage.id, userPrincipalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: userPrincipalId
      principalType: userPrincipalType
    }
  }
]

// Service Bus send and receive (replaying a batch sends to the queues; inspecting the dead-letter
// queue receives), not Manage: the operator does not need to change the namespace's entities.
var userServiceBusRoles = [
  roles.serviceBusDataSender
  roles.serviceBusDataReceiver
]

resource userServiceBus 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in userServiceBusRoles: if (grantUser) {
    name: guid(serviceBus.id, userPrincipalId, roleId)
    scope: serviceBus
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: userPrincipalId
      principalType: userPrincipalType
    }
  }
]

// Key Vault Secrets User on the app's secrets: `syncbridge register-webhooks` (azd postdeploy
// hook) reads the webhook secrets with the deploying user's identity.
resource userSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (secretName, i) in secretNames: if (grantUser) {
    name: guid(vault.id, secretName, userPrincipalId, roles.keyVaultSecretsUser)
    scope: secrets[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
      principalId: userPrincipalId
      principalType: userPrincipalType
    }
  }
]

output done bool = true
