// Alerts of a syncbridge deployment, one action group for all of them.
//
// The app's own signals are OpenTelemetry metrics (names in README.md (Deploy, Operate), each with a
// `flow` dimension) exported to Application Insights, where they land in the `customMetrics` table
// with their attributes in `customDimensions`. The alerts on them are log search alerts
// (scheduledQueryRules, KQL over customMetrics), not metric alerts: metric alerts on App Insights
// custom metrics see dimensions only when the resource's "custom metric dimensions" (pre-aggregated
// custom metrics) option is on, which OpenTelemetry export does not turn on, so a per-flow metric
// alert would silently see no `flow`. KQL sees every attribute, and can combine two metrics (the
// stalled-flow rule). The Service Bus dead-letter count is a platform metric of the namespace, so
// that one is a metric alert, split per queue.

param location string
param tags object = {}
param resourceToken string
param applicationInsightsName string
param serviceBusNamespaceName string
param functionAppName string
param functionAppHostName string

@description('E-mail receiver of the action group; empty = no e-mail (alerts still show in the portal).')
param alertEmail string = ''

@description('Create the standard availability test on /api/health (needs the function host running: see main.bicep).')
param enableAvailabilityTest bool = false

@description('Window of the stalled-flow rule, in minutes: N periods of SYNC_SCHEDULE.')
param stallWindowMinutes int = 30

@description('Rejected webhook requests per flow in 15 minutes that count as a spike.')
param webhookRejectionThreshold int = 10

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2021-11-01' existing = {
  name: serviceBusNamespaceName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-syncbridge-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'syncbridge'
    enabled: true
    emailReceivers: empty(alertEmail)
      ? []
      : [
          {
            name: 'operator'
            emailAddress: alertEmail
            useCommonAlertSchema: true
          }
        ]
  }
}

// ---- Service Bus: dead-lettered messages, per queue ------------------------------------------

resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'ma-deadlettered-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'A Service Bus queue holds dead-lettered messages: a message failed on every delivery and is waiting in <queue>/$deadletterqueue (the poison handler should have quarantined it; see `syncbridge quarantine list`).'
    severity: 2
    enabled: true
    scopes: [serviceBus.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    targetResourceType: 'Microsoft.ServiceBus/namespaces'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadletteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          // One alert per queue.
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: ['*']
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// ---- the app's metrics (log search alerts over customMetrics) ---------------------------------

var flowOf = 'extend flow = tostring(customDimensions["flow"])'

var logRules = [
  {
    key: 'quarantined'
    displayName: 'syncbridge: records quarantined'
    description: 'A flow quarantined records (syncbridge.records.quarantined > 0): they are stored with their error and can be replayed (`syncbridge quarantine list`).'
    severity: 2
    windowSize: 'PT15M'
    query: 'customMetrics | where name == "syncbridge.records.quarantined" | ${flowOf} | summarize quarantined = sum(valueSum) by flow | where quarantined > 0'
  }
  {
    key: 'blocked'
    displayName: 'syncbridge: flow blocked'
    description: 'A flow is blocked (syncbridge.flow.blocked = 1): POISON_POLICY=block stopped it on a poison record. `syncbridge quarantine list`, fix the cause, then replay or discard.'
    severity: 1
    windowSize: 'PT15M'
    query: 'customMetrics | where name == "syncbridge.flow.blocked" | ${flowOf} | summarize blocked = max(valueMax) by flow | where blocked >= 1'
  }
  {
    key: 'stalled'
    displayName: 'syncbridge: no batch completed while the source has newer records'
    description: 'No batch of the flow completed within ${stallWindowMinutes} minutes (N schedule periods) while its sync lag shows newer records at the source. Check /api/health and the function logs.'
    severity: 2
    windowSize: 'PT${stallWindowMinutes}M'
    query: 'customMetrics | where name in ("syncbridge.batch.duration", "syncbridge.sync.lag") | ${flowOf} | summarize batches = sumif(valueCount, name == "syncbridge.batch.duration"), lag = maxif(valueMax, name == "syncbridge.sync.lag") by flow | where batches == 0 and lag > 0'
  }
  {
    key: 'webhook-rejections'
    displayName: 'syncbridge: webhook rejection spike'
    description: 'More than ${webhookRejectionThreshold} webhook requests of a flow were rejected in 15 minutes (syncbridge.webhook.requests, outcome=rejected): a wrong secret or key at the sender, or someone probing the endpoint. The reason dimension says which.'
    severity: 2
    windowSize: 'PT15M'
    query: 'customMetrics | where name == "syncbridge.webhook.requests" and tostring(customDimensions["outcome"]) == "rejected" | ${flowOf} | extend reason = tostring(customDimensions["reason"]) | summarize rejected = sum(valueSum) by flow, reason | where rejected > ${webhookRejectionThreshold}'
  }
]

resource logAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in logRules: {
    name: 'sqr-${rule.key}-${resourceToken}'
    location: location
    tags: tags
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [applicationInsights.id]
      evaluationFrequency: 'PT5M'
      windowSize: rule.windowSize
      // The metrics exist only once the app has emitted them: do not fail the deployment on a
      // query over a column the workspace has not seen yet.
      skipQueryValidation: true
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            // One alert per flow.
            dimensions: [
              {
                name: 'flow'
                operator: 'Include'
                values: ['*']
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: [actionGroup.id]
      }
    }
  }
]

// ---- availability of /api/health ----------------------------------------------------------------

// /api/health answers 200 when every flow is fine and 503 when one is blocked or lagging, so a
// standard web test that expects 200 covers both "the app is down" and "a flow is stuck". The
// route needs a function key; the host's default key is read at deploy time, which works only once
// the host has started (after the first `azd deploy`): hence enableAvailabilityTest, off at first.
// The key is visible to readers of the web test.
var webTestName = 'avail-health-${resourceToken}'

resource healthTest 'Microsoft.Insights/webtests@2022-06-15' = if (enableAvailabilityTest) {
  name: webTestName
  location: location
  // The hidden-link tag ties the test to the Application Insights resource.
  tags: union(tags, { 'hidden-link:${applicationInsights.id}': 'Resource' })
  kind: 'standard'
  properties: {
    SyntheticMonitorId: webTestName
    Name: 'syncbridge /api/health'
    Description: 'GET /api/health every 5 minutes from three locations; 503 = a flow is blocked or lagging.'
    Enabled: true
    Frequency: 300
    Timeout: 30
    Kind: 'standard'
    RetryEnabled: true
    Locations: [
      {
        Id: 'emea-nl-ams-azr'
      }
      {
        Id: 'us-va-ash-azr'
      }
      {
        Id: 'apac-sg-sin-azr'
      }
    ]
    Request: {
      RequestUrl: 'https://${functionAppHostName}/api/health'
      HttpVerb: 'GET'
      ParseDependentRequests: false
      Headers: [
        {
          key: 'x-functions-key'
          value: enableAvailabilityTest
            ? listKeys('${functionApp.id}/host/default', '2024-04-01').functionKeys.default
            : ''
        }
      ]
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}

resource healthAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = if (enableAvailabilityTest) {
  name: 'ma-health-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: '/api/health failed from at least 2 of 3 locations: the app is down, or a flow is blocked or lagging (503). Open /api/health for the reason.'
    severity: 1
    enabled: true
    scopes: [healthTest.id, applicationInsights.id]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria'
      webTestId: healthTest.id
      componentId: applicationInsights.id
      failedLocationCount: 2
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output actionGroupId string = actionGroup.id
