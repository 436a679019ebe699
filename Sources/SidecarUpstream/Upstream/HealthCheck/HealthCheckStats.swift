import SidecarCore

/// `cluster.<name>.health_check.*` slots of one cluster, with Envoy's names (`ALL_HEALTH_CHECKER_STATS` in
/// envoy/upstream/health_checker.h, registered by `HealthCheckerImplBase::generateStats`).
public struct HealthCheckStats: Sendable {
    /// Checks started (`onIntervalBase`).
    public let attempt: Int
    /// Checks that passed.
    public let success: Int
    /// Checks that failed, for any reason: network failures and passive failures are counted here too.
    public let failure: Int
    /// The failures that were network ones: refused, reset, closed early, timed out.
    public let networkFailure: Int
    /// Hosts reported unhealthy by traffic (`x-envoy-immediate-health-check-fail` on a routed response).
    public let passiveFailure: Int
    /// Checks that compared `x-envoy-upstream-healthchecked-cluster` (`service_name_matcher`); Pilotfish's config
    /// has no matcher, so this stays 0 as it does in Envoy without one.
    public let verifyCluster: Int
    /// Gauge: hosts currently passing active checks.
    public let healthy: Int
    /// Gauge: hosts whose last passing answer said `x-envoy-degraded`.
    public let degraded: Int

    package init(cluster: String, registry r: StatsRegistry) {
        let label = ("envoy_cluster_name", cluster)
        func reg(_ s: String, _ k: StatsRegistry.Kind) -> Int {
            r.register("cluster.\(cluster).health_check.\(s)", k, family: "cluster.health_check.\(s)", labels: [label])
        }
        attempt = reg("attempt", .counter)
        success = reg("success", .counter)
        failure = reg("failure", .counter)
        networkFailure = reg("network_failure", .counter)
        passiveFailure = reg("passive_failure", .counter)
        verifyCluster = reg("verify_cluster", .counter)
        healthy = reg("healthy", .gauge)
        degraded = reg("degraded", .gauge)
    }
}
