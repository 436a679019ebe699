import NIOCore
import NIOPosix
import SidecarCore
import SidecarUpstream

/// One downstream connection of a tcp_proxy listener and its upstream connection: picks the upstream
/// host (the original destination for ORIGINAL_DST clusters), connects on the downstream's event loop,
/// counts Envoy's tcp and cluster stats and runs the idle timeout. The state machine decides; this runs.
final class TCPProxySession {
    weak var downstream: TCPProxyGlue?
    weak var upstream: TCPProxyGlue?
    private var machine = TCPProxyStateMachine()
    private let worker: Worker
    private let listener: TCPListenerRuntime
    /// The proxy's cluster in the config snapshot current when the connection was accepted, kept to its end.
    private let local: ThreadLocalCluster
    private var idleTimer: Scheduled<Void>?
    private var lastActivity = NIODeadline.now()
    /// Downstream bytes that arrived before the upstream connection (replayed by a listener filter).
    private var early: ByteBuffer?
    /// What the downstream's TLS handshake established; nil for plaintext. Read when the connection becomes
    /// active, so it must be set before then.
    var security: ConnectionSecurity?
    /// The SNI tls_inspector read, for RBAC's `requested_server_name`.
    var requestedServerName: String?
    /// The original destination a listener filter already found (FilterChainDispatcher).
    var originalDestination: SocketAddress?
    /// What tcp_proxy's and the listener's `access_log` read; nil when neither is configured.
    var connectionLog: DownstreamConnectionLog?

    init(worker: Worker, listener: TCPListenerRuntime) {
        self.worker = worker
        self.listener = listener
        let snapshot = worker.current
        local = snapshot[snapshot.config.tcpProxyClusters[listener.tcpProxy]]
    }

    var isProxying: Bool { machine.isProxying }
    private var stats: WorkerStats { worker.stats }
    private var cluster: ClusterStats { local.info.stats }

    /// The accepted connection is up: choose where it goes and connect there.
    func downstreamActive(_ context: ChannelHandlerContext) {
        stats.inc(listener.stats.cxTotal)
        worker.register(self)
        if !listener.networkRBAC.isEmpty && !networkRBACAllows(context.channel) {
            run(machine.accessDenied())
            return
        }
        connectionLog?.upstreamCluster = local.info.config.name
        guard let destination = chooseDestination(context.channel) else {
            connectionLog?.responseFlags.insert(.noHealthyUpstream)
            run(machine.upstreamConnectFailed())
            return
        }
        connectionLog?.upstreamHost = StreamAddress(destination)
        let upstreamGlue = TCPProxyGlue(side: .upstream, session: self)
        upstream = upstreamGlue
        // The glue holds reads until the session proxies, which would stall a TLS handshake: it joins the
        // upstream channel once the connection (and its handshake) is up.
        local.pool.open(to: destination, source: UpstreamSource.choose(
            listener: listener.config, downstream: context.channel, clusterSource: local.pool.clusterSource),
                        halfClosure: true)
            .assumeIsolated()
            .flatMapThrowing { opened in
                if let log = self.connectionLog {
                    log.upstreamLocalAddress = opened.channel.localAddress.flatMap { StreamAddress($0) }
                }
                try opened.channel.pipeline.syncOperations.addHandler(upstreamGlue)
            }
            .whenComplete { result in
                switch result {
                case .success:
                    self.run(self.machine.upstreamConnected())
                case .failure(let error):
                    if let log = self.connectionLog {
                        // Envoy's tcp_proxy makes one attempt (max_connect_attempts 1): that one failing also
                        // exhausts its retries, flagged after the failure.
                        log.responseFlags.insert(.upstreamConnectionFailure)
                        log.responseFlags.insert(.upstreamRetryLimitExceeded)
                        log.upstreamTransportFailureReason = UpstreamConnectError.transportFailureReason(error)
                    }
                    Log.debug("tcp_proxy upstream connect failed", [("destination", "\(destination)"), ("error", "\(error)")])
                    self.run(self.machine.upstreamConnectFailed())
                }
            }
    }

    /// The chain's network RBAC filters, decided once as the connection starts and before any upstream
    /// connection exists. Envoy decides on the first bytes (or FIN) from the client, after tcp_proxy has
    /// already connected upstream; the inputs (addresses, TLS peer, SNI) are the same, so is the decision.
    private func networkRBACAllows(_ channel: Channel) -> Bool {
        let request = RBACRequest(
            source: channel.remoteAddress,
            destination: RBACRequest.downstreamLocalAddress(
                channel, listener: listener.config, known: originalDestination),
            security: security, requestedServerName: requestedServerName)
        return RBACFilter.allow(listener.networkRBAC, request, counting: stats)
    }

