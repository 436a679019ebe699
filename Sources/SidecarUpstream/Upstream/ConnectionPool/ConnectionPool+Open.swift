import NIOCore
import NIOPosix
import SidecarCore

/// A new upstream connection of the cluster, up and through its TLS handshake, before any protocol handler.
package struct OpenedUpstreamChannel {
    package var channel: Channel
    /// The protocol the TLS handshake's ALPN settled on (nil: plaintext, or no ALPN).
    package var negotiatedProtocol: String?
    /// When the connect started: `upstream_cx_connect_ms` and `upstream_cx_length_ms` run from here.
    package var connectStart: NIODeadline
}

extension ConnectionPool {
    /// How every upstream connection of the cluster is made: from its source, within `connect_timeout`, without
    /// Nagle, with the connection buffer limit as the write watermark.
    package func bootstrap(_ source: UpstreamSource) -> ClientBootstrap {
        source.apply(to: ClientBootstrap(group: eventLoop))
            .connectTimeout(connectTimeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: bufferLimit / 2, high: bufferLimit))
    }

    /// Opens one upstream connection to `address` for any user (the HTTP/1.1 and HTTP/2 pools, a terminated
    /// CONNECT, tcp_proxy): TCP, then the cluster's TLS handshake if it has an UpstreamTlsContext (also within
    /// `connect_timeout`). The caller puts its protocol handlers on the pipeline as the future succeeds: that runs
    /// as the connect or the handshake completes, before anything more is read.
    ///
    /// Every connection is counted here the same way, as Envoy counts its upstream connections: from the moment it
    /// is attempted in `upstream_cx_total` and `upstream_cx_active`; connected (and through TLS), in
    /// `upstream_cx_connect_ms`; when it closes, `upstream_cx_destroy` and `upstream_cx_length_ms`. A connect or
    /// handshake that fails is a connection that closed as well (Envoy 1.40 counts a refused connect in
    /// `upstream_cx_total` and `upstream_cx_destroy`), plus `upstream_cx_connect_fail` (and
    /// `upstream_cx_connect_timeout` for a timeout).
    ///
    /// - Parameters:
    ///   - http1Only: the handshake offers ALPN `http/1.1` alone (see `UpstreamHTTPProtocolOptions.needsHTTP1OnlyALPN`).
    ///   - halfClosure: the channel reports the upstream's FIN instead of closing (tcp_proxy, tunnels).
    package func open(to address: SocketAddress, source: UpstreamSource, http1Only: Bool = false,
                      halfClosure: Bool = false) -> EventLoopFuture<OpenedUpstreamChannel> {
        let stats = self.stats, cs = clusterStats
        if let first = onFirstConnection {
            onFirstConnection = nil
            first()
        }
        if let tls = cluster.tls, tls.provider.readySnapshot == nil {
            // Its secrets have not come from the control plane: a failed connection, as Envoy's not-ready TLS socket.
            stats.inc(tls.stats.secretsNotReady)
            stats.inc(cs.cxTotal)
            stats.inc(cs.cxDestroy)
            stats.inc(cs.cxConnectFail)
            return eventLoop.makeFailedFuture(UpstreamTLSHandshake.Failed(reason: "secrets not ready"))
        }
        let handshake = UpstreamTLSHandshake(cluster: cluster, workerStats: stats, eventLoop: eventLoop, http1Only: http1Only)
        let connectStart = NIODeadline.now()
        stats.inc(cs.cxTotal)
        stats.inc(cs.cxActive)
        func closed() {
            stats.dec(cs.cxActive)
            stats.inc(cs.cxDestroy)
            stats.record(cs.cxLengthMs, from: connectStart, to: .now())
        }
        return bootstrap(source)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: halfClosure)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try handshake?.install(on: channel.pipeline.syncOperations, eventLoop: channel.eventLoop)
                }
            }
            .connect(to: address)
            .assumeIsolated()
            .flatMap { channel -> EventLoopFuture<OpenedUpstreamChannel> in
                guard let handshake else {
                    return channel.eventLoop.makeSucceededFuture(
                        OpenedUpstreamChannel(channel: channel, negotiatedProtocol: nil, connectStart: connectStart))
                }
                return handshake.promise.futureResult.map {
                    OpenedUpstreamChannel(channel: channel, negotiatedProtocol: $0, connectStart: connectStart)
                }
            }
            .map { opened in
                stats.record(cs.cxConnectMs, from: connectStart, to: .now())
                opened.channel.closeFuture.whenComplete { _ in closed() }
                return opened
            }
            .flatMapErrorThrowing { error in
                closed()
                stats.inc(cs.cxConnectFail)
                if let e = error as? ChannelError, case .connectTimeout = e { stats.inc(cs.cxConnectTimeout) }
                throw error
            }
            .nonisolated()
    }
}
