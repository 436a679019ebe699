import NIOCore
import SidecarCore

/// Puts a filter chain's handlers on a connection's pipeline: directly for plaintext, or behind the TLS
/// handler and `DownstreamTLSHandshake` (which adds them once the handshake established the peer).
enum ChainInstaller {
    static func install(_ chain: ChainRuntime, on channel: Channel, worker: Worker,
                        originalDestination: SocketAddress?, serverName: String?) throws {
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
        let snapshot = tls.provider.snapshot
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
            // No outbound header validation: what the proxy writes came through the HTTP parser or was checked
            // when the config loaded (`ConfigValue.headerValueText`); NIO's validator handler re-scanned every
            // header of every response (about 4 % of a proxied request).
            if let log { try ops.addHandler(ListenerAccessLogHandler(log: log, logs: runtime.config.accessLogs, worker: worker)) }
            try ops.configureHTTPServerPipeline(
                withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: false)
            let handler = HTTPProxyHandler(worker: worker, listener: runtime, originalDestination: originalDestination)
            handler.security = security
            handler.requestedServerName = serverName
            handler.connectionID = id
            handler.connectionLog = log
            try ops.addHandler(handler)
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
}
