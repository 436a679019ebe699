import NIOCore
import SidecarCore

/// Puts a filter chain's handlers on a connection's pipeline: directly for plaintext, or behind the TLS
/// handler and `DownstreamTLSHandshake` (which adds them once the handshake established the peer).
enum ChainInstaller {
    static func install(_ chain: ChainRuntime, on channel: Channel, worker: Worker,
                        originalDestination: SocketAddress?, serverName: String?) throws {
        let limits = chain.connectionLimits
        if !limits.isEmpty && !ConnectionLimiter.admit(channel, limits) { return }
        let ops = channel.pipeline.syncOperations
        let id = DownstreamConnectionLog.nextConnectionID()
        // The connection's own log (listener and tcp_proxy `access_log`) only where one is configured.
        let log = chain.logsConnection
            ? DownstreamConnectionLog(id: id, channel: channel, originalDestination: originalDestination) : nil
        log?.requestedServerName = serverName
        guard let tls = chain.tls else {
            try addTerminal(chain, on: ops, worker: worker, originalDestination: originalDestination, security: nil,
                            serverName: serverName, id: id, log: log)
            return
        }
        guard let snapshot = tls.provider.readySnapshot else {
            // Its secrets have not come from the control plane: closed, as Envoy's not-ready TLS socket does.
            worker.stats.inc(tls.stats.secretsNotReady)
            channel.close(promise: nil)
            return
        }
        let gate = DownstreamTLSHandshake(
            snapshot: snapshot, requireClientCertificate: tls.provider.config.requireClientCertificate,
            stats: tls.stats, worker: worker, owner: tls.provider.owner, requestedServerName: serverName
        ) { ops, security in
            try addTerminal(chain, on: ops, worker: worker, originalDestination: originalDestination, security: security,
                            serverName: serverName, id: id, log: log)
        }
        try ops.addHandler(gate.makeTLSHandler())
        try ops.addHandler(gate)
    }

    /// `serverName`: the SNI tls_inspector read (RBAC's `requested_server_name`), nil when none.
    private static func addTerminal(_ chain: ChainRuntime, on ops: ChannelPipeline.SynchronousOperations, worker: Worker,
                                    originalDestination: SocketAddress?, security: ConnectionSecurity?,
                                    serverName: String?, id: UInt64, log: DownstreamConnectionLog?) throws {
        if let log, let sans = security?.peerURISANs, !sans.isEmpty { log.peerURISAN = sans.joined(separator: ",") }
        switch chain {
        case .http(let runtime):
            if let log { try ops.addHandler(ListenerAccessLogHandler(log: log, logs: runtime.config.accessLogs, worker: worker)) }
            // `counted`: the codec selector counted the connection already.
            let addCodec = { (ops: ChannelPipeline.SynchronousOperations, http2: Bool, counted: Bool) throws in
                if http2 {
                    try HTTP2DownstreamConnection.install(
                        on: ops, listener: runtime, worker: worker, originalDestination: originalDestination,
                        security: security, serverName: serverName, id: id, log: log, counted: counted)
                } else {
                    try addHTTP1(runtime, on: ops, worker: worker, originalDestination: originalDestination,
                                 security: security, serverName: serverName, id: id, log: log, counted: counted)
                }
            }
            switch runtime.hcm.codecType {
            case .HTTP1: try addCodec(ops, false, false)
            case .HTTP2: try addCodec(ops, true, false)
            case .AUTO:
                // ALPN decides when TLS negotiated a protocol; else the connection's first bytes do.
                if let negotiated = security?.negotiatedProtocol {
                    try addCodec(ops, negotiated == "h2", false)
                } else {
                    try ops.addHandler(HTTPCodecSelector(worker: worker, listener: runtime) { try addCodec($0, $1, true) })
                }
            }
        case .tcp(let runtime):
            let session = TCPProxySession(worker: worker, listener: runtime)
            session.security = security
            session.requestedServerName = serverName
            session.originalDestination = originalDestination
            session.connectionLog = log
            let glue = TCPProxyGlue(side: .downstream, session: session)
            session.downstream = glue
            try ops.addHandler(glue)
        }
    }

    private static func addHTTP1(_ runtime: ListenerRuntime, on ops: ChannelPipeline.SynchronousOperations,
                                 worker: Worker, originalDestination: SocketAddress?, security: ConnectionSecurity?,
                                 serverName: String?, id: UInt64, log: DownstreamConnectionLog?,
                                 counted: Bool) throws {
        // No outbound header validation: what the proxy writes came through the HTTP parser or was checked
        // when the config loaded (`ConfigValue.headerValueText`); NIO's validator handler re-scanned every
        // header of every response (about 4 % of a proxied request).
        let handler = HTTPProxyHandler(worker: worker, listener: runtime, originalDestination: originalDestination)
        if runtime.hcm.requestHeadersTimeout != nil {
            // Right before the request decoder (after TLS): it sees the request's bytes as they arrive.
            try ops.addHandler(RequestHeaderBytesWatch(handler: handler))
        }
        let tap = DecoderInputTap()
        try ops.addHandler(tap)
        handler.decoderInput = tap
        if runtime.hcm.mayUpgrade {
            // NIO's upgrade handler with no upgraders of its own passes every request on and leaves with the first;
            // it is here for what it makes the request decoder do: hand the bytes a client sent behind its upgrade
            // request to whoever removes the decoder (the upgrade tunnel) instead of dropping them.
            try ops.configureHTTPServerPipeline(
                withPipeliningAssistance: false, withServerUpgrade: (upgraders: [], completionHandler: { _ in }),
                withErrorHandling: false, withOutboundHeaderValidation: false)
        } else {
            try ops.configureHTTPServerPipeline(
                withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: false)
        }
        handler.security = security
        handler.requestedServerName = serverName
        handler.connectionID = id
        handler.connectionLog = log
        handler.connectionCounted = counted
        try ops.addHandler(handler)
    }
}
