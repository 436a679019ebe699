import NIOCore

/// Everything one event loop owns: its stats, its upstream connection pools, its load-balancer state.
/// Nothing here is shared with another thread, so nothing here needs a lock.
final class Worker {
    let eventLoop: EventLoop
    let stats: WorkerStats
    let clusters: ClusterManager
    let pools: [ConnectionPool]
    private(set) var hosts: [[UpstreamHost]]
    private var balancers: [SmoothRoundRobin]
    var random = FastRandom()
    private var connections: [ObjectIdentifier: any DrainableConnection] = [:]
    private(set) var draining = false
    private var idleWaiters: [EventLoopPromise<Void>] = []

    init(eventLoop: EventLoop, index: Int, registry: StatsRegistry, clusters: ClusterManager, hosts: [[UpstreamHost]]) {
        self.eventLoop = eventLoop
        let stats = WorkerStats(count: registry.count)
        self.stats = stats
        self.clusters = clusters
        self.hosts = hosts
        self.balancers = hosts.map { SmoothRoundRobin(weights: $0.map(\.weight), start: index) }
        self.pools = clusters.clusters.map { ConnectionPool(eventLoop: eventLoop, stats: stats, cluster: $0) }
        for (i, c) in clusters.clusters.enumerated() where index == 0 {
            stats.add(c.stats.membershipTotal, hosts[i].count)
            stats.add(c.stats.membershipHealthy, hosts[i].count)
        }
        for (i, entry) in clusters.clusters.enumerated() where entry.config.type == .ORIGINAL_DST {
            scheduleSweep(pools[i], every: entry.config.cleanupInterval.timeAmount)
        }
    }

    /// ORIGINAL_DST clusters: close idle connections to destinations no longer used (cleanup_interval).
    private func scheduleSweep(_ pool: ConnectionPool, every interval: TimeAmount) {
        eventLoop.assumeIsolated().scheduleTask(in: interval) { [weak self, weak pool] in
            guard let self, let pool, !self.draining else { return }
            pool.sweepIdle(olderThan: .now() - interval)
            self.scheduleSweep(pool, every: interval)
        }
    }

    func pickHost(cluster: Int) -> UpstreamHost? {
        guard let i = balancers[cluster].pick() else { return nil }
        return hosts[cluster][i]
    }

    /// A DNS refresh changed a cluster's hosts.
    func updateHosts(cluster: Int, to newHosts: [UpstreamHost], countMembership: Bool) {
        let entry = clusters.clusters[cluster]
        if countMembership {
            stats.add(entry.stats.membershipTotal, newHosts.count - hosts[cluster].count)
            stats.add(entry.stats.membershipHealthy, newHosts.count - hosts[cluster].count)
        }
        hosts[cluster] = newHosts
        balancers[cluster] = SmoothRoundRobin(weights: newHosts.map(\.weight))
    }

    func register(_ h: any DrainableConnection) { connections[ObjectIdentifier(h)] = h }

    func unregister(_ h: any DrainableConnection) {
        connections.removeValue(forKey: ObjectIdentifier(h))
        if connections.isEmpty && draining {
            let w = idleWaiters
            idleWaiters = []
            w.forEach { $0.succeed() }
        }
    }

    /// Stop keep-alive: idle connections close now, busy ones after their response. The future
    /// completes when this worker has no downstream connection left.
    func drain() -> EventLoopFuture<Void> {
        draining = true
        for p in pools { p.closeIdle() }
        for h in connections.values { h.drain() }
        if connections.isEmpty { return eventLoop.makeSucceededVoidFuture() }
        let p = eventLoop.makePromise(of: Void.self)
        idleWaiters.append(p)
        return p.futureResult
    }
}

@available(*, unavailable) extension Worker: Sendable {}

/// A downstream connection a worker waits for when draining.
protocol DrainableConnection: AnyObject {
    /// Finish what is in flight, then close (HTTP: after the current response; TCP: when either side ends).
    func drain()
}

extension HTTPProxyHandler: DrainableConnection {}
