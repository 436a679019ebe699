import SidecarCore

/// One worker's balancer for one cluster (Envoy's `LoadBalancerBase` with its policy): it picks a priority level
/// by the levels' shares of the load (`PriorityLoad`), then — with `locality_weighted_lb_config` — a locality of
/// that level by its health-scaled weight, then a host by `lb_policy` (`HostSetBalancer`).
///
/// Rebuilt whenever the host list or any host's health changes, so `choose` allocates nothing. A cluster with
/// one priority and no locality weighting (most of them) picks straight from its one level, drawing nothing
/// for the priority.
///
/// Panic (`common_lb_config.healthy_panic_threshold`, default 50 %): when a level has too few healthy hosts and
/// the levels together cannot make up for it, the level's few healthy hosts would be overwhelmed, so Envoy
/// spreads its load over all its hosts instead, healthy or not, and ignores localities. A threshold of 0 turns
/// this off; then a cluster with no healthy host has none to give.
package struct LoadBalancer {
    package let policy: Cluster.LBPolicy
    /// How load is shared among the priorities, and which are in panic.
    package let priorityLoad: PriorityLoad
    private var levels: [Level]

    /// One priority level: its balancer over the healthy hosts (all of them in panic), and with locality
    /// weighting one per locality that has healthy hosts and a weight, with the schedule that picks among them.
    private struct Level {
        var hosts: HostSetBalancer
        var localities: [HostSetBalancer] = []
        var localityPicker = SmoothRoundRobin(weights: [])
    }

    /// - Parameters:
    ///   - healthy: per host, whether it may take traffic (EDS health, active health checks, not ejected).
    ///   - workerIndex: offsets round robin so the workers do not all send their first request to one host.
    package init(config: LoadBalancingConfig, hosts: [UpstreamHost], healthy: [Bool], workerIndex: Int) {
        precondition(healthy.count == hosts.count, "one health flag per host")
        policy = config.policy
        let levelCount = Int(hosts.lazy.map(\.group.priority).max() ?? 0) + 1
        var members = Array(repeating: [Int](), count: levelCount)
        for i in hosts.indices { members[Int(hosts[i].group.priority)].append(i) }
        let healthyCounts = members.map { $0.reduce(0) { $0 + (healthy[$1] ? 1 : 0) } }
        priorityLoad = PriorityLoad(hostCounts: members.map(\.count), healthyCounts: healthyCounts,
                                    panicThreshold: config.healthyPanicThreshold)
        levels = []
        levels.reserveCapacity(levelCount)
        for p in 0..<levelCount {
            let panic = priorityLoad.panic[p]
            let candidates = panic ? members[p] : members[p].filter { healthy[$0] }
            var level = Level(hosts: HostSetBalancer(config: config, hosts: hosts, candidates: candidates,
                                                     workerIndex: workerIndex))
            if config.localityWeighted && !panic {
                // Localities in the order of their entries in the load assignment.
                var byEntry: [Int: [Int]] = [:]
                var order: [Int] = []
                for i in members[p] {
                    let entry = hosts[i].group.index
                    if byEntry[entry] == nil { order.append(entry) }
                    byEntry[entry, default: []].append(i)
                }
                var weights: [Int] = []
                for entry in order {
                    let all = byEntry[entry]!
                    let usable = all.filter { healthy[$0] }
                    let weight = PriorityLoad.effectiveLocalityWeight(
                        weight: hosts[all[0]].group.localityWeight, hosts: all.count, healthy: usable.count)
                    guard weight > 0 else { continue }
                    weights.append(weight)
                    level.localities.append(HostSetBalancer(config: config, hosts: hosts, candidates: usable,
                                                            workerIndex: workerIndex))
                }
                // No locality with a share: Envoy falls back to the level's healthy hosts.
                if !weights.isEmpty { level.localityPicker = SmoothRoundRobin(shares: weights, start: workerIndex) }
            }
            levels.append(level)
        }
    }

    /// Whether any level is in panic.
    package var inPanic: Bool { priorityLoad.panic.contains(true) }

    /// Every host index a pick may give, level by level.
    package var candidates: [Int] { levels.flatMap(\.hosts.candidates) }

    /// The index of the host to use, or nil when there is none (no hosts, or none healthy with panic off), and
    /// whether it came from a level in panic.
    ///
    /// - Parameters:
    ///   - hash: the request's hash from the route's `hash_policy` (RING_HASH, MAGLEV); nil means a random
    ///     one, as in Envoy (which then behaves like RANDOM). Ignored by the other policies. It picks the
    ///     priority too, so a hash lands on the same level while the levels' health holds.
    ///   - activeRequests: requests in flight per host index (LEAST_REQUEST); a missing entry counts as 0.
    ///   - maxAttempts: `host_selection_retry_max_attempts`: how many times a host refused by `reject` is
    ///     picked again (priority and locality included). Envoy makes at most `maxAttempts + 1` picks and uses
    ///     the last even if refused.
    ///   - reject: the retry host predicates (e.g. `previous_hosts`): true means "pick another".
    package mutating func choose<R: RandomSource>(
        hash: UInt64?, activeRequests: [Int], random: inout R, maxAttempts: Int, reject: (Int) -> Bool
    ) -> (host: Int, panic: Bool)? {
        let requestHash: UInt64
        switch policy {
        case .RING_HASH, .MAGLEV:
            // Drawn once: retries of a hashing pick walk away from the same starting point.
            requestHash = hash ?? random.next()
        case .ROUND_ROBIN, .CLUSTER_PROVIDED, .LEAST_REQUEST, .RANDOM:
            requestHash = 0
        }
        var picked: (host: Int, panic: Bool)?
        for attempt in 0...max(maxAttempts, 0) {
            var p = 0
            if levels.count > 1 {
                switch policy {
                case .RING_HASH, .MAGLEV: p = priorityLoad.level(for: requestHash)
                case .ROUND_ROBIN, .CLUSTER_PROVIDED, .LEAST_REQUEST, .RANDOM: p = priorityLoad.level(for: random.next())
                }
            }
            let host: Int?
            if let locality = levels[p].localityPicker.pick() {
                host = levels[p].localities[locality].pickOnce(
                    hash: requestHash, attempt: attempt, activeRequests: activeRequests, random: &random)
            } else {
                host = levels[p].hosts.pickOnce(
                    hash: requestHash, attempt: attempt, activeRequests: activeRequests, random: &random)
            }
            guard let host else { return nil }
            picked = (host, priorityLoad.panic[p])
            if !reject(host) { return picked }
        }
        return picked
    }

    /// The rings' sizes, for `ring_hash_lb.size` (0 unless RING_HASH).
    package var ringSize: Int { levels.reduce(0) { $0 + $1.hosts.ringSize } }

    /// Ring entries or Maglev slots per host index (for `min/max_hashes_per_host`, `min/max_entries_per_host`).
    package func hashEntriesPerHost(hostCount: Int) -> [Int] {
        var out = Array(repeating: 0, count: hostCount)
        for level in levels {
            for (i, n) in level.hosts.hashEntriesPerHost(hostCount: hostCount).enumerated() where n > 0 { out[i] = n }
        }
        return out
    }
}
