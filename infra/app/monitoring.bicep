// Log Analytics workspace + workspace-based Application Insights with local (instrumentation-key)
// authentication off: telemetry is accepted only with an Entra token, which the app gets through
// its identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING in app/api.bicep, Monitoring Metrics
// Publisher in app/rbac.bicep), as in the azd OpenTelemetry quickstart.

param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}

@description('Days the workspace keeps data (30 is included in the ingestion price).')
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = applicationInsights.name
output applicationInsightsId string = applicationInsights.id
// Not a secret: it only locates the ingestion endpoint; with local auth off it authorizes nothing.
output applicationInsightsConnectionString string = applicationInsights.properties.ConnectionString
output logAnalyticsWorkspaceId string = logAnalytics.id
