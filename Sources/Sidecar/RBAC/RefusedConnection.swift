import NIOCore
import NIOSSL

/// Ends a connection a network RBAC filter refused so that the client sees what Envoy's refusal looks like:
/// an end of stream, not a reset. Envoy decides on the client's first bytes, which it has read by then, and
/// closes; closing a socket whose unread bytes are still queued (or arrive after it closed) makes the kernel
/// answer with a reset instead. So: send FIN at once, read and drop whatever the client sends, and close on
/// its first bytes, its FIN, or after `lingerLimit` for a client that does neither.
///
/// It goes first in the pipeline, or right behind the TLS handler of a TLS chain (so that the FIN follows a
/// TLS close_notify, as Envoy's close of a TLS connection does), so that nothing the client sends reaches
/// the chain's own handlers.
final class RefusedConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// How long a refused client that neither sends nor closes keeps its half-closed socket.
    static let lingerLimit = TimeAmount.seconds(1)

    private var timer: Scheduled<Void>?

    /// Puts the handler at the front of `channel`'s pipeline, which starts the refusal.
    static func install(on channel: Channel) {
        let ops = channel.pipeline.syncOperations
        do {
            if let tls = try? ops.handler(type: NIOSSLServerHandler.self) {
                try ops.addHandler(RefusedConnection(), position: .after(tls))
            } else {
                try ops.addHandler(RefusedConnection(), position: .first)
            }
        } catch {
            channel.close(promise: nil)
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        context.close(mode: .output, promise: nil)
        // The chain's handlers may hold reads (tcp_proxy does until its upstream exists): read from here.
        context.read()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.lingerLimit) {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func channelReadComplete(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, case .inputClosed = e { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }
}

@available(*, unavailable) extension RefusedConnection: Sendable {}
