import Atomics
import NIOCore
import NIOHTTP1
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
    package let cluster: ClusterInfo
    /// `auto_config`: the hosts whose last connection settled on HTTP/2 by ALPN. Their requests get streams
    /// (`MultiplexedPool`); the others open connections as HTTP/1.1 does, each speaking what its handshake chose.
    private var speaksHTTP2: Set<Key> = []
    /// Called once, on the pool's loop, when it opens its first connection: the owner starts the periodic sweep
    /// then (a pool with no connection has nothing to sweep, and a timer per cluster per worker, for a thousand
    /// clusters that never see a request, was memory for nothing).
    package var onFirstConnection: (() -> Void)?
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

    /// `auto_config`: a new connection to a host known for HTTP/2 came back without `h2` (the upstream changed): the
    /// host's requests open connections as HTTP/1.1 does again, each speaking what its handshake chooses.
    func hostStoppedSpeakingHTTP2(_ key: Key) {
        speaksHTTP2.remove(key)
    }

    /// Whether a connection the HTTP/2 pool opened must speak what its ALPN chose (`auto_config`).
    var choosesProtocolByALPN: Bool { protocolOptions.upstreamProtocol == .auto }

    /// A connection for one request to `host`: an idle one, a new one, or a place in the queue.
    /// - Parameters:
    ///   - downstreamHTTP2: the request came over HTTP/2 (a `use_downstream_protocol_config` cluster answers in kind).
    ///   - upgrade: the request asks for an upgrade (WebSocket), which an `auto_config` cluster sends over HTTP/1.1.
    package func acquire(_ host: UpstreamHost, source: UpstreamSource, priority: CircuitBreakerThresholds.Priority,
                         downstreamHTTP2: Bool = false, upgrade: Bool = false) -> Acquisition {
        if let multiplexed {
            let streams: Bool
            switch protocolOptions.upstreamProtocol {
            case .http1: streams = false
            case .http2: streams = true
            case .downstream: streams = downstreamHTTP2
            case .auto: streams = !upgrade && speaksHTTP2.contains(Key(host: host.address, source: source.poolKey))
            }
            if streams { return multiplexed.acquire(host, source: source, priority: priority) }
        }
        // An HTTP/1.1 connection of a cluster that also speaks HTTP/2 offers ALPN `http/1.1` alone when the request
        // must have HTTP/1.1; else it may come back as HTTP/2 (auto_config) and carry the request as a stream.
        let http1Only = protocolOptions.upstreamProtocol == .downstream || upgrade
        let future: EventLoopFuture<UpstreamConnection>
        var waiterID: Int?
        switch machine.requestQueued(host: host, source: source, priority: priority, http1Only: http1Only) {
        case .useIdle(let conn):
            return .ready(conn)
        case .overflow:
            stats.inc(clusterStats.rqPendingOverflow)
            return .overflow
        case .connect:
            stats.inc(clusterStats.rqPendingTotal)
            stats.inc(clusterStats.rqPendingActive)
            future = connect(host, source: source, priority: priority, http1Only: http1Only)
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
            let future = connect(w.host, source: w.source, priority: w.priority, http1Only: w.http1Only)
            if let promise { future.cascade(to: promise) }
        }
    }

    /// Opens an HTTP/1.1 connection for a request. Over TLS the handshake's ALPN may settle on HTTP/2 instead
    /// (`auto_config`, or a `use_downstream_protocol_config` context that names `h2`): the connection then goes to
    /// the HTTP/2 pool, and the request gets a stream on it.
    private func connect(_ host: UpstreamHost, source: UpstreamSource, priority: CircuitBreakerThresholds.Priority,
                         http1Only: Bool) -> EventLoopFuture<UpstreamConnection> {
        let key = Key(host: host.address, source: source.poolKey)
        let conn = UpstreamConnection(host: host, pool: self, poolKey: key)
        let auto = protocolOptions.upstreamProtocol == .auto
        let promise = eventLoop.makePromise(of: UpstreamConnection.self)
        // An HTTP/1.1 connection counts from its attempt, as Envoy's codec client does (a refused connect too); one
        // whose ALPN may still choose HTTP/2 (TLS, and an HTTP/2 pool beside this one) counts once it stays HTTP/1.1.
        let counted = multiplexed == nil || http1Only || cluster.tls == nil
        if counted { stats.inc(clusterStats.cxHTTP1Total) }
        open(to: host.address, source: source, http1Only: http1Only).assumeIsolated().whenComplete { [self] result in
            let opened: OpenedUpstreamChannel
            switch result {
            case .success(let o):
                opened = o
            case .failure(let error):
                run(machine.connectionFailed(host: host.address, priority: priority))
                promise.fail(error)
                return
            }
            if let multiplexed, opened.negotiatedProtocol == "h2" {
                if auto { speaksHTTP2.insert(key) }
                // The connection slot this pool held moves to the HTTP/2 pool's count.
                run(machine.connectionLeftForHTTP2(priority: priority))
                multiplexed.adopt(opened, key: key, host: host, priority: priority).assumeIsolated()
                    .whenComplete { promise.assumeIsolated().completeWith($0) }
                return
            }
            if auto && !http1Only { speaksHTTP2.remove(key) }
            machine.connectionEstablished(conn, now: .now())
            opened.channel.closeFuture.whenComplete { [self] _ in
                run(machine.connectionClosed(conn, priority: priority))
            }
            // No outbound header validation, as on the downstream side (see ChainInstaller).
            // Bytes after a 101 belong to the upgraded protocol: the decoder hands them on when an upgrade removes it.
            let ops = opened.channel.pipeline.syncOperations
            do {
                try ops.addHTTPClientHandlers(leftOverBytesStrategy: .forwardBytes, enableOutboundHeaderValidation: false)
                try ops.addHandler(conn)
            } catch {
                opened.channel.close(promise: nil)
                promise.fail(error)
                return
            }
            if !counted { stats.inc(clusterStats.cxHTTP1Total) }
            traffic.store(true, ordering: .relaxed)
            promise.assumeIsolated().succeed(conn)
        }
        return promise.futureResult
    }
}

@available(*, unavailable) extension ConnectionPool: Sendable {}
extension UpstreamConnection: PoolableConnection {}
