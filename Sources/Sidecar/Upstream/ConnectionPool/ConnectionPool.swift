import NIOCore
import NIOHTTP1
import NIOPosix

/// A worker's idle upstream connections, per cluster and host. Connections are made on the worker's
/// own event loop, so a request never hops threads.
final class ConnectionPool {
    private var idle: [Key: [UpstreamConnection]] = [:]

    /// Connections are shared per host, and with original_src only among one client's connections.
    struct Key: Hashable {
        var host: SocketAddress
        var source: SocketAddress?
    }
    let eventLoop: EventLoop
    let stats: WorkerStats
    let clusterStats: ClusterStats
    let connectTimeout: TimeAmount
    let bufferLimit: Int
    let clusterIndex: Int
    /// The cluster's own upstream source (upstream_bind_config), resolved once.
    let clusterSource: UpstreamSource

    init(eventLoop: EventLoop, stats: WorkerStats, cluster: ClusterManager.Entry) {
        self.eventLoop = eventLoop
        self.stats = stats
        self.clusterStats = cluster.stats
        self.connectTimeout = cluster.config.connectTimeout.timeAmount
        self.bufferLimit = cluster.config.perConnectionBufferLimitBytes
        self.clusterIndex = cluster.index
        self.clusterSource = UpstreamSource(cluster: cluster.config)
    }

    /// An idle connection to `host`, if a live one is pooled.
    func takeIdle(_ host: UpstreamHost, source: UpstreamSource) -> UpstreamConnection? {
        let key = Key(host: host.address, source: source.poolKey)
        while var list = idle[key], let conn = list.popLast() {
            idle[key] = list
            if conn.isActive { return conn }
        }
        return nil
    }

    func release(_ conn: UpstreamConnection) {
        conn.stream = nil
        guard conn.reusable, conn.isActive else {
            conn.close()
            return
        }
        conn.idleSince = .now()
        idle[conn.poolKey, default: []].append(conn)
    }

    /// ORIGINAL_DST hosts exist only while used (Envoy's `cleanup_interval`): idle connections that sat
    /// unused since the previous sweep are closed, so a pod that talked to many destinations does not
    /// keep a connection to each of them.
    func sweepIdle(olderThan cutoff: NIODeadline) {
        for (key, list) in idle {
            let (stale, fresh) = (list.filter { $0.idleSince < cutoff }, list.filter { $0.idleSince >= cutoff })
            idle[key] = fresh.isEmpty ? nil : fresh
            for c in stale { c.close() }
        }
    }

    /// Drops every idle connection (drain).
    func closeIdle() {
        let all = idle.values.flatMap { $0 }
        idle.removeAll()
        for c in all { c.close() }
    }

    func connect(_ host: UpstreamHost, source: UpstreamSource) -> EventLoopFuture<UpstreamConnection> {
        let conn = UpstreamConnection(host: host, clusterIndex: clusterIndex, poolKey: Key(host: host.address, source: source.poolKey))
        let stats = self.stats
        let cs = self.clusterStats
        let limit = bufferLimit
        let pool = self
        return source.apply(to: ClientBootstrap(group: eventLoop))
            .connectTimeout(connectTimeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: limit / 2, high: limit))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(leftOverBytesStrategy: .fireError)
                    try channel.pipeline.syncOperations.addHandler(conn)
                }
            }
            .connect(to: host.address)
            .map { channel in
                stats.inc(cs.cxTotal)
                stats.inc(cs.cxActive)
                channel.closeFuture.whenComplete { _ in
                    stats.dec(cs.cxActive)
                    stats.inc(cs.cxDestroy)
                    pool.forget(conn)
                }
                return conn
            }
            .flatMapErrorThrowing { error in
                stats.inc(cs.cxConnectFail)
                if error is ChannelError, case ChannelError.connectTimeout = error as! ChannelError {
                    stats.inc(cs.cxConnectTimeout)
                }
                throw error
            }
    }

    private func forget(_ conn: UpstreamConnection) {
        guard var list = idle[conn.poolKey], let i = list.firstIndex(where: { $0 === conn }) else { return }
        list.remove(at: i)
        idle[conn.poolKey] = list
    }
}

@available(*, unavailable) extension ConnectionPool: Sendable {}
