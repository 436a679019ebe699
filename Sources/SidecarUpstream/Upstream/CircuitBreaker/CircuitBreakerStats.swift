import SidecarCore

/// `cluster.<name>.circuit_breakers.<default|high>.*`: Envoy's `ClusterCircuitBreakersStats`
/// (envoy/upstream/upstream.h). The values live in `ClusterResources`' atomics, so they are registered as
/// computed gauges and read when stats are shown; workers count nothing for them.
///
/// - `cx_open`, `cx_pool_open`, `rq_pending_open`, `rq_open`, `rq_retry_open` exist for both priorities.
///   Envoy sets them on every `inc()`/`dec()`; here they are worked out at read time as "count at or above
///   the limit". That agrees with Envoy whenever the count has moved since the limit took effect, and differs
///   in two corners where Envoy's gauge lags: a limit of 0 (Envoy shows 0 until something is counted, here
///   1), and `rq_retry_open` under a `retry_budget` (Envoy compares against `max_retries`, here the budget's
///   current limit, the one actually enforced).
/// - `cx_pool_open` is always 0: Pilotfish has no `max_connection_pools` limit (Envoy's default is
///   unlimited, so Envoy's is 0 too).
/// - With `track_remaining` on a priority: `remaining_cx`, `remaining_pending`, `remaining_rq`,
///   `remaining_retries` for that priority only (0 under a retry budget; Envoy shows `max_retries` until the
///   first retry decision and 0 from then on). Envoy also publishes `remaining_cx_pools`, which with the
///   unlimited default is 2^64 − 1 minus the pools in use (18446744073709551614 with one pool); it is left
///   out, since there is no pool limit to count down from and the value does not fit our signed gauges.
package struct CircuitBreakerStats: Sendable {
    /// Every slot registered, in registration order.
    package let slots: [Int]

    /// The gauges of both priorities, one run per cluster read by one function.
    static let layout = SlotLayout(
        stats: CircuitBreakerThresholds.Priority.allCases.flatMap { p in
            ["cx_open", "cx_pool_open", "rq_pending_open", "rq_open", "rq_retry_open"].map {
                (suffix: "circuit_breakers.\(p.statName).\($0)", kind: StatsRegistry.Kind.gauge)
            }
        }, familyPrefix: "cluster.")

    package init(cluster: String, resources: ClusterResources, registry r: StatsRegistry) {
        let label = [("envoy_cluster_name", cluster)]
        let first = r.register(Self.layout, prefix: "cluster.\(cluster).", labels: label)
        let priorities = CircuitBreakerThresholds.Priority.allCases
        r.setComputed(first: first, count: Self.layout.count) { k in
            let p = priorities[priorities.index(priorities.startIndex, offsetBy: k / 5)]
            switch k % 5 {
            case 0: return resources.isOpen(.connections, p) ? 1 : 0
            case 1: return 0
            case 2: return resources.isOpen(.pendingRequests, p) ? 1 : 0
            case 3: return resources.isOpen(.requests, p) ? 1 : 0
            default: return resources.isOpen(.retries, p) ? 1 : 0
            }
        }
        var slots = Array(first..<first + Self.layout.count)
        for p in priorities where resources.thresholds(p).trackRemaining {
            let prefix = "circuit_breakers.\(p.statName)."
            func reg(_ stat: String, _ read: @escaping @Sendable () -> Int) {
                slots.append(
                    r.registerComputed(
                        "cluster.\(cluster).\(prefix)\(stat)", family: "cluster.\(prefix)\(stat)", labels: label,
                        read))
            }
            reg("remaining_cx") { resources.remaining(.connections, p) }
            reg("remaining_pending") { resources.remaining(.pendingRequests, p) }
            reg("remaining_rq") { resources.remaining(.requests, p) }
            reg("remaining_retries") { resources.remaining(.retries, p) }
        }
        self.slots = slots
    }
}
