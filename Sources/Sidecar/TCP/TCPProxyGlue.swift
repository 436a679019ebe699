import NIOCore

/// One side of a tcp_proxy pair, GlueHandler-style: bytes read here are written to the partner side;
/// reads are held while the partner cannot take more (backpressure both ways); FIN is forwarded as a
/// half-close. Decisions about the connection's life are the session's.
final class TCPProxyGlue: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let side: TCPProxyStateMachine.Side
    /// Both sides keep the session alive; it only holds them weakly, so the pair goes away with its channels.
    let session: TCPProxySession
    private(set) var context: ChannelHandlerContext?
    private var readPending = false
    /// The hold was flow control (counted as paused), not the wait for the upstream connection.
    private var pausedForFlowControl = false

    init(side: TCPProxyStateMachine.Side, session: TCPProxySession) {
        self.side = side
        self.session = session
    }

    var partner: TCPProxyGlue? { side == .downstream ? session.upstream : session.downstream }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelActive(context: ChannelHandlerContext) {
        if side == .downstream { session.downstreamActive(context) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        session.bytesRead(buffer.readableBytes, on: side)
        guard session.isProxying, let partnerContext = partner?.context else {
            // Bytes a listener filter read before the upstream exists (our own reads wait for it).
            session.holdEarly(buffer)
            return
        }
        partnerContext.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, case .inputClosed = e {
            session.inputClosed(side)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.channelInactive(side)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if session.isProxying && partner?.isWritable == true {
            context.read()
        } else if !readPending {
            readPending = true
            if session.isProxying {
                pausedForFlowControl = true
                session.pausedReading(side)
            }
        }
    }

    /// The partner can take bytes again (or the upstream just connected).
    func resumeReading() {
        guard readPending, let context else { return }
        readPending = false
        if pausedForFlowControl {
            pausedForFlowControl = false
            session.resumedReading(side)
        }
        context.read()
    }

    /// Half-closes towards this side's peer once every byte already written here has gone out: a bare
    /// close(mode: .output) would drop writes still queued behind backpressure.
    func shutdownOutput() {
        afterPendingWrites { $0.close(mode: .output, promise: nil) }
    }

    /// Closes once every byte already written here has gone out (the partner ended the connection).
    func flushThenClose() {
        afterPendingWrites { $0.close(promise: nil) }
    }

    /// Writes complete in order, so an empty write's promise completes after everything queued before it.
    private func afterPendingWrites(_ body: @escaping (ChannelHandlerContext) -> Void) {
        guard let context else { return }
        let flushed = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: flushed)
        flushed.futureResult.assumeIsolated().whenComplete { _ in body(context) }
    }

    func close() {
        context?.close(promise: nil)
    }
}

@available(*, unavailable) extension TCPProxyGlue: Sendable {}
