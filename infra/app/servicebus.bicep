// Service Bus namespace (Standard: duplicate detection needs Standard or Premium) with the queues
// of the pipeline: records, control (drain signals, polls) and jobs (webhook work). Senders set
// deterministic MessageIds, so a re-send after a crash is dropped by duplicate detection.
// Local auth (SAS keys) is off: the app and the operator connect with Entra identities.

param name string
param location string
param tags object = {}

@description('Queue names: SYNC_RECORDS_QUEUE, SYNC_CONTROL_QUEUE and the jobs queue.')
param queueNames array

// Deliveries before a message is dead-lettered. Keep equal to the default of SYNC_MAX_ATTEMPTS and
// to host.json extensions.queues.maxDequeueCount (test/settings-consistency.test.ts checks).
var maxDeliveryCount = 5

// The lock only matters when an instance dies: while an invocation runs, the Functions host
// renews it (host.json maxAutoLockRenewalDuration 00:15:00 covers functionTimeout 00:10:00), so a
// message is never redelivered while its first run still goes on. A short lock brings a dead
// instance's messages back sooner; PT5M is the service's maximum.
var lockDuration = 'PT2M'

resource namespace 'Microsoft.ServiceBus/namespaces@2021-11-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2021-11-01' = [
  for queueName in queueNames: {
    parent: namespace
    name: queueName
    properties: {
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxDeliveryCount: maxDeliveryCount
      lockDuration: lockDuration
      deadLetteringOnMessageExpiration: true
      defaultMessageTimeToLive: 'P14D'
      requiresSession: false
      enablePartitioning: false
    }
  }
]

output name string = namespace.name
output id string = namespace.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output maxDeliveryCount int = maxDeliveryCount
