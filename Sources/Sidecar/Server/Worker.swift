import NIOCore
import SidecarCore
import SidecarUpstream
import SidecarTracing

/// Everything one event loop owns: its stats, its upstream connection pools, its load-balancer state.
/// Nothing here is shared with another thread, so nothing here needs a lock.
final class Worker {
    let eventLoop: EventLoop
    let stats: WorkerStats
    /// Where `stats` finds room for stats registered while the proxy runs (clusters added by CDS).
    let registry: StatsRegistry
    /// The config new streams start on, with this worker's thread-local clusters for it. Replaced by `install`
    /// on this loop; read once per stream (one reference load, no lock or atomic).
    private(set) var current: WorkerSnapshot
    /// The thread-local cluster of every cluster in `current`, by its `ClusterInfo`: what a new snapshot keeps.
    private var threadLocals: [ObjectIdentifier: ThreadLocalCluster] = [:]
    private let index: Int
    /// The server's runtime and health-check state, shared by every worker.
    let server: ServerContext
    var random = FastRandom()
    private var connections: [ObjectIdentifier: any DrainableConnection] = [:]
    private(set) var draining = false
    private var idleWaiters: [EventLoopPromise<Void>] = []
    /// Open connections per listener generation, and who waits for a draining generation to have none.
    private var generationConnections: [Int: Int] = [:]
    private var generationWaiters: [Int: [EventLoopPromise<Void>]] = [:]
    /// Access log lines of this worker's streams, waiting to be handed to the writer thread.
    var accessLogBuffers = AccessLogBuffers()
    /// Finished spans of this worker's streams, waiting to be handed to their exporters.
    var spanBuffers = SpanBuffers()

    /// `hosts`: the resolved hosts of each of `snapshot`'s clusters, by slot.
    init(eventLoop: EventLoop, index: Int, registry: StatsRegistry, snapshot: ConfigSnapshot, hosts: [[UpstreamHost]],
         server: ServerContext = ServerContext()) {
        self.eventLoop = eventLoop
        self.index = index
        self.server = server
        self.stats = WorkerStats(registry: registry)
        self.registry = registry
        self.current = WorkerSnapshot(config: ConfigSnapshot(version: 0, clusters: []), clusters: [])
        install(snapshot, hosts: { hosts[$0.index] })
    }

    /// Makes `snapshot` the one new streams start on. A cluster whose `ClusterInfo` the current snapshot has too
    /// keeps its thread-local cluster (hosts, health, balancer, pooled connections); a new one gets its own, with
    /// `hosts(slot)`; one the new snapshot drops is removed (its pool drains) once streams started before are
    /// the only ones left using it. Runs on this worker's loop.
    func install(_ snapshot: ConfigSnapshot, hosts: (ClusterSlot) -> [UpstreamHost]) {
        eventLoop.assertInEventLoop()
        // The snapshot's new clusters registered their stats before it was built.
        stats.grow(to: registry)
        var next: [ObjectIdentifier: ThreadLocalCluster] = [:]
        let locals = snapshot.clusters.enumerated().map { slot, info in
            let id = ObjectIdentifier(info)
            if let kept = next[id] ?? threadLocals[id] {
                next[id] = kept
                return kept
            }
            let local = ThreadLocalCluster(info: info, hosts: hosts(ClusterSlot(index: slot)), eventLoop: eventLoop,
                                           workerIndex: index, stats: stats)
            next[id] = local
            startPeriodicWork(local)
            return local
        }
        for (id, old) in threadLocals where next[id] == nil { old.remove() }
        threadLocals = next
        current = WorkerSnapshot(config: snapshot, clusters: locals)
    }

    /// This worker's thread-local cluster for `info` in the current snapshot (health-check verdicts and DNS
    /// refreshes are pushed there).
    func threadLocal(for info: ClusterInfo) -> ThreadLocalCluster? { threadLocals[ObjectIdentifier(info)] }

    private func startPeriodicWork(_ local: ThreadLocalCluster) {
        let config = local.info.config
        // The pool sweep starts with the pool's first connection (the closure keeps two values, not the config).
        let cleanup = config.type == .ORIGINAL_DST ? config.cleanupInterval.timeAmount : nil
        local.pool.onFirstConnection = { [weak self, weak local] in
            guard let self, let local else { return }
            self.scheduleSweep(local, every: cleanup ?? local.pool.idleSweepInterval, unusedFor: cleanup != nil)
        }
        if let od = config.outlierDetection {
            scheduleOutlierInterval(local, every: od.interval.timeAmount)
        }
    }

    /// Outlier detection's periodic pass: un-ejections, success-rate and failure-percentage detection.
    private func scheduleOutlierInterval(_ local: ThreadLocalCluster, every interval: TimeAmount) {
        eventLoop.assumeIsolated().scheduleTask(in: interval) { [weak self, weak local] in
            guard let self, let local, !self.draining, !local.removed else { return }
            local.outlierIntervalElapsed(random: &self.random)
            self.scheduleOutlierInterval(local, every: interval)
        }
    }

