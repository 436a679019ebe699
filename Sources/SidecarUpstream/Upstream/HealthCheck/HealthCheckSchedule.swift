import SidecarCore

/// When a host's next health check runs. Pure: the caller says what it knows, chance comes from `random`.
///
/// Envoy's `HealthCheckerImplBase::interval` and `intervalWithJitter`
/// (source/extensions/health_checkers/common/health_checker_base_impl.cc):
/// - until the cluster has carried traffic (Envoy: `upstream_cx_total` was ever used), `no_traffic_interval`
///   (default 60 s), so idle clusters cost little and their hosts' view is still roughly current, or after a
///   passing check `no_traffic_healthy_interval` when set;
/// - then `interval` after a passing check and `unhealthy_interval` (default `interval`) after a failing one;
/// - plus a random `[0, interval_jitter)`, and never less than 1 ms so a zero config cannot spin;
/// - the first check of a host runs at once, or after a random `[0, initial_jitter)` (at least 1 ms) when
///   `initial_jitter` is set (`onInitialInterval`), so hosts added together are not probed in lockstep.
///
/// Envoy picks the base by the *result of the check just made* (its `HealthState` argument), which with
/// the default edge intervals (`unhealthy_edge_interval` = `unhealthy_interval`, `healthy_edge_interval` =
/// `interval`) is the same as the host's health except while a threshold is being counted: a healthy host
/// whose check just failed is re-checked after `unhealthy_interval`. `hostHealthy` follows that meaning.
package enum HealthCheckSchedule {
    /// Envoy's floor on every computed interval ("We force a non-zero final MS, to prevent live lock").
    package static let minimumNanoseconds: Int64 = 1_000_000

    /// Nanoseconds from now to the next check.
    /// - Parameters:
    ///   - hostHealthy: the check just made passed (see above); ignored for the first check.
    ///   - clusterHasTraffic: the cluster has made an upstream connection for real traffic.
    ///   - first: this is the host's first check since it was added.
    package static func next<R: RandomSource>(
        config: HealthCheckConfig, hostHealthy: Bool, clusterHasTraffic: Bool, first: Bool, random: inout R
    ) -> Int64 {
        if first {
            let jitter = config.initialJitter.nanoseconds
            guard jitter > 0 else { return 0 }
            return max(minimumNanoseconds, jittered(0, by: jitter, random: &random))
        }
        let base: Int64
        if !clusterHasTraffic {
            base = ((hostHealthy ? config.noTrafficHealthyInterval : nil) ?? config.noTrafficInterval).nanoseconds
        } else if hostHealthy {
            base = config.interval.nanoseconds
        } else {
            base = (config.unhealthyInterval ?? config.interval).nanoseconds
        }
        return max(minimumNanoseconds, jittered(base, by: config.intervalJitter.nanoseconds, random: &random))
    }

    /// `base` plus a uniform-ish `[0, jitter)`, as Envoy's `random() % jitter`.
    private static func jittered<R: RandomSource>(_ base: Int64, by jitter: Int64, random: inout R) -> Int64 {
        guard jitter > 0 else { return base }
        return base + Int64(random.next() % UInt64(jitter))
    }
}
