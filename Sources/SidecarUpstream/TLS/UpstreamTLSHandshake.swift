import Foundation
import NIOCore
import NIOSSL
import NIOTLS
import SidecarCore

/// Behind the client-side `NIOSSLClientHandler` of an upstream connection: an upstream connection is
/// usable only once its handshake is done, as in Envoy, where `connect_timeout` covers the handshake too.
/// It validates the server's certificate (SANs included), counts `cluster.<name>.ssl.*` and fails the
/// connection attempt with the reason, which becomes the connect failure the router reports.
package final class UpstreamTLSHandshake: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer

    package struct Failed: Error, CustomStringConvertible {
        package var reason: String
        package var description: String { "TLS handshake with the upstream failed: \(reason)" }
    }

    /// Succeeds with the protocol ALPN settled on (nil: none).
    package let promise: EventLoopPromise<String?>
    private let snapshot: TLSContextProvider.Snapshot
    private let context: NIOSSLContext
    private let stats: TLSStats
    private let workerStats: WorkerStats
    private let cluster: String
    private let timeout: TimeAmount
    private let serverName: String?
    private var timer: Scheduled<Void>?
    private var failure: PeerCertificateValidator.Failure?
    private var done = false
    private weak var tlsHandler: NIOSSLHandler?

    /// The handshake of one new connection to `cluster`, or nil for a plaintext cluster. It takes the
    /// cluster's current TLS context, so a rotation applies to the next connection.
    /// `http1Only`: the connection offers ALPN `http/1.1` alone (the cluster's `Snapshot.http1Context`).
    package init?(cluster: ClusterInfo, workerStats: WorkerStats, eventLoop: EventLoop, http1Only: Bool = false) {
        guard let tls = cluster.tls else { return nil }
        let snapshot = tls.provider.snapshot
        self.snapshot = snapshot
        self.context = http1Only ? snapshot.http1Context ?? snapshot.context : snapshot.context
        self.stats = tls.stats
        self.workerStats = workerStats
        self.cluster = cluster.config.name
        self.timeout = cluster.config.connectTimeout.timeAmount
        self.serverName = tls.provider.config.sni
        self.promise = eventLoop.makePromise()
    }

    /// Puts the TLS handler and this handler on a new connection's pipeline.
    package func install(on ops: ChannelPipeline.SynchronousOperations, eventLoop: EventLoop) throws {
        try ops.addHandler(makeTLSHandler(eventLoop: eventLoop))
        try ops.addHandler(self)
    }

    /// The handshake must finish within connect_timeout too.
    package func channelActive(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            guard let self, !self.done else { return }
            self.fail(context, reason: "handshake not finished within connect_timeout")
        }
        context.fireChannelActive()
    }

    /// The TLS handler for this connection, its verification wired to this handler.
    private func makeTLSHandler(eventLoop: EventLoop) throws -> NIOSSLClientHandler {
        guard let validator = snapshot.validator else {
            let h = try NIOSSLClientHandler(context: context, serverHostname: serverName)
            tlsHandler = h
            return h
        }
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        let h = try NIOSSLClientHandler(context: context, serverHostname: serverName, customVerificationCallback: {
            certificates, result in
            let me = loopBound.value
            switch validator.validate(presented: certificates, now: Date()) {
            case .success:
                result.succeed(.certificateVerified)
            case .failure(let f):
                me.failure = f
                result.succeed(.failed)
            }
        })
        tlsHandler = h
        return h
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? TLSUserEvent, case .handshakeCompleted(let negotiated) = e, !done {
            done = true
            timer?.cancel()
            workerStats.inc(stats.handshake)
            if let slot = stats.slot(for: tlsHandler?.tlsVersion) { workerStats.inc(slot) }
            promise.succeed(negotiated)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !done else {
            context.fireErrorCaught(error)
            return
        }
        fail(context, reason: failure?.description ?? TLSHandshakeFailure.reason(error))
    }

    package func channelInactive(context: ChannelHandlerContext) {
        if !done { fail(context, reason: "connection closed during the handshake") }
        context.fireChannelInactive()
    }

    private func fail(_ context: ChannelHandlerContext, reason: String) {
        done = true
        timer?.cancel()
        if let failure { workerStats.inc(stats.slot(for: failure)) } else { workerStats.inc(stats.connectionError) }
        Log.warning("upstream TLS handshake failed", [
            ("reason", reason), ("cluster", cluster), ("upstream", Log.describe(context.channel.remoteAddress)),
        ])
        promise.fail(Failed(reason: reason))
        context.close(promise: nil)
    }
}

@available(*, unavailable) extension UpstreamTLSHandshake: Sendable {}