    /// Periodic pool sweep. `unusedFor`: ORIGINAL_DST `cleanup_interval`, where a connection unused for a
    /// whole interval goes; otherwise only `idle_timeout` and `max_connection_duration` decide.
    private func scheduleSweep(_ local: ThreadLocalCluster, every interval: TimeAmount, unusedFor: Bool) {
        eventLoop.assumeIsolated().scheduleTask(in: interval) { [weak self, weak local] in
            guard let self, let local, !self.draining, !local.removed else { return }
            local.pool.sweepIdle(olderThan: unusedFor ? .now() - interval : .distantPast)
            self.scheduleSweep(local, every: interval, unusedFor: unusedFor)
        }
    }

    /// A host for a connection that has no request to hash (tcp_proxy).
    func pickHost(_ local: ThreadLocalCluster) -> UpstreamHost? {
        guard let i = local.choose(hash: nil, random: &random) else { return nil }
        return local.hosts[i]
    }

    /// This worker's part of admin `/clusters` for one cluster (empty when this worker does not have it yet).
    func hostReport(cluster info: ClusterInfo) -> [HostReport] {
        guard let local = threadLocal(for: info) else { return [] }
        return local.hosts.indices.map { i in
            let c = local.hostCounters[i]
            let cx = local.pool.perHost[local.hosts[i].address] ?? ConnectionPool.HostConnections()
            return HostReport(
                host: local.hosts[i], healthFlags: local.healthFlags(i),
                successRate: local.outlier?.successRate(i, origin: .external) ?? -1,
                localOriginSuccessRate: local.outlier?.successRate(i, origin: .localOrigin) ?? -1,
                cxActive: cx.active, cxTotal: cx.total, cxConnectFail: cx.connectFail,
                rqActive: local.activeRequests[i], rqTotal: c.rqTotal, rqSuccess: c.rqSuccess, rqError: c.rqError,
                rqTimeout: c.rqTimeout)
        }
    }

    func register(_ h: any DrainableConnection) {
        // Counted once however often it registers, so that its one unregister ends its generation's count.
        guard connections.updateValue(h, forKey: ObjectIdentifier(h)) == nil else { return }
        generationConnections[h.listenerGeneration, default: 0] += 1
    }

    func unregister(_ h: any DrainableConnection) {
        guard connections.removeValue(forKey: ObjectIdentifier(h)) != nil else { return }
        let generation = h.listenerGeneration
        let left = (generationConnections[generation] ?? 1) - 1
        if left > 0 {
            generationConnections[generation] = left
        } else {
            generationConnections.removeValue(forKey: generation)
            generationWaiters.removeValue(forKey: generation)?.forEach { $0.succeed() }
        }
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
        for local in current.clusters { local.pool.closeIdle() }
        for h in connections.values { h.drain() }
        if connections.isEmpty { return eventLoop.makeSucceededVoidFuture() }
        let p = eventLoop.makePromise(of: Void.self)
        idleWaiters.append(p)
        return p.futureResult
    }
}

extension Worker {
    /// A listener generation was replaced or removed: its connections finish what is in flight and then close
    /// (HTTP/1 after its next response, which says `Connection: close`; HTTP/2 after GOAWAY; tcp_proxy when
    /// either side ends), new ones go to the listener that replaced it. The future completes when this worker has
    /// none of its connections left.
    func drainListener(_ generation: Int) -> EventLoopFuture<Void> {
        for h in connections.values where h.listenerGeneration == generation { h.drainGently() }
        guard generationConnections[generation] != nil else { return eventLoop.makeSucceededVoidFuture() }
        let p = eventLoop.makePromise(of: Void.self)
        generationWaiters[generation, default: []].append(p)
        return p.futureResult
    }

    /// The server stops: whoever waits for connections to end stops waiting (a promise must not outlive its
    /// loop unfulfilled).
    func releaseWaiters() {
        let waiters = idleWaiters + generationWaiters.values.flatMap { $0 }
        idleWaiters = []
        generationWaiters = [:]
        for p in waiters { p.succeed() }
    }

    /// The drain time of a listener generation is over: what is left of its connections closes (an HTTP/1
    /// request in flight still gets its response).
    func closeListener(_ generation: Int) {
        for h in connections.values where h.listenerGeneration == generation { h.drainDeadline() }
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
    /// The listener generation that took the connection.
    var listenerGeneration: Int { get }
    /// Finish what is in flight, then close (HTTP: after the current response; TCP: when either side ends).
    func drain()
    /// Its listener drains: stop taking requests after the ones in flight, without closing an idle connection
    /// under a client that may be sending on it (HTTP/1: the next response closes it).
    func drainGently()
    /// Its listener's drain time is over: close, letting a response in flight finish.
    func drainDeadline()
}

extension DrainableConnection {
    func drainGently() {}
    func drainDeadline() { drain() }
}

extension HTTPProxyHandler: DrainableConnection {}
extension HTTPProxyHandler: UpstreamResponseReceiver {}
