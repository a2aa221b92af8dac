// Azure Database for PostgreSQL flexible server for Orleans membership and grain state. Entra ID
// authentication only: the silo identity is the server's Entra administrator and signs in with a
// token, so no password exists anywhere.

@description('Azure region for the server.')
param location string

@description('Server name, globally unique.')
param serverName string

@description('PostgreSQL major version (15 or newer: the schema uses UNIQUE NULLS NOT DISTINCT).')
@allowed([
  '15'
  '16'
])
param version string

@description('Compute SKU, e.g. Standard_D2ds_v5.')
param skuName string

@description('Compute tier matching the SKU.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param skuTier string

@description('Storage size in GiB.')
@minValue(32)
param storageSizeGB int

@description('Database that holds the Orleans tables.')
param databaseName string

@description('Subnet delegated to PostgreSQL flexible server.')
param subnetId string

@description('Private DNS zone the server registers in.')
param privateDnsZoneId string

@description('Name of the silo identity (becomes a PostgreSQL role); it must already exist in this resource group.')
param siloIdentityName string

@description('Principal (object) id of the silo identity: the administrator resource is named by it.')
param siloPrincipalId string

@description('Zone-redundant standby: on for production, off for test deployments.')
param highAvailability bool

@description('Tags applied to every resource.')
param tags object

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: serverName
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: version
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: 'Enabled'
    }
    network: {
      delegatedSubnetResourceId: subnetId
      privateDnsZoneArmResourceId: privateDnsZoneId
      publicNetworkAccess: 'Disabled'
    }
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
    highAvailability: {
      mode: highAvailability ? 'ZoneRedundant' : 'Disabled'
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// The silo identity administers the server so the silo (or `cloudctl db init`) can apply the schema.
resource siloAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: siloPrincipalId
  dependsOn: [
    database
  ]
  properties: {
    principalName: siloIdentityName
    principalType: 'ServicePrincipal'
    tenantId: subscription().tenantId
  }
}

@description('Host name of the server.')
output fqdn string = server.properties.fullyQualifiedDomainName

@description('Name of the database.')
output databaseName string = database.name
