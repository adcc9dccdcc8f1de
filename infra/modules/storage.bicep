// Storage account of the function app: host storage (AzureWebJobsStorage, identity-based), the
// Flex Consumption deployment container, the app's state tables and storage queues, and the
// `syncbridge` file share that holds the view-sync cursor (lastSubmissionId.txt).
// Shared keys are off: everything, including the cursor on Azure Files (OAuth over REST with the
// `backup` file request intent), is reached with the app's managed identity.

param name string
param location string
param tags object = {}

@description('Blob container that Flex Consumption deploys the app package from.')
param deploymentContainerName string

@description('File share holding the cursor file (CURSOR_SHARE_NAME).')
param cursorShareName string

@description('Principal id of the function app identity that gets data-plane roles.')
param principalId string

// Built-in role definition ids.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Files OAuth over REST with x-ms-file-request-intent: backup (the cursor store) needs a
  // "privileged" Files data role.
  storageFileDataPrivilegedContributor: '69566ab7-960f-475b-8e7c-b3118f30c6bd'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }

  resource blobServices 'blobServices' = {
    name: 'default'

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  resource fileServices 'fileServices' = {
    name: 'default'

    resource cursorShare 'shares' = {
      name: cursorShareName
      properties: {
        enabledProtocols: 'SMB'
        shareQuota: 1
      }
    }
  }
}

resource roleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in items(roles): {
    name: guid(storage.id, principalId, roleId.value)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId.value)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output cursorShareName string = storage::fileServices::cursorShare.name
