// The silo's TLS certificate, its private key and the cluster's certificate authority live as secrets in a Key Vault
// the operator keeps (docs/SECURITY.md says how to make and store them). This module lets the silo identity read
// them and gives the container app their references; the PEM text never passes through a deployment.

@description('Name of the Key Vault (in this resource group, Azure RBAC authorization) that holds the TLS secrets.')
param keyVaultName string

@description('Name of the silo identity, which must already exist in this resource group.')
param siloIdentityName string

@description('Secret holding the silo certificate (PEM).')
param certificateSecretName string

@description('Secret holding the silo certificate\'s private key (PEM).')
param keySecretName string

@description('Secret holding the cluster certificate authority (PEM).')
param authoritySecretName string

resource siloIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: siloIdentityName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// Built-in role: Key Vault Secrets User (read secret values), on this vault only.
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource secretsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, siloIdentity.id, keyVaultSecretsUserRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: siloIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Versionless references: Container Apps picks up a new version of a secret (a rotated certificate) within about
// 30 minutes, and a new revision at once (docs/SECURITY.md, rotation).
@description('Key Vault reference of the silo certificate.')
output certificateReference string = '${vault.properties.vaultUri}secrets/${certificateSecretName}'

@description('Key Vault reference of the private key.')
output keyReference string = '${vault.properties.vaultUri}secrets/${keySecretName}'

@description('Key Vault reference of the cluster authority.')
output authorityReference string = '${vault.properties.vaultUri}secrets/${authoritySecretName}'
