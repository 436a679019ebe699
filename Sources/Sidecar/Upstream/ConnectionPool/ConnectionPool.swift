import Atomics
import NIOCore
import NIOHTTP1
import NIOPosix

/// A worker's upstream HTTP/1.1 connections for one cluster, per host. Connections are made on the worker's
/// own event loop, so a request never hops threads.
///
/// Like Envoy's HTTP/1 pool, a request that finds no idle connection either opens one (if the cluster's
/// `max_connections` allows) or waits for one to come back (if `max_pending_requests` allows); otherwise it
/// overflows. Connections are closed when idle past `idle_timeout`, older than `max_connection_duration`, or
/// after `max_requests_per_connection` requests.
final class ConnectionPool {
    private var idle: [Key: [UpstreamConnection]] = [:]
    /// Connection counts per host, for admin `/clusters`.
    struct HostConnections { var active = 0, total = 0, connectFail = 0 }
    private(set) var perHost: [SocketAddress: HostConnections] = [:]
    /// Requests waiting for a connection to their host, oldest first.
    private var waiters: [Waiter] = []
    private var nextWaiterID = 0

    /// Connections are shared per host, and with original_src only among one client's connections.
    struct Key: Hashable {
        var host: SocketAddress
        var source: SocketAddress?
    }

    private struct Waiter {
        var id: Int
        var host: UpstreamHost
        var source: UpstreamSource
        var priority: CircuitBreakerThresholds.Priority
        var promise: EventLoopPromise<UpstreamConnection>
    }

    /// How a request gets its connection.
    enum Acquisition {
        case ready(UpstreamConnection)
        /// Connecting, or queued for a connection to come back; `waiter` cancels a queued request.
        case pending(EventLoopFuture<UpstreamConnection>, waiter: Int?)
        /// `max_pending_requests` reached (upstream_rq_pending_overflow).
        case overflow
    }

    let eventLoop: EventLoop
    let stats: WorkerStats
    let clusterStats: ClusterStats
    let connectTimeout: TimeAmount
    let bufferLimit: Int
    let resources: ClusterResources
    /// Set once the cluster carried traffic (health checks switch from no_traffic_interval).
    let traffic: ManagedAtomic<Bool>
    let options: UpstreamHTTPProtocolOptions
    /// The cluster's own upstream source (upstream_bind_config), resolved once.
    let clusterSource: UpstreamSource
    /// How often idle connections are checked against idle_timeout / max_connection_duration.
    let idleSweepInterval: TimeAmount
    /// The cluster, for its UpstreamTlsContext: a connection is handed out only after its handshake.
    private let cluster: ClusterInfo
    /// The cluster left the config: connections close as their requests end instead of going back idle.
    private(set) var draining = false

    init(eventLoop: EventLoop, stats: WorkerStats, cluster: ClusterInfo) {
        self.eventLoop = eventLoop
        self.stats = stats
        self.clusterStats = cluster.stats
        self.connectTimeout = cluster.config.connectTimeout.timeAmount
        self.bufferLimit = cluster.config.perConnectionBufferLimitBytes
        self.resources = cluster.resources
        self.traffic = cluster.traffic
        self.options = cluster.config.httpProtocolOptions
        self.clusterSource = UpstreamSource(cluster: cluster.config)
        self.cluster = cluster
        var limits = [options.idleTimeout, options.maxConnectionDuration ?? .seconds(3600)].filter { !$0.isZero }
        if limits.isEmpty { limits = [.seconds(3600)] }
        let shortest = limits.min()!.nanoseconds
        self.idleSweepInterval = .nanoseconds(max(shortest / 4, 50_000_000))
    }

    /// A connection for one request to `host`: an idle one, a new one, or a place in the queue.
    func acquire(_ host: UpstreamHost, source: UpstreamSource, priority: CircuitBreakerThresholds.Priority) -> Acquisition {
        if let conn = takeIdle(host, source: source) { return .ready(conn) }
        guard resources.tryAcquire(.pendingRequests, priority) else {
            stats.inc(clusterStats.rqPendingOverflow)
            return .overflow
        }
        stats.inc(clusterStats.rqPendingTotal)
        stats.inc(clusterStats.rqPendingActive)
        let future: EventLoopFuture<UpstreamConnection>
        var waiterID: Int?
        if resources.tryAcquire(.connections, priority) {
            future = connect(host, source: source, priority: priority)
        } else {
            // max_connections reached: wait for a connection to this host to be released or for room to open one.
            stats.inc(clusterStats.cxOverflow)
            let promise = eventLoop.makePromise(of: UpstreamConnection.self)
            nextWaiterID += 1
            waiterID = nextWaiterID
            waiters.append(Waiter(id: nextWaiterID, host: host, source: source, priority: priority, promise: promise))
            future = promise.futureResult
        }
        let stats = self.stats, cs = clusterStats, resources = self.resources
        future.whenComplete { _ in
            stats.dec(cs.rqPendingActive)
            resources.release(.pendingRequests, priority)
        }
        return .pending(future, waiter: waiterID)
    }

    /// The request left the queue before getting a connection (timeout, client gone).
    func cancelWaiter(_ id: Int) {
        guard let i = waiters.firstIndex(where: { $0.id == id }) else { return }
        let w = waiters.remove(at: i)
        w.promise.fail(ChannelError.ioOnClosedChannel)
    }

