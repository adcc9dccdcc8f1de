// Optional Azure Database for PostgreSQL Flexible Server for the `postgres` target (main.bicep
// parameter enablePostgres, off by default). Entra authentication only: no password exists. The
// app's identity is an Entra administrator and connects with a token (DefaultAzureCredential,
// scope https://ossrdbms-aad.database.windows.net/.default) as the user named after the identity.

param name string
param location string
param tags object = {}

@description('Name of the app identity: the PostgreSQL user it logs in as.')
param identityName string
param identityPrincipalId string

param databaseName string = 'syncbridge'
@allowed(['14', '15', '16'])
param version string = '16'
param skuName string = 'Standard_B1ms'
param storageSizeGB int = 32

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: 'Burstable'
  }
  properties: {
    version: version
    storage: {
      storageSizeGB: storageSizeGB
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
  }

  resource database 'databases' = {
    name: databaseName
    properties: {
      charset: 'UTF8'
      collation: 'en_US.utf8'
    }
  }

  // Flex Consumption apps have no fixed outbound addresses: allow Azure services (0.0.0.0), the
  // documented rule for that. Use VNet integration and a private endpoint to close this.
  resource allowAzure 'firewallRules' = {
    name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
    properties: {
      startIpAddress: '0.0.0.0'
      endIpAddress: '0.0.0.0'
    }
  }
}

// After the database: the server accepts one administrator change at a time, after creation.
resource appAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: identityPrincipalId
  dependsOn: [server::database, server::allowAzure]
  properties: {
    principalType: 'ServicePrincipal'
    principalName: identityName
    tenantId: subscription().tenantId
  }
}

output name string = server.name
output fullyQualifiedDomainName string = server.properties.fullyQualifiedDomainName
output databaseName string = databaseName
