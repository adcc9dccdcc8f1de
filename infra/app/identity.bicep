// User-assigned managed identity of the function app. It exists before the app, so every role
// assignment (app/rbac.bicep) is in place when the app first starts (a system-assigned identity
// would only exist once the app does, and the first start would race its own role assignments).

param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