    /// The upstream for this connection, or nil (counted) when there is none.
    private func chooseDestination(_ channel: Channel) -> SocketAddress? {
        let config = local.info.config
        if config.type == .ORIGINAL_DST {
            guard let original = OriginalDestination.lookup(channel, listener: listener.config) else {
                stats.inc(cluster.cxNoneHealthy)
                return nil
            }
            return original
        }
        guard let host = worker.pickHost(local) else {
            stats.inc(cluster.cxNoneHealthy)
            return nil
        }
        return host.address
    }

    func bytesRead(_ n: Int, on side: TCPProxyStateMachine.Side) {
        lastActivity = .now()
        switch side {
        case .downstream:
            connectionLog?.bytesReceived &+= UInt64(n)
            stats.add(listener.stats.rxBytes, n)
            stats.add(cluster.cxTxBytes, n)
        case .upstream:
            connectionLog?.bytesSent &+= UInt64(n)
            stats.add(cluster.cxRxBytes, n)
            stats.add(listener.stats.txBytes, n)
        }
    }

    func holdEarly(_ buffer: ByteBuffer) {
        var buffer = buffer
        if early == nil { early = buffer } else { early!.writeBuffer(&buffer) }
    }

    func pausedReading(_ side: TCPProxyStateMachine.Side) {
        if side == .downstream { stats.inc(listener.stats.pausedReading) }
    }

    func resumedReading(_ side: TCPProxyStateMachine.Side) {
        if side == .downstream { stats.inc(listener.stats.resumedReading) }
    }

    func inputClosed(_ side: TCPProxyStateMachine.Side) { run(machine.inputClosed(side)) }

    func channelInactive(_ side: TCPProxyStateMachine.Side) {
        if side == .downstream {
            worker.unregister(self)
            logConnection()
        }
        run(machine.channelInactive(side))
    }

    private func run(_ action: TCPProxyStateMachine.Action) {
        switch action {
        case .none:
            break
        case .startProxying(let downstreamFinished):
            armIdleTimer()
            if let bytes = early, let up = upstream?.context {
                early = nil
                up.writeAndFlush(NIOAny(bytes), promise: nil)
            }
            if downstreamFinished { upstream?.shutdownOutput() }
            downstream?.resumeReading()
            upstream?.resumeReading()
        case .shutdownOutput(let side):
            (side == .downstream ? downstream : upstream)?.shutdownOutput()
        case .finish(let side):
            idleTimer?.cancel()
            idleTimer = nil
            let target = side == .downstream ? downstream : upstream
            let other = side == .downstream ? upstream : downstream
            other?.close()
            target?.flushThenClose()
        case .closeAll:
            idleTimer?.cancel()
            idleTimer = nil
            downstream?.close()
            upstream?.close()
        case .refuseDownstream:
            if let channel = downstream?.context?.channel { RefusedConnection.install(on: channel) }
        }
    }

    /// tcp_proxy's `access_log`, then the listener's: one line each when the downstream connection closes.
    private func logConnection() {
        guard let log = connectionLog, !log.logged else { return }
        log.logged = true
        let context = log.formatContext(end: .now())
        if !listener.proxy.accessLogs.isEmpty { worker.logAccess(listener.proxy.accessLogs, context) }
        if !listener.config.accessLogs.isEmpty { worker.logAccess(listener.config.accessLogs, context) }
    }

    /// One timer per connection, re-armed for the remaining time instead of on every read.
    private func armIdleTimer() {
        guard let idle = listener.proxy.idleTimeout?.timeAmount, let loop = downstream?.context?.eventLoop else { return }
        let deadline = lastActivity + idle
        idleTimer = loop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            if self.lastActivity + idle > .now() {
                self.armIdleTimer()
            } else {
                self.stats.inc(self.listener.stats.idleTimeout)
                self.run(self.machine.idleTimeoutFired())
            }
        }
    }
}

extension TCPProxySession: DrainableConnection {
    /// A byte stream has no request boundary to stop at: it runs until either side ends it or the drain
    /// time is up.
    func drain() {}
    var listenerGeneration: Int { listener.generation }
    /// Its listener's drain time is over (Envoy closes what is left then).
    func drainDeadline() { run(.closeAll) }
}

@available(*, unavailable) extension TCPProxySession: Sendable {}
