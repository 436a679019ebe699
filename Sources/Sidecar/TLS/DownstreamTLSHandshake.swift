import Foundation
import NIOCore
import NIOSSL
import NIOTLS
import SidecarCore
import SidecarUpstream

/// Sits behind the server-side `NIOSSLServerHandler` of a TLS filter chain until the handshake is done.
/// It holds the chain's own handlers back (they are installed only once the peer is known, so tcp_proxy
/// does not connect upstream and RBAC does not decide before the identity exists), validates the client's
/// certificate through `PeerCertificateValidator`, counts Envoy's `ssl.*` stats, logs every refusal with
/// its reason, and then installs the chain, hands it the connection and leaves.
final class DownstreamTLSHandshake: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Adds the chain's handlers behind this one, given what the handshake established.
    typealias Install = (ChannelPipeline.SynchronousOperations, ConnectionSecurity) throws -> Void

    private let snapshot: TLSContextProvider.Snapshot
    private let stats: TLSStats
    private let worker: Worker
    private let owner: String
    private let requestedServerName: String?
    private let install: Install
    private let requireClientCertificate: Bool
    /// Filled by the verification callback, which runs inside the handshake.
    private var verified: ConnectionSecurity?
    private var failure: PeerCertificateValidator.Failure?
    private var done = false
    /// Asked for the negotiated version once the handshake is done.
    private weak var tlsHandler: NIOSSLHandler?

    init(snapshot: TLSContextProvider.Snapshot, requireClientCertificate: Bool, stats: TLSStats, worker: Worker,
         owner: String, requestedServerName: String?, install: @escaping Install) {
        self.snapshot = snapshot
        self.requireClientCertificate = requireClientCertificate
        self.stats = stats
        self.worker = worker
        self.owner = owner
        self.requestedServerName = requestedServerName
        self.install = install
    }

    /// The TLS handler for this connection, its verification wired to this gate.
    func makeTLSHandler() -> NIOSSLServerHandler {
        guard let validator = snapshot.validator else {
            let h = NIOSSLServerHandler(context: snapshot.context)
            tlsHandler = h
            return h
        }
        let loopBound = NIOLoopBound(self, eventLoop: worker.eventLoop)
        let h = NIOSSLServerHandler(context: snapshot.context, customVerificationCallback: { certificates, promise in
            let gate = loopBound.value
            switch validator.validate(presented: certificates, now: Date()) {
            case .success(let security):
                gate.verified = security
                promise.succeed(.certificateVerified)
            case .failure(let f):
                gate.failure = f
                promise.succeed(.failed)
            }
        })
        tlsHandler = h
        return h
    }

    // The chain is not installed yet: the connection becomes active for it after the handshake.
    func channelActive(context: ChannelHandlerContext) {}

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let e = event as? TLSUserEvent, case .handshakeCompleted(let negotiated) = e, !done else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        done = true
        worker.stats.inc(stats.handshake)
        if let slot = stats.slot(for: tlsHandler?.tlsVersion) { worker.stats.inc(slot) }
        var security = verified ?? ConnectionSecurity()
        if verified == nil { worker.stats.inc(stats.noCertificate) }
        security.requestedServerName = requestedServerName
        security.negotiatedProtocol = negotiated
        do {
            try install(context.pipeline.syncOperations, security)
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelActive()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !done else {
            context.fireErrorCaught(error)
            return
        }
        done = true
        let reason: String
        // A refusal (bad certificate, plaintext, no common version or cipher) is logged; a client that just
        // went away mid-handshake is only counted.
        var refused = true
        if let failure {
            worker.stats.inc(stats.slot(for: failure))
            reason = failure.description
        } else if requireClientCertificate, "\(error)".contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") {
            worker.stats.inc(stats.failVerifyNoCert)
            reason = PeerCertificateValidator.Failure.noCertificate.description
        } else {
            // Envoy counts connection_error only for failures that are not a certificate verdict.
            worker.stats.inc(stats.connectionError)
            reason = TLSHandshakeFailure.reason(error)
            refused = reason != "\(error)"
        }
        (refused ? Log.warning : Log.debug)("TLS handshake refused", [
            ("reason", reason), ("peer", Log.describe(context.channel.remoteAddress)), ("where", owner),
        ])
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        context.fireChannelInactive()
    }
}

@available(*, unavailable) extension DownstreamTLSHandshake: Sendable {}
