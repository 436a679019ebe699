import NIOCore

/// Everything one event loop owns: its stats, its upstream connection pools, its load-balancer state.
/// Nothing here is shared with another thread, so nothing here needs a lock.
final class Worker {
    let eventLoop: EventLoop
    let stats: WorkerStats
    let clusters: ClusterManager
    let pools: [ConnectionPool]
    /// This worker's view of each cluster: hosts, health, balancer (index = cluster index).
    let locals: [ThreadLocalCluster]
    /// The server's runtime and health-check state, shared by every worker.
    let server: ServerContext
    var random = FastRandom()
    private var connections: [ObjectIdentifier: any DrainableConnection] = [:]
    private(set) var draining = false
    private var idleWaiters: [EventLoopPromise<Void>] = []

    init(eventLoop: EventLoop, index: Int, registry: StatsRegistry, clusters: ClusterManager, hosts: [[UpstreamHost]],
         server: ServerContext = ServerContext()) {
        self.eventLoop = eventLoop
        self.server = server
        let stats = WorkerStats(count: registry.count)
        self.stats = stats
        self.clusters = clusters
        self.locals = clusters.clusters.map {
            ThreadLocalCluster(entry: $0, hosts: hosts[$0.index], workerIndex: index, stats: stats,
                               outlierStats: $0.outlierStats)
        }
        self.pools = clusters.clusters.map { ConnectionPool(eventLoop: eventLoop, stats: stats, cluster: $0) }
        for (i, entry) in clusters.clusters.enumerated() {
            if entry.config.type == .ORIGINAL_DST {
                scheduleSweep(pools[i], every: entry.config.cleanupInterval.timeAmount, unusedFor: true)
            } else {
                scheduleSweep(pools[i], every: pools[i].idleSweepInterval, unusedFor: false)
            }
            if let od = entry.config.outlierDetection {
                scheduleOutlierInterval(locals[i], every: od.interval.timeAmount)
            }
        }
    }

    /// Outlier detection's periodic pass: un-ejections, success-rate and failure-percentage detection.
    private func scheduleOutlierInterval(_ local: ThreadLocalCluster, every interval: TimeAmount) {
        eventLoop.assumeIsolated().scheduleTask(in: interval) { [weak self, weak local] in
            guard let self, let local, !self.draining else { return }
            local.outlierIntervalElapsed(random: &self.random)
            self.scheduleOutlierInterval(local, every: interval)
        }
    }

    /// Periodic pool sweep. `unusedFor`: ORIGINAL_DST `cleanup_interval`, where a connection unused for a
    /// whole interval goes; otherwise only `idle_timeout` and `max_connection_duration` decide.
    private func scheduleSweep(_ pool: ConnectionPool, every interval: TimeAmount, unusedFor: Bool) {
        eventLoop.assumeIsolated().scheduleTask(in: interval) { [weak self, weak pool] in
            guard let self, let pool, !self.draining else { return }
            pool.sweepIdle(olderThan: unusedFor ? .now() - interval : .distantPast)
            self.scheduleSweep(pool, every: interval, unusedFor: unusedFor)
        }
    }

    /// A host for a connection that has no request to hash (tcp_proxy).
    func pickHost(cluster: Int) -> UpstreamHost? {
        guard let i = locals[cluster].choose(hash: nil, random: &random) else { return nil }
        return locals[cluster].hosts[i]
    }

    /// This worker's part of admin `/clusters` for one cluster.
    func hostReport(cluster: Int) -> [HostReport] {
        let local = locals[cluster]
        return local.hosts.indices.map { i in
            let c = local.hostCounters[i]
            let cx = pools[cluster].perHost[local.hosts[i].address] ?? ConnectionPool.HostConnections()
            return HostReport(
                host: local.hosts[i], healthFlags: local.healthFlags(i),
                successRate: local.outlier?.successRate(i, origin: .external) ?? -1,
                localOriginSuccessRate: local.outlier?.successRate(i, origin: .localOrigin) ?? -1,
                cxActive: cx.active, cxTotal: cx.total, cxConnectFail: cx.connectFail,
                rqActive: local.activeRequests[i], rqTotal: c.rqTotal, rqSuccess: c.rqSuccess, rqError: c.rqError,
                rqTimeout: c.rqTimeout)
        }
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

/// One host's line block in admin `/clusters`.
struct HostReport: Sendable {
    var host: UpstreamHost
    /// Worker 0's view (health checks are the same everywhere; outlier ejections are per worker).
    var healthFlags: String
    /// Worker 0's outlier-detection success rates (-1: not computed).
    var successRate: Double
    var localOriginSuccessRate: Double
    var cxActive, cxTotal, cxConnectFail, rqActive, rqTotal, rqSuccess, rqError, rqTimeout: Int

    mutating func add(_ o: HostReport) {
        cxActive += o.cxActive
        cxTotal += o.cxTotal
        cxConnectFail += o.cxConnectFail
        rqActive += o.rqActive
        rqTotal += o.rqTotal
        rqSuccess += o.rqSuccess
        rqError += o.rqError
        rqTimeout += o.rqTimeout
        if healthFlags == "healthy" { healthFlags = o.healthFlags }
    }
}

/// A downstream connection a worker waits for when draining.
protocol DrainableConnection: AnyObject {
    /// Finish what is in flight, then close (HTTP: after the current response; TCP: when either side ends).
    func drain()
}

extension HTTPProxyHandler: DrainableConnection {}
extension HTTPProxyHandler: UpstreamResponseReceiver {}
