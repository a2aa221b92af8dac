// The silos as one Azure Container App with a fixed number of replicas in a VNet-integrated
// Container Apps environment. Replicas reach each other directly on the silo port (Orleans
// messaging) and clients reach them on the gateway port; NBD is a TCP ingress inside the VNet.

@description('Azure region for the environment and the app.')
param location string

@description('Prefix for resource names.')
param namePrefix string

@description('Container image of the silo, e.g. myregistry.azurecr.io/cloud-silo:1.0.')
param image string

@description('Registry server the image comes from; empty for a public image.')
param registryServer string

@description('Number of silo replicas. Fixed: silos own disks and partitions, so they do not autoscale.')
@minValue(1)
@maxValue(30)
param replicaCount int

@description('vCPUs per silo replica.')
param cpuCores string

@description('Memory per silo replica, e.g. 8Gi.')
param memory string

@description('Subnet for the environment.')
param subnetId string

@description('Name of the Log Analytics workspace that receives console logs.')
param workspaceName string

@description('Resource id of the silo identity.')
param siloIdentityId string

@description('Client id of the silo identity.')
param siloIdentityClientId string

@description('Name of the silo identity (its PostgreSQL user name).')
param siloIdentityName string

@description('PostgreSQL host name.')
param postgresHost string

@description('PostgreSQL database name.')
param postgresDatabase string

@description('Blob endpoint of the disks storage account.')
param blobEndpoint string

@description('Container that holds the page-blob disks.')
param disksContainerName string

@description('Orleans cluster id.')
param clusterId string

@description('Key Vault reference (secret URI) of the silo TLS certificate, PEM.')
param tlsCertificateReference string

@description('Key Vault reference (secret URI) of the silo TLS private key, PEM.')
param tlsKeyReference string

@description('Key Vault reference (secret URI) of the cluster certificate authority, PEM.')
param tlsAuthorityReference string

@description('Tags applied to every resource.')
param tags object

// Ports the silo listens on (the silo's defaults).
var siloPort = 11111
var gatewayPort = 30000
var nbdPort = 10809
var healthPort = 8080

// Where the TLS secrets are mounted as files; the silo reads them at start (Silo__Tls__*).
var tlsDirectory = '/etc/cloud/tls'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${namePrefix}-env'
  location: location
  tags: tags
  properties: {
    vnetConfiguration: {
      infrastructureSubnetId: subnetId
      // Only reachable from inside the VNet: NBD and the Orleans gateway have no authentication of their own.
      internal: true
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    // Logs go through Azure Monitor diagnostic settings (below) rather than the workspace's shared key.
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
    zoneRedundant: true
  }
}

resource environmentLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: environment
  name: 'to-log-analytics'
  properties: {
    workspaceId: workspace.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

resource silo 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${namePrefix}-silo'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${siloIdentityId}': {}
    }
  }
  properties: {
    environmentId: environment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: false
        transport: 'tcp'
        targetPort: nbdPort
        exposedPort: nbdPort
        additionalPortMappings: [
          {
            external: false
            targetPort: gatewayPort
            exposedPort: gatewayPort
          }
        ]
      }
      // The TLS certificate, key and authority, fetched from Key Vault with the silo identity; never in the template.
      secrets: [
        {
          name: 'silo-tls-cert'
          keyVaultUrl: tlsCertificateReference
          identity: siloIdentityId
        }
        {
          name: 'silo-tls-key'
          keyVaultUrl: tlsKeyReference
          identity: siloIdentityId
        }
        {
          name: 'cluster-ca'
          keyVaultUrl: tlsAuthorityReference
          identity: siloIdentityId
        }
      ]
      registries: empty(registryServer) ? [] : [
        {
          server: registryServer
          identity: siloIdentityId
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'silo'
          image: image
          resources: {
            cpu: json(cpuCores)
            memory: memory
          }
          // Every key here is one the silo reads (docs/DEPLOY.md lists them; tests/Cloud.Infra.Tests fails on a key
          // the silo does not bind): the Silo, Nbd, Http and PageBlobs sections of its configuration.
          env: [
            // The user-assigned identity the silo signs in as, to PostgreSQL and to the disks' storage account.
            { name: 'AZURE_CLIENT_ID', value: siloIdentityClientId }
            { name: 'Silo__ClusterId', value: clusterId }
            { name: 'Silo__ServiceId', value: clusterId }
            // The replica's own address, bound and advertised to the other replicas and to clients.
            { name: 'Silo__Address', value: 'auto' }
            { name: 'Silo__SiloPort', value: string(siloPort) }
            { name: 'Silo__GatewayPort', value: string(gatewayPort) }
            { name: 'Silo__Clustering', value: 'postgres' }
            // No password: the silo signs in to PostgreSQL with an Entra token of AZURE_CLIENT_ID.
            {
              name: 'Silo__Connection'
              value: 'Host=${postgresHost};Database=${postgresDatabase};Username=${siloIdentityName};SSL Mode=Require'
            }
            { name: 'Silo__PostgresSignIn', value: 'ManagedIdentity' }
            // Idempotent and serialized by an advisory lock, so every replica may apply it at start.
            { name: 'Silo__ApplySchema', value: 'true' }
            { name: 'PageBlobs__ServiceUri', value: blobEndpoint }
            // Volumes created without --disk get page blobs here, which outlive any replica.
            { name: 'PageBlobs__DefaultContainer', value: disksContainerName }
            { name: 'Nbd__Port', value: string(nbdPort) }
            { name: 'Http__Port', value: string(healthPort) }
            // Mutual TLS between silos and with clients: on by default off loopback; said here so it cannot be lost.
            { name: 'Silo__Tls__Mode', value: 'on' }
            { name: 'Silo__Tls__CertificateFile', value: '${tlsDirectory}/silo.crt' }
            { name: 'Silo__Tls__KeyFile', value: '${tlsDirectory}/silo.key' }
            { name: 'Silo__Tls__AuthorityFile', value: '${tlsDirectory}/ca.crt' }
          ]
          volumeMounts: [
            {
              volumeName: 'tls'
              mountPath: tlsDirectory
            }
          ]
          probes: [
            {
              type: 'Liveness'
              httpGet: {
                path: '/alive'
                port: healthPort
              }
              periodSeconds: 10
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/health'
                port: healthPort
              }
              periodSeconds: 5
              failureThreshold: 3
            }
          ]
        }
      ]
      volumes: [
        {
          name: 'tls'
          storageType: 'Secret'
          secrets: [
            {
              secretRef: 'silo-tls-cert'
              path: 'silo.crt'
            }
            {
              secretRef: 'silo-tls-key'
              path: 'silo.key'
            }
            {
              secretRef: 'cluster-ca'
              path: 'ca.crt'
            }
          ]
        }
      ]
      scale: {
        minReplicas: replicaCount
        maxReplicas: replicaCount
      }
    }
  }
}

@description('Name of the silo container app.')
output siloAppName string = silo.name

@description('Internal host name of the silo app (NBD on port 10809, Orleans gateway on 30000).')
output siloFqdn string = silo.properties.configuration.ingress.fqdn

@description('Name of the Container Apps environment.')
output environmentName string = environment.name