    private func takeIdle(_ host: UpstreamHost, source: UpstreamSource) -> UpstreamConnection? {
        let key = Key(host: host.address, source: source.poolKey)
        while var list = idle[key], let conn = list.popLast() {
            idle[key] = list.isEmpty ? nil : list
            if conn.isActive { return conn }
        }
        return nil
    }

    /// A request is done with `conn`: it goes to a queued request for the same host, back to the idle list,
    /// or is closed (not reusable, too old, or used up).
    func release(_ conn: UpstreamConnection) {
        conn.stream = nil
        conn.requests += 1
        guard conn.reusable, conn.isActive, !draining else {
            conn.close()
            return
        }
        if let max = options.maxRequestsPerConnection, conn.requests >= max {
            conn.close()
            return
        }
        if let maxAge = options.maxConnectionDuration, NIODeadline.now() - conn.connectedAt >= maxAge.timeAmount {
            stats.inc(clusterStats.cxMaxDurationReached)
            conn.close()
            return
        }
        if let i = waiters.firstIndex(where: { Key(host: $0.host.address, source: $0.source.poolKey) == conn.poolKey }) {
            let w = waiters.remove(at: i)
            w.promise.succeed(conn)
            return
        }
        conn.idleSince = .now()
        idle[conn.poolKey, default: []].append(conn)
    }

    /// Closes idle connections unused since `cutoff` (ORIGINAL_DST `cleanup_interval`, else `idle_timeout`),
    /// and those past `max_connection_duration`.
    func sweepIdle(olderThan cutoff: NIODeadline) {
        let now = NIODeadline.now()
        let idleCutoff = options.idleTimeout.isZero ? cutoff : max(cutoff, now - options.idleTimeout.timeAmount)
        let ageCutoff = options.maxConnectionDuration.map { now - $0.timeAmount }
        for (key, list) in idle {
            var keep: [UpstreamConnection] = []
            for c in list {
                if let ageCutoff, c.connectedAt <= ageCutoff {
                    stats.inc(clusterStats.cxMaxDurationReached)
                    c.close()
                } else if c.idleSince < idleCutoff {
                    stats.inc(clusterStats.cxIdleTimeout)
                    c.close()
                } else {
                    keep.append(c)
                }
            }
            idle[key] = keep.isEmpty ? nil : keep
        }
    }

    /// Drops every idle connection (drain).
    func closeIdle() {
        let all = idle.values.flatMap { $0 }
        idle.removeAll()
        for c in all { c.close() }
    }

    /// The cluster was removed from the config: idle connections close now, busy ones when released. Requests
    /// still queued for a connection keep their place (their streams run on a snapshot that has the cluster).
    func drain() {
        draining = true
        closeIdle()
    }

    private func connect(_ host: UpstreamHost, source: UpstreamSource,
                         priority: CircuitBreakerThresholds.Priority) -> EventLoopFuture<UpstreamConnection> {
        let conn = UpstreamConnection(host: host, pool: self, poolKey: Key(host: host.address, source: source.poolKey))
        let stats = self.stats
        let cs = self.clusterStats
        let limit = bufferLimit
        let resources = self.resources
        let handshake = UpstreamTLSHandshake(cluster: cluster, workerStats: stats, eventLoop: eventLoop)
        return source.apply(to: ClientBootstrap(group: eventLoop))
            .connectTimeout(connectTimeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: limit / 2, high: limit))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    try handshake?.install(on: ops, eventLoop: channel.eventLoop)
                    try ops.addHTTPClientHandlers(leftOverBytesStrategy: .fireError)
                    try ops.addHandler(conn)
                }
            }
            .connect(to: host.address)
            .assumeIsolated()
            .flatMap { channel in
                guard let handshake else { return channel.eventLoop.makeSucceededFuture(channel) }
                return handshake.promise.futureResult.map { channel }
            }
            .map { [self] channel in
                stats.inc(cs.cxTotal)
                stats.inc(cs.cxActive)
                traffic.store(true, ordering: .relaxed)
                perHost[host.address, default: HostConnections()].active += 1
                perHost[host.address, default: HostConnections()].total += 1
                conn.connectedAt = .now()
                channel.closeFuture.whenComplete { [self] _ in
                    perHost[host.address, default: HostConnections()].active -= 1
                    stats.dec(cs.cxActive)
                    stats.inc(cs.cxDestroy)
                    resources.release(.connections, priority)
                    forget(conn)
                    serveWaiter()
                }
                return conn
            }
            .flatMapErrorThrowing { [self] error in
                stats.inc(cs.cxConnectFail)
                perHost[host.address, default: HostConnections()].connectFail += 1
                if error is ChannelError, case ChannelError.connectTimeout = error as! ChannelError {
                    stats.inc(cs.cxConnectTimeout)
                }
                resources.release(.connections, priority)
                serveWaiter()
                throw error
            }
            .nonisolated()
    }

    /// A connection slot opened: the oldest queued request opens its connection now.
    private func serveWaiter() {
        guard !waiters.isEmpty else { return }
        let w = waiters[0]
        guard resources.tryAcquire(.connections, w.priority) else { return }
        waiters.removeFirst()
        connect(w.host, source: w.source, priority: w.priority).cascade(to: w.promise)
    }

    private func forget(_ conn: UpstreamConnection) {
        guard var list = idle[conn.poolKey], let i = list.firstIndex(where: { $0 === conn }) else { return }
        list.remove(at: i)
        idle[conn.poolKey] = list.isEmpty ? nil : list
    }
}

@available(*, unavailable) extension ConnectionPool: Sendable {}
