// Cloud on Azure: silos on Azure Container Apps, Orleans membership and grain state on Azure
// Database for PostgreSQL flexible server, volumes' member disks as page blobs in a storage account,
// telemetry in Log Analytics and Application Insights. One user-assigned managed identity with role
// assignments replaces every key and password. See docs/DEPLOY.md.

targetScope = 'resourceGroup'

@description('Azure region; defaults to the resource group\'s.')
param location string = resourceGroup().location

@description('Short prefix for resource names (lowercase letters and digits).')
@minLength(3)
@maxLength(12)
param namePrefix string

@description('Silo container image.')
param siloImage string

@description('Registry server of the silo image (pulled with the silo identity); empty for a public image.')
param registryServer string = ''

@description('Number of silos.')
@minValue(1)
@maxValue(30)
param siloCount int = 3

@description('vCPUs per silo.')
param siloCpuCores string = '2.0'

@description('Memory per silo.')
param siloMemory string = '4Gi'

@description('Orleans cluster id.')
param clusterId string = 'cloud'

@description('PostgreSQL major version.')
@allowed([
  '15'
  '16'
])
param postgresVersion string = '16'

@description('PostgreSQL compute SKU.')
param postgresSkuName string = 'Standard_D2ds_v5'

@description('PostgreSQL compute tier.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'GeneralPurpose'

@description('Zone-redundant PostgreSQL standby.')
param postgresHighAvailability bool = true

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Key Vault (in this resource group, Azure RBAC authorization) holding the silo TLS secrets; see docs/SECURITY.md.')
param tlsKeyVaultName string

@description('Key Vault secret with the silo certificate (PEM, serverAuth and clientAuth).')
param tlsCertificateSecretName string = 'silo-tls-cert'

@description('Key Vault secret with the silo certificate\'s private key (PEM).')
param tlsKeySecretName string = 'silo-tls-key'

@description('Key Vault secret with the cluster certificate authority (PEM).')
param tlsAuthoritySecretName string = 'cluster-ca'

@description('Tags applied to every resource.')
param tags object = {
  application: 'cloud'
}

// Storage and PostgreSQL names are global; a hash of the resource group keeps them unique per deployment.
var uniqueSuffix = take(uniqueString(resourceGroup().id), 6)
var storageAccountName = take('${namePrefix}disks${uniqueSuffix}', 24)
var postgresServerName = '${namePrefix}-pg-${uniqueSuffix}'
var databaseName = 'cloud'
var disksContainerName = 'disks'
var siloIdentityName = '${namePrefix}-silo-id'
var workspaceName = '${namePrefix}-logs'
var appInsightsName = '${namePrefix}-appi'

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    location: location
    identityName: siloIdentityName
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    workspaceName: workspaceName
    appInsightsName: appInsightsName
    retentionInDays: logRetentionInDays
    tags: tags
  }
}

module monitoringRoles 'modules/monitoring-roles.bicep' = {
  name: 'monitoring-roles'
  // The module finds the component and the identity by name, so it has to wait for both.
  dependsOn: [
    monitoring
    identity
  ]
  params: {
    appInsightsName: appInsightsName
    siloIdentityName: siloIdentityName
  }
}

module tlsSecrets 'modules/tls-secrets.bicep' = {
  name: 'tls-secrets'
  // The module finds the identity by name, so it has to wait for it.
  dependsOn: [
    identity
  ]
  params: {
    keyVaultName: tlsKeyVaultName
    siloIdentityName: siloIdentityName
    certificateSecretName: tlsCertificateSecretName
    keySecretName: tlsKeySecretName
    authoritySecretName: tlsAuthoritySecretName
  }
}

module network 'modules/network.bicep' = {
  name: 'network'
  params: {
    location: location
    namePrefix: namePrefix
    addressPrefix: '10.40.0.0/16'
    appsSubnetPrefix: '10.40.0.0/23'
    postgresSubnetPrefix: '10.40.2.0/24'
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  dependsOn: [
    identity
  ]
  params: {
    location: location
    accountName: storageAccountName
    disksContainerName: disksContainerName
    siloIdentityName: siloIdentityName
    tags: tags
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    location: location
    serverName: postgresServerName
    version: postgresVersion
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    storageSizeGB: 64
    databaseName: databaseName
    subnetId: network.outputs.postgresSubnetId
    privateDnsZoneId: network.outputs.postgresDnsZoneId
    siloIdentityName: siloIdentityName
    // The Entra administrator resource must be named by the identity's object id, which exists only once
    // the identity does; What-If shows that one resource less precisely, which is the price of no password.
    #disable-next-line what-if-short-circuiting
    siloPrincipalId: identity.outputs.principalId
    highAvailability: postgresHighAvailability
    tags: tags
  }
}

module silos 'modules/silos.bicep' = {
  name: 'silos'
  dependsOn: [
    monitoring
  ]
  params: {
    location: location
    namePrefix: namePrefix
    image: siloImage
    registryServer: registryServer
    replicaCount: siloCount
    cpuCores: siloCpuCores
    memory: siloMemory
    subnetId: network.outputs.appsSubnetId
    workspaceName: workspaceName
    siloIdentityId: identity.outputs.id
    siloIdentityClientId: identity.outputs.clientId
    siloIdentityName: siloIdentityName
    postgresHost: postgres.outputs.fqdn
    postgresDatabase: postgres.outputs.databaseName
    blobEndpoint: storage.outputs.blobEndpoint
    disksContainerName: storage.outputs.disksContainerName
    clusterId: clusterId
    tlsCertificateReference: tlsSecrets.outputs.certificateReference
    tlsKeyReference: tlsSecrets.outputs.keyReference
    tlsAuthorityReference: tlsSecrets.outputs.authorityReference
    tags: tags
  }
}

@description('Internal host name of the silos (NBD on 10809, Orleans gateway on 30000).')
output siloFqdn string = silos.outputs.siloFqdn

@description('PostgreSQL host name (Entra sign-in as the silo identity).')
output postgresFqdn string = postgres.outputs.fqdn

@description('Blob endpoint that holds the page-blob disks.')
output blobEndpoint string = storage.outputs.blobEndpoint

@description('Client id of the silo identity.')
output siloIdentityClientId string = identity.outputs.clientId
