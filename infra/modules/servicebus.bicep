// Service Bus namespace (Standard: duplicate detection needs Standard or Premium) with the
// records and control queues of the view-sync pipeline. Senders set deterministic MessageIds
// (batch:chunk), so a re-send after a crash is dropped by duplicate detection.
// Local auth (SAS keys) is off: the app connects with its managed identity.

param name string
param location string
param tags object = {}

@description('Queue names: the records queue (SYNC_RECORDS_QUEUE) and the control queue (SYNC_CONTROL_QUEUE).')
param queueNames array

@description('Principal id of the function app identity (gets Azure Service Bus Data Owner).')
param principalId string

// Deliveries before a message is dead-lettered. Keep equal to the default of SYNC_MAX_ATTEMPTS and
// to host.json extensions.queues.maxDequeueCount (test/settings-consistency.test.ts checks).
var maxDeliveryCount = 5

// Azure Service Bus Data Owner (send, receive, manage: the trigger and the senders).
var serviceBusDataOwnerRoleId = '090c5cfd-751d-490a-894a-3ce6f1109419'

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
      lockDuration: 'PT5M'
      deadLetteringOnMessageExpiration: true
      defaultMessageTimeToLive: 'P14D'
      requiresSession: false
      enablePartitioning: false
    }
  }
]

resource dataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, serviceBusDataOwnerRoleId)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output maxDeliveryCount int = maxDeliveryCount
