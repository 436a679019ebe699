import SidecarCore

/// The policy (`lb_policy`) over one fixed list of candidate hosts: one priority level's healthy hosts (or all
/// of them, in panic), or one locality's. `LoadBalancer` decides which list; this one picks from it, following
/// Envoy's policies (`source/extensions/load_balancing_policies/{round_robin,least_request,random,ring_hash,maglev}`).
///
/// Built again whenever its list changes: everything that depends only on the list (a ring, a Maglev table, a
/// weighted schedule) is worked out here once, so `pickOnce` allocates nothing.
package struct HostSetBalancer {
    package let policy: Cluster.LBPolicy
    /// Indices (into the cluster's host list) that may be chosen.
    package let candidates: [Int]

    private let choiceCount: Int
    /// `LEAST_REQUEST` over candidates of differing weights (Envoy switches to its weighted schedule then).
    private let leastRequestWeighted: Bool
    private var roundRobin = SmoothRoundRobin(weights: [])
    private var weightedLeastRequest = WeightedLeastRequest(weights: [], bias: 1)
    private var ring = HashRing()
    private var maglev = MaglevTable()

    /// - Parameters:
    ///   - candidates: the host indices to choose from.
    ///   - workerIndex: offsets round robin so the workers do not all send their first request to one host.
    package init(config: LoadBalancingConfig, hosts: [UpstreamHost], candidates: [Int], workerIndex: Int) {
        policy = config.policy
        self.candidates = candidates
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

    /// One pick; `hash` is the request's (RING_HASH, MAGLEV), `attempt` counts the retries of a hashing pick.
    package mutating func pickOnce<R: RandomSource>(
        hash: UInt64, attempt: Int, activeRequests: [Int], random: inout R
    ) -> Int? {
        let n = candidates.count
        if n == 0 { return nil }
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
