import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import SidecarCore

/// A worker's HTTP/2 connections to one cluster (`explicit_http_config.http2_protocol_options`), per host: many
/// requests share a connection, each on a stream of its own, as in Envoy's HTTP/2 pool.
///
/// A request gets a stream on a connection with room: fewer open streams than `max_concurrent_streams` (the
/// config's and the peer's SETTINGS, whichever is lower) and fewer streams in all than
/// `max_requests_per_connection`. Without one it waits (pending, within `max_pending_requests`), and a connection
/// is opened when the ones already connecting cannot take every waiting request (within `max_connections`; a host
/// with no connection gets one regardless, as Envoy's pool does). A connection that reached
/// `max_requests_per_connection` or `max_connection_duration`, or got GOAWAY, takes no new stream and closes when
/// its last one ends. Idle connections close after `idle_timeout`.
///
/// The stream's `UpstreamConnection` is what the router holds, as for HTTP/1: its request parts go out as HTTP/2
/// frames (`HTTP2FramePayloadToHTTP1ClientCodec`), and its reads stop while the downstream cannot take more, which
/// stops that stream's window updates and nothing else.
package final class MultiplexedPool {
    private struct Waiter {
        var id: Int
        var priority: CircuitBreakerThresholds.Priority
        var host: UpstreamHost
        var source: UpstreamSource
        var promise: EventLoopPromise<UpstreamConnection>
    }

    private unowned let owner: ConnectionPool
    private let cluster: ClusterInfo
    private let options: HTTP2ProtocolOptions
    private let common: UpstreamHTTPProtocolOptions
    private var ready: [ConnectionPool.Key: [HTTP2UpstreamConnection]] = [:]
    private var connecting: [ConnectionPool.Key: Int] = [:]
    private var waiters: [ConnectionPool.Key: [Waiter]] = [:]
    /// Negative, so they never collide with the HTTP/1 pool's of the same cluster (use_downstream_protocol_config).
    private var nextWaiterID = 0
    private var draining = false
    package private(set) var perHost: [SocketAddress: ConnectionPool.HostConnections] = [:]

    init(owner: ConnectionPool, cluster: ClusterInfo, options: HTTP2ProtocolOptions) {
        self.owner = owner
        self.cluster = cluster
        self.options = options
        self.common = cluster.config.httpProtocolOptions
    }

    private var stats: WorkerStats { owner.stats }
    private var clusterStats: ClusterStats { owner.clusterStats }
    private var eventLoop: EventLoop { owner.eventLoop }

    /// Streams a connection takes at once, as far as this side knows before the peer's SETTINGS.
    private var streamsPerConnection: Int {
        min(options.maxConcurrentStreams, common.maxRequestsPerConnection ?? Int.max)
    }

    private func hasRoom(_ c: HTTP2UpstreamConnection) -> Bool {
        guard !c.goingAway, c.isActive, c.activeStreams < min(options.maxConcurrentStreams, c.peerMaxStreams) else {
            return false
        }
        if let max = common.maxRequestsPerConnection, c.streamsOpened >= max { return false }
        return true
    }

    // MARK: Requests

    func acquire(_ host: UpstreamHost, source: UpstreamSource,
                 priority: CircuitBreakerThresholds.Priority) -> ConnectionPool.Acquisition {
        let key = ConnectionPool.Key(host: host.address, source: source.poolKey)
        if let c = ready[key]?.first(where: hasRoom) {
            return .pending(openStream(on: c), waiter: nil)
        }
        guard cluster.resources.tryAcquire(.pendingRequests, priority) else {
            stats.inc(clusterStats.rqPendingOverflow)
            return .overflow
        }
        stats.inc(clusterStats.rqPendingTotal)
        stats.inc(clusterStats.rqPendingActive)
        nextWaiterID -= 1
        let promise = eventLoop.makePromise(of: UpstreamConnection.self)
        waiters[key, default: []].append(
            Waiter(id: nextWaiterID, priority: priority, host: host, source: source, promise: promise))
        let stats = self.stats, cs = clusterStats, resources = cluster.resources
        promise.futureResult.whenComplete { _ in
            stats.dec(cs.rqPendingActive)
            resources.release(.pendingRequests, priority)
        }
        connectIfNeeded(key)
        return .pending(promise.futureResult, waiter: nextWaiterID)
    }

    /// A queued request left (timeout, client gone). False: it was not waiting here.
    @discardableResult
    func cancelWaiter(_ id: Int) -> Bool {
        for (key, list) in waiters {
            guard let i = list.firstIndex(where: { $0.id == id }) else { continue }
            let w = waiters[key]!.remove(at: i)
            w.promise.fail(ChannelError.ioOnClosedChannel)
            return true
        }
        return false
    }

    /// The router is done with a stream: one that has not ended both ways is reset.
    func release(_ stream: UpstreamConnection) {
        stream.stream = nil
        guard !stream.reusable || !stream.responseEnded else { return }
        // `upstream_rq_tx_reset`: the proxy resets a stream the upstream was still answering (or never answered).
        if stream.isActive && stream.resetCode == nil { stats.inc(clusterStats.rqTxReset) }
        stream.close()
    }

    /// Opens a stream on `c` for one request.
    private func openStream(on c: HTTP2UpstreamConnection) -> EventLoopFuture<UpstreamConnection> {
        c.activeStreams += 1
        c.streamsOpened += 1
        if let max = common.maxRequestsPerConnection, c.streamsOpened >= max { c.goingAway = true }
        let conn = UpstreamConnection(host: c.host, pool: owner, poolKey: c.key, parent: c)
        conn.connectedAt = c.connectedAt
        guard let multiplexer = c.multiplexer else {
            streamClosed(on: c)
            return eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        let scheme: HTTP2FramePayloadToHTTP1ClientCodec.HTTPProtocol = cluster.tls != nil ? .https : .http
        let channel = eventLoop.makePromise(of: Channel.self)
        let bound = NIOLoopBound(conn, eventLoop: eventLoop)
        multiplexer.createStreamChannel(promise: channel) { ch in
            ch.eventLoop.makeCompletedFuture {
                let ops = ch.pipeline.syncOperations
                try ops.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: scheme))
                try ops.addHandler(bound.value)
            }
        }
        return channel.futureResult.assumeIsolated().map { _ in conn }.flatMapErrorThrowing { [self] error in
            // The stream's channel never came up, so its close will not be reported.
            if conn.context == nil { streamClosed(on: c) }
            throw error
        }.nonisolated()
    }

    /// A stream of `c` closed (the stream's `UpstreamConnection` went inactive).
    func streamClosed(on c: HTTP2UpstreamConnection) {
        c.activeStreams -= 1
        if c.activeStreams == 0 {
            c.idleSince = .now()
            if c.goingAway || draining {
                if let max = common.maxRequestsPerConnection, c.streamsOpened >= max {
                    stats.inc(clusterStats.cxMaxRequests)
                }
                c.close()
                return
            }
        }
        serveWaiters(c.key)
    }

    /// The peer's SETTINGS or GOAWAY changed how many streams `c` takes.
    func capacityChanged(_ c: HTTP2UpstreamConnection) {
        if c.goingAway && c.activeStreams == 0 {
            c.close()
            return
        }
        serveWaiters(c.key)
        connectIfNeeded(c.key)
    }

    /// Waiting requests get streams on connections with room.
    private func serveWaiters(_ key: ConnectionPool.Key) {
        while var list = waiters[key], !list.isEmpty, let c = ready[key]?.first(where: hasRoom) {
            let w = list.removeFirst()
            waiters[key] = list.isEmpty ? nil : list
            openStream(on: c).cascade(to: w.promise)
        }
    }

    /// Opens a connection when those connecting cannot take every waiting request.
    private func connectIfNeeded(_ key: ConnectionPool.Key) {
        guard let list = waiters[key], let first = list.first, !draining else { return }
        let coming = (connecting[key] ?? 0) * streamsPerConnection
        guard list.count > coming else { return }
        let hasAny = !(ready[key]?.isEmpty ?? true) || (connecting[key] ?? 0) > 0
        if cluster.resources.tryAcquire(.connections, first.priority) {
            connect(key, host: first.host, source: first.source, priority: first.priority)
        } else if !hasAny {
            // A host without any connection still gets one (Envoy's pool goes over max_connections for it).
            cluster.resources.acquire(.connections, first.priority)
            connect(key, host: first.host, source: first.source, priority: first.priority)
        } else {
            stats.inc(clusterStats.cxOverflow)
        }
    }

    // MARK: Connections

    private func connect(_ key: ConnectionPool.Key, host: UpstreamHost, source: UpstreamSource,
                         priority: CircuitBreakerThresholds.Priority) {
        connecting[key, default: 0] += 1
        owner.open(to: host.address, source: source)
            .assumeIsolated()
            .whenComplete { [self] result in
                connecting[key]! -= 1
                if connecting[key] == 0 { connecting[key] = nil }
                switch result {
                case .success(let opened):
                    if owner.choosesProtocolByALPN && opened.negotiatedProtocol != "h2" {
                        // auto_config: the host no longer picks h2. Its waiting requests, and new ones, go the
                        // HTTP/1.1 way, each connection speaking what its handshake chooses.
                        opened.channel.close(promise: nil)
                        owner.hostStoppedSpeakingHTTP2(key)
                        cluster.resources.release(.connections, priority)
                        requeueOverHTTP1(key)
                        return
                    }
                    guard install(opened, key: key, host: host, priority: priority) != nil else {
                        cluster.resources.release(.connections, priority)
                        failWaitersBeyondCapacity(key, ChannelError.ioOnClosedChannel)
                        return
                    }
                    serveWaiters(key)
                    connectIfNeeded(key)
                case .failure(let error):
                    perHost[key.host, default: .init()].connectFail += 1
                    perHost[key.host, default: .init()].total += 1
                    cluster.resources.release(.connections, priority)
                    failWaitersBeyondCapacity(key, error)
                }
            }
    }

    /// A connection the HTTP/1.1 pool opened for a request settled on HTTP/2 by ALPN (`auto_config`): it joins
    /// this pool, counted under `max_connections` from now on, and the request gets its first stream.
    func adopt(_ opened: OpenedUpstreamChannel, key: ConnectionPool.Key, host: UpstreamHost,
               priority: CircuitBreakerThresholds.Priority) -> EventLoopFuture<UpstreamConnection> {
        // The slot comes over from the HTTP/1.1 pool, which held it for this connection: taken regardless.
        cluster.resources.acquire(.connections, priority)
        guard let connection = install(opened, key: key, host: host, priority: priority) else {
            cluster.resources.release(.connections, priority)
            return eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        let stream = openStream(on: connection)
        serveWaiters(key)
        return stream
    }

    /// Puts the HTTP/2 handlers on a new connection and makes it one of the pool's. Nil (the channel closed): the
    /// pipeline could not be set up.
    private func install(_ opened: OpenedUpstreamChannel, key: ConnectionPool.Key, host: UpstreamHost,
                         priority: CircuitBreakerThresholds.Priority) -> HTTP2UpstreamConnection? {
        let connection = HTTP2UpstreamConnection(key: key, host: host, priority: priority, pool: self)
        var connectionConfig = NIOHTTP2Handler.ConnectionConfiguration()
        connectionConfig.initialSettings = [
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .initialWindowSize, value: options.initialStreamWindowSize),
            HTTP2Setting(parameter: .headerTableSize, value: options.hpackTableSize),
        ]
        connectionConfig.targetWindowSize = options.initialConnectionWindowSize
        connectionConfig.maximumSequentialEmptyDataFrames = options.maxConsecutiveEmptyFrames
        connectionConfig.maximumBufferedControlFrames = options.maxOutboundControlFrames
        var streamConfig = NIOHTTP2Handler.StreamConfiguration()
        streamConfig.targetWindowSize = options.initialStreamWindowSize
        let ops = opened.channel.pipeline.syncOperations
        do {
            // One socket write per event-loop turn for all the streams that sent in it.
            try ops.addHandler(LoopFlushCoalescer())
            // The server does not open streams (push is off): refuse any it tries.
            connection.multiplexer = try ops.configureHTTP2Pipeline(
                mode: .client, connectionConfiguration: connectionConfig, streamConfiguration: streamConfig
            ) { stream in stream.close() }
            try ops.addHandler(connection)
        } catch {
            opened.channel.close(promise: nil)
            return nil
        }
        let now = NIODeadline.now()
        stats.inc(clusterStats.cxHTTP2Total)
        owner.traffic.store(true, ordering: .relaxed)
        perHost[key.host, default: .init()].active += 1
        perHost[key.host, default: .init()].total += 1
        connection.connectedAt = now
        connection.idleSince = now
        ready[key, default: []].append(connection)
        opened.channel.closeFuture.whenComplete { [self] _ in connectionClosed(connection) }
        return connection
    }

    /// The host stopped choosing h2 (`auto_config`): the requests waiting for one of its streams ask the HTTP/1.1
    /// pool instead. A request that gave up meanwhile gets its connection back to the pool from the router.
    private func requeueOverHTTP1(_ key: ConnectionPool.Key) {
        guard let list = waiters.removeValue(forKey: key) else { return }
        for w in list {
            switch owner.acquire(w.host, source: w.source, priority: w.priority) {
            case .ready(let conn):
                w.promise.assumeIsolated().succeed(conn)
            case .pending(let future, _):
                future.assumeIsolated().whenComplete { w.promise.assumeIsolated().completeWith($0) }
            case .overflow:
                w.promise.fail(ChannelError.ioOnClosedChannel)
            }
        }
    }

    /// A connection failed to open: the waiting requests the remaining connections cannot take fail with its error
    /// (a connect failure for the router), newest first.
    private func failWaitersBeyondCapacity(_ key: ConnectionPool.Key, _ error: Error) {
        guard var list = waiters[key] else { return }
        let room = (connecting[key] ?? 0) * streamsPerConnection
            + (ready[key] ?? []).filter(hasRoom).reduce(0) { $0 + max(0, streamsPerConnection - $1.activeStreams) }
        var failed: [Waiter] = []
        while list.count > room, let w = list.popLast() { failed.append(w) }
        waiters[key] = list.isEmpty ? nil : list
        for w in failed.reversed() { w.promise.fail(error) }
    }

    private func connectionClosed(_ c: HTTP2UpstreamConnection) {
        perHost[c.key.host, default: .init()].active -= 1
        cluster.resources.release(.connections, c.priority)
        if var list = ready[c.key], let i = list.firstIndex(where: { $0 === c }) {
            list.remove(at: i)
            ready[c.key] = list.isEmpty ? nil : list
        }
        connectIfNeeded(c.key)
    }

    // MARK: Idle connections

    /// Closes connections without streams unused since `cutoff` or `idle_timeout`, and stops new streams on those
    /// past `max_connection_duration` (closing them once idle).
    func sweepIdle(olderThan cutoff: NIODeadline) {
        let now = NIODeadline.now()
        let idleCutoff = common.idleTimeout.isZero ? cutoff : max(cutoff, now - common.idleTimeout.timeAmount)
        let ageCutoff = common.maxConnectionDuration.map { now - $0.timeAmount }
        for c in ready.values.flatMap({ $0 }) {
            if let ageCutoff, c.connectedAt <= ageCutoff, !c.goingAway {
                c.goingAway = true
                stats.inc(clusterStats.cxMaxDurationReached)
                if c.activeStreams == 0 { c.close() }
            } else if c.activeStreams == 0 && c.idleSince < idleCutoff {
                stats.inc(clusterStats.cxIdleTimeout)
                c.close()
            }
        }
    }

    /// Closes the connections without streams (the worker drains).
    func closeIdle() {
        for c in ready.values.flatMap({ $0 }) where c.activeStreams == 0 { c.close() }
    }

    /// The cluster left the config: no new connection; each closes when its streams end.
    func drain() {
        draining = true
        for c in ready.values.flatMap({ $0 }) {
            c.goingAway = true
            if c.activeStreams == 0 { c.close() }
        }
    }
}

@available(*, unavailable) extension MultiplexedPool: Sendable {}
