// A workbook over the app's OpenTelemetry metrics in Application Insights (customMetrics), per
// flow: records/s, sync lag, batch durations, quarantined records and webhook outcomes, plus the
// Service Bus dead-letter count. The workbook definition is JSON (Notebook/1.0) built here as a
// Bicep object and serialized.

param location string
param tags object = {}
param applicationInsightsName string
param serviceBusNamespaceName string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2021-11-01' existing = {
  name: serviceBusNamespaceName
}

var flowOf = 'extend flow = tostring(customDimensions["flow"])'

// One chart per entry: KQL over customMetrics of the Application Insights resource.
var charts = [
  {
    title: 'Records applied per second, by flow'
    visualization: 'timechart'
    query: 'customMetrics | where name == "syncbridge.records.applied" | ${flowOf} | summarize recordsPerSecond = sum(valueSum) / 300.0 by flow, bin(timestamp, 5m)'
  }
  {
    title: 'Sync lag (s), by flow'
    visualization: 'timechart'
    query: 'customMetrics | where name == "syncbridge.sync.lag" | ${flowOf} | summarize lagSeconds = max(valueMax) by flow, bin(timestamp, 5m)'
  }
  {
    title: 'Batch duration (s): average and maximum, by flow'
    visualization: 'timechart'
    query: 'customMetrics | where name == "syncbridge.batch.duration" | ${flowOf} | summarize average = sum(valueSum) / sum(valueCount), maximum = max(valueMax) by flow, bin(timestamp, 15m)'
  }
  {
    title: 'Records quarantined, by flow'
    visualization: 'barchart'
    query: 'customMetrics | where name == "syncbridge.records.quarantined" | ${flowOf} | summarize quarantined = sum(valueSum) by flow, bin(timestamp, 1h)'
  }
  {
    title: 'Webhook requests by outcome (accepted, duplicate, rejected), by flow'
    visualization: 'barchart'
    query: 'customMetrics | where name == "syncbridge.webhook.requests" | ${flowOf} | extend outcome = tostring(customDimensions["outcome"]) | summarize requests = sum(valueSum) by flow, outcome, bin(timestamp, 1h)'
  }
  {
    title: 'Blocked flows (1 = blocked)'
    visualization: 'table'
    query: 'customMetrics | where name == "syncbridge.flow.blocked" | ${flowOf} | summarize arg_max(timestamp, value) by flow | project flow, blocked = value, since = timestamp'
  }
]

var workbookContent = {
  version: 'Notebook/1.0'
  items: concat(
    [
      {
        type: 1
        name: 'intro'
        content: {
          json: '## syncbridge\nPer-flow throughput, lag, batches, quarantine and webhook outcomes from the app\'s OpenTelemetry metrics. Health of each flow: `GET /api/health`; quarantine: `syncbridge quarantine list`.'
        }
      }
    ],
    [
      for (chart, i) in charts: {
        type: 3
        name: 'chart-${i}'
        content: {
          version: 'KqlItem/1.0'
          query: chart.query
          size: 0
          title: chart.title
          timeContext: {
            durationMs: 86400000
          }
          queryType: 0
          resourceType: 'microsoft.insights/components'
          visualization: chart.visualization
        }
      }
    ],
    [
      {
        type: 10
        name: 'deadletters'
        content: {
          chartId: 'deadletters'
          version: 'MetricsItem/2.0'
          size: 0
          chartType: 2
          resourceType: 'microsoft.servicebus/namespaces'
          metricScope: 0
          resourceIds: [serviceBus.id]
          timeContext: {
            durationMs: 86400000
          }
          metrics: [
            {
              namespace: 'microsoft.servicebus/namespaces'
              metric: 'microsoft.servicebus/namespaces--DeadletteredMessages'
              aggregation: 3
              splitBy: 'EntityName'
            }
          ]
          title: 'Dead-lettered messages, by queue'
        }
      }
    ]
  )
  fallbackResourceIds: [applicationInsights.id]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // Workbook resource names must be GUIDs.
  name: guid(resourceGroup().id, applicationInsights.id, 'syncbridge-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'syncbridge operations'
    category: 'workbook'
    version: 'Notebook/1.0'
    sourceId: applicationInsights.id
    serializedData: string(workbookContent)
  }
}

output workbookId string = workbook.id
