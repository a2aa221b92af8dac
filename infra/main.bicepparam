// Parameters for a production-shaped deployment of Cloud. Copy and edit per environment:
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
using 'main.bicep'

param namePrefix = 'cloudprod'
param siloImage = 'cloudregistry.azurecr.io/cloud-silo:latest'
param registryServer = 'cloudregistry.azurecr.io'
param siloCount = 3
param siloCpuCores = '2.0'
param siloMemory = '4Gi'
param clusterId = 'cloud'
// The vault with the silo's TLS certificate, key and the cluster CA (docs/SECURITY.md): silo-tls-cert, silo-tls-key,
// cluster-ca.
param tlsKeyVaultName = 'cloudprod-kv'
param postgresVersion = '16'
param postgresSkuName = 'Standard_D2ds_v5'
param postgresSkuTier = 'GeneralPurpose'
param postgresHighAvailability = true
param logRetentionInDays = 30
param tags = {
  application: 'cloud'
  environment: 'production'
}
