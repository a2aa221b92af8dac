// The storage account that holds the volumes' member disks as page blobs, reachable only with
// Entra tokens (shared keys off), with Storage Blob Data Contributor for the silo identity.

@description('Azure region for the account.')
param location string

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param accountName string

@description('Container that holds the page-blob disks.')
param disksContainerName string

@description('Name of the silo identity, which must already exist in this resource group.')
param siloIdentityName string

resource siloIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: siloIdentityName
}

@description('Tags applied to every resource.')
param tags object

// Built-in role: Storage Blob Data Contributor.
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: accountName
  location: location
  tags: tags
  // Page blobs need a general-purpose v2 account; premium page blobs would need kind 'StorageV2' with Premium_LRS.
  kind: 'StorageV2'
  sku: {
    name: 'Standard_ZRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource disks 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: disksContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource siloBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: account
  name: guid(account.id, siloIdentity.id, storageBlobDataContributorRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: siloIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Blob endpoint for the silos (Cloud__Azure__BlobEndpoint).')
output blobEndpoint string = account.properties.primaryEndpoints.blob

@description('Name of the container that holds the disks.')
output disksContainerName string = disks.name
