/// How a cluster's load is shared among its priority levels, and which levels are in panic: Envoy's
/// `LoadBalancerBase::recalculatePriorityLoad`, `recalculatePerPriorityPanic` and `recalculateLoadInTotalPanic`
/// (`source/common/upstream/load_balancer_impl.cc`), for healthy hosts (Pilotfish has no degraded tier).
///
/// - A level's health is its share of healthy hosts times the overprovisioning factor (1.4), at most 100 %.
/// - Levels take load in priority order, each as much as its health, normalized so that the shares add up
///   to 100 % when the levels' health together is less (the rounding remainder goes to the first healthy level).
/// - When that total health is 100 %, no level is in panic. Otherwise a level whose healthy share is below
///   `healthy_panic_threshold` is, and uses all its hosts; when every level is, the load follows the host counts.
package struct PriorityLoad: Sendable, Equatable {
    /// Percent of requests per priority; adds up to 100 unless the cluster has no hosts.
    package var load: [Int]
    /// Per priority: in panic, so every host of the level takes traffic, healthy or not.
    package var panic: [Bool]

    package static let defaultOverprovisioningFactor = 140

    /// - Parameters:
    ///   - hostCounts: hosts per priority (index 0 is the highest).
    ///   - healthyCounts: healthy hosts per priority.
    ///   - panicThreshold: `healthy_panic_threshold` in percent; rounded and capped at 100 as Envoy does.
    package init(hostCounts: [Int], healthyCounts: [Int], panicThreshold: Double,
                 overprovisioningFactor: Int = PriorityLoad.defaultOverprovisioningFactor) {
        precondition(hostCounts.count == healthyCounts.count && !hostCounts.isEmpty, "one count per priority")
        let levels = hostCounts.count
        let health = (0..<levels).map { i in
            hostCounts[i] == 0 ? 0 : min(100, overprovisioningFactor * healthyCounts[i] / hostCounts[i])
        }
        let normalizedTotal = min(100, health.reduce(0, +))
        load = Array(repeating: 0, count: levels)
        panic = Array(repeating: false, count: levels)
        if normalizedTotal > 0 {
            var remaining = 100
            var firstHealthy: Int?
            for i in 0..<levels {
                if health[i] > 0 && firstHealthy == nil { firstHealthy = i }
                load[i] = min(remaining, health[i] * 100 / normalizedTotal)
                remaining -= load[i]
            }
            if remaining > 0, let first = firstHealthy { load[first] += remaining }
        }
        let threshold = min(100, max(0, panicThreshold.rounded()))
        if threshold == 0 && normalizedTotal == 0 {
            // Panic is off and nothing is healthy: the load goes to P0, where there is no host to give.
            load[0] = 100
            return
        }
        guard normalizedTotal < 100 else { return }
        for i in 0..<levels {
            let healthyPercent = hostCounts[i] == 0 ? 0 : 100 * Double(healthyCounts[i]) / Double(hostCounts[i])
            panic[i] = healthyPercent < threshold
        }
        guard panic.allSatisfy({ $0 }) else { return }
        // Total panic: each level's share of the hosts.
        let totalHosts = hostCounts.reduce(0, +)
        guard totalHosts > 0 else { return }
        var remaining = 100
        var firstNonEmpty: Int?
        for i in 0..<levels {
            if hostCounts[i] > 0 && firstNonEmpty == nil { firstNonEmpty = i }
            load[i] = 100 * hostCounts[i] / totalHosts
            remaining -= load[i]
        }
        if let first = firstNonEmpty { load[first] += remaining }
    }

    /// The level a draw falls in (Envoy's `choosePriority`: `hash % 100 + 1` against the running total).
    package func level(for draw: UInt64) -> Int {
        let point = Int(draw % 100) + 1
        var total = 0
        for (i, share) in load.enumerated() {
            total += share
            if point <= total { return i }
        }
        return 0
    }

    /// A locality's weight scaled by its health (Envoy's `HostSetImpl::effectiveLocalityWeight`):
    /// `weight × min(1, factor × healthy / hosts)`, here in hundredths of the weight.
    package static func effectiveLocalityWeight(weight: UInt32, hosts: Int, healthy: Int,
                                                overprovisioningFactor: Int = defaultOverprovisioningFactor) -> Int {
        guard hosts > 0 else { return 0 }
        return Int(weight) * min(100 * hosts, overprovisioningFactor * healthy) / hosts
    }
}
