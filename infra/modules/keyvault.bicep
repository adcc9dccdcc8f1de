// Key Vault (RBAC authorization) holding the Flowfinity integration user's password. The function
// app reads it through a Key Vault reference app setting, resolved with its managed identity.

param name string
param location string
param tags object = {}

@description('Name of the secret that holds the Flowfinity password.')
param secretName string

@secure()
@description('The Flowfinity integration user password.')
param secretValue string

@description('Principal id of the function app identity (gets Key Vault Secrets User).')
param principalId string

var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

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
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    value: secretValue
    contentType: 'text/plain'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
// Versionless URI: the reference follows the latest version of the secret.
output secretUri string = secret.properties.secretUri
