// The user-assigned managed identity the silos run as. Every data-plane permission is a role
// assignment to this identity; no account keys or passwords are handed to the silos.

@description('Azure region for the identity.')
param location string

@description('Name of the identity; also its PostgreSQL role name.')
param identityName string

@description('Tags applied to every resource.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

@description('Resource id of the identity.')
output id string = identity.id

@description('Name of the identity (also its PostgreSQL role name).')
output name string = identity.name

@description('Client id, for AZURE_CLIENT_ID in the silos.')
output clientId string = identity.properties.clientId

@description('Principal (object) id, for role assignments.')
output principalId string = identity.properties.principalId
