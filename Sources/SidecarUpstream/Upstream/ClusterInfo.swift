import Atomics
import SidecarCore

/// What every worker shares about one cluster (Envoy's `ClusterInfo`): its config, stats, circuit-breaker counts
/// and TLS context. Immutable; a config snapshot refers to it, and a later snapshot that keeps the cluster with the
/// same config keeps the same object, so requests of both snapshots count against the same breakers and workers
/// keep their pools and host state for it.
public final class ClusterInfo: Sendable {
    public let config: Cluster
    public let stats: ClusterStats
    /// Circuit-breaker counts, shared by every worker (limits are cluster-wide, as in Envoy).
    package let resources: ClusterResources
    package let outlierStats: OutlierDetectionStats?
    package let healthCheckStats: HealthCheckStats?
    /// Set by the first upstream connection: health checks then leave `no_traffic_interval`.
    package let traffic = ManagedAtomic(false)
    /// UpstreamTlsContext: connections are TLS, checked and counted under `cluster.<name>.ssl.*`.
    package let tls: TransportTLS?

    /// Registers the cluster's stats: call once per cluster name, before the workers size their stat arrays.
    package init(config c: Cluster, registry: StatsRegistry) {
        config = c
        let resources = ClusterResources(thresholds: c.circuitBreakers)
        self.resources = resources
        // Owned by the cluster: admin leaves them out while the cluster is not in the config.
        (stats, outlierStats, healthCheckStats, tls) = registry.owned(by: Self.statsOwner(c.name)) {
            let stats = ClusterStats(cluster: c.name, registry: registry)
            _ = CircuitBreakerStats(cluster: c.name, resources: resources, registry: registry)
            let outlier = c.outlierDetection.map { _ in OutlierDetectionStats(cluster: c.name, registry: registry) }
            let health = c.healthChecks.isEmpty ? nil : HealthCheckStats(cluster: c.name, registry: registry)
            let tls = c.tls.map {
                TransportTLS(
                    provider: TLSContextProvider($0, cluster: c),
                    stats: TLSStats(scope: "cluster.\(c.name)", familyPrefix: "cluster",
                                    label: ("envoy_cluster_name", c.name), registry: registry))
            }
            return (stats, outlier, health, tls)
        }
    }

    /// Who owns a cluster's stats in the registry (`StatsRegistry.owned(by:)`).
    package static func statsOwner(_ cluster: String) -> String { "cluster.\(cluster)" }

    package var name: String { config.name }
}
