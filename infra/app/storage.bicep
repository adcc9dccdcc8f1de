// Storage account of the function app: host storage (AzureWebJobsStorage, identity-based), the
// Flex Consumption deployment container, the app's state tables (created by the app itself, see
// app/rbac.bicep) and storage queues (TRANSPORT=storagequeue only), and the file share that holds
// the view-sync cursor (lastSubmissionId.txt). Shared keys are off: everything, including the
// cursor on Azure Files (OAuth over REST with the `backup` file request intent), is reached with
// Entra identities.

param name string
param location string
param tags object = {}

@description('Blob container that Flex Consumption deploys the app package from.')
param deploymentContainerName string

@description('File share holding the cursor file (CURSOR_SHARE_NAME).')
param cursorShareName string

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
        // GiB: the cursor is one small text file.
        shareQuota: 1
      }
    }
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output cursorShareName string = storage::fileServices::cursorShare.name
