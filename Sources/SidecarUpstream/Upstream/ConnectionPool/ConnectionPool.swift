import Atomics
import NIOCore
import NIOHTTP1
import NIOPosix
import SidecarCore

/// A worker's upstream HTTP/1.1 connections for one cluster, per host. Connections are made on the worker's
/// own event loop, so a request never hops threads.
///
/// Like Envoy's HTTP/1 pool, a request that finds no idle connection either opens one (if the cluster's
/// `max_connections` allows) or waits for one to come back (if `max_pending_requests` allows); otherwise it
/// overflows. Connections are closed when idle past `idle_timeout`, older than `max_connection_duration`, or
/// after `max_requests_per_connection` requests.
package final class ConnectionPool {
    /// Which connection goes where: the pool only runs what it decides, and counts.
    private var machine: StateMachine<UpstreamConnection>
    /// The promises of requests queued for a connection, by waiter id.
    private var waiting: [Int: EventLoopPromise<UpstreamConnection>] = [:]
    /// Connection counts per host, for admin `/clusters`.
    package struct HostConnections {
        package var active = 0, total = 0, connectFail = 0
        package init(active: Int = 0, total: Int = 0, connectFail: Int = 0) {
            self.active = active
            self.total = total
            self.connectFail = connectFail
        }
    }
    package var perHost: [SocketAddress: HostConnections] {
        guard let multiplexed else { return machine.perHost }
        return machine.perHost.merging(multiplexed.perHost) { a, b in
            HostConnections(active: a.active + b.active, total: a.total + b.total,
                            connectFail: a.connectFail + b.connectFail)
        }
    }
    /// The cluster speaks HTTP/2: requests get streams on shared connections (see `MultiplexedPool`).
    private var multiplexed: MultiplexedPool?
    private let protocolOptions: UpstreamHTTPProtocolOptions

    /// Connections are shared per host, and with original_src only among one client's connections.
    package struct Key: Hashable {
        package var host: SocketAddress
        package var source: SocketAddress?
    }

    /// How a request gets its connection.
    package enum Acquisition {
        case ready(UpstreamConnection)
        /// Connecting, or queued for a connection to come back; `waiter` cancels a queued request.
        case pending(EventLoopFuture<UpstreamConnection>, waiter: Int?)
        /// `max_pending_requests` reached (upstream_rq_pending_overflow).
        case overflow
    }

    package let eventLoop: EventLoop
    package let stats: WorkerStats
    package let clusterStats: ClusterStats
    package let connectTimeout: TimeAmount
    package let bufferLimit: Int
    /// Set once the cluster carried traffic (health checks switch from no_traffic_interval).
    package let traffic: ManagedAtomic<Bool>
    /// The cluster's own upstream source (upstream_bind_config), resolved once.
    package let clusterSource: UpstreamSource
    /// How often idle connections are checked against idle_timeout / max_connection_duration.
    package let idleSweepInterval: TimeAmount
    /// The cluster, for its UpstreamTlsContext: a connection is handed out only after its handshake.
    private let cluster: ClusterInfo
    /// The cluster left the config: connections close as their requests end instead of going back idle.
    package var draining: Bool { machine.isDraining }

    package init(eventLoop: EventLoop, stats: WorkerStats, cluster: ClusterInfo) {
        self.eventLoop = eventLoop
        self.stats = stats
        self.clusterStats = cluster.stats
        self.connectTimeout = cluster.config.connectTimeout.timeAmount
        self.bufferLimit = cluster.config.perConnectionBufferLimitBytes
        self.traffic = cluster.traffic
        let options = cluster.config.httpProtocolOptions
        self.machine = StateMachine(resources: cluster.resources, options: options)
        self.clusterSource = UpstreamSource(cluster: cluster.config)
        self.cluster = cluster
        var limits = [options.idleTimeout, options.maxConnectionDuration ?? .seconds(3600)].filter { !$0.isZero }
        if limits.isEmpty { limits = [.seconds(3600)] }
        let shortest = limits.min()!.nanoseconds
        self.idleSweepInterval = .nanoseconds(max(shortest / 4, 50_000_000))
        self.protocolOptions = options
        if let h2 = options.http2Options { multiplexed = MultiplexedPool(owner: self, cluster: cluster, options: h2) }
    }

    /// A connection for one request to `host`: an idle one, a new one, or a place in the queue.
    /// `downstreamHTTP2`: the request came over HTTP/2 (a `use_downstream_protocol_config` cluster answers in kind).
    package func acquire(_ host: UpstreamHost, source: UpstreamSource, priority: CircuitBreakerThresholds.Priority,
                         downstreamHTTP2: Bool = false) -> Acquisition {
        if let multiplexed, protocolOptions.upstreamProtocol == .http2 || downstreamHTTP2 {
            return multiplexed.acquire(host, source: source, priority: priority)
        }
        let future: EventLoopFuture<UpstreamConnection>
        var waiterID: Int?
        switch machine.requestQueued(host: host, source: source, priority: priority) {
        case .useIdle(let conn):
            return .ready(conn)
        case .overflow:
            stats.inc(clusterStats.rqPendingOverflow)
            return .overflow
        case .connect:
            stats.inc(clusterStats.rqPendingTotal)
            stats.inc(clusterStats.rqPendingActive)
            future = connect(host, source: source, priority: priority)
        case .wait(let id):
            // max_connections reached: wait for a connection to this host to be released or for room to open one.
            stats.inc(clusterStats.rqPendingTotal)
            stats.inc(clusterStats.rqPendingActive)
            stats.inc(clusterStats.cxOverflow)
            let promise = eventLoop.makePromise(of: UpstreamConnection.self)
            waiting[id] = promise
            waiterID = id
            future = promise.futureResult
        }
        let stats = self.stats, cs = clusterStats
        future.whenComplete { [self] _ in
            stats.dec(cs.rqPendingActive)
            machine.requestLeftQueue(priority: priority)
        }
        return .pending(future, waiter: waiterID)
    }

    /// The request left the queue before getting a connection (timeout, client gone).
    package func cancelWaiter(_ id: Int) {
        if id < 0 {
            multiplexed?.cancelWaiter(id)
            return
        }
        guard machine.waiterCancelled(id), let promise = waiting.removeValue(forKey: id) else { return }
        promise.fail(ChannelError.ioOnClosedChannel)
    }

    /// A request is done with `conn`: it goes to a queued request for the same host, back to the idle list,
    /// or is closed (not reusable, too old, or used up).
    package func release(_ conn: UpstreamConnection) {
        if conn.parent != nil, let multiplexed { return multiplexed.release(conn) }
        conn.stream = nil
        switch machine.connectionReleased(conn, now: .now()) {
        case .close(let c, let reason):
            count(reason)
            c.close()
        case .handOver(let c, let id):
            waiting.removeValue(forKey: id)?.succeed(c)
        case .park:
            break
        }
    }

    /// Closes idle connections unused since `cutoff` (ORIGINAL_DST `cleanup_interval`, else `idle_timeout`),
    /// and those past `max_connection_duration`.
    package func sweepIdle(olderThan cutoff: NIODeadline) {
        multiplexed?.sweepIdle(olderThan: cutoff)
        for (c, reason) in machine.idleSweepDue(now: .now(), unusedSince: cutoff) {
            count(reason)
            c.close()
        }
    }

    /// Drops every idle connection (drain).
    package func closeIdle() {
        multiplexed?.closeIdle()
        for c in machine.idleClosingRequested() { c.close() }
    }

    /// The cluster was removed from the config: idle connections close now, busy ones when released. Requests
    /// still queued for a connection keep their place (their streams run on a snapshot that has the cluster).
    package func drain() {
        multiplexed?.drain()
        for c in machine.clusterRemoved() { c.close() }
    }

    private func count(_ reason: StateMachine<UpstreamConnection>.CloseReason) {
        switch reason {
        case .maxDurationReached: stats.inc(clusterStats.cxMaxDurationReached)
        case .idleTimeout: stats.inc(clusterStats.cxIdleTimeout)
        case .maxRequestsReached: stats.inc(clusterStats.cxMaxRequests)
        case .notReusable, .clusterRemoved: break
        }
    }

    /// A freed connection slot went to a queued request: its connection opens now.
    private func run(_ action: StateMachine<UpstreamConnection>.SlotAction) {
        switch action {
        case .none:
            break
        case .connect(let w):
            let promise = waiting.removeValue(forKey: w.id)
            let future = connect(w.host, source: w.source, priority: w.priority)
            if let promise { future.cascade(to: promise) }
        }
    }

    /// How every upstream connection of the cluster is made (HTTP/1.1 and HTTP/2): from its source, within
    /// `connect_timeout`, without Nagle, with the connection buffer limit as the write watermark.
    package func bootstrap(_ source: UpstreamSource) -> ClientBootstrap {
        source.apply(to: ClientBootstrap(group: eventLoop))
            .connectTimeout(connectTimeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: bufferLimit / 2, high: bufferLimit))
    }

    private func connect(_ host: UpstreamHost, source: UpstreamSource,
                         priority: CircuitBreakerThresholds.Priority) -> EventLoopFuture<UpstreamConnection> {
        let conn = UpstreamConnection(host: host, pool: self, poolKey: Key(host: host.address, source: source.poolKey))
        let stats = self.stats
        let cs = self.clusterStats
        let handshake = UpstreamTLSHandshake(cluster: cluster, workerStats: stats, eventLoop: eventLoop)
        // upstream_cx_connect_ms and upstream_cx_length_ms both start here, as Envoy's timers start with the client.
        let connectStart = NIODeadline.now()
        return bootstrap(source)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    try handshake?.install(on: ops, eventLoop: channel.eventLoop)
                    // No outbound header validation, as on the downstream side (see ChainInstaller).
                    // Bytes after a 101 belong to the upgraded protocol: the decoder hands them on when an upgrade removes it.
                    try ops.addHTTPClientHandlers(leftOverBytesStrategy: .forwardBytes, enableOutboundHeaderValidation: false)
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
                let now = NIODeadline.now()
                stats.inc(cs.cxTotal)
                stats.inc(cs.cxActive)
                stats.inc(cs.cxHTTP1Total)
                stats.record(cs.cxConnectMs, from: connectStart, to: now)
                traffic.store(true, ordering: .relaxed)
                machine.connectionEstablished(conn, now: now)
                channel.closeFuture.whenComplete { [self] _ in
                    stats.dec(cs.cxActive)
                    stats.inc(cs.cxDestroy)
                    stats.record(cs.cxLengthMs, from: connectStart, to: .now())
                    run(machine.connectionClosed(conn, priority: priority))
                }
                return conn
            }
            .flatMapErrorThrowing { [self] error in
                stats.inc(cs.cxConnectFail)
                if error is ChannelError, case ChannelError.connectTimeout = error as! ChannelError {
                    stats.inc(cs.cxConnectTimeout)
                }
                run(machine.connectionFailed(host: host.address, priority: priority))
                throw error
            }
            .nonisolated()
    }
}

@available(*, unavailable) extension ConnectionPool: Sendable {}
extension UpstreamConnection: PoolableConnection {}
