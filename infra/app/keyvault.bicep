// Key Vault (RBAC authorization) holding the app's secrets. Each secret's value comes from a
// secure parameter (`azd env set-secret NAME`, never `azd env set`); the function app reads it
// through a Key Vault reference app setting, resolved with its managed identity (app/api.bicep).
// Soft delete cannot be turned off: `azd down --purge` purges the vault so its name can be reused.

param name string
param location string
param tags object = {}

@secure()
@description('Secret name -> value.')
param secrets object

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [
  for s in items(secrets): {
    parent: vault
    name: s.key
    properties: {
      value: s.value
      contentType: 'text/plain'
    }
  }
]

output name string = vault.name
output id string = vault.id
// https://<name>.vault.azure.net/ ; a reference `${uri}secrets/<name>` is versionless, so it
// follows the latest version of the secret.
output uri string = vault.properties.vaultUri
