import SidecarCore

/// One worker's balancer for one cluster, following Envoy's `lb_policy` semantics
/// (`source/extensions/load_balancing_policies/{round_robin,least_request,random,ring_hash,maglev}` and the
/// shared base in `common/load_balancer_impl.cc` and `common/thread_aware_lb_impl.cc`).
///
/// Rebuilt whenever the host list or any host's health changes: everything that depends only on those (the
/// candidate set, panic, a ring or Maglev table) is worked out here once, so `choose` allocates nothing.
///
/// Panic (`common_lb_config.healthy_panic_threshold`, default 50 %): when fewer than that share of hosts is
/// healthy, the few healthy ones would be overwhelmed, so Envoy spreads load over every host instead, healthy
/// or not. A threshold of 0 turns this off; then an all-unhealthy cluster has no host to give.
package struct LoadBalancer {
    package let policy: Cluster.LBPolicy
    /// Whether the share of healthy hosts is below `healthy_panic_threshold`, so every host is a candidate.
    package let inPanic: Bool
    /// Indices (into the host list) that may be chosen: the healthy hosts, or every host in panic.
    package let candidates: [Int]

    private let choiceCount: Int
    /// `LEAST_REQUEST` over candidates of differing weights (Envoy switches to its weighted schedule then).
    private let leastRequestWeighted: Bool
    private var roundRobin = SmoothRoundRobin(weights: [])
    private var weightedLeastRequest = WeightedLeastRequest(weights: [], bias: 1)
    private var ring = HashRing()
    private var maglev = MaglevTable()

    /// - Parameters:
    ///   - healthy: per host, whether it may take traffic (active health checks passing, not ejected).
    ///   - workerIndex: offsets round robin so the workers do not all send their first request to one host.
    package init(config: LoadBalancingConfig, hosts: [UpstreamHost], healthy: [Bool], workerIndex: Int) {
        precondition(healthy.count == hosts.count, "one health flag per host")
        policy = config.policy
        let healthyCount = healthy.reduce(0) { $0 + ($1 ? 1 : 0) }
        // Envoy rounds the configured percentage to an integer and caps it at 100; an empty host set counts
        // as 0 % healthy (so it is "in panic" unless panic is disabled; there is nothing to choose either way).
        let threshold = min(100, max(0, config.healthyPanicThreshold.rounded()))
        let healthyPercent = hosts.isEmpty ? 0 : 100 * Double(healthyCount) / Double(hosts.count)
        inPanic = healthyPercent < threshold
        candidates = inPanic ? Array(hosts.indices) : hosts.indices.filter { healthy[$0] }

        let weights = candidates.map { hosts[$0].weight }
        let uniform = weights.allSatisfy { $0 == weights.first }
        choiceCount = max(config.choiceCount, 1)
        leastRequestWeighted = !uniform

        switch policy {
        case .ROUND_ROBIN, .CLUSTER_PROVIDED:
            // CLUSTER_PROVIDED (ORIGINAL_DST clusters) takes its host from the connection, not from here; should
            // such a cluster still have a host list, it is used round robin.
            roundRobin = SmoothRoundRobin(weights: weights, start: workerIndex)
            if !uniform {
                // SmoothRoundRobin offsets only plain rotation; for a weighted schedule, start this worker
                // `workerIndex` steps into it (the shares over a full cycle are unchanged).
                let total = weights.reduce(0) { $0 + Int($1) }
                for _ in 0..<(total > 0 ? max(workerIndex, 0) % total : 0) { _ = roundRobin.pick() }
            }
        case .LEAST_REQUEST:
            if !uniform {
                weightedLeastRequest = WeightedLeastRequest(weights: weights, bias: config.activeRequestBias)
            }
        case .RANDOM:
            break
        case .RING_HASH:
            ring = HashRing(
                keys: candidates.map { hosts[$0].hashKey }, weights: weights,
                minimumSize: config.minimumRingSize, maximumSize: max(config.maximumRingSize, config.minimumRingSize))
        case .MAGLEV:
            // Config decoding refuses a non-prime table_size as Envoy does; should one get here anyway, use the
            // default rather than build a table whose permutations cannot fill it.
            let size = MaglevTable.isPrime(config.maglevTableSize) ? config.maglevTableSize : MaglevTable.defaultSize
            maglev = MaglevTable(keys: candidates.map { hosts[$0].hashKey }, weights: weights, size: size)
        }
    }

    /// The index of the host to use, or nil when there is none (no hosts, or none healthy with panic off).
    ///
    /// - Parameters:
    ///   - hash: the request's hash from the route's `hash_policy` (RING_HASH, MAGLEV); nil means a random
    ///     one, as in Envoy (which then behaves like RANDOM). Ignored by the other policies.
    ///   - activeRequests: requests in flight per host index (LEAST_REQUEST); a missing entry counts as 0.
    ///   - maxAttempts: `host_selection_retry_max_attempts`: how many times a host refused by `reject` is
    ///     picked again. Envoy makes at most `maxAttempts + 1` picks and uses the last even if refused.
    ///   - reject: the retry host predicates (e.g. `previous_hosts`): true means "pick another".
    package mutating func choose<R: RandomSource>(
        hash: UInt64?, activeRequests: [Int], random: inout R, maxAttempts: Int, reject: (Int) -> Bool
    ) -> Int? {
        if candidates.isEmpty { return nil }
        let requestHash: UInt64
        switch policy {
        case .RING_HASH, .MAGLEV:
            // Drawn once: retries of a hashing pick walk away from the same starting point.
            requestHash = hash ?? random.next()
        case .ROUND_ROBIN, .CLUSTER_PROVIDED, .LEAST_REQUEST, .RANDOM:
            requestHash = 0
        }
        var picked: Int?
        for attempt in 0...max(maxAttempts, 0) {
            picked = pickOnce(hash: requestHash, attempt: attempt, activeRequests: activeRequests, random: &random)
            guard let host = picked else { return nil }
            if !reject(host) { return host }
        }
        return picked
    }

    private mutating func pickOnce<R: RandomSource>(
        hash: UInt64, attempt: Int, activeRequests: [Int], random: inout R
    ) -> Int? {
        let n = candidates.count
        switch policy {
        case .ROUND_ROBIN, .CLUSTER_PROVIDED:
            return roundRobin.pick().map { candidates[$0] }
        case .LEAST_REQUEST:
            if leastRequestWeighted {
                let candidates = self.candidates
                return weightedLeastRequest.pick { Self.active(activeRequests, candidates[$0]) }.map { candidates[$0] }
            }
            // Power of N choices, as Envoy: draw choice_count candidates with replacement, keep the first of the
            // least loaded.
            var best = candidates[Int(random.next() % UInt64(n))]
            for _ in 1..<max(choiceCount, 1) {
                let sampled = candidates[Int(random.next() % UInt64(n))]
                if Self.active(activeRequests, sampled) < Self.active(activeRequests, best) { best = sampled }
            }
            return best
        case .RANDOM:
            return candidates[Int(random.next() % UInt64(n))]
        case .RING_HASH:
            return ring.host(for: hash, attempt: attempt).map { candidates[$0] }
        case .MAGLEV:
            return maglev.host(for: hash, attempt: attempt).map { candidates[$0] }
        }
    }

    @inline(__always)
    private static func active(_ activeRequests: [Int], _ host: Int) -> Int {
        host < activeRequests.count ? activeRequests[host] : 0
    }

    /// The ring's size, for `ring_hash_lb.size` (0 unless RING_HASH).
    package var ringSize: Int { ring.size }
    /// Ring entries or Maglev slots per host index (for `min/max_hashes_per_host`, `min/max_entries_per_host`).
    package func hashEntriesPerHost(hostCount: Int) -> [Int] {
        var out = Array(repeating: 0, count: hostCount)
        let perCandidate: [Int]
        switch policy {
        case .RING_HASH: perCandidate = ring.entriesPerHost(count: candidates.count)
        case .MAGLEV: perCandidate = maglev.entriesPerHost(count: candidates.count)
        case .ROUND_ROBIN, .CLUSTER_PROVIDED, .LEAST_REQUEST, .RANDOM: return out
        }
        for (k, host) in candidates.enumerated() where host < hostCount { out[host] = perCandidate[k] }
        return out
    }
}
