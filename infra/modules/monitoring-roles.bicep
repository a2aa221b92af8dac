// Lets the silo identity send telemetry to Application Insights, whose local (key) auth is off.

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Name of the silo identity, which must already exist in this resource group.')
param siloIdentityName string

resource siloIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: siloIdentityName
}

// Built-in role: Monitoring Metrics Publisher.
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, siloIdentity.id, monitoringMetricsPublisherRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: siloIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Connection string of the Application Insights component.')
output connectionString string = appInsights.properties.ConnectionString
