// Virtual network: one subnet for the Container Apps environment (silo-to-silo, gateway and NBD
// traffic stays inside it) and one delegated to PostgreSQL flexible server, with the private DNS
// zone the server registers in.

@description('Azure region for the network.')
param location string

@description('Prefix for resource names.')
param namePrefix string

@description('Address space of the virtual network.')
param addressPrefix string

@description('Subnet for the Container Apps environment (at least /27 for workload profiles).')
param appsSubnetPrefix string

@description('Subnet delegated to PostgreSQL flexible server.')
param postgresSubnetPrefix string

@description('Tags applied to every resource.')
param tags object

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: '${namePrefix}-vnet'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'apps'
        properties: {
          addressPrefix: appsSubnetPrefix
          delegations: [
            {
              name: 'containerapps'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'postgres'
        properties: {
          addressPrefix: postgresSubnetPrefix
          delegations: [
            {
              name: 'postgres'
              properties: {
                serviceName: 'Microsoft.DBforPostgreSQL/flexibleServers'
              }
            }
          ]
        }
      }
    ]
  }
}

// The zone name must end in .postgres.database.azure.com for a flexible server with private access.
resource postgresDns 'Microsoft.Network/privateDnsZones@2024-06-01' = {
  name: '${namePrefix}.private.postgres.database.azure.com'
  location: 'global'
  tags: tags
}

resource postgresDnsLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = {
  parent: postgresDns
  name: '${namePrefix}-vnet-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

@description('Resource id of the Container Apps subnet.')
output appsSubnetId string = vnet.properties.subnets[0].id

@description('Resource id of the PostgreSQL subnet.')
output postgresSubnetId string = vnet.properties.subnets[1].id

@description('Resource id of the PostgreSQL private DNS zone.')
output postgresDnsZoneId string = postgresDns.id
